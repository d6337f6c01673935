using System.Reflection;

namespace Hybrid.Agent;

/// <summary>
/// <c>GET /metrics</c> on prometheus_server, served by <see cref="HttpServer"/>: kube-vip's metric names where
/// the meaning is the same, Hybrid's own (prefix <c>hybrid_</c>) for the rest; families in a fixed order,
/// samples sorted by their labels. The table of metrics is in the README (Operations).
/// </summary>
internal sealed class MetricsEndpoint(AgentMetrics metrics, bool upnp)
{
    private static readonly string Version =
        typeof(MetricsEndpoint).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    public IReadOnlyDictionary<string, Func<HttpAnswer>> Routes => new Dictionary<string, Func<HttpAnswer>>
    {
        ["/metrics"] = () => new HttpAnswer(200, Render(), PrometheusText.ContentType),
    };

    public string Render()
    {
        var text = new PrometheusText();
        var gauges = metrics.Reading?.Gauges();

        text.Family("kube_vip_build_info", "gauge", "Build information of the agent; always 1.")
            .Sample("kube_vip_build_info", 1, ("version", Version));
        text.Family("kube_vip_is_leader", "gauge", "1 when this node holds at least one group (svc_election=false: the leader group).");
        if (gauges is not null) text.Sample("kube_vip_is_leader", gauges.IsLeader ? 1 : 0);
        text.Family("kube_vip_active_services", "gauge", "Services with an address this node answers for.");
        if (gauges is not null) text.Sample("kube_vip_active_services", gauges.ActiveServices);
        text.Family("kube_vip_service_reconcile_errors_total", "counter", "Failed attempts to carry out a Service's announcement: kernel actions and status writes.")
            .Sample("kube_vip_service_reconcile_errors_total", metrics.ReconcileErrors.Value);

        text.Family("hybrid_vips_held", "gauge", "VIPs this node's kernel answers for.");
        if (gauges is not null) text.Sample("hybrid_vips_held", gauges.VipsHeld);
        text.Family("hybrid_groups_held", "gauge", "Groups (one address, or every address with svc_election=false) held by this node.");
        if (gauges is not null) text.Sample("hybrid_groups_held", gauges.GroupsHeld);
        text.Family("hybrid_announcements_total", "counter", "Gratuitous ARP and unsolicited neighbour advertisements sent.")
            .Sample("hybrid_announcements_total", metrics.Announcements.Value);
        text.Family("hybrid_takeovers_total", "counter", "VIPs this node began answering for that another node held before.")
            .Sample("hybrid_takeovers_total", metrics.Takeovers.Value);
        text.Family("hybrid_handovers_total", "counter", "VIPs this node stopped answering for (released, moved, stood aside, deposed or stopping).")
            .Sample("hybrid_handovers_total", metrics.Handovers.Value);
        text.Family("hybrid_takeover_silence_seconds", "summary",
                "At each takeover, how long the previous holder had not been heard on the LAN (takeovers from a node never heard are not counted).")
            .Sample("hybrid_takeover_silence_seconds_sum", metrics.TakeoverSilenceMs.Value / 1000.0)
            .Sample("hybrid_takeover_silence_seconds_count", metrics.TakeoverSilenceCount.Value);
        text.Family("hybrid_fence", "gauge", "1 for the fence that lets this node's kernel answer now: lan, api, or none.");
        if (gauges is not null)
            foreach (var kind in new[] { "api", "lan", "none" })
                text.Sample("hybrid_fence", gauges.Fence == kind ? 1 : 0, ("kind", kind));
        text.Family("hybrid_fence_margin_seconds", "gauge", "Time left of the fence deadline written into the kernel: how long it goes on answering if the agent stopped now.");
        if (gauges is not null) text.Sample("hybrid_fence_margin_seconds", gauges.FenceMarginMs / 1000.0);

        text.Family("hybrid_lease_writes_total", "counter", "Lease writes (creates, compare-and-swaps, deletes) by kind of Lease and result.");
        foreach (var (kind, result, value) in metrics.LeaseWrites.Order())
            text.Sample("hybrid_lease_writes_total", value, ("kind", kind), ("result", result));
        text.Family("hybrid_watch_restarts_total", "counter", "Watches opened again, by resource and reason: ended (server timeout), expired (410, relisted), failed.");
        foreach (var (resource, reason, value) in metrics.WatchRestartCounts.Order())
            text.Sample("hybrid_watch_restarts_total", value, ("resource", resource), ("reason", reason));
        text.Family("hybrid_heartbeat_frames_received_total", "counter", "Authentic LAN heartbeat frames received, by sending node.");
        foreach (var (node, value) in metrics.FramesReceived.Order())
            text.Sample("hybrid_heartbeat_frames_received_total", value, ("peer", node));
        text.Family("hybrid_heartbeat_frames_dropped_total", "counter", "LAN heartbeat frames dropped, by reason (counts restart when the node joins again).");
        if (gauges is not null)
            for (var i = 0; i < gauges.DroppedReasons.Length; i++)
                text.Sample("hybrid_heartbeat_frames_dropped_total", gauges.DroppedCounts[i], ("reason", gauges.DroppedReasons[i]));

        text.Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
            .Sample("process_resident_memory_bytes", ProcessMemory.ResidentBytes());
        var heap = GC.GetGCMemoryInfo();
        text.Family("hybrid_gc_heap_size_bytes", "gauge", "Size of the managed heap after the last collection.")
            .Sample("hybrid_gc_heap_size_bytes", heap.HeapSizeBytes);
        text.Family("hybrid_gc_committed_bytes", "gauge", "Memory the garbage collector holds committed (live objects, free space and the first generation's budget).")
            .Sample("hybrid_gc_committed_bytes", heap.TotalCommittedBytes);

        if (upnp)
        {
            text.Family("hybrid_upnp_forwarded_services", "gauge", "Services whose ports the UPnP forwarder has mapped on a gateway (enable_upnp).");
            if (gauges is not null) text.Sample("hybrid_upnp_forwarded_services", gauges.UpnpForwardedServices);
        }
        return text.ToString();
    }
}
