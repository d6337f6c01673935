namespace Hybrid.Sandbox.Api;

/// <summary>One REST resource the emulator serves (a group/version/plural triple and its discovery facts).</summary>
/// <param name="Bucket">Storage key. Two resources share a bucket when they are two views of the same objects
/// (core/v1 events and events.k8s.io/v1 events); <see cref="IsEventsV1View"/> says which view converts.</param>
internal sealed record ResourceType(
    string Group,
    string Version,
    string Plural,
    string Singular,
    string Kind,
    bool Namespaced,
    string[] ShortNames,
    string[] Subresources,
    string[] Categories,
    string Bucket)
{
    public string GroupVersion { get; } = Group.Length == 0 ? Version : Group + "/" + Version;

    /// <summary>"services" or "leases.coordination.k8s.io": how the API server names it in messages.</summary>
    public string QualifiedPlural { get; } = Group.Length == 0 ? Plural : Plural + "." + Group;

    public string ListKind => Kind + "List";

    public bool IsEventsV1View => Group == "events.k8s.io";

    public bool HasStatus => Subresources.Contains("status");

    /// <summary>The path prefix of this resource's group-version: /api/v1 or /apis/apps/v1.</summary>
    public string ApiPrefix => Group.Length == 0 ? "/api/" + Version : "/apis/" + Group + "/" + Version;
}

/// <summary>The fixed set of resources served, with lookups by group-version and plural.</summary>
internal static class ResourceCatalog
{
    private static readonly string[] NoStrings = [];
    private static readonly string[] StatusOnly = ["status"];

    public static readonly ResourceType Services = new("", "v1", "services", "service", "Service", true, ["svc"], StatusOnly, ["all"], "services");
    public static readonly ResourceType Endpoints = new("", "v1", "endpoints", "endpoints", "Endpoints", true, ["ep"], NoStrings, NoStrings, "endpoints");
    public static readonly ResourceType Pods = new("", "v1", "pods", "pod", "Pod", true, ["po"], StatusOnly, ["all"], "pods");
    public static readonly ResourceType Nodes = new("", "v1", "nodes", "node", "Node", false, ["no"], StatusOnly, NoStrings, "nodes");
    public static readonly ResourceType Namespaces = new("", "v1", "namespaces", "namespace", "Namespace", false, ["ns"], ["status", "finalize"], NoStrings, "namespaces");
    public static readonly ResourceType CoreEvents = new("", "v1", "events", "event", "Event", true, ["ev"], NoStrings, NoStrings, "events");
    public static readonly ResourceType ConfigMaps = new("", "v1", "configmaps", "configmap", "ConfigMap", true, ["cm"], NoStrings, NoStrings, "configmaps");
    public static readonly ResourceType EndpointSlices = new("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true, NoStrings, NoStrings, NoStrings, "endpointslices");
    public static readonly ResourceType Leases = new("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, NoStrings, NoStrings, NoStrings, "leases");
    public static readonly ResourceType EventsV1 = new("events.k8s.io", "v1", "events", "event", "Event", true, NoStrings, NoStrings, NoStrings, "events");
    public static readonly ResourceType Deployments = new("apps", "v1", "deployments", "deployment", "Deployment", true, ["deploy"], ["status", "scale"], ["all"], "deployments");
    public static readonly ResourceType Secrets = new("", "v1", "secrets", "secret", "Secret", true, NoStrings, NoStrings, NoStrings, "secrets");
    public static readonly ResourceType ServiceAccounts = new("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, ["sa"], NoStrings, NoStrings, "serviceaccounts");
    public static readonly ResourceType DaemonSets = new("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, ["ds"], StatusOnly, ["all"], "daemonsets");
    public static readonly ResourceType ClusterRoles = new(Rbac, "v1", "clusterroles", "clusterrole", "ClusterRole", false, NoStrings, NoStrings, NoStrings, "clusterroles");
    public static readonly ResourceType ClusterRoleBindings = new(Rbac, "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", false, NoStrings, NoStrings, NoStrings, "clusterrolebindings");
    public static readonly ResourceType Roles = new(Rbac, "v1", "roles", "role", "Role", true, NoStrings, NoStrings, NoStrings, "roles");
    public static readonly ResourceType RoleBindings = new(Rbac, "v1", "rolebindings", "rolebinding", "RoleBinding", true, NoStrings, NoStrings, NoStrings, "rolebindings");

    private const string Rbac = "rbac.authorization.k8s.io";

    public static readonly IReadOnlyList<ResourceType> All =
    [
        Services, Endpoints, Pods, Nodes, Namespaces, CoreEvents, ConfigMaps, Secrets, ServiceAccounts, EndpointSlices, Leases, EventsV1,
        Deployments, DaemonSets, ClusterRoles, ClusterRoleBindings, Roles, RoleBindings,
    ];

    /// <summary>Groups in discovery order (the legacy core group "" is served under /api, not listed in /apis).</summary>
    public static readonly IReadOnlyList<string> Groups = ["apps", "events.k8s.io", Rbac, "discovery.k8s.io", "coordination.k8s.io"];

    private static readonly Dictionary<(string GroupVersion, string Plural), ResourceType> ByPath =
        All.ToDictionary(r => (r.GroupVersion, r.Plural));

    public static ResourceType? Find(string groupVersion, string plural) =>
        ByPath.TryGetValue((groupVersion, plural), out var r) ? r : null;

    public static IEnumerable<ResourceType> InGroupVersion(string groupVersion) => All.Where(r => r.GroupVersion == groupVersion);

    public static bool IsServedGroupVersion(string groupVersion) => All.Any(r => r.GroupVersion == groupVersion);
}
