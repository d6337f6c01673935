using Hybrid.Facade;
using Hybrid.Net;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Composes the agent on one node and runs it: watches feed the cache, the heartbeat renewer keeps the
/// fence, the reconcile loop plans and acts; status and Events are written in the background. On stop it
/// withdraws its VIPs, releases its group Leases, then its heartbeat, within a two-second budget, so that
/// other nodes take over at once instead of waiting for the lease duration.
/// </summary>
internal sealed class NodeAgent(Settings settings, IKubernetes client, ILoggerFactory loggers)
{
    private static readonly TimeSpan StopBudget = TimeSpan.FromMilliseconds(1900);
    private readonly ILogger _logger = loggers.CreateLogger<NodeAgent>();

    /// <summary>Runs the agent on the VIP interface of this network namespace.</summary>
    public async Task<int> RunAsync(CancellationToken stopping)
    {
        // Subscribe before reading the link, so no change falls between the read and the first event.
        using var monitor = NetlinkMonitor.Open();
        using var links = LinkTable.Open();
        using var addresses = AddressTable.Open();

        var interfaceName = settings.VipInterface ?? await links.DefaultRouteInterfaceAsync(stopping);
        if (interfaceName is null)
        {
            _logger.LogCritical("No VIP interface: vip_interface is not set and there is no default route");
            return 1;
        }
        var link = await links.GetAsync(interfaceName, stopping);
        if (link is null)
        {
            _logger.LogCritical("VIP interface {Interface} does not exist", interfaceName);
            return 1;
        }
        await using var announcer = settings.Arp ? Announcer.Open(interfaceName, loggers.CreateLogger<Announcer>()) : null;
        announcer?.WarmUp();
        _logger.LogInformation("VIP interface {Interface} ({Mac})", interfaceName, link.HardwareAddress);
        return await RunAsync(new KernelVipAddresses(addresses, link.Index), announcer,
            (node, vips, signal) => new LinkWatcher(monitor, links, link.Index, node, vips, signal, loggers.CreateLogger<LinkWatcher>()),
            stopping);
    }

    /// <summary>
    /// Runs the ownership protocol with no data plane (no interface, no announcements): for measuring the
    /// API traffic of many simulated nodes in one process.
    /// </summary>
    public Task<int> RunDetachedAsync(CancellationToken stopping) =>
        RunAsync(new DetachedVipAddresses(), announcer: null, linkWatcher: null, stopping);

    private async Task<int> RunAsync(
        IVipAddresses addresses,
        Announcer? announcer,
        Func<NodeState, VipTable, ReconcileSignal, LinkWatcher>? linkWatcher,
        CancellationToken stopping)
    {
        var signal = new ReconcileSignal();
        var cache = new ClusterCache(settings, signal);
        var node = new NodeState(settings);
        var claims = new ClaimBook();
        var vips = new VipTable(addresses, loggers.CreateLogger<VipTable>());
        await vips.AdoptAsync(stopping);
        var link = linkWatcher?.Invoke(node, vips, signal);
        if (link is not null) await link.InitialiseAsync(stopping);

        var heartbeat = new HeartbeatRenewer(client, settings, node, signal, loggers.CreateLogger<HeartbeatRenewer>());
        var leases = new GroupLeaseWriter(client, settings, cache, claims, loggers.CreateLogger<GroupLeaseWriter>());
        await using var status = new StatusWriter(client, cache, signal, loggers.CreateLogger<StatusWriter>());
        await using var events = new EventRecorder(client, settings, cache, loggers.CreateLogger<EventRecorder>());
        var loop = new ReconcileLoop(settings, cache, node, claims, vips, announcer, leases, status, events, signal,
            loggers.CreateLogger<ReconcileLoop>());

        _logger.LogInformation("Hybrid agent on node {Node}: svc_election={Election}, leases in {Namespace}",
            settings.NodeName, settings.Election, settings.LeaseNamespace);

        using var run = new CancellationTokenSource();
        status.Start(run.Token);
        events.Start(run.Token);
        var background = new List<Task> { Task.Run(() => heartbeat.RunAsync(run.Token)) };
        if (link is not null) background.Add(Task.Run(() => link.RunAsync(run.Token)));
        background.AddRange(Watches(cache).Select(w => Task.Run(() => w(run.Token))));

        var stopRequestedAt = -1L;
        await using (stopping.Register(() => Volatile.Write(ref stopRequestedAt, MonotonicClock.NowMs)))
            await loop.RunAsync(stopping);

        // Graceful stop. The heartbeat goes first: others stop counting this node as a candidate, so each group
        // Lease it empties next is taken at once by the next node (the Lease watch delivers the heartbeat before
        // the Leases). A Lease still naming a node whose heartbeat is released is taken only D later, so this
        // costs nothing in safety. Then the plan withdraws every VIP and empties the group Leases. The heartbeat
        // loop leaves the heartbeat alone meanwhile. The budget counts from the signal, which may have waited
        // for the plan in progress.
        var requested = Volatile.Read(ref stopRequestedAt);
        var budget = (requested < 0 ? MonotonicClock.NowMs : requested) + (long)StopBudget.TotalMilliseconds;
        node.ShuttingDown = true;
        await ReleaseHeartbeatAsync(heartbeat, Math.Min(300, budget - MonotonicClock.NowMs - 900));
        using (var withdraw = new CancellationTokenSource(TimeSpan.FromMilliseconds(Math.Max(100, budget - MonotonicClock.NowMs - 500))))
        {
            try
            {
                await loop.ReconcileOnceAsync(withdraw.Token);
            }
            catch (Exception e)
            {
                _logger.LogWarning("Withdrawing on stop did not finish: {Error}", e.Message);
            }
        }
        if (!heartbeat.Released) await ReleaseHeartbeatAsync(heartbeat, budget - MonotonicClock.NowMs - 100);
        await run.CancelAsync();
        using (var flush = new CancellationTokenSource(TimeSpan.FromMilliseconds(Math.Max(50, budget - MonotonicClock.NowMs))))
            await events.FlushAsync(flush.Token);
        await Task.WhenAny(Task.WhenAll(background), Task.Delay(200));
        _logger.LogInformation("Stopped: VIPs withdrawn, Leases released");
        return 0;
    }

    private async Task ReleaseHeartbeatAsync(HeartbeatRenewer heartbeat, long timeoutMs)
    {
        using var release = new CancellationTokenSource(TimeSpan.FromMilliseconds(Math.Max(100, timeoutMs)));
        try
        {
            await heartbeat.ReleaseAsync(release.Token);
        }
        catch (OperationCanceledException)
        {
            _logger.LogWarning("Releasing the heartbeat timed out after {Timeout} ms", Math.Max(100, timeoutMs));
        }
    }

    private IEnumerable<Func<CancellationToken, Task>> Watches(ClusterCache cache)
    {
        var ns = settings.ServiceNamespace;
        var services = new ResourceWatch<V1Service, V1ServiceList>("services",
            ct => ns is null
                ? client.CoreV1.ListServiceForAllNamespacesAsync(cancellationToken: ct)
                : client.CoreV1.ListNamespacedServiceAsync(ns, cancellationToken: ct),
            (rv, onError, ct) => ns is null
                ? client.CoreV1.WatchListServiceForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: rv,
                    timeoutSeconds: ResourceWatch<V1Service, V1ServiceList>.WatchTimeoutSeconds(), onError: onError, cancellationToken: ct)
                : client.CoreV1.WatchListNamespacedServiceAsync(ns, allowWatchBookmarks: true, resourceVersion: rv,
                    timeoutSeconds: ResourceWatch<V1Service, V1ServiceList>.WatchTimeoutSeconds(), onError: onError, cancellationToken: ct),
            cache.ObserveAll, cache.Observe, cache.Forget, loggers.CreateLogger("Hybrid.Agent.Watch.Services"));
        var slices = new ResourceWatch<V1EndpointSlice, V1EndpointSliceList>("endpointslices",
            ct => ns is null
                ? client.DiscoveryV1.ListEndpointSliceForAllNamespacesAsync(cancellationToken: ct)
                : client.DiscoveryV1.ListNamespacedEndpointSliceAsync(ns, cancellationToken: ct),
            (rv, onError, ct) => ns is null
                ? client.DiscoveryV1.WatchListEndpointSliceForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: rv,
                    timeoutSeconds: ResourceWatch<V1Service, V1ServiceList>.WatchTimeoutSeconds(), onError: onError, cancellationToken: ct)
                : client.DiscoveryV1.WatchListNamespacedEndpointSliceAsync(ns, allowWatchBookmarks: true, resourceVersion: rv,
                    timeoutSeconds: ResourceWatch<V1Service, V1ServiceList>.WatchTimeoutSeconds(), onError: onError, cancellationToken: ct),
            cache.ObserveAll, cache.Observe, cache.Forget, loggers.CreateLogger("Hybrid.Agent.Watch.EndpointSlices"));
        var selector = $"{KubeObjects.ManagedByLabel}={KubeObjects.ManagedByValue}";
        var leases = new ResourceWatch<V1Lease, V1LeaseList>("leases",
            ct => client.CoordinationV1.ListNamespacedLeaseAsync(settings.LeaseNamespace, labelSelector: selector, cancellationToken: ct),
            (rv, onError, ct) => client.CoordinationV1.WatchListNamespacedLeaseAsync(settings.LeaseNamespace,
                labelSelector: selector, allowWatchBookmarks: true, resourceVersion: rv,
                timeoutSeconds: ResourceWatch<V1Service, V1ServiceList>.WatchTimeoutSeconds(), onError: onError, cancellationToken: ct),
            cache.ObserveAll, cache.Observe, cache.Forget, loggers.CreateLogger("Hybrid.Agent.Watch.Leases"));
        return [services.RunAsync, slices.RunAsync, leases.RunAsync];
    }
}
