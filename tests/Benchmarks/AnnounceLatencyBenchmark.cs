using System.Diagnostics;

namespace Hybrid.Benchmarks;

/// <summary>
/// From the API write that gives a Service its address to the first gratuitous ARP for it on the LAN
/// (captured in the lab's client namespace), one Service at a time. Target p99 ≤ 100 ms.
/// </summary>
internal sealed class AnnounceLatencyBenchmark : IBenchmark
{
    public string Name => "announce-latency";
    public string Description => "service address set → first gratuitous ARP on the wire, p50/p99 over ≥50 services (target p99 ≤ 100 ms) [--count N] [--election]";

    public async Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        Console.WriteLine(BenchLab.Int(args, "--count", 60, out var count));
        var election = args.Contains("--election");
        await using var lab = await BenchLab.StartAsync("hybann", 3,
            new Dictionary<string, string> { ["svc_election"] = election ? "true" : "false" }, cancellationToken);
        await using var capture = await lab.CaptureAsync(cancellationToken);

        // One service first, so the leader (or a holder) exists before the measured ones.
        await lab.CreateServiceAsync("warmup", "198.18.0.99", cancellationToken);
        await capture.WaitForAsync(p => p.IsGratuitous && p.SenderIp.ToString() == "198.18.0.99", TimeSpan.FromSeconds(30), cancellationToken);

        var latencies = new List<double>();
        for (var i = 0; i < count; i++)
        {
            var ip = $"198.18.0.{100 + i}";
            var start = Stopwatch.GetTimestamp();
            await lab.CreateServiceAsync($"svc-{i}", ip, cancellationToken);
            var garp = await capture.WaitForAsync(p => p.IsGratuitous && p.SenderIp.ToString() == ip, TimeSpan.FromSeconds(10), cancellationToken);
            latencies.Add(BenchLab.Ms(start, garp.MonotonicTicks));
        }
        Console.WriteLine($"announce latency ({(election ? "svc_election=true" : "svc_election=false")}): {Percentiles.Of(latencies).Format("ms")}");
    }
}
