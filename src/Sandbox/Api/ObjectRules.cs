using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// Per-kind write rules other than Services (see <see cref="ServiceRules"/>): the defaulting the real API
/// server applies to Deployments, Pods and Namespaces, status-subresource splits, generation bumps, and the
/// validations clients rely on (Deployment selector, Lease duration, EndpointSlice type); metadata, Events,
/// DaemonSets, Secrets, ConfigMaps and RBAC objects have their own rule classes, dispatched from here.
/// </summary>
internal static class ObjectRules
{
    public static bool IsDns1123Label(string s) => MetadataRules.Dns1123LabelErrors(s).Count == 0;

    public static bool IsDns1123Subdomain(string s) => MetadataRules.Dns1123SubdomainErrors(s).Count == 0;

    /// <summary>IANA_SVC_NAME: at most 15 lowercase alphanumerics or '-', at least one letter, no "--".</summary>
    public static bool IsPortName(string s) =>
        s.Length is > 0 and <= 15 && s.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-')
        && s.Any(char.IsAsciiLetterLower) && !s.StartsWith('-') && !s.EndsWith('-') && !s.Contains("--");

    /// <summary>Kind-specific defaulting and status handling on create (old is null) or update.</summary>
    public static void Prepare(ResourceType rt, JsonObject obj, JsonObject? old, bool statusWrite)
    {
        switch (rt.Kind)
        {
            case "Deployment":
                PrepareDeployment(obj, old, statusWrite);
                break;
            case "Pod":
                if (old is null) PreparePodCreate(obj);
                else SplitStatus(obj, old, statusWrite);
                break;
            case "Node":
                if (old is not null) SplitStatus(obj, old, statusWrite);
                break;
            case "Namespace":
                PrepareNamespace(obj, old, statusWrite);
                break;
            case "DaemonSet":
                DaemonSetRules.Prepare(obj, old, statusWrite);
                break;
            case "Secret":
                SecretRules.PrepareSecret(obj);
                break;
            case "RoleBinding" or "ClusterRoleBinding":
                RbacRules.Prepare(rt.Kind, obj);
                break;
            case "EndpointSlice":
                if (old is null) obj.Meta()["generation"] = 1;
                else if (!JsonNode.DeepEquals(Without(obj, "metadata"), Without(old, "metadata")))
                    obj.Meta()["generation"] = (old.Obj("metadata").Long("generation") ?? 0) + 1;
                else obj.Meta()["generation"] = old.Obj("metadata").Long("generation") ?? 1;
                break;
        }
    }

    public static List<FieldCause> Validate(ResourceType rt, JsonObject obj, JsonObject? old)
    {
        var errors = MetadataRules.Validate(rt, obj, old);
        switch (rt.Kind)
        {
            case "Deployment":
            {
                var spec = obj.Obj("spec");
                var selector = spec.Obj("selector");
                var match = Json.StringMap(selector.Obj("matchLabels"));
                if (selector is null || (match.Count == 0 && selector.Arr("matchExpressions") is not { Count: > 0 }))
                    errors.Add(new("FieldValueRequired", "spec.selector", "Required value"));
                var labels = spec.Obj("template").Obj("metadata").Obj("labels");
                if (match.Count > 0 && !Selector.MapMatches(match, labels))
                    errors.Add(new("FieldValueInvalid", "spec.template.metadata.labels", $"Invalid value: {Json.ToText(labels)}: `selector` does not match template `labels`"));
                if (spec.Obj("template").Obj("spec").Arr("containers") is not { Count: > 0 })
                    errors.Add(new("FieldValueRequired", "spec.template.spec.containers", "Required value"));
                if (spec.Long("replicas") is < 0 and var r)
                    errors.Add(new("FieldValueInvalid", "spec.replicas", $"Invalid value: {r}: must be greater than or equal to 0"));
                if (old is not null && !JsonNode.DeepEquals(selector, old.Obj("spec").Obj("selector")))
                    errors.Add(new("FieldValueInvalid", "spec.selector", $"Invalid value: {Json.ToText(selector)}: field is immutable"));
                break;
            }
            case "Lease":
            {
                var spec = obj.Obj("spec");
                if (spec.Long("leaseDurationSeconds") is <= 0 and var d)
                    errors.Add(new("FieldValueInvalid", "spec.leaseDurationSeconds", $"Invalid value: {d}: must be greater than 0"));
                if (spec.Long("leaseTransitions") is < 0 and var t)
                    errors.Add(new("FieldValueInvalid", "spec.leaseTransitions", $"Invalid value: {t}: must be greater than or equal to 0"));
                break;
            }
            case "EndpointSlice":
            {
                var type = obj.Str("addressType");
                if (string.IsNullOrEmpty(type)) errors.Add(new("FieldValueRequired", "addressType", "Required value"));
                else if (type is not ("IPv4" or "IPv6" or "FQDN"))
                    errors.Add(new("FieldValueNotSupported", "addressType", $"Unsupported value: \"{type}\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""));
                else if (old is not null && old.Str("addressType") != type)
                    errors.Add(new("FieldValueInvalid", "addressType", $"Invalid value: \"{type}\": field is immutable"));
                var endpoints = obj.Arr("endpoints");
                for (var i = 0; i < (endpoints?.Count ?? 0); i++)
                {
                    var addrs = (endpoints![i] as JsonObject).Arr("addresses");
                    if (addrs is not { Count: > 0 }) errors.Add(new("FieldValueRequired", $"endpoints[{i}].addresses", "Required value"));
                    else if (type == "IPv4")
                        for (var j = 0; j < addrs.Count; j++)
                            if (!ServiceRules.TryParseIpv4(addrs[j]?.ToString() ?? "", out _))
                                errors.Add(new("FieldValueInvalid", $"endpoints[{i}].addresses[{j}]", $"Invalid value: \"{addrs[j]}\": must be a valid IPv4 address"));
                }
                break;
            }
            case "Event":
                errors.AddRange(EventRules.Validate(rt, obj, old));
                break;
            case "DaemonSet":
                errors.AddRange(DaemonSetRules.Validate(obj, old));
                break;
            case "Secret":
                errors.AddRange(SecretRules.ValidateSecret(obj, old));
                break;
            case "ConfigMap":
                errors.AddRange(SecretRules.ValidateConfigMap(obj, old));
                break;
            case "Role" or "ClusterRole" or "RoleBinding" or "ClusterRoleBinding":
                errors.AddRange(RbacRules.Validate(rt.Kind, obj, old));
                break;
        }
        return errors;
    }

    private static JsonObject Without(JsonObject o, string key)
    {
        var c = (JsonObject)o.DeepClone();
        c.Remove(key);
        return c;
    }

    private static void SplitStatus(JsonObject obj, JsonObject old, bool statusWrite)
    {
        if (statusWrite) obj["spec"] = old["spec"]?.DeepClone();
        else obj["status"] = old["status"]?.DeepClone();
    }

    private static void PrepareDeployment(JsonObject d, JsonObject? old, bool statusWrite)
    {
        if (old is not null && statusWrite)
        {
            d["spec"] = old["spec"]?.DeepClone();
            var labels = old.Obj("metadata")?["labels"]?.DeepClone();
            if (labels is null) d.Meta().Remove("labels"); else d.Meta()["labels"] = labels;
            return;
        }
        d["status"] = old is null ? new JsonObject() : old["status"]?.DeepClone() ?? new JsonObject();
        var spec = d.Ensure("spec");
        if (spec.Long("replicas") is null) spec["replicas"] = 1;
        if (spec.Long("revisionHistoryLimit") is null) spec["revisionHistoryLimit"] = 10;
        if (spec.Long("progressDeadlineSeconds") is null) spec["progressDeadlineSeconds"] = 600;
        var strategy = spec.Ensure("strategy");
        if (string.IsNullOrEmpty(strategy.Str("type"))) strategy["type"] = "RollingUpdate";
        if (strategy.Str("type") == "RollingUpdate")
        {
            var ru = strategy.Ensure("rollingUpdate");
            if (ru["maxUnavailable"] is null) ru["maxUnavailable"] = "25%";
            if (ru["maxSurge"] is null) ru["maxSurge"] = "25%";
        }
        var template = spec.Ensure("template");
        template.Ensure("metadata");
        DefaultPodSpec(template.Ensure("spec"));
        var generation = old?.Obj("metadata").Long("generation") ?? 0;
        if (old is null) d.Meta()["generation"] = 1;
        else d.Meta()["generation"] = JsonNode.DeepEquals(spec, old.Obj("spec")) ? generation : generation + 1;
    }

    private static void PreparePodCreate(JsonObject pod)
    {
        DefaultPodSpec(pod.Ensure("spec"));
        var status = pod.Obj("status");
        if (status is null || string.IsNullOrEmpty(status.Str("phase")))
            pod["status"] = new JsonObject { ["phase"] = "Pending", ["qosClass"] = "BestEffort" };
    }

    public static void DefaultPodSpec(JsonObject spec)
    {
        if (string.IsNullOrEmpty(spec.Str("restartPolicy"))) spec["restartPolicy"] = "Always";
        if (spec.Long("terminationGracePeriodSeconds") is null) spec["terminationGracePeriodSeconds"] = 30;
        if (string.IsNullOrEmpty(spec.Str("dnsPolicy"))) spec["dnsPolicy"] = "ClusterFirst";
        if (string.IsNullOrEmpty(spec.Str("schedulerName"))) spec["schedulerName"] = "default-scheduler";
        if (spec["securityContext"] is null) spec["securityContext"] = new JsonObject();
        foreach (var c in (spec.Arr("containers") ?? []).Concat(spec.Arr("initContainers") ?? []).OfType<JsonObject>())
        {
            if (string.IsNullOrEmpty(c.Str("terminationMessagePath"))) c["terminationMessagePath"] = "/dev/termination-log";
            if (string.IsNullOrEmpty(c.Str("terminationMessagePolicy"))) c["terminationMessagePolicy"] = "File";
            if (string.IsNullOrEmpty(c.Str("imagePullPolicy")))
            {
                var image = c.Str("image") ?? "";
                var lastSegment = image[(image.LastIndexOf('/') + 1)..];
                var tagged = lastSegment.Contains(':') && !image.EndsWith(":latest", StringComparison.Ordinal);
                c["imagePullPolicy"] = tagged || image.Contains('@') ? "IfNotPresent" : "Always";
            }
            if (c["resources"] is null) c["resources"] = new JsonObject();
            foreach (var p in c.Arr("ports")?.OfType<JsonObject>() ?? [])
            {
                if (string.IsNullOrEmpty(p.Str("protocol"))) p["protocol"] = "TCP";
                // On the host network a container port is a host port.
                if (spec.Bool("hostNetwork") == true && (p.Long("hostPort") ?? 0) == 0 && p.Long("containerPort") is { } port) p["hostPort"] = port;
            }
        }
    }

    private static void PrepareNamespace(JsonObject ns, JsonObject? old, bool statusWrite)
    {
        if (old is not null && statusWrite)
        {
            ns["spec"] = old["spec"]?.DeepClone();
            return;
        }
        ns.Meta().Ensure("labels")["kubernetes.io/metadata.name"] = ns.Name();
        if (old is null)
        {
            var spec = ns.Ensure("spec");
            if (spec.Arr("finalizers") is null) spec["finalizers"] = new JsonArray("kubernetes");
            ns["status"] = new JsonObject { ["phase"] = "Active" };
        }
        else ns["status"] = old["status"]?.DeepClone();
    }
}
