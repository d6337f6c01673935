using System.Diagnostics;
using System.Globalization;
using Hybrid.Agent;
using Hybrid.Facade;
using Hybrid.Sandbox.Api;
using k8s;
using k8s.LeaderElection;
using k8s.LeaderElection.ResourceLock;
using k8s.Models;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hybrid.Benchmarks;

/// <summary>
/// Steady-state API requests per second of ownership with many Services on many nodes, counted by the
/// emulator: Hybrid (heartbeat per node, one Lease per VIP group written only on change) against the
/// kube-vip / Cilium algorithm (KubernetesClient's stock LeaderElector with a LeaseLock per Service per node,
/// at kube-vip's manifest timings 5/3/1 s). No network namespaces: Hybrid's agents run in-process with no data
/// plane. Also reports the balance of groups over nodes after creation (max/mean).
/// </summary>
internal sealed class ApiLoadBenchmark : IBenchmark
{
    public string Name => "api-load";
    public string Description => "steady API requests/s: Hybrid vs per-service LeaderElector (kube-vip/Cilium), 10 nodes × 100 and 1,000 services; group balance [--nodes N] [--services 100,1000] [--seconds S]";

    public async Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        Console.WriteLine(BenchLab.Int(args, "--nodes", 10, out var nodes) + "  " + BenchLab.Int(args, "--seconds", 20, out var seconds));
        var i = args.ToList().IndexOf("--services");
        var counts = i >= 0 && i + 1 < args.Count
            ? args[i + 1].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToList()
            : [100, 1000];
        var rows = new List<(string Algorithm, int Services, double Rate, string Detail)>();
        foreach (var services in counts)
        {
            var (rate, detail) = await MeasureHybridAsync(nodes, services, seconds, cancellationToken);
            rows.Add(("hybrid", services, rate, detail));
            var (baseline, baseDetail) = await MeasureLeaderElectorsAsync(nodes, services, seconds, cancellationToken);
            rows.Add(("leader-election per service", services, baseline, baseDetail));
        }
        Console.WriteLine();
        Console.WriteLine($"{"algorithm",-28} {"services",8} {"nodes",5} {"requests/s",11}  detail");
        foreach (var r in rows)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{r.Algorithm,-28} {r.Services,8} {nodes,5} {r.Rate,11:F1}  {r.Detail}"));
        foreach (var services in counts)
        {
            var hybrid = rows.First(r => r.Algorithm == "hybrid" && r.Services == services).Rate;
            var baseline = rows.First(r => r.Algorithm != "hybrid" && r.Services == services).Rate;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{services} services: Hybrid makes {baseline / hybrid:F0}x fewer requests"));
        }
    }

    private static async Task<(double Rate, string Detail)> MeasureHybridAsync(int nodes, int services, int seconds, CancellationToken cancellationToken)
    {
        await using var api = await ApiEmulator.StartAsync(new ApiEmulatorOptions(), cancellationToken);
        var kubeconfig = Path.Combine(Path.GetTempPath(), $"hybrid-api-load-{Environment.ProcessId}.yaml");
        api.WriteKubeconfig(kubeconfig);
        try
        {
            using var admin = new Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig));
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var agents = new List<Task>();
            var clients = new List<Kubernetes>();
            for (var n = 1; n <= nodes; n++)
            {
                var outcome = Decide.ParseSettings(new Dictionary<string, string>
                {
                    ["svc_enable"] = "true", ["svc_election"] = "true", ["vip_nodename"] = $"node-{n}", ["vip_arp"] = "false",
                });
                var settings = ((SettingsOutcome.Valid)outcome).Settings;
                var client = new Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig));
                clients.Add(client);
                agents.Add(Task.Run(() => new NodeAgent(settings, client, NullLoggerFactory.Instance).RunDetachedAsync(stop.Token)));
            }
            await WaitAsync(async () => (await Leases(admin, "heartbeat")).Count(l => l.Spec.HolderIdentity is not null) == nodes,
                TimeSpan.FromSeconds(60), "heartbeats", cancellationToken);

            var created = Stopwatch.GetTimestamp();
            for (var s = 0; s < services; s++)
            {
                var svc = BenchLab.Service($"svc-{s}", $"198.19.{s / 250}.{1 + s % 250}");
                svc.Metadata.Annotations["kube-vip.io/allow-reconcile-without-endpoints"] = "true";
                await admin.CoreV1.CreateNamespacedServiceAsync(svc, "default", cancellationToken: cancellationToken);
            }
            await WaitAsync(async () => (await Leases(admin, "group")).Count(l => l.Spec.HolderIdentity is not null) == services,
                TimeSpan.FromMinutes(5), "a holder for every group", cancellationToken);
            var converged = Stopwatch.GetElapsedTime(created).TotalSeconds;
            var perNode = (await Leases(admin, "group")).GroupBy(l => l.Spec.HolderIdentity).Select(g => g.Count()).ToList();
            var balance = perNode.Max() / (services / (double)nodes);
            await WaitAsync(async () => (await admin.CoreV1.ListNamespacedServiceAsync("default", cancellationToken: cancellationToken)).Items
                .Count(s => s.Status?.LoadBalancer?.Ingress?.Count > 0) == services, TimeSpan.FromMinutes(5), "every status", cancellationToken);

            await Task.Delay(TimeSpan.FromSeconds(5), cancellationToken); // settle after the creation burst
            api.Stats.Reset();
            await Task.Delay(TimeSpan.FromSeconds(seconds), cancellationToken);
            var total = api.Stats.Total;
            var detail = string.Create(CultureInfo.InvariantCulture,
                $"patch leases {api.Stats.Get("patch", "leases") / (double)seconds:F1}/s, other {(total - api.Stats.Get("patch", "leases")) / (double)seconds:F1}/s; " +
                $"groups per node min {perNode.Min()} max {perNode.Max()} (max/mean {balance:F2}); all {services} groups held {converged:F1} s after the first was created");
            await stop.CancelAsync();
            await Task.WhenAll(agents);
            foreach (var c in clients) c.Dispose();
            return (total / (double)seconds, detail);
        }
        finally
        {
            File.Delete(kubeconfig);
        }
    }

    private static async Task<(double Rate, string Detail)> MeasureLeaderElectorsAsync(int nodes, int services, int seconds, CancellationToken cancellationToken)
    {
        await using var api = await ApiEmulator.StartAsync(new ApiEmulatorOptions(), cancellationToken);
        var kubeconfig = Path.Combine(Path.GetTempPath(), $"hybrid-api-load-base-{Environment.ProcessId}.yaml");
        api.WriteKubeconfig(kubeconfig);
        try
        {
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            // One client per simulated node, as one kube-vip process per node has; its connections are capped,
            // as a real HTTP/2 client would multiplex them, so 10,000 electors do not exhaust file descriptors.
            var clients = Enumerable.Range(1, nodes).Select(_ =>
            {
                var config = KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig);
                config.FirstMessageHandlerSetup = handler =>
                {
                    if (handler is System.Net.Http.SocketsHttpHandler sockets) sockets.MaxConnectionsPerServer = 64;
                };
                return new Kubernetes(config);
            }).ToList();
            var electors = new List<LeaderElector>();
            var runs = new List<Task>();
            for (var s = 0; s < services; s++)
            for (var n = 0; n < nodes; n++)
            {
                var elector = new LeaderElector(new LeaderElectionConfig(new LeaseLock(clients[n], "kube-system", $"kubevip-svc-{s}", $"node-{n + 1}"))
                {
                    LeaseDuration = TimeSpan.FromSeconds(5),
                    RenewDeadline = TimeSpan.FromSeconds(3),
                    RetryPeriod = TimeSpan.FromSeconds(1),
                });
                electors.Add(elector);
                runs.Add(Task.Run(async () =>
                {
                    try { await elector.RunAndTryToHoldLeadershipForeverAsync(stop.Token); }
                    catch (OperationCanceledException) { }
                }, cancellationToken));
            }
            await Task.Delay(TimeSpan.FromSeconds(10), cancellationToken); // every election decided
            api.Stats.Reset();
            await Task.Delay(TimeSpan.FromSeconds(seconds), cancellationToken);
            var total = api.Stats.Total;
            var detail = string.Create(CultureInfo.InvariantCulture,
                $"get leases {api.Stats.Get("get", "leases") / (double)seconds:F1}/s, update leases {api.Stats.Get("update", "leases") / (double)seconds:F1}/s " +
                $"(expected ≈ {services * nodes}/s of gets: every elector polls every retry period)");
            await stop.CancelAsync();
            await Task.WhenAll(runs);
            foreach (var e in electors) e.Dispose();
            foreach (var c in clients) c.Dispose();
            return (total / (double)seconds, detail);
        }
        finally
        {
            File.Delete(kubeconfig);
        }
    }

    private static async Task<List<V1Lease>> Leases(Kubernetes client, string kind) =>
        (await client.CoordinationV1.ListNamespacedLeaseAsync("kube-system", labelSelector: $"{KubeObjects.KindLabel}={kind}")).Items.ToList();

    private static async Task WaitAsync(Func<Task<bool>> condition, TimeSpan timeout, string what, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (!await condition())
        {
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException($"timed out waiting for {what}");
            await Task.Delay(100, cancellationToken);
        }
    }
}
