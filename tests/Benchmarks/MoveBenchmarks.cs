using System.Diagnostics;
using Hybrid.Sandbox.Lab;

namespace Hybrid.Benchmarks;

/// <summary>
/// Moving VIPs away from a node, measured to the first gratuitous ARP of each moved VIP from its new holder
/// (captured on the LAN). Default: kube-vip's ARP mode, the seed's shared VIP, one group. With --election:
/// svc_election=true and 30 Services on 30 IPs spread over 3 nodes; every group of the node that goes away
/// is one sample.
/// </summary>
internal abstract class MoveBenchmark : IBenchmark
{
    public abstract string Name { get; }
    public abstract string Description { get; }

    /// <summary>Takes the node away; the clock starts just before.</summary>
    protected abstract Task TakeAwayAsync(BenchLab lab, string node, CancellationToken cancellationToken);

    public async Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var election = args.Contains("--election");
        Console.WriteLine(BenchLab.Int(args, "--runs", 10, out var runs) + (election ? " --election (30 groups)" : " (one group)"));
        const int nodes = 3;
        var environment = new Dictionary<string, string> { ["svc_election"] = election ? "true" : "false" };
        // --verbose: the agents log at trace level, and each run prints the survivors' log lines of its first second.
        if (args.Contains("--verbose")) environment["vip_loglevel"] = "6";
        await using var lab = await BenchLab.StartAsync(election ? "hybmove-e" : "hybmove", nodes, environment, cancellationToken);
        var ips = Enumerable.Range(0, election ? 30 : 1).Select(i => $"198.18.0.{100 + i}").ToList();
        for (var i = 0; i < ips.Count; i++) await lab.CreateServiceAsync($"svc-{i}", ips[i], cancellationToken);
        await lab.WaitUntilAsync(async () =>
        {
            foreach (var ip in ips) if (await lab.HolderAsync(ip, cancellationToken) is null) return false;
            return true;
        }, TimeSpan.FromSeconds(60), "every VIP on exactly one node", cancellationToken);

        var samples = new List<double>();
        for (var run = 0; run < runs; run++)
        {
            await lab.WaitForSteadyStateAsync(cancellationToken);
            var holders = new Dictionary<string, string>();
            foreach (var ip in ips) holders[ip] = (await lab.HolderAsync(ip, cancellationToken))!;
            // The node with the most groups goes away (in ARP mode: the leader).
            var victim = holders.Values.GroupBy(n => n).OrderByDescending(g => g.Count()).ThenBy(g => g.Key).First().Key;
            var moved = holders.Where(h => h.Value == victim).Select(h => h.Key).ToHashSet();
            var victimMac = lab.MacOf(victim);
            await using var capture = await lab.CaptureAsync(cancellationToken);

            var start = Stopwatch.GetTimestamp();
            var startWall = DateTime.UtcNow;
            await TakeAwayAsync(lab, victim, cancellationToken);
            var firsts = new List<double>();
            foreach (var ip in moved)
            {
                var garp = await capture.WaitForAsync(
                    p => p.IsGratuitous && p.SenderIp.ToString() == ip && !p.SenderMac.Equals(victimMac),
                    TimeSpan.FromSeconds(15), cancellationToken);
                firsts.Add(BenchLab.Ms(start, garp.MonotonicTicks));
            }
            samples.AddRange(firsts);
            if (args.Contains("--verbose"))
            {
                foreach (var line in lab.Log(victim).Split('\n').Where(l => l.Length > 12
                             && TimeSpan.TryParse(l[..12], out var at) && at >= startWall.TimeOfDay && at < startWall.TimeOfDay + TimeSpan.FromSeconds(1)))
                    Console.WriteLine($"    {victim} (taken away): {line.Trim()}");
            }
            if (args.Contains("--verbose"))
                foreach (var node in lab.Lab.Nodes.Where(n => n.Name != victim))
                    foreach (var line in lab.Log(node.Name).Split('\n').Where(l => l.Length > 12
                                 && TimeSpan.TryParse(l[..12], out var at) && at >= startWall.TimeOfDay && at < startWall.TimeOfDay + TimeSpan.FromSeconds(1)))
                        Console.WriteLine($"    {node.Name}: {line.Trim()}  (taken away at {startWall:HH:mm:ss.fff})");
            Console.WriteLine($"  run {run + 1}: {victim} held {moved.Count} group(s); first gratuitous ARP from the new holder after {Percentiles.Of(firsts).Format("ms", "0")}");
            await lab.RestoreAsync(victim, nodes, cancellationToken);
            // Let the restarted agent finish starting up (a .NET process compiles for a second or two on start)
            // so that each run begins from a steady state rather than with one core busy.
            await Task.Delay(TimeSpan.FromSeconds(3), cancellationToken);
        }
        Console.WriteLine($"{Name} ({(election ? "svc_election=true, 30 groups" : "svc_election=false")}): {Percentiles.Of(samples).Format("ms", "0")}");
    }
}

internal sealed class FailoverBenchmark : MoveBenchmark
{
    public override string Name => "failover";
    public override string Description => "node failure (agent killed, eth0 down) → first gratuitous ARP from the new holder, ≥10 runs (target p99 ≤ 600 ms: D_L 450 ms after the last heartbeat, then deposition and claim) [--runs N] [--election]";

    protected override async Task TakeAwayAsync(BenchLab lab, string node, CancellationToken cancellationToken)
    {
        await lab.Agents.KillAsync(node, restart: false, cancellationToken);
        await lab.Lab.Network.SetLinkAsync(node, up: false, cancellationToken);
    }
}

internal sealed class HandoverBenchmark : MoveBenchmark
{
    public override string Name => "handover";
    public override string Description => "graceful stop (SIGTERM) of the holder → first gratuitous ARP from the new holder, ≥10 runs (target p99 ≤ 100 ms: one Left write, successors claim at once) [--runs N] [--election]";

    protected override Task TakeAwayAsync(BenchLab lab, string node, CancellationToken cancellationToken) =>
        lab.Agents.StopAsync(node, graceful: true, cancellationToken);
}
