using System.Diagnostics;
using System.Net;

namespace Hybrid.Benchmarks;

/// <summary>
/// The outage as a client feels it: from the client namespace, `GET /hostname` to the VIP every 10 ms over a
/// new connection (open loop, 2 s timeout each), through the holder's kube-proxy rules to the pods of a
/// Deployment with one pod per node (policy Cluster, kube-vip's ARP mode). The VIP's holder goes away in two
/// ways, each run from a steady state: node failure (agent killed and eth0 down, as `failover`) and graceful
/// stop (SIGTERM, as `handover`). A sample is the longest time without any answer from the moment of the
/// fault. The failed node's pod stays an endpoint (the emulator has no node lifecycle controller), so after
/// a failover about a third of new connections still go to it and time out; with an open loop the others
/// keep answering, so this costs a few ms of gap, not seconds.
/// </summary>
internal sealed class ClientOutageBenchmark : IBenchmark
{
    private const string Vip = "198.18.0.100";
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(2);
    /// <summary>How long the client keeps going after answers are back, so that a second gap would show.</summary>
    private static readonly TimeSpan Afterwards = TimeSpan.FromSeconds(2);

    public string Name => "client-outage";
    public string Description => "longest gap without an HTTP answer at a client sending to the VIP every 10 ms, on node failure and on graceful stop of the holder, ≥10 runs each [--runs N] [--only failure|stop]";

    private sealed record Fault(string Name, Func<BenchLab, string, CancellationToken, Task> TakeAway);

    private static readonly Fault[] Faults =
    [
        new("failure", async (lab, node, ct) =>
        {
            await lab.Agents.KillAsync(node, restart: false, ct);
            await lab.Lab.Network.SetLinkAsync(node, up: false, ct);
        }),
        new("stop", (lab, node, ct) => lab.Agents.StopAsync(node, graceful: true, ct)),
    ];

    public async Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        Console.WriteLine(BenchLab.Int(args, "--runs", 10, out var runs));
        var only = args.SkipWhile(a => a != "--only").Skip(1).FirstOrDefault();
        const int nodes = 3;
        await using var lab = await BenchLab.StartAsync("hybout", nodes, new Dictionary<string, string> { ["svc_election"] = "false" }, cancellationToken);
        await lab.CreateServiceAsync("web", Vip, cancellationToken);
        await lab.WaitUntilAsync(async () => await lab.HolderAsync(Vip, cancellationToken) is not null, TimeSpan.FromSeconds(60),
            "the VIP on one node", cancellationToken);
        var target = new IPEndPoint(IPAddress.Parse(Vip), 80);
        var client = lab.Lab.ClientHost.Namespace;

        foreach (var fault in Faults.Where(f => only is null || f.Name == only))
        {
            var gaps = new List<double>();
            for (var run = 0; run < runs; run++)
            {
                await using var probe = new HttpProbe(client, target, Interval, RequestTimeout);
                probe.Start();
                await WaitForSteadyAnswersAsync(lab, probe, cancellationToken);
                var holder = (await lab.HolderAsync(Vip, cancellationToken))!;

                var faultAt = Stopwatch.GetTimestamp();
                await fault.TakeAway(lab, holder, cancellationToken);
                await lab.WaitUntilAsync(() => probe.Completed().Any(r => r.SentTicks > faultAt && r.AnsweredTicks is not null),
                    TimeSpan.FromSeconds(30), "answers after the fault", cancellationToken);
                await Task.Delay(Afterwards, cancellationToken);
                var results = await probe.StopAsync();

                var gap = HttpProbe.LongestGapMs(results, faultAt);
                gaps.Add(gap);
                var after = results.Where(r => r.SentTicks >= faultAt).ToList();
                var newHolder = await lab.HolderAsync(Vip, cancellationToken);
                Console.WriteLine($"  {fault.Name} run {run + 1}: holder {holder} → {newHolder ?? "?"}; longest gap {gap:0} ms; " +
                                  $"{after.Count(r => r.AnsweredTicks is null)} of {after.Count} requests since the fault failed");
                await lab.RestoreAsync(holder, nodes, cancellationToken);
                // As in the move benchmarks: let the restarted agent finish starting (JIT) before the next run.
                await Task.Delay(TimeSpan.FromSeconds(3), cancellationToken);
            }
            Console.WriteLine($"{Name} ({fault.Name}, svc_election=false): longest gap without an answer {Percentiles.Of(gaps).Format("ms", "0")}");
        }
    }

    /// <summary>Until the last second's requests were all answered (every pod reachable, the VIP settled).</summary>
    private static Task WaitForSteadyAnswersAsync(BenchLab lab, HttpProbe probe, CancellationToken cancellationToken) =>
        lab.WaitUntilAsync(() =>
        {
            var recent = probe.Completed().Where(r => Stopwatch.GetElapsedTime(r.SentTicks) < TimeSpan.FromSeconds(1)).ToList();
            return recent.Count >= 50 && recent.All(r => r.AnsweredTicks is not null);
        }, TimeSpan.FromSeconds(60), "a second of answered requests", cancellationToken);
}
