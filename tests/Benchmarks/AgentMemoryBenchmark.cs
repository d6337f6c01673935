using System.Diagnostics;
using System.Globalization;
using Hybrid.Sandbox.Lab;
using k8s;

namespace Hybrid.Benchmarks;

/// <summary>
/// Resident memory of the agent processes in a 3-node lab, idle and then with 1,000 LoadBalancer Services
/// (in ARP mode the leader carries all 1,000 VIPs); then the time from starting an agent to its first
/// announcement, with every agent stopped and the 1,000 Services in place (a cluster starting again).
/// Targets ≤ 40 MiB idle, ≤ 60 MiB with 1,000 Services.
/// </summary>
internal sealed class AgentMemoryBenchmark : IBenchmark
{
    public string Name => "agent-memory";
    public string Description => "agent RSS idle and with 1,000 LoadBalancer services (targets ≤ 40 / 60 MiB), start to first announcement [--services N] [--election] [--env KEY=VALUE]...";

    public async Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        Console.WriteLine(BenchLab.Int(args, "--services", 1000, out var count));
        var election = args.Contains("--election");
        const int nodes = 3;
        // A /20, so that 1,000 VIPs fit beside the nodes (198.18.4.0 onwards).
        var environment = new Dictionary<string, string> { ["svc_election"] = election ? "true" : "false" };
        for (var i = 0; i + 1 < args.Count; i++)
            if (args[i] == "--env" && args[i + 1].IndexOf('=') > 0)
                environment[args[i + 1][..args[i + 1].IndexOf('=')]] = args[i + 1][(args[i + 1].IndexOf('=') + 1)..];
        Console.WriteLine("agent environment: " + string.Join(" ", environment.Select(e => $"{e.Key}={e.Value}")));
        await using var lab = await BenchLab.StartAsync("hybmem", nodes, environment, cancellationToken, "198.18.0.0/20");
        await Task.Delay(TimeSpan.FromSeconds(5), cancellationToken); // settle (this is a measurement, not a test)
        await ReportAsync(lab, "idle", cancellationToken);

        for (var i = 0; i < count; i++)
            await lab.CreateServiceAsync($"svc-{i}", $"198.18.{4 + i / 250}.{1 + i % 250}", cancellationToken);
        await lab.WaitUntilAsync(async () =>
            (await lab.Client.CoreV1.ListNamespacedServiceAsync("default", cancellationToken: cancellationToken)).Items
            .Count(s => s.Status?.LoadBalancer?.Ingress?.Count > 0) == count,
            TimeSpan.FromMinutes(5), $"all {count} services to report their address", cancellationToken);
        await ReportAsync(lab, $"{count} services announced", cancellationToken);
        var samples = lab.Lab.Nodes.ToDictionary(n => n.Name, _ => new List<long>());
        for (var second = 0; second < 20; second++)
        {
            foreach (var node in lab.Lab.Nodes) samples[node.Name].Add(Rss(lab.Agents.Pid(node.Name)));
            await Task.Delay(1000, cancellationToken);
        }
        Console.WriteLine("peak over the next 20 s: " + string.Join(", ", samples.Select(p => $"{p.Key} {Mib(p.Value.Max())}")));
        foreach (var (name, series) in samples)
            Console.WriteLine($"  {name} each second (MiB): " + string.Join(" ", series.Select(v => (v / 1048576.0).ToString("F0", CultureInfo.InvariantCulture))));
        await ReportAsync(lab, "after them", cancellationToken);

        foreach (var node in lab.Lab.Nodes) await lab.Agents.StopAsync(node.Name, graceful: true, cancellationToken);
        await using var capture = await lab.CaptureAsync(cancellationToken);
        var first = lab.Lab.Nodes[0].Name;
        var start = Stopwatch.GetTimestamp();
        await lab.Agents.StartAsync(first, cancellationToken);
        CapturedArp announced;
        try
        {
            announced = await capture.WaitForAsync(p => p.IsGratuitous && p.SenderMac.Equals(lab.MacOf(first)),
                TimeSpan.FromSeconds(60), cancellationToken);
        }
        catch (TimeoutException)
        {
            // The measurement failed: show why from the agent's own account of its restart.
            var log = File.ReadAllLines(lab.Agents.LogPath(first));
            var restart = Array.FindLastIndex(log, line => line.StartsWith("--- hybrid lab", StringComparison.Ordinal) && line.Contains("starting", StringComparison.Ordinal));
            Console.WriteLine($"{first} announced nothing within 60 s; its log since the restart:");
            foreach (var line in log.Skip(Math.Max(0, restart)).Take(200)) Console.WriteLine("  " + line);
            // A lone node may depose nobody (docs/PROTOCOL.md §3): it waits while a peer that did not leave
            // cleanly still counts. The peers' own account of their stop says whether one did.
            foreach (var other in lab.Lab.Nodes.Skip(1))
            {
                Console.WriteLine($"{other.Name}'s log, last lines:");
                foreach (var line in File.ReadAllLines(lab.Agents.LogPath(other.Name)).Where(l => !l.Contains(" dbug: ", StringComparison.Ordinal)).TakeLast(12))
                    Console.WriteLine("  " + line);
            }
            throw;
        }
        Console.WriteLine($"start to first announcement ({first} alone, {count} services): {BenchLab.Ms(start, announced.MonotonicTicks):0} ms, RSS {Mib(Rss(lab.Agents.Pid(first)))}");
    }

    /// <summary>Each agent's RSS, and its collector's live heap / committed memory from its own metrics.</summary>
    private static async Task ReportAsync(BenchLab lab, string when, CancellationToken cancellationToken)
    {
        var parts = new List<string>();
        foreach (var node in lab.Lab.Nodes)
        {
            var rss = Rss(lab.Agents.Pid(node.Name));
            var metrics = await lab.Lab.Network.ExecAsync(lab.Lab.ClientHost.Namespace,
                ["curl", "-s", "--max-time", "5", $"http://{node.Ipv4}:2112/metrics"], cancellationToken);
            parts.Add($"{node.Name} {Mib(rss)} (GC heap {Metric(metrics.StandardOutput, "hybrid_gc_heap_size_bytes")}, " +
                      $"committed {Metric(metrics.StandardOutput, "hybrid_gc_committed_bytes")})");
        }
        Console.WriteLine($"{when}: " + string.Join(", ", parts));
    }

    private static string Metric(string exposition, string name)
    {
        foreach (var line in exposition.Split('\n'))
            if (line.StartsWith(name + " ", StringComparison.Ordinal) &&
                double.TryParse(line[(name.Length + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
                return Mib((long)value);
        return "?";
    }

    private static string Mib(long bytes) => (bytes / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture) + " MiB";

    /// <summary>VmRSS of a process, from /proc.</summary>
    private static long Rss(int? pid)
    {
        if (pid is null) return 0;
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
        return 0;
    }
}
