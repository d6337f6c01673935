using System.Collections.Concurrent;
using System.Diagnostics;
using Hybrid.Sandbox.Lab;
using k8s;

namespace Hybrid.Benchmarks;

/// <summary>
/// From creating a DHCP Service (loadBalancerIPs 0.0.0.0) to its leased address in status, seen by a watch of
/// our own, one Service at a time, against the lab router's dnsmasq (docs/DHCP.md).
/// </summary>
internal sealed class DhcpLatencyBenchmark : IBenchmark
{
    public string Name => "dhcp-latency";
    public string Description => "DHCP Service created → leased address in status, p50/p99 over 20 services (real dnsmasq) [--count N] [--election]";

    public async Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        Console.WriteLine(BenchLab.Int(args, "--count", 20, out var count));
        var election = args.Contains("--election");
        var topology = LabTopology.Create(new LabSpec("hybdhcp", 3));
        var range = new DnsmasqConfig(topology.DhcpFirst!, topology.DhcpLast!);
        if (count + 1 > LabTopology.DhcpPoolSize) throw new ArgumentException($"the range holds {LabTopology.DhcpPoolSize} leases: --count at most {LabTopology.DhcpPoolSize - 1}");
        await using var lab = await BenchLab.StartAsync("hybdhcp", 3,
            new Dictionary<string, string> { ["svc_election"] = election ? "true" : "false" }, cancellationToken, dhcp: range);
        await lab.WaitForSteadyStateAsync(cancellationToken);

        // Time of the first watch event that shows each Service with an address.
        var leased = new ConcurrentDictionary<string, long>();
        using var watching = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var watch = Task.Run(async () =>
        {
            try
            {
                await foreach (var (_, svc) in lab.Client.CoreV1.WatchListNamespacedServiceAsync("default", cancellationToken: watching.Token))
                    if (svc.Status?.LoadBalancer?.Ingress?.FirstOrDefault()?.Ip is not null)
                        leased.TryAdd(svc.Metadata.Name, Stopwatch.GetTimestamp());
            }
            catch (OperationCanceledException) { }
        }, cancellationToken);

        // One Service first, so that the leader (or holders) and the macvlan code path are warm.
        var latencies = new List<double>();
        for (var i = 0; i <= count; i++)
        {
            var name = i == 0 ? "warmup" : $"dhcp-{i}";
            var start = Stopwatch.GetTimestamp();
            await lab.Client.CoreV1.CreateNamespacedServiceAsync(BenchLab.Service(name, "0.0.0.0"), "default", cancellationToken: cancellationToken);
            await lab.WaitUntilAsync(() => leased.ContainsKey(name), TimeSpan.FromSeconds(30), $"{name} to report a leased address", cancellationToken);
            if (i > 0) latencies.Add(BenchLab.Ms(start, leased[name]));
        }
        await watching.CancelAsync();
        await watch;
        var leases = lab.Lab.Router!.Dhcp!.Leases();
        Console.WriteLine($"dnsmasq holds {leases.Count} leases ({leases.Select(l => l.Address).Distinct().Count()} distinct addresses) for {count + 1} Services");
        Console.WriteLine($"dhcp latency ({(election ? "svc_election=true" : "svc_election=false")}): {Percentiles.Of(latencies).Format("ms")}");
    }
}
