using System.Net;
using k8s;
using k8s.Autorest;
using k8s.LeaderElection;
using k8s.LeaderElection.ResourceLock;
using k8s.Models;
using Xunit;

namespace Hybrid.Integration.Emulator;

/// <summary>The emulator driven by KubernetesClient 21 exactly as the agent uses it: list+watch with resume,
/// 410 handled by relisting, Lease optimistic concurrency and leader election.</summary>
public sealed class KubernetesClientTests
{
    private static V1Service LoadBalancer(string name, int port = 80) => new()
    {
        Metadata = new V1ObjectMeta { Name = name },
        Spec = new V1ServiceSpec
        {
            Type = "LoadBalancer",
            Selector = new Dictionary<string, string> { ["app"] = "web" },
            Ports = [new V1ServicePort { Port = port }],
        },
    };

    [Fact]
    public async Task List_then_watch_resumes_from_the_list_resource_version()
    {
        await using var h = await EmulatorHarness.StartAsync();
        await h.Client.CoreV1.CreateNamespacedServiceAsync(LoadBalancer("before"), "default");
        var list = await h.Client.CoreV1.ListNamespacedServiceAsync("default");
        Assert.Contains(list.Items, s => s.Metadata.Name == "before");
        Assert.Contains(list.Items, s => s.Metadata.Name == "kubernetes");

        // Changes made after the list but before the watch starts must be replayed from history.
        await h.Client.CoreV1.CreateNamespacedServiceAsync(LoadBalancer("after"), "default");
        await h.Client.CoreV1.DeleteNamespacedServiceAsync("before", "default");

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var seen = new List<(WatchEventType, string, string)>();
        await foreach (var (type, svc) in h.Client.CoreV1.WatchListNamespacedServiceAsync("default",
                           resourceVersion: list.Metadata.ResourceVersion, cancellationToken: cts.Token))
        {
            seen.Add((type, svc.Metadata.Name, svc.Metadata.ResourceVersion));
            if (seen.Count == 2)
            {
                // A live change after the replay arrives on the same stream.
                var patch = new V1Patch("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"198.18.0.10\"}]}}}", V1Patch.PatchType.MergePatch);
                await h.Client.CoreV1.PatchNamespacedServiceStatusAsync(patch, "after", "default", cancellationToken: cts.Token);
            }
            if (seen.Count == 3) break;
        }
        Assert.Equal(WatchEventType.Added, seen[0].Item1);
        Assert.Equal("after", seen[0].Item2);
        Assert.Equal(WatchEventType.Deleted, seen[1].Item1);
        Assert.Equal("before", seen[1].Item2);
        Assert.Equal(WatchEventType.Modified, seen[2].Item1);
        Assert.Equal("after", seen[2].Item2);
        var rvs = seen.Select(s => long.Parse(s.Item3, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(rvs.SequenceEqual(rvs.Order()) && rvs[0] > long.Parse(list.Metadata.ResourceVersion, System.Globalization.CultureInfo.InvariantCulture),
            "watch events come in resourceVersion order, after the list's RV");
    }

    [Fact]
    public async Task A_watch_from_a_compacted_resource_version_gets_410_and_a_relist_recovers()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var list = await h.Client.CoreV1.ListNamespacedServiceAsync("default");
        var oldRv = list.Metadata.ResourceVersion;
        await h.Client.CoreV1.CreateNamespacedServiceAsync(LoadBalancer("missed"), "default");
        h.Emulator.InjectFault(new System.Text.Json.Nodes.JsonObject { ["kind"] = "compact" });

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        Exception? error = null;
        var events = 0;
        try
        {
            await foreach (var _ in h.Client.CoreV1.WatchListNamespacedServiceAsync("default", resourceVersion: oldRv,
                               onError: e => error = e, cancellationToken: cts.Token)) events++;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            error ??= e;
        }
        var status = Assert.IsType<KubernetesException>(error).Status;
        Assert.Equal(410, status.Code);
        Assert.Equal("Expired", status.Reason);
        Assert.Equal(0, events);

        // The informer's answer to 410: list again and watch from the new RV.
        var relist = await h.Client.CoreV1.ListNamespacedServiceAsync("default");
        Assert.Contains(relist.Items, s => s.Metadata.Name == "missed");
        var created = h.Client.CoreV1.CreateNamespacedServiceAsync(LoadBalancer("next"), "default", cancellationToken: cts.Token);
        await foreach (var (type, svc) in h.Client.CoreV1.WatchListNamespacedServiceAsync("default",
                           resourceVersion: relist.Metadata.ResourceVersion, cancellationToken: cts.Token))
        {
            Assert.Equal(WatchEventType.Added, type);
            Assert.Equal("next", svc.Metadata.Name);
            break;
        }
        await created;
    }

    [Fact]
    public async Task Lease_create_and_replace_enforce_the_resource_version()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var now = DateTime.UtcNow;
        var lease = await h.Client.CoordinationV1.CreateNamespacedLeaseAsync(new V1Lease
        {
            Metadata = new V1ObjectMeta { Name = "plndr-svcs-lock" },
            Spec = new V1LeaseSpec { HolderIdentity = "node-a", LeaseDurationSeconds = 15, AcquireTime = now, RenewTime = now, LeaseTransitions = 0 },
        }, "kube-system");
        Assert.False(string.IsNullOrEmpty(lease.Metadata.Uid));

        var duplicate = await Assert.ThrowsAsync<HttpOperationException>(() =>
            h.Client.CoordinationV1.CreateNamespacedLeaseAsync(new V1Lease { Metadata = new V1ObjectMeta { Name = "plndr-svcs-lock" } }, "kube-system"));
        Assert.Equal(HttpStatusCode.Conflict, duplicate.Response.StatusCode);
        Assert.Contains("\"reason\":\"AlreadyExists\"", duplicate.Response.Content);

        lease.Spec.HolderIdentity = "node-b";
        var renewed = await h.Client.CoordinationV1.ReplaceNamespacedLeaseAsync(lease, "plndr-svcs-lock", "kube-system");
        Assert.Equal("node-b", renewed.Spec.HolderIdentity);
        Assert.NotEqual(lease.Metadata.ResourceVersion, renewed.Metadata.ResourceVersion);

        // The old copy still carries the old resourceVersion: a second writer must lose.
        lease.Spec.HolderIdentity = "node-c";
        var stale = await Assert.ThrowsAsync<HttpOperationException>(() => h.Client.CoordinationV1.ReplaceNamespacedLeaseAsync(lease, "plndr-svcs-lock", "kube-system"));
        Assert.Equal(HttpStatusCode.Conflict, stale.Response.StatusCode);
        Assert.Contains("\"reason\":\"Conflict\"", stale.Response.Content);
        Assert.Contains("Operation cannot be fulfilled on leases.coordination.k8s.io \\\"plndr-svcs-lock\\\"", stale.Response.Content);
        var stored = await h.Client.CoordinationV1.ReadNamespacedLeaseAsync("plndr-svcs-lock", "kube-system");
        Assert.Equal("node-b", stored.Spec.HolderIdentity);

        // MicroTime values round-trip with their microseconds.
        var raw = await h.Http.GetStringAsync("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plndr-svcs-lock");
        Assert.Matches("\"renewTime\":\"\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{6}Z\"", raw);
    }

    [Fact]
    public async Task LeaderElector_with_LeaseLock_elects_one_of_three_and_fails_over_when_it_stops()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var leaders = new System.Collections.Concurrent.ConcurrentDictionary<string, bool>();
        var candidates = new List<(string Id, LeaderElector Elector, CancellationTokenSource Stop, Task Run)>();
        try
        {
            foreach (var id in new[] { "node-a", "node-b", "node-c" })
            {
                var client = new Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(h.KubeconfigPath));
                var elector = new LeaderElector(new LeaderElectionConfig(new LeaseLock(client, "kube-system", "hybrid-leader", id))
                {
                    LeaseDuration = TimeSpan.FromSeconds(2),
                    RenewDeadline = TimeSpan.FromSeconds(1.5),
                    RetryPeriod = TimeSpan.FromMilliseconds(200),
                });
                elector.OnStartedLeading += () => leaders[id] = true;
                elector.OnStoppedLeading += () => leaders.TryRemove(id, out _);
                var stop = new CancellationTokenSource();
                candidates.Add((id, elector, stop, Task.Run(() => elector.RunUntilLeadershipLostAsync(stop.Token))));
            }

            await Eventually.WaitAsync(() => !leaders.IsEmpty, TimeSpan.FromSeconds(10), "a leader");
            var first = leaders.Keys.Single();
            var lease = await h.Client.CoordinationV1.ReadNamespacedLeaseAsync("hybrid-leader", "kube-system");
            Assert.Equal(first, lease.Spec.HolderIdentity);
            // Several renew periods later there is still exactly one leader.
            var renewedRv = await Eventually.WaitAsync(async () =>
            {
                var l = await h.Client.CoordinationV1.ReadNamespacedLeaseAsync("hybrid-leader", "kube-system");
                return l.Metadata.ResourceVersion != lease.Metadata.ResourceVersion ? l : null;
            }, TimeSpan.FromSeconds(5), "a lease renewal");
            Assert.Equal(first, renewedRv.Spec.HolderIdentity);
            Assert.Single(leaders);

            var leader = candidates.Single(c => c.Id == first);
            await leader.Stop.CancelAsync();
            await Eventually.WaitAsync(async () =>
            {
                var l = await h.Client.CoordinationV1.ReadNamespacedLeaseAsync("hybrid-leader", "kube-system");
                return l.Spec.HolderIdentity != first && l.Spec.HolderIdentity is "node-a" or "node-b" or "node-c";
            }, TimeSpan.FromSeconds(15), "another candidate to take the lease over");
            var next = await h.Client.CoordinationV1.ReadNamespacedLeaseAsync("hybrid-leader", "kube-system");
            Assert.True(next.Spec.LeaseTransitions >= 1, "the takeover counts as a transition");
            await Eventually.WaitAsync(() => leaders.ContainsKey(next.Spec.HolderIdentity), TimeSpan.FromSeconds(5), "the new holder to report leading");
        }
        finally
        {
            foreach (var c in candidates)
            {
                await c.Stop.CancelAsync();
                try { await c.Run; } catch (OperationCanceledException) { }
                c.Elector.Dispose();
                c.Stop.Dispose();
            }
        }
    }
}
