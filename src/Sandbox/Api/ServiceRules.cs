using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// What kube-apiserver does to a core/v1 Service on write: defaulting (type, protocol, targetPort, traffic
/// policies, IP families, allocateLoadBalancerNodePorts), ClusterIP allocation from 10.96.0.0/12, nodePort
/// allocation from 30000-32767 (and healthCheckNodePort for LoadBalancer + Local), keeping allocated values on
/// updates that omit them, dropping type-dependent fields when the type changes, the status subresource split,
/// and validation with the server's field paths and messages.
/// </summary>
internal static class ServiceRules
{
    public const int NodePortMin = 30000;
    public const int NodePortMax = 32767;
    private const uint ServiceCidrBase = (10u << 24) | (96u << 16); // 10.96.0.0
    private const uint ServiceCidrSize = 1u << 20;                     // /12
    public const string KubernetesServiceIp = "10.96.0.1";

    private static bool NeedsNodePorts(string type, JsonObject spec) =>
        type == "NodePort" || (type == "LoadBalancer" && spec.Bool("allocateLoadBalancerNodePorts") != false);

    /// <summary>
    /// Prepares a Service for storage. <paramref name="old"/> is the stored object for updates (null on create);
    /// <paramref name="others"/> are the other stored Services (for allocation). Mutates <paramref name="svc"/>.
    /// </summary>
    public static void Prepare(JsonObject svc, JsonObject? old, bool statusWrite)
    {
        if (old is not null && statusWrite)
        {
            svc["spec"] = old.Obj("spec")?.DeepClone() ?? new JsonObject();
            return;
        }
        if (old is null) svc["status"] = new JsonObject { ["loadBalancer"] = new JsonObject() };
        else svc["status"] = old.Obj("status")?.DeepClone() ?? new JsonObject { ["loadBalancer"] = new JsonObject() };

        var spec = svc.Ensure("spec");
        var type = spec.Str("type");
        if (string.IsNullOrEmpty(type)) spec["type"] = type = "ClusterIP";
        var oldSpec = old?.Obj("spec");
        var oldType = oldSpec.Str("type");

        if (old is not null) KeepAllocated(spec, oldSpec!, type);
        if (old is not null && oldType != type) DropTypeDependent(svc, spec, oldSpec!, type, oldType);

        if (string.IsNullOrEmpty(spec.Str("sessionAffinity"))) spec["sessionAffinity"] = "None";
        if (spec.Str("sessionAffinity") == "None") spec.Remove("sessionAffinityConfig");
        if (spec.Arr("ports") is { } ports)
        {
            foreach (var p in ports.OfType<JsonObject>())
            {
                if (string.IsNullOrEmpty(p.Str("protocol"))) p["protocol"] = "TCP";
                var tp = p["targetPort"];
                var missing = tp is null || (Json.IsNumber(tp) && p.Long("targetPort") == 0) || (Json.IsString(tp) && p.Str("targetPort") == "");
                if (missing && p.Long("port") is { } port) p["targetPort"] = port;
            }
        }
        var externallyAccessible = type is "LoadBalancer" or "NodePort" || (type == "ClusterIP" && spec.Arr("externalIPs") is { Count: > 0 });
        if (externallyAccessible && string.IsNullOrEmpty(spec.Str("externalTrafficPolicy"))) spec["externalTrafficPolicy"] = "Cluster";
        if (type is "ClusterIP" or "NodePort" or "LoadBalancer" && string.IsNullOrEmpty(spec.Str("internalTrafficPolicy"))) spec["internalTrafficPolicy"] = "Cluster";
        if (type == "LoadBalancer" && spec.Bool("allocateLoadBalancerNodePorts") is null) spec["allocateLoadBalancerNodePorts"] = true;

        if (type != "ExternalName")
        {
            if (string.IsNullOrEmpty(spec.Str("ipFamilyPolicy"))) spec["ipFamilyPolicy"] = "SingleStack";
            if (spec.Arr("ipFamilies") is not { Count: > 0 }) spec["ipFamilies"] = new JsonArray("IPv4");
        }
        else
        {
            spec.Remove("clusterIP");
            spec.Remove("clusterIPs");
        }
    }

    /// <summary>Allocates ClusterIP, nodePorts and healthCheckNodePort where needed. Run after validation of the
    /// user's values, under the Service write lock.</summary>
    public static List<FieldCause> Allocate(JsonObject svc, JsonObject? old, IReadOnlyList<JsonObject> others, Random random)
    {
        var errors = new List<FieldCause>();
        var spec = svc.Ensure("spec");
        var type = spec.Str("type") ?? "ClusterIP";
        var usedIps = new HashSet<string>(StringComparer.Ordinal);
        var usedPorts = new HashSet<long>();
        foreach (var o in others)
        {
            var s = o.Obj("spec");
            if (s.Str("clusterIP") is { Length: > 0 } ip) usedIps.Add(ip);
            foreach (var p in s.Arr("ports")?.OfType<JsonObject>() ?? []) if (p.Long("nodePort") is { } np and > 0) usedPorts.Add(np);
            if (s.Long("healthCheckNodePort") is { } h and > 0) usedPorts.Add(h);
        }

        if (type != "ExternalName")
        {
            var ip = spec.Str("clusterIP");
            if (string.IsNullOrEmpty(ip))
            {
                do ip = FormatIp(ServiceCidrBase + 2 + (uint)random.Next((int)ServiceCidrSize - 3));
                while (usedIps.Contains(ip));
                spec["clusterIP"] = ip;
            }
            else if (ip != "None" && (old is null || old.Obj("spec").Str("clusterIP") != ip))
            {
                if (!TryParseIpv4(ip, out var value) || value < ServiceCidrBase || value >= ServiceCidrBase + ServiceCidrSize)
                    errors.Add(new("FieldValueInvalid", "spec.clusterIPs[0]", $"Invalid value: \"{ip}\": failed to allocate IP {ip}: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"));
                else if (usedIps.Contains(ip))
                    errors.Add(new("FieldValueInvalid", "spec.clusterIPs[0]", $"Invalid value: \"{ip}\": failed to allocate IP {ip}: provided IP is already allocated"));
            }
            spec["clusterIPs"] = new JsonArray(ip);
        }

        long NextPort()
        {
            long p;
            do p = NodePortMin + random.Next(NodePortMax - NodePortMin + 1);
            while (usedPorts.Contains(p));
            usedPorts.Add(p);
            return p;
        }
        var oldPorts = new HashSet<long>();
        foreach (var p in old?.Obj("spec").Arr("ports")?.OfType<JsonObject>() ?? []) if (p.Long("nodePort") is { } np and > 0) oldPorts.Add(np);
        if (old?.Obj("spec").Long("healthCheckNodePort") is { } oh and > 0) oldPorts.Add(oh);

        var ports = spec.Arr("ports")?.OfType<JsonObject>().ToList() ?? [];
        for (var i = 0; i < ports.Count; i++)
        {
            var np = ports[i].Long("nodePort") ?? 0;
            if (np == 0)
            {
                if (NeedsNodePorts(type, spec)) ports[i]["nodePort"] = NextPort();
                continue;
            }
            if (!oldPorts.Contains(np) && !usedPorts.Add(np))
                errors.Add(new("FieldValueInvalid", $"spec.ports[{i}].nodePort", $"Invalid value: {np}: provided port is already allocated"));
        }
        if (type == "LoadBalancer" && spec.Str("externalTrafficPolicy") == "Local")
        {
            if ((spec.Long("healthCheckNodePort") ?? 0) == 0) spec["healthCheckNodePort"] = NextPort();
        }
        else spec.Remove("healthCheckNodePort");
        return errors;
    }

    private static void KeepAllocated(JsonObject spec, JsonObject oldSpec, string type)
    {
        if (type != "ExternalName")
        {
            if (string.IsNullOrEmpty(spec.Str("clusterIP")) && oldSpec.Str("clusterIP") is { Length: > 0 } ip)
            {
                spec["clusterIP"] = ip;
                if (spec.Arr("clusterIPs") is not { Count: > 0 }) spec["clusterIPs"] = oldSpec.Arr("clusterIPs")?.DeepClone();
            }
        }
        if (!NeedsNodePorts(type, spec)) return;
        var oldPorts = oldSpec.Arr("ports")?.OfType<JsonObject>().ToList() ?? [];
        foreach (var p in spec.Arr("ports")?.OfType<JsonObject>() ?? [])
        {
            if ((p.Long("nodePort") ?? 0) != 0) continue;
            var match = oldPorts.FirstOrDefault(o => o.Long("port") == p.Long("port") && (o.Str("protocol") ?? "TCP") == (p.Str("protocol") ?? "TCP"));
            if (match?.Long("nodePort") is > 0 and var np) p["nodePort"] = np;
        }
        if ((spec.Long("healthCheckNodePort") ?? 0) == 0 && oldSpec.Long("healthCheckNodePort") is > 0 and var h)
            spec["healthCheckNodePort"] = h;
    }

    private static void DropTypeDependent(JsonObject svc, JsonObject spec, JsonObject oldSpec, string type, string? oldType)
    {
        if (!NeedsNodePorts(type, spec))
        {
            var oldPorts = oldSpec.Arr("ports")?.OfType<JsonObject>().ToList() ?? [];
            foreach (var p in spec.Arr("ports")?.OfType<JsonObject>() ?? [])
            {
                var same = oldPorts.Any(o => o.Long("nodePort") == p.Long("nodePort"));
                if (same) p.Remove("nodePort");
            }
        }
        if (type != "LoadBalancer")
        {
            if (oldType == "LoadBalancer") svc.Ensure("status")["loadBalancer"] = new JsonObject();
            if (JsonNode.DeepEquals(spec["allocateLoadBalancerNodePorts"], oldSpec["allocateLoadBalancerNodePorts"])) spec.Remove("allocateLoadBalancerNodePorts");
            if (spec.Str("loadBalancerClass") == oldSpec.Str("loadBalancerClass")) spec.Remove("loadBalancerClass");
            if (spec.Long("healthCheckNodePort") == oldSpec.Long("healthCheckNodePort")) spec.Remove("healthCheckNodePort");
        }
        if (type is not ("LoadBalancer" or "NodePort") && spec.Str("externalTrafficPolicy") == oldSpec.Str("externalTrafficPolicy")
            && spec.Arr("externalIPs") is not { Count: > 0 })
            spec.Remove("externalTrafficPolicy");
        if (type == "ExternalName" && spec.Str("clusterIP") == oldSpec.Str("clusterIP"))
        {
            spec.Remove("clusterIP");
            spec.Remove("clusterIPs");
            spec.Remove("ipFamilies");
            spec.Remove("ipFamilyPolicy");
        }
    }

    public static List<FieldCause> Validate(JsonObject svc, JsonObject? old)
    {
        var errors = new List<FieldCause>();
        void Add(string reason, string field, string message) => errors.Add(new(reason, field, message));

        var spec = svc.Obj("spec") ?? new JsonObject();
        var type = spec.Str("type") ?? "ClusterIP";
        if (type is not ("ClusterIP" or "NodePort" or "LoadBalancer" or "ExternalName"))
            Add("FieldValueNotSupported", "spec.type", $"Unsupported value: \"{type}\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"");
        var clusterIp = spec.Str("clusterIP") ?? "";
        var ports = spec.Arr("ports")?.ToList() ?? [];
        if (type != "ExternalName" && clusterIp != "None" && ports.Count == 0)
            Add("FieldValueRequired", "spec.ports", "Required value");
        if (type == "ExternalName" && string.IsNullOrEmpty(spec.Str("externalName")))
            Add("FieldValueRequired", "spec.externalName", "Required value");

        var names = new HashSet<string>(StringComparer.Ordinal);
        var portProtocols = new HashSet<(long, string)>();
        for (var i = 0; i < ports.Count; i++)
        {
            var f = $"spec.ports[{i}]";
            if (ports[i] is not JsonObject p) { Add("FieldValueInvalid", f, "Invalid value: must be an object"); continue; }
            var name = p.Str("name") ?? "";
            if (ports.Count > 1 && name.Length == 0) Add("FieldValueRequired", f + ".name", "Required value");
            else if (name.Length > 0)
            {
                if (!ObjectRules.IsDns1123Label(name))
                    Add("FieldValueInvalid", f + ".name", $"Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')");
                if (!names.Add(name)) Add("FieldValueDuplicate", f + ".name", $"Duplicate value: \"{name}\"");
            }
            var port = p.Long("port") ?? 0;
            if (port is < 1 or > 65535) Add("FieldValueInvalid", f + ".port", $"Invalid value: {port}: must be between 1 and 65535, inclusive");
            var protocol = p.Str("protocol") ?? "TCP";
            if (protocol is not ("TCP" or "UDP" or "SCTP"))
                Add("FieldValueNotSupported", f + ".protocol", $"Unsupported value: \"{protocol}\": supported values: \"SCTP\", \"TCP\", \"UDP\"");
            else if (!portProtocols.Add((port, protocol)))
                Add("FieldValueDuplicate", f, $"Duplicate value: {{\"port\":{port},\"protocol\":\"{protocol}\"}}");
            switch (p["targetPort"])
            {
                case JsonValue tv when Json.IsNumber(tv):
                    var tp = p.Long("targetPort") ?? 0;
                    if (tp is < 1 or > 65535) Add("FieldValueInvalid", f + ".targetPort", $"Invalid value: {tp}: must be between 1 and 65535, inclusive");
                    break;
                case JsonValue tv when Json.IsString(tv):
                    var tn = p.Str("targetPort")!;
                    if (!ObjectRules.IsPortName(tn))
                        Add("FieldValueInvalid", f + ".targetPort", $"Invalid value: \"{tn}\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
                    break;
            }
            var nodePort = p.Long("nodePort") ?? 0;
            if (nodePort != 0)
            {
                if (type is "ClusterIP" or "ExternalName")
                    Add("FieldValueForbidden", f + ".nodePort", $"Forbidden: may not be used when `type` is '{type}'");
                else if (nodePort is < NodePortMin or > NodePortMax)
                    Add("FieldValueInvalid", f + ".nodePort", $"Invalid value: {nodePort}: provided port is not in the valid range. The range of valid ports is {NodePortMin}-{NodePortMax}");
            }
        }

        if (clusterIp.Length > 0 && clusterIp != "None" && !IsIp(clusterIp))
            Add("FieldValueInvalid", "spec.clusterIPs[0]", $"Invalid value: \"{clusterIp}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)");
        if (old is not null && old.Obj("spec").Str("clusterIP") is { Length: > 0 } oldIp && clusterIp.Length > 0 && clusterIp != oldIp
            && type != "ExternalName" && old.Obj("spec").Str("type") != "ExternalName")
            Add("FieldValueInvalid", "spec.clusterIPs[0]", $"Invalid value: []string{{\"{clusterIp}\"}}: may not change once set");

        var lbIp = spec.Str("loadBalancerIP");
        if (!string.IsNullOrEmpty(lbIp))
        {
            if (type != "LoadBalancer") Add("FieldValueForbidden", "spec.loadBalancerIP", "Forbidden: may only be used when `type` is 'LoadBalancer'");
            else if (!IsIp(lbIp)) Add("FieldValueInvalid", "spec.loadBalancerIP", $"Invalid value: \"{lbIp}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)");
        }
        var etp = spec.Str("externalTrafficPolicy");
        if (!string.IsNullOrEmpty(etp))
        {
            if (etp is not ("Cluster" or "Local"))
                Add("FieldValueNotSupported", "spec.externalTrafficPolicy", $"Unsupported value: \"{etp}\": supported values: \"Cluster\", \"Local\"");
            else if (type is not ("LoadBalancer" or "NodePort") && spec.Arr("externalIPs") is not { Count: > 0 })
                Add("FieldValueInvalid", "spec.externalTrafficPolicy", $"Invalid value: \"{etp}\": may only be set for externally-accessible services");
        }
        var itp = spec.Str("internalTrafficPolicy");
        if (!string.IsNullOrEmpty(itp) && itp is not ("Cluster" or "Local"))
            Add("FieldValueNotSupported", "spec.internalTrafficPolicy", $"Unsupported value: \"{itp}\": supported values: \"Cluster\", \"Local\"");
        var affinity = spec.Str("sessionAffinity");
        if (!string.IsNullOrEmpty(affinity) && affinity is not ("None" or "ClientIP"))
            Add("FieldValueNotSupported", "spec.sessionAffinity", $"Unsupported value: \"{affinity}\": supported values: \"ClientIP\", \"None\"");
        if (spec.Long("healthCheckNodePort") is > 0 and var hc && (type != "LoadBalancer" || etp != "Local"))
            Add("FieldValueInvalid", "spec.healthCheckNodePort", $"Invalid value: {hc}: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'");
        foreach (var (ip, i) in (spec.Arr("externalIPs")?.Select(n => n?.ToString() ?? "") ?? []).Select((ip, i) => (ip, i)))
            if (!IsIp(ip)) Add("FieldValueInvalid", $"spec.externalIPs[{i}]", $"Invalid value: \"{ip}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)");
        ValidateStatus(svc, errors);
        return errors;
    }

    public static void ValidateStatus(JsonObject svc, List<FieldCause> errors)
    {
        var ingress = svc.Obj("status").Obj("loadBalancer").Arr("ingress");
        if (ingress is null) return;
        for (var i = 0; i < ingress.Count; i++)
        {
            if (ingress[i] is not JsonObject ing) continue;
            var f = $"status.loadBalancer.ingress[{i}]";
            if (ing.Str("ip") is { Length: > 0 } ip && !IsIp(ip))
                errors.Add(new("FieldValueInvalid", f + ".ip", $"Invalid value: \"{ip}\": must be a valid IP address"));
            if (ing.Str("hostname") is { Length: > 0 } host && (IsIp(host) || !ObjectRules.IsDns1123Subdomain(host)))
                errors.Add(new("FieldValueInvalid", f + ".hostname", $"Invalid value: \"{host}\": must be a DNS name, not an IP address"));
            if (ing.Str("ipMode") is { Length: > 0 } mode)
            {
                if (mode is not ("VIP" or "Proxy"))
                    errors.Add(new("FieldValueNotSupported", f + ".ipMode", $"Unsupported value: \"{mode}\": supported values: \"Proxy\", \"VIP\""));
                else if (string.IsNullOrEmpty(ing.Str("ip")))
                    errors.Add(new("FieldValueForbidden", f + ".ipMode", "Forbidden: must be specified when `ip` is set"));
            }
            var ports = ing.Arr("ports");
            for (var j = 0; j < (ports?.Count ?? 0); j++)
            {
                if (ports![j] is not JsonObject p) continue;
                var port = p.Long("port") ?? 0;
                if (port is < 1 or > 65535) errors.Add(new("FieldValueInvalid", $"{f}.ports[{j}].port", $"Invalid value: {port}: must be between 1 and 65535, inclusive"));
                var protocol = p.Str("protocol") ?? "";
                if (protocol is not ("TCP" or "UDP" or "SCTP"))
                    errors.Add(new("FieldValueNotSupported", $"{f}.ports[{j}].protocol", $"Unsupported value: \"{protocol}\": supported values: \"SCTP\", \"TCP\", \"UDP\""));
            }
        }
    }

    /// <summary>Strict IP syntax as Go's netip: dotted quad without leading zeros, or an IPv6 literal.</summary>
    public static bool IsIp(string s)
    {
        if (s.Contains(':')) return IPAddress.TryParse(s, out var a) && a.AddressFamily == AddressFamily.InterNetworkV6 && !s.Contains('%');
        return TryParseIpv4(s, out _);
    }

    public static bool TryParseIpv4(string s, out uint value)
    {
        value = 0;
        var parts = s.Split('.');
        if (parts.Length != 4) return false;
        foreach (var part in parts)
        {
            if (part.Length is 0 or > 3 || (part.Length > 1 && part[0] == '0') || !part.All(char.IsAsciiDigit)) return false;
            var b = uint.Parse(part, CultureInfo.InvariantCulture);
            if (b > 255) return false;
            value = (value << 8) | b;
        }
        return true;
    }

    private static string FormatIp(uint v) => $"{v >> 24}.{(v >> 16) & 255}.{(v >> 8) & 255}.{v & 255}";
}
