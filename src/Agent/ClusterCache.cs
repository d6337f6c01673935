using Hybrid.Facade;
using k8s.Models;

namespace Hybrid.Agent;

/// <summary>A group Lease as observed, plus what a compare-and-swap needs to write it back.</summary>
internal sealed record ObservedLease(LeaseInput Input, int Transitions);

/// <summary>
/// Everything the agent observed of the cluster, ready to become the domain's snapshot: Services,
/// EndpointSlices, heartbeat Leases and group Leases. Fed by the watches and by the results of the agent's
/// own writes (so a successful write is visible to the next plan without waiting for its watch event).
/// </summary>
internal sealed class ClusterCache(Settings settings, ReconcileSignal signal)
{
    // Each converted object is fresh and private to its store, so stamping it in place is safe.
    public ObservedStore<ServiceInput> Services { get; } = new((s, at) => { s.ChangedSeenAt = at; return s; });
    public ObservedStore<SliceInput> Slices { get; } = new((s, _) => s);
    public ObservedStore<LeaseInput> Heartbeats { get; } = new((l, at) => { l.ChangedSeenAt = at; return l; });
    public ObservedStore<ObservedLease> GroupLeases { get; } = new((l, at) => { l.Input.ChangedSeenAt = at; return l; });

    public bool Synced => Services.Synced && Slices.Synced && Heartbeats.Synced && GroupLeases.Synced;

    public void Observe(V1Service service)
    {
        var key = KubeObjects.Key(service.Metadata.NamespaceProperty, service.Metadata.Name);
        if (Services.Upsert(key, service.Metadata.ResourceVersion ?? "", KubeObjects.ToInput(service)))
            signal.Notify("service");
    }

    public void Forget(V1Service service)
    {
        if (Services.Remove(KubeObjects.Key(service.Metadata.NamespaceProperty, service.Metadata.Name)))
            signal.Notify("service deleted");
    }

    public void ObserveAll(IEnumerable<V1Service> services)
    {
        Services.ReplaceAll(services.Select(s => (
            KubeObjects.Key(s.Metadata.NamespaceProperty, s.Metadata.Name),
            s.Metadata.ResourceVersion ?? "",
            KubeObjects.ToInput(s))));
        signal.Notify("services listed");
    }

    public void Observe(V1EndpointSlice slice)
    {
        var key = KubeObjects.Key(slice.Metadata.NamespaceProperty, slice.Metadata.Name);
        var changed = KubeObjects.ToInput(slice) is { } input
            ? Slices.Upsert(key, slice.Metadata.ResourceVersion ?? "", input)
            : Slices.Remove(key);
        if (changed) signal.Notify("endpointslice");
    }

    public void Forget(V1EndpointSlice slice)
    {
        if (Slices.Remove(KubeObjects.Key(slice.Metadata.NamespaceProperty, slice.Metadata.Name)))
            signal.Notify("endpointslice deleted");
    }

    public void ObserveAll(IEnumerable<V1EndpointSlice> slices)
    {
        Slices.ReplaceAll(slices
            .Select(s => (s, input: KubeObjects.ToInput(s)))
            .Where(x => x.input is not null)
            .Select(x => (KubeObjects.Key(x.s.Metadata.NamespaceProperty, x.s.Metadata.Name),
                x.s.Metadata.ResourceVersion ?? "", x.input!)));
        signal.Notify("endpointslices listed");
    }

    /// <summary>Heartbeat and group Leases share one watch (one label selector in one namespace).</summary>
    public void Observe(V1Lease lease)
    {
        var version = lease.Metadata.ResourceVersion ?? "";
        bool changed;
        if (KubeObjects.IsHeartbeat(lease))
        {
            if (KubeObjects.HeartbeatNode(lease) is not { } node) return;
            var previous = Heartbeats.Get(node);
            changed = Heartbeats.Upsert(node, version, KubeObjects.ToInput(lease, node))
                && Decide.HeartbeatChangeMatters(settings, previous, Heartbeats.Get(node)!, MonotonicClock.NowMs);
        }
        else
        {
            changed = GroupLeases.Upsert(lease.Metadata.Name, version,
                new ObservedLease(KubeObjects.ToInput(lease, lease.Metadata.Name), lease.Spec?.LeaseTransitions ?? 0));
        }
        if (changed) signal.Notify(KubeObjects.IsHeartbeat(lease) ? "heartbeat" : "lease");
    }

    public void Forget(V1Lease lease)
    {
        var removed = KubeObjects.IsHeartbeat(lease)
            ? KubeObjects.HeartbeatNode(lease) is { } node && Heartbeats.Remove(node)
            : GroupLeases.Remove(lease.Metadata.Name);
        if (removed) signal.Notify("lease deleted");
    }

    public void ObserveAll(IEnumerable<V1Lease> leases)
    {
        var all = leases.ToList();
        Heartbeats.ReplaceAll(all
            .Where(KubeObjects.IsHeartbeat)
            .Select(l => (node: KubeObjects.HeartbeatNode(l), l))
            .Where(x => x.node is not null)
            .Select(x => (x.node!, x.l.Metadata.ResourceVersion ?? "", KubeObjects.ToInput(x.l, x.node!))));
        GroupLeases.ReplaceAll(all
            .Where(l => !KubeObjects.IsHeartbeat(l))
            .Select(l => (l.Metadata.Name, l.Metadata.ResourceVersion ?? "",
                new ObservedLease(KubeObjects.ToInput(l, l.Metadata.Name), l.Spec?.LeaseTransitions ?? 0))));
        signal.Notify("leases listed");
    }
}
