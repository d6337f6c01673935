using System.Diagnostics;
using System.Globalization;

namespace Hybrid.Benchmarks;

/// <summary>
/// API load in steady state: real ProtocolNodes (svc_election=true, one group per Service, pods on every node) on
/// a <see cref="SimulatedCluster"/>, whose in-memory API server counts what the agents write and what its watches
/// deliver. Printed next to kube-vip's design with the same numbers: one LeaderElector per Service on every
/// node, which renews (the leader: one PUT) or polls (every other node: one GET) each retry period (1 s).
/// </summary>
internal sealed class ApiLoadBenchmark : IBenchmark
{
    public string Name => "api-load";
    public string Description => "steady API load of 10 nodes × 1,000 Services (simulated cluster of real ProtocolNodes): Lease writes/s (target 0), status writes/s, watch events delivered/s, vs kube-vip's per-Service LeaderElector [--nodes N] [--services N] [--seconds S]";

    public Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        BenchLab.Int(args, "--nodes", 10, out var nodes);
        BenchLab.Int(args, "--seconds", 60, out var seconds);
        BenchLab.Int(args, "--services", 0, out var only);
        foreach (var count in new[] { 100, 1_000 }.Where(c => only == 0 || c == only))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var wall = Stopwatch.StartNew();
            var (services, slices) = StepCostBenchmark.Workload(count, nodes);
            var cluster = new SimulatedCluster(nodes, nodes, election: true);
            cluster.Settle(services, slices, count, cancellationToken);
            var leases = cluster.LeaseWrites;
            var statuses = cluster.StatusWrites;
            var events = cluster.WatchEvents;
            var from = cluster.Now;
            cluster.Run(seconds * 1000L);
            var s = (cluster.Now - from) / 1000.0;
            var perNode = cluster.Members.Select(m => m.Node.Summary.HeldVips).ToList();
            // kube-vip: every node runs one elector per Service; each retry period the leader renews and the
            // others read the Lease.
            const double retryPeriodSeconds = 1.0;
            var kubeVipWrites = count / retryPeriodSeconds;
            var kubeVipReads = count * (nodes - 1) / retryPeriodSeconds;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{nodes} nodes × {count,5} Services, {s:0} s steady: Hybrid {(cluster.LeaseWrites - leases) / s:0.###} Lease writes/s, " +
                $"{(cluster.StatusWrites - statuses) / s:0.###} status writes/s, {(cluster.WatchEvents - events) / s:0.###} watch events delivered/s; " +
                $"kube-vip {kubeVipWrites:0} Lease writes/s + {kubeVipReads:0} Lease reads/s; groups per node {perNode.Min()}–{perNode.Max()} " +
                $"({wall.Elapsed.TotalSeconds:0} s real)"));
        }
        return Task.CompletedTask;
    }
}
