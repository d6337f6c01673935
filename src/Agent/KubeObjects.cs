using System.Collections.ObjectModel;
using Hybrid.Facade;
using k8s.Models;

namespace Hybrid.Agent;

/// <summary>
/// Converts Kubernetes objects into the domain's input records. Pure data mapping: no decision about what
/// a field means is made here (that is the domain's job), only where it is found.
/// </summary>
internal static class KubeObjects
{
    public const string ServiceNameLabel = "kubernetes.io/service-name";
    public const string ManagedByLabel = "app.kubernetes.io/managed-by";
    public const string ManagedByValue = "hybrid";
    public const string NodeLabel = "hybrid.kube-vip.io/node";
    public const string KindLabel = "hybrid.kube-vip.io/lease-kind";

    private static readonly IReadOnlyDictionary<string, string> Empty =
        new ReadOnlyDictionary<string, string>(new Dictionary<string, string>());

    private static IReadOnlyDictionary<string, string> Dict(IDictionary<string, string>? d) =>
        d is null || d.Count == 0 ? Empty : new Dictionary<string, string>(d, StringComparer.Ordinal);

    public static string Key(string? ns, string name) => $"{ns}/{name}";

    public static ServiceInput ToInput(V1Service s) => new()
    {
        Namespace = s.Metadata.NamespaceProperty ?? "default",
        Name = s.Metadata.Name,
        Uid = s.Metadata.Uid ?? "",
        CreatedAtUnixSeconds = s.Metadata.CreationTimestamp is { } t
            ? new DateTimeOffset(DateTime.SpecifyKind(t, DateTimeKind.Utc)).ToUnixTimeSeconds()
            : 0,
        Type = s.Spec?.Type ?? "ClusterIP",
        LoadBalancerClass = s.Spec?.LoadBalancerClass,
        Annotations = Dict(s.Metadata.Annotations),
        LoadBalancerIP = s.Spec?.LoadBalancerIP,
        Ports = (s.Spec?.Ports ?? []).Select(p => new PortInput { Protocol = p.Protocol ?? "TCP", Port = p.Port }).ToArray(),
        ExternalTrafficPolicy = s.Spec?.ExternalTrafficPolicy,
        Selector = Dict(s.Spec?.Selector),
        Ingress = (s.Status?.LoadBalancer?.Ingress ?? [])
            .Where(i => i.Ip is not null)
            .Select(i => new IngressInput
            {
                Ip = i.Ip!,
                IpMode = i.IpMode,
                Ports = (i.Ports ?? []).Select(p => new PortInput { Protocol = p.Protocol ?? "TCP", Port = p.Port }).ToArray(),
            })
            .ToArray(),
    };

    public static SliceInput? ToInput(V1EndpointSlice slice)
    {
        if (slice.Metadata.Labels is null || !slice.Metadata.Labels.TryGetValue(ServiceNameLabel, out var service))
            return null;
        return new SliceInput
        {
            Namespace = slice.Metadata.NamespaceProperty ?? "default",
            ServiceName = service,
            Endpoints = (slice.Endpoints ?? []).Select(e => new EndpointInput
            {
                NodeName = e.NodeName,
                Ready = e.Conditions?.Ready,
                Serving = e.Conditions?.Serving,
                Terminating = e.Conditions?.Terminating,
            }).ToArray(),
        };
    }

    /// <summary>A Lease as the domain sees it; `name` is the group name or, for heartbeats, the node.</summary>
    public static LeaseInput ToInput(V1Lease lease, string name) => new()
    {
        Name = name,
        Holder = string.IsNullOrEmpty(lease.Spec?.HolderIdentity) ? null : lease.Spec!.HolderIdentity,
        Version = lease.Metadata.ResourceVersion ?? "",
    };

    public static bool IsHeartbeat(V1Lease lease) =>
        lease.Metadata.Labels is { } labels && labels.TryGetValue(KindLabel, out var kind) && kind == "heartbeat";

    public static string? HeartbeatNode(V1Lease lease) =>
        lease.Metadata.Labels is { } labels && labels.TryGetValue(NodeLabel, out var node) ? node : null;
}
