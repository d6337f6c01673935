using System.Diagnostics;
using k8s;
using k8s.Models;

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

        // Each Service exists (with its endpoints published) before its address is set: the clock measures the
        // agent, not the endpoint controller.
        // A watch of our own shows how much of the latency is the API server's delivery of the change.
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<string, long>();
        using var watching = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var watch = Task.Run(async () =>
        {
            try
            {
                await foreach (var (_, svc) in lab.Client.CoreV1.WatchListNamespacedServiceAsync("default", cancellationToken: watching.Token))
                    if (svc.Metadata.Annotations?.TryGetValue("kube-vip.io/loadbalancerIPs", out var a) == true)
                        seen.TryAdd(a, Stopwatch.GetTimestamp());
            }
            catch (OperationCanceledException) { }
        }, cancellationToken);
        var delivery = new List<double>();
        var latencies = new List<double>();
        for (var i = 0; i < count; i++)
        {
            var name = $"svc-{i}";
            var ip = $"198.18.0.{100 + i}";
            var service = BenchLab.Service(name, ip);
            service.Metadata.Annotations.Clear();
            await lab.Client.CoreV1.CreateNamespacedServiceAsync(service, "default", cancellationToken: cancellationToken);
            await lab.WaitUntilAsync(async () =>
                (await lab.Client.DiscoveryV1.ListNamespacedEndpointSliceAsync("default", labelSelector: $"kubernetes.io/service-name={name}",
                    cancellationToken: cancellationToken)).Items.Any(s => s.Endpoints?.Count > 0),
                TimeSpan.FromSeconds(10), $"endpoints of {name}", cancellationToken);
            var patch = new V1Patch("{\"metadata\":{\"annotations\":{\"kube-vip.io/loadbalancerIPs\":\"" + ip + "\"}}}", V1Patch.PatchType.MergePatch);
            var start = Stopwatch.GetTimestamp();
            await lab.Client.CoreV1.PatchNamespacedServiceAsync(patch, name, "default", cancellationToken: cancellationToken);
            var garp = await capture.WaitForAsync(p => p.IsGratuitous && p.SenderIp.ToString() == ip, TimeSpan.FromSeconds(10), cancellationToken);
            latencies.Add(BenchLab.Ms(start, garp.MonotonicTicks));
            if (seen.TryGetValue(ip, out var at)) delivery.Add(BenchLab.Ms(start, at));
        }
        await watching.CancelAsync();
        await watch;
        Console.WriteLine($"of which the API server's watch delivery (patch sent → event at a watcher): {Percentiles.Of(delivery).Format("ms")}");
        Console.WriteLine($"announce latency ({(election ? "svc_election=true" : "svc_election=false")}): {Percentiles.Of(latencies).Format("ms")}");
    }
}
