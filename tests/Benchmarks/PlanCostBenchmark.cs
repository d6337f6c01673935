using System.Diagnostics;
using Hybrid.Facade;

namespace Hybrid.Benchmarks;

/// <summary>
/// CPU cost of one plan (Decide.Plan) for a node holding everything, by number of Services: the work the
/// reconcile loop does on every change before it can act.
/// </summary>
internal sealed class PlanCostBenchmark : IBenchmark
{
    public string Name => "plan-cost";
    public string Description => "time of one Decide.Plan for 60, 1,000 and 5,000 services (ARP mode and svc_election)";

    public Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var at = args.ToList().IndexOf("--services");
        var only = at >= 0 && at + 1 < args.Count ? int.Parse(args[at + 1]) : (int?)null;
        var rounds = only is null ? 300 : 2000;
        foreach (var election in only is null ? new[] { false, true } : [args.Contains("--election")])
        foreach (var count in only is null ? new[] { 60, 1000, 5000 } : [only.Value])
        {
            var input = Snapshot(count, election);
            for (var i = 0; i < 100; i++) Decide.Plan(input); // warm up: past the JIT's tiering
            var times = new List<double>();
            for (var round = 0; round < rounds; round++)
            {
                var start = Stopwatch.GetTimestamp();
                var plan = Decide.Plan(input);
                if (cancellationToken.IsCancellationRequested) break;
                times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                if (plan.Groups.Length == 0) throw new InvalidOperationException("no groups planned");
            }
            Console.WriteLine($"{count,5} services, svc_election={election.ToString().ToLowerInvariant(),-5}: {Percentiles.Of(times).Format("ms", "0.00")}");
        }
        return Task.CompletedTask;
    }

    private static SnapshotInput Snapshot(int count, bool election)
    {
        var settings = ((SettingsOutcome.Valid)Decide.ParseSettings(new Dictionary<string, string>
        {
            ["svc_enable"] = "true", ["vip_nodename"] = "node-1", ["svc_election"] = election ? "true" : "false",
        })).Settings;
        var now = 1_000_000L;
        var fence = Decide.RenewedFence(settings, Decide.InitialFence, now - 50, now - 45);
        var services = Enumerable.Range(0, count).Select(i => new ServiceInput
        {
            Namespace = "default", Name = $"svc-{i}", Uid = $"uid-{i}", CreatedAtUnixSeconds = i, Type = "LoadBalancer",
            Annotations = new Dictionary<string, string> { ["kube-vip.io/loadbalancerIPs"] = Ip(i) },
            Ports = [new PortInput { Protocol = "TCP", Port = 80 }], ExternalTrafficPolicy = "Cluster",
            Selector = new Dictionary<string, string> { ["app"] = "web" },
            Ingress = [new IngressInput { Ip = Ip(i), IpMode = "VIP", Ports = [new PortInput { Protocol = "TCP", Port = 80 }] }],
            ChangedSeenAt = now - 10_000,
        }).ToArray();
        foreach (var s in services) s.Annotations = new Dictionary<string, string>(s.Annotations) { ["kube-vip.io/vipHost"] = "node-1" };
        var slices = services.Select(s => new SliceInput
        {
            Namespace = "default", ServiceName = s.Name,
            Endpoints = [new EndpointInput { NodeName = "node-2", Ready = true }],
        }).ToArray();
        var groups = election ? services.Select(s => "hybrid-vip-" + Ip(int.Parse(s.Name[4..]))).ToArray() : [settings.LeaseName];
        return new SnapshotInput
        {
            Settings = settings, Now = now, Services = services, Slices = slices,
            Heartbeats = Enumerable.Range(1, 3).Select(n => new LeaseInput { Name = $"node-{n}", Holder = $"node-{n}", Version = "1", ChangedSeenAt = now - 100 }).ToArray(),
            Leases = groups.Select(g => new LeaseInput { Name = g, Holder = "node-1", Version = "7", ChangedSeenAt = now - 5000 }).ToArray(),
            Fence = fence,
            Claims = groups.Select(g => new ClaimInput { Group = g, Epoch = fence.Epoch }).ToArray(),
            LinkUp = true,
            Vips = services.Select((s, i) => new VipInput { Address = Ip(i), Prefix = 32, ExpiresAt = now + 900, AddedAt = now - 10_000, Sent = 10, LastSentAt = now - 100 }).ToArray(),
            EmittedWarnings = [],
        };
    }

    private static string Ip(int i) => $"198.19.{i / 250}.{1 + i % 250}";
}
