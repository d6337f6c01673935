using System.Diagnostics;
using System.Net;
using Hybrid.Agent;
using Hybrid.Facade;
using Hybrid.Net;
using Hybrid.Sandbox.DataPlane;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hybrid.Benchmarks;

/// <summary>
/// What the kernel work of one protocol turn costs when many VIPs change at once, through the agent's own
/// <see cref="KernelExecutor"/> in a throw-away namespace (needs root): the turn that admits n new VIPs, the
/// turn that holds them (with one announcement each), and the turns that unhold and withdraw them.
/// <para>
/// Every libnftables call first fetches the namespace's whole ruleset into its cache, so a transaction through it
/// costs what the node's other tables cost to list: on a node, kube-proxy's (iptables-nft or nftables mode), which
/// grow with the number of Services. The fence's element changes are netlink batches that list nothing; the
/// benchmark loads the lab's kube-proxy rules for as many Services as VIPs (<c>--services</c>; 0 = no other
/// table) to show that they stay cheap beside them.
/// </para>
/// Each turn is measured with the commands one per VIP (what the domain emitted before) and one per kind of
/// step over every VIP (what it emits now). Then the cost of one fence <c>Extend</c> beside the same rules.
/// Options: --vips N (default 1000), --services A,B (default 0,1000), --rounds N (default 3; the per-VIP form
/// runs one round).
/// </summary>
internal sealed class KernelTurnBenchmark : IBenchmark
{
    public string Name => "kernel-turn";

    public string Description =>
        "kernel work of the turns that admit, hold, unhold and withdraw 1,000 VIPs, beside the lab's kube-proxy rules for 0 and 1,000 Services";

    public async Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var vipCount = Option(args, "--vips", "1000").Select(int.Parse).First();
        var serviceCounts = Option(args, "--services", "0,1000").Select(int.Parse).ToList();
        var rounds = Option(args, "--rounds", "3").Select(int.Parse).First();
        var node = $"hyt-ktb-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..4]}";
        try
        {
            await RunAsync("ip", ["netns", "add", node]);
            await RunAsync("ip", ["-n", node, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0"]);
            await RunAsync("ip", ["-n", node, "addr", "add", "198.18.0.11/24", "dev", "eth0"]);
            await RunAsync("ip", ["-n", node, "link", "set", "eth0", "up"]);
            await RunAsync("ip", ["-n", node, "link", "set", "peer0", "up"]);
            await using var links = LinkTable.Open(node);
            var link = (await links.GetAsync("eth0", cancellationToken))!;
            await using var addresses = AddressTable.Open(node);
            await using var macvlans = MacvlanTable.Open(node);
            using var fence = NetworkNamespace.RunIn(node, () => KernelFence.Open(() => MonotonicClock.NowMs));
            await using var announcer = await NetworkNamespace.RunInAsync(node, () => Announcer.Open("eth0", NullLogger<Announcer>.Instance), cancellationToken);
            var executor = new KernelExecutor(fence, link, addresses, macvlans, announcer, NullLogger<KernelExecutor>.Instance);
            fence.Install(link, [], [], cancellationToken);
            Console.WriteLine($"kernel {Environment.OSVersion.Version}, {Environment.ProcessorCount} CPUs, namespace {node}, {vipCount} VIPs, {rounds} round(s)");

            var vips = Enumerable.Range(0, vipCount).Select(i => IPAddress.Parse($"198.18.{100 + i / 250}.{i % 250 + 1}")).ToList();
            foreach (var services in serviceCounts)
            {
                await LoadKubeProxyAsync(node, services, cancellationToken);
                Console.WriteLine($"-- beside the lab's kube-proxy rules for {services} Services ({await RulesetLinesAsync(node)} lines in `nft list ruleset`)");
                // One round to warm up (JIT, the address table), then the rounds measured: the commands as the domain
                // emitted them before (one per VIP) and as it does now (one per kind of step).
                foreach (var perVip in new[] { true, false })
                {
                    var measured = new Dictionary<string, List<double>>();
                    for (var round = 0; round <= (perVip ? Math.Min(rounds, 1) : rounds); round++)
                    {
                        var times = await TurnsAsync(executor, fence, vips, perVip, cancellationToken);
                        if (round == 0) continue;
                        foreach (var (turn, ms) in times) (measured.TryGetValue(turn, out var list) ? list : measured[turn] = []).Add(ms);
                    }
                    foreach (var (turn, ms) in measured)
                        Console.WriteLine($"  {turn,-28} {(perVip ? "one command per VIP" : "one command per step"),-20}: {Percentiles.Of(ms).Format("ms", "0.0")}");
                }
                // The fence refresh pays the same listing of the ruleset, between its fresh clock read and the kernel.
                var extend = new List<double>();
                for (var i = 0; i <= 50; i++)
                {
                    var start = Stopwatch.GetTimestamp();
                    fence.Extend(MonotonicClock.NowMs + 1000, cancellationToken);
                    if (i > 0) extend.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                }
                fence.Expire(cancellationToken);
                Console.WriteLine($"  one Extend: {Percentiles.Of(extend).Format("ms", "0.00")}");
            }
        }
        finally
        {
            await RunAsync("ip", ["netns", "del", node]).ContinueWith(_ => { }, CancellationToken.None);
        }
    }

    /// <summary>
    /// The four turns of n VIPs, as the domain emits their kernel commands (one per VIP, or one over them all);
    /// the time each took.
    /// </summary>
    private static async Task<List<(string Turn, double Ms)>> TurnsAsync(KernelExecutor executor, KernelFence fence,
        IReadOnlyList<IPAddress> vips, bool perVip, CancellationToken ct)
    {
        var bytes = vips.Select(v => v.GetAddressBytes()).ToArray();
        var groups = perVip ? bytes.Select(b => new[] { b }).ToList() : [bytes];
        VipAddress[] Hosts(byte[][] group) => [.. group.Select(b => new VipAddress(b, 32, null))];
        var deadline = MonotonicClock.NowMs + 60_000;
        fence.Extend(deadline, ct);
        const long lifetime = 30_000;
        var result = new List<(string, double)>
        {
            ($"admit {vips.Count} new VIPs", await TimeAsync(executor, groups.Select(g => KernelAction.NewAdmit(Hosts(g), lifetime)), ct)),
            // The first announcements go right behind the Hold (one per VIP either way).
            ("hold them, announce each", await TimeAsync(executor, groups.SelectMany(g =>
                g.Select(b => KernelAction.NewAnnounce(b, null, deadline)).Prepend(KernelAction.NewHold(g))), ct)),
            ("unhold them", await TimeAsync(executor, groups.Select(KernelAction.NewUnhold), ct)),
            ("withdraw them", await TimeAsync(executor, groups.Select(g => KernelAction.NewWithdraw(Hosts(g))), ct)),
        };
        fence.Expire(ct);
        return result;
    }

    /// <summary>Runs the actions in order, as the protocol loop does, and fails on any action that did not apply.</summary>
    private static async Task<double> TimeAsync(KernelExecutor executor, IEnumerable<KernelAction> actions, CancellationToken ct)
    {
        var list = actions.ToList();
        var start = Stopwatch.GetTimestamp();
        foreach (var action in list)
        {
            var report = await executor.ApplyAsync(action, ct);
            if (report.Result != KernelResult.Applied || report.Exceptions is { Count: > 0 })
                throw new InvalidOperationException($"{KernelExecutor.Describe(action)}: {report.Result} {report.Reason}");
        }
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    /// <summary>
    /// The lab's kube-proxy table for <paramref name="count"/> LoadBalancer Services (one port, a NodePort, one
    /// endpoint on this node each), or none.
    /// </summary>
    private static async Task LoadKubeProxyAsync(string node, int count, CancellationToken ct)
    {
        if (count == 0)
        {
            await RunAsync("ip", ["netns", "exec", node, "nft", "-f", "-"], KubeProxyRuleset.Removal());
            return;
        }
        var services = Enumerable.Range(0, count).Select(i => new ProxiedService(
            new ProxiedPort("default", $"web-{i}", "http", "tcp", 80,
                IPAddress.Parse($"10.96.{i / 250}.{i % 250 + 1}"), 30000 + i,
                [IPAddress.Parse($"198.18.{100 + i / 250}.{i % 250 + 1}")], [], TrafficPolicy.Cluster, TrafficPolicy.Cluster),
            [new ProxiedEndpoint(IPAddress.Parse($"10.244.{i / 250}.{i % 250 + 1}"), 8080, "node-1", Ready: true, Serving: true, Terminating: false)])).ToList();
        await RunAsync("ip", ["netns", "exec", node, "nft", "-f", "-"], KubeProxyRuleset.Render("node-1", IPNetwork.Parse("10.244.0.0/16"), services));
        ct.ThrowIfCancellationRequested();
    }

    private static async Task<int> RulesetLinesAsync(string node) =>
        (await RunAsync("ip", ["netns", "exec", node, "nft", "list", "ruleset"])).Count(c => c == '\n');

    private static IEnumerable<string> Option(IReadOnlyList<string> args, string name, string fallback)
    {
        var at = args.ToList().IndexOf(name);
        return (at >= 0 && at + 1 < args.Count ? args[at + 1] : fallback).Split(',', StringSplitOptions.RemoveEmptyEntries);
    }

    private static async Task<string> RunAsync(string program, string[] args, string? input = null)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = input is not null };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        if (input is not null)
        {
            await process.StandardInput.WriteAsync(input);
            process.StandardInput.Close();
        }
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{program} {string.Join(' ', args)}: {(await stderr).Trim()}");
        return stdout;
    }
}
