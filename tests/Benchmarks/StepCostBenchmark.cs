using System.Diagnostics;
using System.Globalization;
using Hybrid.Facade;

namespace Hybrid.Benchmarks;

/// <summary>
/// What one protocol step costs the agent in steady state: the inputs of one heartbeat interval (a frame from
/// every other member), Tick and Decide on a ProtocolNode, as ProtocolLoop runs them. The cluster is a
/// <see cref="SimulatedCluster"/> (svc_election=true, one group per Service, externalTrafficPolicy Local with
/// pods on 3 nodes, so 3 nodes hold all groups and the other members only echo). It runs on the simulated
/// clock until no Lease has been written for 10 s, then every turn of node-1 (a holder of about a third of the
/// groups) is measured: wall time and bytes allocated on the thread. A turn is what one wake-up of the loop
/// does: at h = 100 ms and M members, about M turns per interval (one per arriving frame, when frames come
/// one by one; the real loop batches frames that arrive together). Decide alone (without
/// applying the inputs, which authenticates the datagrams) is timed within the same turns.
/// </summary>
internal sealed class StepCostBenchmark : IBenchmark
{
    public string Name => "step-cost";
    public string Description => "ProtocolNode step in steady state (inputs of one interval + Tick + Decide): µs p50/p99 and bytes allocated, 100/1,000/10,000 Services × 3/100 members [--services N] [--members M] [--seconds S]";

    public Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        BenchLab.Int(args, "--seconds", 30, out var seconds);
        BenchLab.Int(args, "--services", 0, out var onlyServices);
        BenchLab.Int(args, "--members", 0, out var onlyMembers);
        Console.WriteLine($"{seconds} s of simulated steady state measured per case; {Environment.ProcessorCount} cores, shared: expect noise in the µs");
        foreach (var members in new[] { 3, 100 }.Where(m => onlyMembers == 0 || m == onlyMembers))
            foreach (var services in new[] { 100, 1_000, 10_000 }.Where(s => onlyServices == 0 || s == onlyServices))
            {
                cancellationToken.ThrowIfCancellationRequested();
                Measure(members, services, seconds, cancellationToken);
            }
        return Task.CompletedTask;
    }

    private static void Measure(int members, int count, int seconds, CancellationToken cancellationToken)
    {
        const int full = 3;
        var (services, slices) = Workload(count, full);
        var cluster = new SimulatedCluster(members, full, election: true);
        var warmUp = Stopwatch.StartNew();
        var started = cluster.Now;
        // The members join first (3 s), then the Services appear: groups spread over the nodes as in a
        // running cluster, rather than all going to whichever node decided first.
        cluster.Settle(services, slices, count, cancellationToken);
        var steadyAfter = (cluster.Now - started) / 1000.0;
        var setup = warmUp.Elapsed;

        var node1 = cluster.Members[0];
        var writesBefore = cluster.LeaseWrites;
        var byLeaseBefore = new Dictionary<string, int>(cluster.WritesByLease);
        var datagramsBefore = cluster.Datagrams;
        var bytesBefore = cluster.DatagramBytes;
        var measuredFrom = cluster.Now;
        cluster.Run(seconds * 1000L, node1);
        var measuredMs = cluster.Now - measuredFrom;
        var datagrams = cluster.Datagrams - datagramsBefore;
        var datagramBytes = cluster.DatagramBytes - bytesBefore;
        var turns = cluster.Turns.Select(t => t.Micros).ToList();
        var decides = cluster.Turns.Select(t => t.DecideMicros).ToList();
        var allocated = cluster.Turns.Select(t => (double)t.Allocated).ToList();
        var summary = node1.Node.Summary;
        var churn = cluster.WritesByLease.Select(kv => (kv.Key, Count: kv.Value - byLeaseBefore.GetValueOrDefault(kv.Key))).Where(c => c.Count > 0)
            .OrderByDescending(c => c.Count).Take(5).ToList();
        var churnText = churn.Count > 0 ? "; written while measured: " + string.Join(", ", churn.Select(c => $"{c.Key}×{c.Count}")) : "";
        var step = Percentiles.Of(turns);
        var decide = Percentiles.Of(decides);
        var alloc = Percentiles.Of(allocated);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{count,6} Services, {members,3} members: step {step.Format("µs", "0")}; Decide alone p50 {decide.P50:0} p99 {decide.P99:0} µs; " +
            $"allocated per step p50 {alloc.P50 / 1024:0.0} KiB p99 {alloc.P99 / 1024:0.0} KiB"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"    node-1 holds {summary.HeldVips} VIPs, hears {summary.HeardMembers} members, {turns.Count * 1000.0 / measuredMs:0} steps/s, " +
            $"CPU {turns.Sum() / 1000 / measuredMs * 100:0.0} % of a core; " +
            $"in {measuredMs / 1000} s: {cluster.LeaseWrites - writesBefore} Lease writes, {datagrams * 1000.0 / measuredMs / members:0.0} datagrams/s per member " +
            $"({datagramBytes / (double)Math.Max(1, datagrams):0} B payload each); steady after {steadyAfter:0} s simulated ({setup.TotalSeconds:0} s real){churnText}"));
    }

    /// <summary>
    /// Services on distinct IPs (198.18.0.0/15), externalTrafficPolicy Local, each with one EndpointSlice
    /// whose ready endpoints are on the first <paramref name="full"/> nodes.
    /// </summary>
    internal static (List<ServiceInput>, List<SliceInput>) Workload(int count, int full)
    {
        var services = new List<ServiceInput>(count);
        var slices = new List<SliceInput>(count);
        var endpoints = Enumerable.Range(1, full).Select(i => new EndpointInput
        {
            NodeName = "node-" + i.ToString(CultureInfo.InvariantCulture),
            Ready = true, Serving = true, Terminating = false,
        }).ToArray();
        for (var i = 0; i < count; i++)
        {
            var name = "svc-" + i.ToString(CultureInfo.InvariantCulture);
            var ip = $"198.18.{4 + i / 250}.{1 + i % 250}"; // 10,000 fit in 198.18.4.0-198.18.43.255
            services.Add(new ServiceInput
            {
                Namespace = "default", Name = name, Uid = "uid-" + name, CreatedAtUnixSeconds = 1_700_000_000 + i,
                Type = "LoadBalancer", LoadBalancerClass = null,
                Annotations = new Dictionary<string, string> { ["kube-vip.io/loadbalancerIPs"] = ip },
                LoadBalancerIP = null,
                Ports = [new PortInput { Protocol = "TCP", Port = 80 }],
                ExternalTrafficPolicy = "Local",
                Selector = new Dictionary<string, string> { ["app"] = name },
                Ingress = [],
            });
            slices.Add(new SliceInput { Name = "default/" + name + "-abcde", Namespace = "default", ServiceName = name, Endpoints = endpoints });
        }
        return (services, slices);
    }
}
