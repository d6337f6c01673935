using System.Collections.ObjectModel;
using System.Globalization;
using System.Text.Json.Nodes;
using Hybrid.Facade;

namespace Hybrid.Agent;

/// <summary>
/// Converts between the agent's view of Kubernetes objects (ApiObjects.cs) and the domain's records. Pure data mapping: where a field is found,
/// never what it means (that is the domain's job; defaults such as "ClusterIP" or "TCP" are applied there).
/// </summary>
internal static class KubeObjects
{
    public const string ServiceNameLabel = "kubernetes.io/service-name";

    private static readonly IReadOnlyDictionary<string, string> Empty =
        new ReadOnlyDictionary<string, string>(new Dictionary<string, string>());

    private static IReadOnlyDictionary<string, string> Dict(IDictionary<string, string>? d) =>
        d is null || d.Count == 0 ? Empty : new Dictionary<string, string>(d, StringComparer.Ordinal);

    public static string Key(string? ns, string name) => $"{ns}/{name}";

    // Only the annotations a decision can read: a Service's others (kubectl's last-applied-configuration
    // repeats the whole object) would be held by every node for nothing.
    private static IReadOnlyDictionary<string, string> ReadAnnotations(IDictionary<string, string>? d) =>
        d is null || !d.Keys.Any(Configuration.IsReadAnnotation)
            ? Empty
            : d.Where(a => Configuration.IsReadAnnotation(a.Key)).ToDictionary(a => a.Key, a => a.Value, StringComparer.Ordinal);

    public static ServiceInput ToInput(ServiceObject s) => new()
    {
        Namespace = s.Metadata.Namespace ?? "default",
        Name = s.Metadata.Name,
        Uid = s.Metadata.Uid ?? "",
        CreatedAtUnixSeconds = s.Metadata.CreationTimestamp?.ToUnixTimeSeconds() ?? 0,
        Type = s.Spec?.Type ?? "",
        LoadBalancerClass = s.Spec?.LoadBalancerClass,
        Annotations = ReadAnnotations(s.Metadata.Annotations),
        LoadBalancerIP = s.Spec?.LoadBalancerIp,
        Ports = (s.Spec?.Ports ?? []).Select(p => new PortInput { Protocol = p.Protocol ?? "", Port = p.Port }).ToArray(),
        ExternalTrafficPolicy = s.Spec?.ExternalTrafficPolicy,
        Selector = Dict(s.Spec?.Selector),
        Ingress = (s.Status?.LoadBalancer?.Ingress ?? [])
            .Where(i => i.Ip is not null)
            .Select(i => new IngressInput
            {
                Ip = i.Ip!,
                IpMode = i.IpMode,
                Ports = (i.Ports ?? []).Select(p => new PortInput { Protocol = p.Protocol ?? "", Port = p.Port }).ToArray(),
            })
            .ToArray(),
        ResourceVersion = s.Metadata.ResourceVersion,
        IpFamilies = s.Spec?.IpFamilies?.ToArray(),
        IpFamilyPolicy = s.Spec?.IpFamilyPolicy,
    };

    /// <summary>A Node: its IP addresses (InternalIP, ExternalIP) and labels.</summary>
    public static NodeInput ToInput(NodeObject node) => new()
    {
        Name = node.Metadata.Name,
        Addresses = (node.Status?.Addresses ?? [])
            .Where(a => a.Type is "InternalIP" or "ExternalIP")
            .Select(a => a.Address ?? "")
            .ToArray(),
        Labels = Dict(node.Metadata.Labels),
    };

    /// <summary>The data of the pool ConfigMap.</summary>
    public static IReadOnlyDictionary<string, string> PoolData(ConfigMapObject map) => Dict(map.Data);

    /// <summary>
    /// The merge patch of an address assignment: it carries the resourceVersion the domain decided on, so the
    /// server refuses it (409) if the Service changed since.
    /// </summary>
    public static string AssignmentPatch(ShellCommand.AssignAddress assign)
    {
        var annotations = new JsonObject();
        foreach (var (key, value) in assign.Annotations) annotations[key] = value;
        var labels = new JsonObject();
        foreach (var (key, value) in assign.Labels) labels[key] = value;
        var patch = new JsonObject
        {
            ["metadata"] = new JsonObject
            {
                ["resourceVersion"] = assign.ResourceVersion,
                ["annotations"] = annotations,
                ["labels"] = labels,
            },
        };
        return patch.ToJsonString();
    }

    /// <summary>A slice attributed to its Service, or null when it names none (not a Service's slice).</summary>
    public static SliceInput? ToInput(EndpointSliceObject slice)
    {
        if (slice.Metadata.Labels is null || !slice.Metadata.Labels.TryGetValue(ServiceNameLabel, out var service))
            return null;
        return new SliceInput
        {
            Name = Key(slice.Metadata.Namespace, slice.Metadata.Name),
            Namespace = slice.Metadata.Namespace ?? "default",
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

    public static LeaseInput ToInput(LeaseObject lease) => new()
    {
        Name = lease.Metadata.Name,
        Version = lease.Metadata.ResourceVersion ?? "",
        Holder = string.IsNullOrEmpty(lease.Spec?.HolderIdentity) ? null : lease.Spec!.HolderIdentity,
        Transitions = lease.Spec?.LeaseTransitions ?? 0,
        Labels = Dict(lease.Metadata.Labels),
        Annotations = Dict(lease.Metadata.Annotations),
    };

    /// <summary>A MicroTime (Lease times, an Event's eventTime): RFC 3339 with microseconds, UTC.</summary>
    public static string Time(DateTime utc) => utc.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", CultureInfo.InvariantCulture);

    /// <summary>The Lease a create writes.</summary>
    public static LeaseObject NewLease(LeaseWriteOutput write, string ns, DateTime now) => new()
    {
        ApiVersion = "coordination.k8s.io/v1",
        Kind = "Lease",
        Metadata = new ObjectMeta
        {
            Name = write.Name,
            Namespace = ns,
            Labels = write.Labels.ToDictionary(),
            Annotations = write.Annotations.Where(a => a.Value is not null).ToDictionary(a => a.Key, a => a.Value!),
        },
        Spec = new LeaseSpec
        {
            HolderIdentity = write.Holder,
            AcquireTime = Time(now),
            RenewTime = Time(now),
            LeaseDurationSeconds = write.DurationSeconds > 0 ? write.DurationSeconds : null,
            LeaseTransitions = write.Transitions,
        },
    };

    /// <summary>
    /// The merge patch of a compare-and-swap: it carries the expected resourceVersion, so the server refuses
    /// it (409) if the Lease changed since. renewTime always changes, so every write makes a new version.
    /// </summary>
    public static string LeasePatch(LeaseWriteOutput write, DateTime now)
    {
        var annotations = new JsonObject();
        foreach (var (key, value) in write.Annotations) annotations[key] = value;
        var labels = new JsonObject();
        foreach (var (key, value) in write.Labels) labels[key] = value;
        var spec = new JsonObject
        {
            ["holderIdentity"] = write.Holder,
            ["renewTime"] = Time(now),
            ["leaseTransitions"] = write.Transitions,
        };
        if (write.DurationSeconds > 0) spec["leaseDurationSeconds"] = write.DurationSeconds;
        var patch = new JsonObject
        {
            ["metadata"] = new JsonObject
            {
                ["resourceVersion"] = write.ExpectedVersion,
                ["labels"] = labels,
                ["annotations"] = annotations,
            },
            ["spec"] = spec,
        };
        return patch.ToJsonString();
    }
}
