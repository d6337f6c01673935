using System.Globalization;
using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// meta.k8s.io Table responses (Accept: application/json;as=Table;g=meta.k8s.io;v=v1), computed on the server
/// as kube-apiserver's printers do, so `kubectl get` (including `-w`) shows the familiar columns:
/// services TYPE/CLUSTER-IP/EXTERNAL-IP/PORT(S)/AGE, pods READY/STATUS, deployments READY, daemonsets
/// DESIRED/CURRENT/READY, secrets TYPE/DATA, roles and bindings, leases HOLDER, events.
/// </summary>
internal static class TableRenderer
{
    private sealed record Column(string Name, string Type, string Description, int Priority = 0, string Format = "");

    private static readonly Column NameColumn = new("Name", "string", "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names", 0, "name");
    private static readonly Column AgeColumn = new("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata");

    private static Column[] ColumnsOf(string kind) => kind switch
    {
        "Service" =>
        [
            NameColumn,
            new("Type", "string", "Type determines how the Service is exposed."),
            new("Cluster-IP", "string", "ClusterIP is the IP address of the service."),
            new("External-IP", "string", "External IPs of the service."),
            new("Port(s)", "string", "The ports that are exposed by this service."),
            AgeColumn,
            new("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.", 1),
        ],
        "Pod" =>
        [
            NameColumn,
            new("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            new("Status", "string", "The aggregate status of the containers in this pod."),
            new("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            AgeColumn,
            new("IP", "string", "IP address allocated to the pod.", 1),
            new("Node", "string", "Name of the node the pod is assigned to.", 1),
            new("Nominated Node", "string", "Name of the node the pod is nominated to.", 1),
            new("Readiness Gates", "string", "Readiness gates of the pod.", 1),
        ],
        "Deployment" =>
        [
            NameColumn,
            new("Ready", "string", "Number of the pod with ready state"),
            new("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            new("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            AgeColumn,
            new("Containers", "string", "Names of each container in the template.", 1),
            new("Images", "string", "Images referenced by each container in the template.", 1),
            new("Selector", "string", "Label selector for pods.", 1),
        ],
        "Node" =>
        [
            NameColumn,
            new("Status", "string", "The status of the node"),
            new("Roles", "string", "The roles of the node"),
            AgeColumn,
            new("Version", "string", "Kubelet Version reported by the node."),
            new("Internal-IP", "string", "List of addresses reachable to the node.", 1),
        ],
        "Namespace" => [NameColumn, new("Status", "string", "The status of the namespace"), AgeColumn],
        "Endpoints" => [NameColumn, new("Endpoints", "string", "Endpoints of the service"), AgeColumn],
        "EndpointSlice" =>
        [
            NameColumn,
            new("AddressType", "string", "The IP protocol for this slice"),
            new("Ports", "string", "The ports of this slice"),
            new("Endpoints", "string", "The endpoints of this slice"),
            AgeColumn,
        ],
        "Lease" => [NameColumn, new("Holder", "string", "The holder of the lease"), AgeColumn],
        "DaemonSet" =>
        [
            NameColumn,
            new("Desired", "integer", "The desired number of pods."),
            new("Current", "integer", "The current number of pods."),
            new("Ready", "integer", "The number of pods ready."),
            new("Up-to-date", "integer", "The number of pods updated."),
            new("Available", "integer", "The number of pods available."),
            new("Node Selector", "string", "Which nodes will run the pods."),
            AgeColumn,
            new("Containers", "string", "Names of each container in the template.", 1),
            new("Images", "string", "Images referenced by each container in the template.", 1),
            new("Selector", "string", "Label selector for pods.", 1),
        ],
        "Secret" => [NameColumn, new("Type", "string", "The type of the secret"), new("Data", "integer", "The number of data values in the secret"), AgeColumn],
        "ServiceAccount" => [NameColumn, new("Secrets", "integer", "The number of secrets in the service account"), AgeColumn],
        "Role" or "ClusterRole" => [NameColumn, new("Created At", "date", "Time when the role was created")],
        "RoleBinding" or "ClusterRoleBinding" =>
        [
            NameColumn,
            new("Role", "string", "Role referenced by the binding"),
            AgeColumn,
            new("Users", "string", "Users in the binding", 1),
            new("Groups", "string", "Groups in the binding", 1),
            new("ServiceAccounts", "string", "ServiceAccounts in the binding", 1),
        ],
        "ConfigMap" => [NameColumn, new("Data", "string", "Number of keys in the ConfigMap"), AgeColumn],
        "Event" =>
        [
            new("Last Seen", "string", "Time when last event was observed"),
            new("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future."),
            new("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            new("Object", "string", "The object that this event is about."),
            new("Subobject", "string", "The subobject that this event is about.", 1),
            new("Source", "string", "The component reporting this event.", 1),
            new("Message", "string", "A human-readable description of the status of this operation."),
            new("First Seen", "string", "The first time the event was observed.", 1),
            new("Count", "string", "The number of times this event has occurred.", 1),
            new("Name", "string", "The name of this event.", 1, "name"),
        ],
        _ => [NameColumn, AgeColumn],
    };

    public static string TableApiVersion(string accept) =>
        accept.Contains("v=v1beta1", StringComparison.Ordinal) && !accept.Contains("v=v1;", StringComparison.Ordinal) && !accept.EndsWith("v=v1", StringComparison.Ordinal)
            ? "meta.k8s.io/v1beta1" : "meta.k8s.io/v1";

    public static JsonObject Table(ResourceType rt, IEnumerable<StoredObject> items, long rv, string? continueToken,
        string includeObject, string apiVersion, bool withColumns = true)
    {
        var kind = ResourceService.Canonical(rt).Kind;
        var columns = ColumnsOf(kind);
        var metadata = new JsonObject { ["resourceVersion"] = rv.ToString(CultureInfo.InvariantCulture) };
        if (continueToken is not null) metadata["continue"] = continueToken;
        var table = new JsonObject
        {
            ["kind"] = "Table",
            ["apiVersion"] = apiVersion,
            ["metadata"] = metadata,
        };
        if (withColumns)
        {
            table["columnDefinitions"] = new JsonArray(columns.Select(c => (JsonNode)new JsonObject
            {
                ["name"] = c.Name,
                ["type"] = c.Type,
                ["format"] = c.Format,
                ["description"] = c.Description,
                ["priority"] = c.Priority,
            }).ToArray());
        }
        var now = DateTimeOffset.UtcNow;
        var rows = new JsonArray();
        foreach (var o in items)
        {
            var row = new JsonObject { ["cells"] = new JsonArray(Cells(kind, o.Node, now).Select(Cell).ToArray()) };
            var view = ResourceService.View(rt, o);
            switch (includeObject)
            {
                case "None":
                    break;
                case "Object":
                    row["object"] = view.DeepClone();
                    break;
                default:
                    row["object"] = new JsonObject
                    {
                        ["kind"] = "PartialObjectMetadata",
                        ["apiVersion"] = "meta.k8s.io/v1",
                        ["metadata"] = view.Obj("metadata")?.DeepClone(),
                    };
                    break;
            }
            rows.Add(row);
        }
        table["rows"] = rows;
        return table;
    }

    private static object[] Cells(string kind, JsonObject o, DateTimeOffset now)
    {
        var name = o.Name();
        var age = Age(o.Obj("metadata").Str("creationTimestamp"), now);
        var spec = o.Obj("spec");
        var status = o.Obj("status");
        switch (kind)
        {
            case "Service":
            {
                var type = spec.Str("type") ?? "ClusterIP";
                var clusterIp = spec.Str("clusterIP");
                return [name, type, string.IsNullOrEmpty(clusterIp) ? "<none>" : clusterIp, ExternalIp(spec, status, type), Ports(spec), age, LabelsText(spec.Obj("selector"))];
            }
            case "Pod":
            {
                var statuses = status.Arr("containerStatuses")?.OfType<JsonObject>().ToList() ?? [];
                var total = spec.Arr("containers")?.Count ?? 0;
                var ready = statuses.Count(s => s.Bool("ready") == true);
                var restarts = statuses.Sum(s => s.Long("restartCount") ?? 0);
                var phase = status.Str("reason") ?? status.Str("phase") ?? "Unknown";
                if (o.Obj("metadata").Str("deletionTimestamp") is { Length: > 0 }) phase = "Terminating";
                var gates = spec.Arr("readinessGates")?.OfType<JsonObject>().Select(g => g.Str("conditionType")).ToList() ?? [];
                var gatesMet = gates.Count(g => status.Arr("conditions")?.OfType<JsonObject>().Any(c => c.Str("type") == g && c.Str("status") == "True") == true);
                return [name, $"{ready}/{total}", phase, restarts.ToString(CultureInfo.InvariantCulture), age,
                    status.Str("podIP") ?? "<none>", spec.Str("nodeName") ?? "<none>", status.Str("nominatedNodeName") ?? "<none>",
                    gates.Count == 0 ? "<none>" : $"{gatesMet}/{gates.Count}"];
            }
            case "Deployment":
            {
                var containers = spec.Obj("template").Obj("spec").Arr("containers")?.OfType<JsonObject>().ToList() ?? [];
                return [name, $"{status.Long("readyReplicas") ?? 0}/{spec.Long("replicas") ?? 0}", status.Long("updatedReplicas") ?? 0L,
                    status.Long("availableReplicas") ?? 0L, age, string.Join(',', containers.Select(c => c.Str("name"))),
                    string.Join(',', containers.Select(c => c.Str("image"))), Selector(spec.Obj("selector"))];
            }
            case "Node":
            {
                var readyCond = status.Arr("conditions")?.OfType<JsonObject>().FirstOrDefault(c => c.Str("type") == "Ready");
                var state = readyCond?.Str("status") switch { "True" => "Ready", null => "Unknown", _ => "NotReady" };
                if (spec.Bool("unschedulable") == true) state += ",SchedulingDisabled";
                var roles = Json.StringMap(o.Obj("metadata").Obj("labels")).Keys
                    .Where(k => k.StartsWith("node-role.kubernetes.io/", StringComparison.Ordinal)).Select(k => k["node-role.kubernetes.io/".Length..]).ToList();
                var ip = status.Arr("addresses")?.OfType<JsonObject>().FirstOrDefault(a => a.Str("type") == "InternalIP")?.Str("address");
                return [name, state, roles.Count == 0 ? "<none>" : string.Join(',', roles), age, status.Obj("nodeInfo").Str("kubeletVersion") ?? "", ip ?? "<none>"];
            }
            case "Namespace":
                return [name, status.Str("phase") ?? "Active", age];
            case "Endpoints":
            {
                var list = new List<string>();
                foreach (var subset in o.Arr("subsets")?.OfType<JsonObject>() ?? [])
                {
                    var ports = subset.Arr("ports")?.OfType<JsonObject>().Select(p => p.Long("port")).ToList() ?? [];
                    foreach (var a in subset.Arr("addresses")?.OfType<JsonObject>() ?? [])
                        if (ports.Count == 0) list.Add(a.Str("ip") ?? "");
                        else list.AddRange(ports.Select(p => $"{a.Str("ip")}:{p}"));
                }
                return [name, list.Count == 0 ? "<none>" : Truncate(list), age];
            }
            case "EndpointSlice":
            {
                var ports = o.Arr("ports")?.OfType<JsonObject>().Select(p => (p.Long("port")?.ToString(CultureInfo.InvariantCulture)) ?? "<unset>").ToList() ?? [];
                var addrs = o.Arr("endpoints")?.OfType<JsonObject>().SelectMany(e => e.Arr("addresses")?.Select(a => a?.ToString() ?? "") ?? []).ToList() ?? [];
                return [name, o.Str("addressType") ?? "", ports.Count == 0 ? "<unset>" : string.Join(',', ports), addrs.Count == 0 ? "<unset>" : Truncate(addrs), age];
            }
            case "Lease":
                return [name, spec.Str("holderIdentity") ?? "", age];
            case "DaemonSet":
            {
                var containers = spec.Obj("template").Obj("spec").Arr("containers")?.OfType<JsonObject>().ToList() ?? [];
                return [name, status.Long("desiredNumberScheduled") ?? 0L, status.Long("currentNumberScheduled") ?? 0L, status.Long("numberReady") ?? 0L,
                    status.Long("updatedNumberScheduled") ?? 0L, status.Long("numberAvailable") ?? 0L, LabelsText(spec.Obj("template").Obj("spec").Obj("nodeSelector")),
                    age, string.Join(',', containers.Select(c => c.Str("name"))), string.Join(',', containers.Select(c => c.Str("image"))), Selector(spec.Obj("selector"))];
            }
            case "Secret":
                return [name, o.Str("type") ?? "", (long)((o.Obj("data")?.Count ?? 0) + (o.Obj("stringData")?.Count ?? 0)), age];
            case "ServiceAccount":
                return [name, (long)(o.Arr("secrets")?.Count ?? 0), age];
            case "Role" or "ClusterRole":
                return [name, Json.ParseTime(o.Obj("metadata").Str("creationTimestamp"))?.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture) ?? ""];
            case "RoleBinding" or "ClusterRoleBinding":
            {
                var subjects = o.Arr("subjects")?.OfType<JsonObject>().ToList() ?? [];
                string Of(string kind, Func<JsonObject, string> text) => string.Join(", ", subjects.Where(x => x.Str("kind") == kind).Select(text));
                return [name, $"{o.Obj("roleRef").Str("kind")}/{o.Obj("roleRef").Str("name")}", age, Of("User", x => x.Str("name") ?? ""),
                    Of("Group", x => x.Str("name") ?? ""), Of("ServiceAccount", x => $"{x.Str("namespace")}/{x.Str("name")}")];
            }
            case "ConfigMap":
                return [name, ((o.Obj("data")?.Count ?? 0) + (o.Obj("binaryData")?.Count ?? 0)).ToString(CultureInfo.InvariantCulture), age];
            case "Event":
            {
                var involved = o.Obj("involvedObject");
                var objectText = $"{(involved.Str("kind") ?? "").ToLowerInvariant()}/{involved.Str("name")}";
                var first = o.Str("firstTimestamp") ?? o.Str("eventTime") ?? o.Obj("metadata").Str("creationTimestamp");
                var last = o.Obj("series").Str("lastObservedTime") ?? o.Str("lastTimestamp") ?? o.Str("eventTime") ?? first;
                var source = o.Obj("source").Str("component") ?? o.Str("reportingComponent") ?? "";
                if (o.Obj("source").Str("host") is { Length: > 0 } host) source += ", " + host;
                var count = o.Obj("series").Long("count") ?? o.Long("count") ?? 1;
                return [Age(last, now), o.Str("type") ?? "", o.Str("reason") ?? "", objectText, involved.Str("fieldPath") ?? "", source,
                    (o.Str("message") ?? "").Trim(), Age(first, now), count.ToString(CultureInfo.InvariantCulture), name];
            }
            default:
                return [name, age];
        }
    }

    private static JsonNode Cell(object c) => c switch
    {
        long l => JsonValue.Create(l),
        int i => JsonValue.Create(i),
        _ => JsonValue.Create(c.ToString() ?? ""),
    };

    private static string ExternalIp(JsonObject? spec, JsonObject? status, string type)
    {
        var externalIps = spec.Arr("externalIPs")?.Select(n => n?.ToString() ?? "").ToList() ?? [];
        switch (type)
        {
            case "ClusterIP" or "NodePort":
                return externalIps.Count > 0 ? string.Join(',', externalIps) : "<none>";
            case "LoadBalancer":
            {
                var ingress = status.Obj("loadBalancer").Arr("ingress")?.OfType<JsonObject>()
                    .Select(i => i.Str("ip") is { Length: > 0 } ip ? ip : i.Str("hostname") ?? "").Where(s => s.Length > 0).ToList() ?? [];
                var lb = string.Join(',', ingress);
                if (lb.Length > 16) lb = lb[..13] + "...";
                var results = new List<string>();
                if (lb.Length > 0) results.AddRange(lb.Split(','));
                results.AddRange(externalIps);
                return results.Count > 0 ? string.Join(',', results) : "<pending>";
            }
            case "ExternalName":
                return spec.Str("externalName") ?? "";
            default:
                return "<unknown>";
        }
    }

    private static string Ports(JsonObject? spec)
    {
        var ports = spec.Arr("ports")?.OfType<JsonObject>().ToList() ?? [];
        if (ports.Count == 0) return "<none>";
        return string.Join(',', ports.Select(p =>
        {
            var protocol = p.Str("protocol") ?? "TCP";
            return (p.Long("nodePort") ?? 0) != 0 ? $"{p.Long("port")}:{p.Long("nodePort")}/{protocol}" : $"{p.Long("port")}/{protocol}";
        }));
    }

    private static string LabelsText(JsonObject? map)
    {
        var d = Json.StringMap(map);
        return d.Count == 0 ? "<none>" : string.Join(',', d.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"));
    }

    private static string Selector(JsonObject? selector)
    {
        var parts = Json.StringMap(selector.Obj("matchLabels")).OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}").ToList();
        return parts.Count == 0 ? "<none>" : string.Join(',', parts);
    }

    private static string Truncate(List<string> items)
    {
        const int max = 3;
        return items.Count <= max ? string.Join(',', items) : string.Join(',', items.Take(max)) + $" + {items.Count - max} more...";
    }

    public static string Age(string? timestamp, DateTimeOffset now)
    {
        if (Json.ParseTime(timestamp) is not { } t) return "<unknown>";
        return HumanDuration(now - t);
    }

    /// <summary>The API server's human-readable duration: 5s, 2m30s, 17m, 3h20m, 2d4h, 3y...</summary>
    public static string HumanDuration(TimeSpan d)
    {
        var seconds = (long)Math.Floor(d.TotalSeconds);
        if (seconds < -1) return "<invalid>";
        if (seconds < 0) return "0s";
        if (seconds < 60 * 2) return $"{seconds}s";
        var minutes = (long)d.TotalMinutes;
        if (minutes < 10)
        {
            var s = seconds % 60;
            return s == 0 ? $"{minutes}m" : $"{minutes}m{s}s";
        }
        if (minutes < 60 * 3) return $"{minutes}m";
        var hours = (long)d.TotalHours;
        if (hours < 8)
        {
            var m = minutes % 60;
            return m == 0 ? $"{hours}h" : $"{hours}h{m}m";
        }
        if (hours < 48) return $"{hours}h";
        if (hours < 24 * 8)
        {
            var h = hours % 24;
            return h == 0 ? $"{hours / 24}d" : $"{hours / 24}d{h}h";
        }
        if (hours < 24 * 365 * 2) return $"{hours / 24}d";
        if (hours < 24 * 365 * 8)
        {
            var dy = hours / 24 % 365;
            return dy == 0 ? $"{hours / 24 / 365}y" : $"{hours / 24 / 365}y{dy}d";
        }
        return $"{hours / 24 / 365}y";
    }
}
