using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Hybrid.Sandbox.Lab;
using k8s;

namespace Hybrid.Benchmarks;

/// <summary>
/// What an API outage costs the VIPs: a 3-node lab (svc_election=true) with 3 Services on 3 VIPs, steady;
/// the client asks "who has" every VIP every 20 ms (ARP on a raw socket, captured with the answers on the
/// client's interface, as tests/Integration/Agent/ResponderWatch.cs does), while the emulator (a) answers
/// every API request with 503 for 60 s, then, from a steady state again, (b) holds every Lease request 2 s
/// for 60 s. Per VIP: probes, unanswered probes, probes two nodes answered, the longest gap between two
/// answered probes and who answered. Protocol v2's target: no unanswered probe (the LAN keeps the fences).
/// </summary>
internal sealed class ApiOutageBenchmark : IBenchmark
{
    private static readonly TimeSpan ProbeInterval = TimeSpan.FromMilliseconds(20);

    public string Name => "api-outage";
    public string Description => "ARP probes every 20 ms to 3 VIPs while (a) every API request gets 503 and (b) Lease requests take 2 s, 60 s each: unanswered probes and longest gap per VIP (target 0) [--seconds S]";

    private sealed record Fault(string Name, JsonObject Rule);

    public async Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        Console.WriteLine(BenchLab.Int(args, "--seconds", 60, out var seconds));
        const int nodes = 3;
        await using var lab = await BenchLab.StartAsync("hybapi", nodes, new Dictionary<string, string> { ["svc_election"] = "true" }, cancellationToken);
        var vips = new[] { "198.18.0.100", "198.18.0.101", "198.18.0.102" };
        for (var i = 0; i < vips.Length; i++) await lab.CreateServiceAsync($"svc-{i}", vips[i], cancellationToken);
        Fault[] faults =
        [
            new("503 on every request", new JsonObject { ["kind"] = "fail", ["status"] = 503 }),
            new("2 s delay on Lease requests", new JsonObject { ["kind"] = "delay", ["delayMs"] = 2000, ["path"] = "/leases" }),
        ];
        foreach (var fault in faults)
        {
            await WaitForSteadyStateAsync(lab, vips, cancellationToken);
            var holders = new Dictionary<string, string>();
            foreach (var vip in vips) holders[vip] = (await lab.HolderAsync(vip, cancellationToken))!;
            await using var capture = await lab.CaptureAsync(cancellationToken);
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var targets = vips.Select(IPAddress.Parse).ToList();
            var sender = ArpProbe.RepeatAsync(lab.Lab.ClientHost.Namespace, lab.Lab.ClientHost.Interface, targets, ProbeInterval, stop.Token);

            var start = Stopwatch.GetTimestamp();
            lab.Lab.InjectFault(fault.Rule);
            await Task.Delay(TimeSpan.FromSeconds(seconds), cancellationToken); // the length of the outage under test
            var hits = lab.Lab.Api.Faults.Rules.Sum(r => r.Hits);
            lab.Lab.ClearFaults();
            var end = Stopwatch.GetTimestamp();
            await stop.CancelAsync();
            var rounds = await sender;

            var probes = await CollectAsync(lab, capture, targets, rounds, cancellationToken);
            Console.WriteLine($"{Name} ({fault.Name}, {seconds} s, {hits} API requests faulted):");
            foreach (var vip in targets)
            {
                var during = probes[vip].Where(p => p.SentTicks >= start && p.SentTicks <= end).ToList();
                var answered = during.Where(p => p.Responders.Count > 0).Select(p => p.SentTicks).ToList();
                var gap = answered.Zip(answered.Skip(1), (a, b) => Stopwatch.GetElapsedTime(a, b).TotalMilliseconds).DefaultIfEmpty(0).Max();
                Console.WriteLine($"  {vip} (holder {holders[vip.ToString()]}): {during.Count} probes, {during.Count(p => p.Responders.Count == 0)} unanswered, " +
                                  $"{during.Count(p => p.Responders.Count > 1)} answered twice, longest gap between answers {gap:0} ms; " +
                                  $"answered by {string.Join(" → ", Succession(during))}");
            }
        }
    }

    /// <summary>Every VIP answered by one node and every joined registration on its LAN fence (no API fence).</summary>
    private static Task WaitForSteadyStateAsync(BenchLab lab, IReadOnlyList<string> vips, CancellationToken cancellationToken) =>
        lab.WaitUntilAsync(async () =>
        {
            foreach (var vip in vips) if (await lab.HolderAsync(vip, cancellationToken) is null) return false;
            return (await lab.Client.CoordinationV1.ListNamespacedLeaseAsync("kube-system", cancellationToken: cancellationToken)).Items
                .Where(l => l.Metadata.Name.StartsWith("hybrid-node-", StringComparison.Ordinal)
                            && l.Metadata.Annotations?.TryGetValue("hybrid.kube-vip.io/state", out var state) == true && state == "joined")
                .All(l => l.Metadata.Annotations.TryGetValue("hybrid.kube-vip.io/fence", out var fence) && fence == "lan");
        }, TimeSpan.FromSeconds(60), "every VIP answered by one node and every registration on its LAN fence", cancellationToken);

    private sealed record Probe(long SentTicks, IReadOnlyList<string> Responders);

    /// <summary>
    /// Pairs each captured request with the answers that followed it (a veth answer takes well under 1 ms, a
    /// probe interval is 20 ms); the last request of each VIP is left out, its window was cut short.
    /// </summary>
    private static async Task<Dictionary<IPAddress, List<Probe>>> CollectAsync(BenchLab lab, ArpCapture capture, IReadOnlyList<IPAddress> vips,
        int rounds, CancellationToken cancellationToken)
    {
        bool IsRequest(CapturedArp p) => p.Operation == ArpOp.Request && p.SenderMac.Equals(capture.Mac) && vips.Contains(p.TargetIp);
        await lab.WaitUntilAsync(() => capture.Snapshot().Count(IsRequest) >= rounds * vips.Count, TimeSpan.FromSeconds(10),
            "the capture to hold every ARP request", cancellationToken);
        var probes = vips.ToDictionary(v => v, _ => new List<(long Ticks, IPAddress Asker, List<string> Responders)>());
        foreach (var p in capture.Snapshot().OrderBy(p => p.MonotonicTicks))
        {
            if (IsRequest(p)) probes[p.TargetIp].Add((p.MonotonicTicks, p.SenderIp, []));
            else if (p.Operation == ArpOp.Reply && probes.TryGetValue(p.SenderIp, out var of) && of.Count > 0 && p.TargetIp.Equals(of[^1].Asker))
                of[^1].Responders.Add(lab.NodeOfMac(p.SenderMac));
        }
        return probes.ToDictionary(kv => kv.Key, kv => kv.Value.SkipLast(1)
            .Select(p => new Probe(p.Ticks, p.Responders.Distinct().Order().ToList())).ToList());
    }

    /// <summary>The answering nodes in the order they took over (unanswered probes do not break a run).</summary>
    private static IReadOnlyList<string> Succession(IEnumerable<Probe> probes)
    {
        var order = new List<string>();
        foreach (var p in probes)
            foreach (var node in p.Responders)
                if (order.Count == 0 || order[^1] != node) order.Add(node);
        return order.Count == 0 ? ["nobody"] : order;
    }
}
