using Hybrid.Facade;

namespace Hybrid.Agent;

/// <summary>Where the agent's kinds live on the API server, relative to its URL (the agent and `hybrid explain` read the same).</summary>
internal static class ApiPaths
{
    private static string Escape(string text) => Uri.EscapeDataString(text);

    /// <summary>A namespace's part of a path, or every namespace's when null.</summary>
    private static string In(string? ns) => ns is null ? "" : $"namespaces/{Escape(ns)}/";

    public static string Services(string? ns) => $"api/v1/{In(ns)}services";

    public static string Service(string ns, string name) => $"{Services(ns)}/{Escape(name)}";

    public static string EndpointSlices(string? ns) => $"apis/discovery.k8s.io/v1/{In(ns)}endpointslices";

    public static string Nodes => "api/v1/nodes";

    public static string Leases(string ns) => $"apis/coordination.k8s.io/v1/{In(ns)}leases";

    public static string Lease(string ns, string name) => $"{Leases(ns)}/{Escape(name)}";

    /// <summary>The Leases the agents write (their own label selector).</summary>
    public static string AgentLeases(string ns) => $"{Leases(ns)}?labelSelector={Escape(Configuration.LeaseSelector)}";

    /// <summary>Only the pool ConfigMap: a field selector on its name (the only list the agent's Role allows).</summary>
    public static string PoolConfigMap =>
        $"api/v1/{In(Configuration.PoolConfigMapNamespace)}configmaps?fieldSelector={Escape("metadata.name=" + Configuration.PoolConfigMapName)}";

    public static string Events(string ns) => $"apis/events.k8s.io/v1/{In(ns)}events";

    /// <summary>The core/v1 Events about one object of a namespace.</summary>
    public static string CoreEventsAbout(string ns, string name) =>
        $"api/v1/{In(ns)}events?fieldSelector={Escape("involvedObject.name=" + name)}";
}
