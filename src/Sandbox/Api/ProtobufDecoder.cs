using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// Decodes request bodies in the API server's protobuf encoding (application/vnd.kubernetes.protobuf: the
/// "k8s\0" magic, then a runtime.Unknown wrapping TypeMeta and the object) into the JSON the same object has.
/// kubectl's typed clients send creates this way (`kubectl create deployment|namespace|configmap|secret|service|
/// serviceaccount|role|clusterrole|rolebinding|clusterrolebinding`, `kubectl run`). Only the messages those commands produce are described; unknown fields are skipped, and
/// zero values are dropped as Go's JSON encoding omits them.
/// </summary>
internal static class ProtobufDecoder
{
    private enum K { Str, Int, Bool, Msg, MapStr, MapBytes, MapQuantity, Time, IntOrString, Quantity, Bytes }

    private sealed record F(string Name, K Kind, string? Msg = null, bool Repeated = false, bool KeepZero = false);

    private static readonly Dictionary<string, Dictionary<int, F>> Schemas = new()
    {
        ["Unknown"] = new() { [1] = new("typeMeta", K.Msg, "TypeMeta"), [2] = new("raw", K.Bytes), [3] = new("contentEncoding", K.Str), [4] = new("contentType", K.Str) },
        ["TypeMeta"] = new() { [1] = new("apiVersion", K.Str), [2] = new("kind", K.Str) },
        ["ObjectMeta"] = new()
        {
            [1] = new("name", K.Str), [2] = new("generateName", K.Str), [3] = new("namespace", K.Str), [5] = new("uid", K.Str),
            [6] = new("resourceVersion", K.Str), [7] = new("generation", K.Int), [11] = new("labels", K.MapStr), [12] = new("annotations", K.MapStr),
            [13] = new("ownerReferences", K.Msg, "OwnerReference", true), [14] = new("finalizers", K.Str, Repeated: true),
        },
        ["OwnerReference"] = new()
        {
            [1] = new("kind", K.Str), [3] = new("name", K.Str), [4] = new("uid", K.Str), [5] = new("apiVersion", K.Str),
            [6] = new("controller", K.Bool), [7] = new("blockOwnerDeletion", K.Bool),
        },
        ["LabelSelector"] = new() { [1] = new("matchLabels", K.MapStr), [2] = new("matchExpressions", K.Msg, "LabelSelectorRequirement", true) },
        ["LabelSelectorRequirement"] = new() { [1] = new("key", K.Str), [2] = new("operator", K.Str), [3] = new("values", K.Str, Repeated: true) },
        ["Namespace"] = new() { [1] = new("metadata", K.Msg, "ObjectMeta"), [2] = new("spec", K.Msg, "NamespaceSpec"), [3] = new("status", K.Msg, "Empty") },
        ["NamespaceSpec"] = new() { [1] = new("finalizers", K.Str, Repeated: true) },
        ["ConfigMap"] = new() { [1] = new("metadata", K.Msg, "ObjectMeta"), [2] = new("data", K.MapStr), [3] = new("binaryData", K.MapBytes), [4] = new("immutable", K.Bool) },
        ["Secret"] = new()
        {
            [1] = new("metadata", K.Msg, "ObjectMeta"), [2] = new("data", K.MapBytes), [3] = new("type", K.Str), [4] = new("stringData", K.MapStr), [5] = new("immutable", K.Bool),
        },
        ["Service"] = new() { [1] = new("metadata", K.Msg, "ObjectMeta"), [2] = new("spec", K.Msg, "ServiceSpec"), [3] = new("status", K.Msg, "Empty") },
        ["ServiceSpec"] = new()
        {
            [1] = new("ports", K.Msg, "ServicePort", true), [2] = new("selector", K.MapStr), [3] = new("clusterIP", K.Str), [4] = new("type", K.Str),
            [5] = new("externalIPs", K.Str, Repeated: true), [7] = new("sessionAffinity", K.Str), [8] = new("loadBalancerIP", K.Str),
            [9] = new("loadBalancerSourceRanges", K.Str, Repeated: true), [10] = new("externalName", K.Str), [11] = new("externalTrafficPolicy", K.Str),
            [12] = new("healthCheckNodePort", K.Int), [13] = new("publishNotReadyAddresses", K.Bool), [17] = new("ipFamilyPolicy", K.Str),
            [18] = new("clusterIPs", K.Str, Repeated: true), [19] = new("ipFamilies", K.Str, Repeated: true),
            [20] = new("allocateLoadBalancerNodePorts", K.Bool, KeepZero: true), [21] = new("loadBalancerClass", K.Str),
            [22] = new("internalTrafficPolicy", K.Str), [23] = new("trafficDistribution", K.Str),
        },
        ["ServicePort"] = new()
        {
            [1] = new("name", K.Str), [2] = new("protocol", K.Str), [3] = new("port", K.Int), [4] = new("targetPort", K.IntOrString),
            [5] = new("nodePort", K.Int), [6] = new("appProtocol", K.Str),
        },
        ["Deployment"] = new() { [1] = new("metadata", K.Msg, "ObjectMeta"), [2] = new("spec", K.Msg, "DeploymentSpec"), [3] = new("status", K.Msg, "Empty") },
        ["DeploymentSpec"] = new()
        {
            [1] = new("replicas", K.Int, KeepZero: true), [2] = new("selector", K.Msg, "LabelSelector"), [3] = new("template", K.Msg, "PodTemplateSpec"),
            [4] = new("strategy", K.Msg, "DeploymentStrategy"), [5] = new("minReadySeconds", K.Int), [6] = new("revisionHistoryLimit", K.Int, KeepZero: true),
            [7] = new("paused", K.Bool), [9] = new("progressDeadlineSeconds", K.Int, KeepZero: true),
        },
        ["DeploymentStrategy"] = new() { [1] = new("type", K.Str), [2] = new("rollingUpdate", K.Msg, "RollingUpdateDeployment") },
        ["RollingUpdateDeployment"] = new() { [1] = new("maxUnavailable", K.IntOrString), [2] = new("maxSurge", K.IntOrString) },
        ["Pod"] = new() { [1] = new("metadata", K.Msg, "ObjectMeta"), [2] = new("spec", K.Msg, "PodSpec"), [3] = new("status", K.Msg, "Empty") },
        ["PodTemplateSpec"] = new() { [1] = new("metadata", K.Msg, "ObjectMeta"), [2] = new("spec", K.Msg, "PodSpec") },
        ["PodSpec"] = new()
        {
            [2] = new("containers", K.Msg, "Container", true), [20] = new("initContainers", K.Msg, "Container", true), [3] = new("restartPolicy", K.Str),
            [4] = new("terminationGracePeriodSeconds", K.Int, KeepZero: true), [5] = new("activeDeadlineSeconds", K.Int), [6] = new("dnsPolicy", K.Str),
            [7] = new("nodeSelector", K.MapStr), [8] = new("serviceAccountName", K.Str), [9] = new("serviceAccount", K.Str), [10] = new("nodeName", K.Str),
            [11] = new("hostNetwork", K.Bool), [16] = new("hostname", K.Str), [17] = new("subdomain", K.Str), [19] = new("schedulerName", K.Str),
            [24] = new("priorityClassName", K.Str),
        },
        ["Container"] = new()
        {
            [1] = new("name", K.Str), [2] = new("image", K.Str), [3] = new("command", K.Str, Repeated: true), [4] = new("args", K.Str, Repeated: true),
            [5] = new("workingDir", K.Str), [6] = new("ports", K.Msg, "ContainerPort", true), [7] = new("env", K.Msg, "EnvVar", true),
            [8] = new("resources", K.Msg, "ResourceRequirements"), [13] = new("terminationMessagePath", K.Str), [14] = new("imagePullPolicy", K.Str),
            [16] = new("stdin", K.Bool), [17] = new("stdinOnce", K.Bool), [18] = new("tty", K.Bool), [20] = new("terminationMessagePolicy", K.Str),
        },
        ["ContainerPort"] = new()
        {
            [1] = new("name", K.Str), [2] = new("hostPort", K.Int), [3] = new("containerPort", K.Int), [4] = new("protocol", K.Str), [5] = new("hostIP", K.Str),
        },
        ["EnvVar"] = new() { [1] = new("name", K.Str), [2] = new("value", K.Str) },
        ["ResourceRequirements"] = new() { [1] = new("limits", K.MapQuantity), [2] = new("requests", K.MapQuantity) },
        ["ServiceAccount"] = new()
        {
            [1] = new("metadata", K.Msg, "ObjectMeta"), [2] = new("secrets", K.Msg, "ObjectReference", true),
            [3] = new("imagePullSecrets", K.Msg, "LocalObjectReference", true), [4] = new("automountServiceAccountToken", K.Bool, KeepZero: true),
        },
        ["ObjectReference"] = new()
        {
            [1] = new("kind", K.Str), [2] = new("namespace", K.Str), [3] = new("name", K.Str), [4] = new("uid", K.Str),
            [5] = new("apiVersion", K.Str), [6] = new("resourceVersion", K.Str), [7] = new("fieldPath", K.Str),
        },
        ["LocalObjectReference"] = new() { [1] = new("name", K.Str) },
        ["ClusterRole"] = new() { [1] = new("metadata", K.Msg, "ObjectMeta"), [2] = new("rules", K.Msg, "PolicyRule", true), [3] = new("aggregationRule", K.Msg, "AggregationRule") },
        ["Role"] = new() { [1] = new("metadata", K.Msg, "ObjectMeta"), [2] = new("rules", K.Msg, "PolicyRule", true) },
        ["PolicyRule"] = new()
        {
            [1] = new("verbs", K.Str, Repeated: true), [2] = new("apiGroups", K.Str, Repeated: true), [3] = new("resources", K.Str, Repeated: true),
            [4] = new("resourceNames", K.Str, Repeated: true), [5] = new("nonResourceURLs", K.Str, Repeated: true),
        },
        ["AggregationRule"] = new() { [1] = new("clusterRoleSelectors", K.Msg, "LabelSelector", true) },
        ["ClusterRoleBinding"] = new() { [1] = new("metadata", K.Msg, "ObjectMeta"), [2] = new("subjects", K.Msg, "Subject", true), [3] = new("roleRef", K.Msg, "RoleRef") },
        ["RoleBinding"] = new() { [1] = new("metadata", K.Msg, "ObjectMeta"), [2] = new("subjects", K.Msg, "Subject", true), [3] = new("roleRef", K.Msg, "RoleRef") },
        ["Subject"] = new() { [1] = new("kind", K.Str), [2] = new("apiGroup", K.Str), [3] = new("name", K.Str), [4] = new("namespace", K.Str) },
        ["RoleRef"] = new() { [1] = new("apiGroup", K.Str, KeepZero: true), [2] = new("kind", K.Str), [3] = new("name", K.Str) },
        ["Empty"] = new(),
    };

    private static readonly byte[] Magic = [(byte)'k', (byte)'8', (byte)'s', 0];

    public static JsonObject Decode(ReadOnlySpan<byte> body, ResourceType rt)
    {
        if (body.Length < 4 || !body[..4].SequenceEqual(Magic))
            throw ApiException.BadRequest("protobuf body without the k8s magic prefix");
        var unknown = DecodeMessage(body[4..], "Unknown", out var raw);
        var kind = unknown.Obj("typeMeta").Str("kind") ?? rt.Kind;
        var apiVersion = unknown.Obj("typeMeta").Str("apiVersion") ?? rt.GroupVersion;
        if (!Schemas.ContainsKey(kind) || kind is "Unknown" or "TypeMeta" or "Empty")
            throw ApiException.UnsupportedMediaType($"this emulator cannot decode a protobuf {kind}: send application/json (kubectl apply/create -f)");
        var obj = DecodeMessage(raw, kind, out _);
        var result = new JsonObject { ["kind"] = kind, ["apiVersion"] = apiVersion };
        foreach (var (k, v) in obj) result[k] = v?.DeepClone();
        return result;
    }

    private static JsonObject DecodeMessage(ReadOnlySpan<byte> data, string schema, out ReadOnlySpan<byte> raw)
    {
        raw = default;
        var fields = Schemas[schema];
        var result = new JsonObject();
        var pos = 0;
        while (pos < data.Length)
        {
            var tag = ReadVarint(data, ref pos);
            var number = (int)(tag >> 3);
            var wire = (int)(tag & 7);
            ReadOnlySpan<byte> bytes = default;
            ulong scalar = 0;
            switch (wire)
            {
                case 0: scalar = ReadVarint(data, ref pos); break;
                case 1: pos += 8; break;
                case 5: pos += 4; break;
                case 2:
                    var len = (int)ReadVarint(data, ref pos);
                    if (len < 0 || pos + len > data.Length) throw ApiException.BadRequest("truncated protobuf body");
                    bytes = data.Slice(pos, len);
                    pos += len;
                    break;
                default: throw ApiException.BadRequest($"unsupported protobuf wire type {wire}");
            }
            if (!fields.TryGetValue(number, out var f)) continue;
            if (schema == "Unknown" && number == 2) { raw = bytes; continue; }
            JsonNode? value = f.Kind switch
            {
                K.Str => System.Text.Encoding.UTF8.GetString(bytes),
                K.Bytes => Convert.ToBase64String(bytes),
                K.Int => (long)scalar,
                K.Bool => scalar != 0,
                K.Msg => DecodeMessage(bytes, f.Msg!, out _),
                K.Time => Time(bytes),
                K.IntOrString => IntOrString(bytes),
                K.Quantity => Quantity(bytes),
                _ => null,
            };
            if (f.Kind is K.MapStr or K.MapBytes or K.MapQuantity)
            {
                var (key, entry) = MapEntry(bytes, f.Kind);
                result.Ensure(f.Name)[key] = entry;
                continue;
            }
            if (f.Repeated)
            {
                if (result[f.Name] is not JsonArray list) result[f.Name] = list = new JsonArray();
                list.Add(value);
                continue;
            }
            if (IsZero(value) && !f.KeepZero) continue;
            result[f.Name] = value;
        }
        return result;
    }

    private static bool IsZero(JsonNode? v) => v switch
    {
        null => true,
        JsonValue jv when Json.IsString(jv) => jv.GetValue<string>().Length == 0,
        JsonValue jv when Json.IsNumber(jv) => Json.AsLong(jv) == 0,
        JsonValue jv when jv.GetValueKind() == System.Text.Json.JsonValueKind.False => true,
        _ => false,
    };

    private static (string Key, JsonNode? Value) MapEntry(ReadOnlySpan<byte> data, K kind)
    {
        var pos = 0;
        string key = "";
        JsonNode? value = kind == K.MapBytes ? "" : kind == K.MapQuantity ? "0" : "";
        while (pos < data.Length)
        {
            var tag = ReadVarint(data, ref pos);
            if ((tag & 7) != 2) throw ApiException.BadRequest("unexpected protobuf map entry");
            var len = (int)ReadVarint(data, ref pos);
            var bytes = data.Slice(pos, len);
            pos += len;
            if (tag >> 3 == 1) key = System.Text.Encoding.UTF8.GetString(bytes);
            else value = kind switch
            {
                K.MapBytes => Convert.ToBase64String(bytes),
                K.MapQuantity => Quantity(bytes),
                _ => System.Text.Encoding.UTF8.GetString(bytes),
            };
        }
        return (key, value);
    }

    private static JsonNode? Time(ReadOnlySpan<byte> data)
    {
        var pos = 0;
        long seconds = 0;
        while (pos < data.Length)
        {
            var tag = ReadVarint(data, ref pos);
            var v = ReadVarint(data, ref pos);
            if (tag >> 3 == 1) seconds = (long)v;
        }
        return seconds == 0 ? null : Json.Timestamp(DateTimeOffset.FromUnixTimeSeconds(seconds));
    }

    private static JsonNode? IntOrString(ReadOnlySpan<byte> data)
    {
        var pos = 0;
        long type = 0, intVal = 0;
        var strVal = "";
        while (pos < data.Length)
        {
            var tag = ReadVarint(data, ref pos);
            if ((tag & 7) == 2)
            {
                var len = (int)ReadVarint(data, ref pos);
                if (tag >> 3 == 3) strVal = System.Text.Encoding.UTF8.GetString(data.Slice(pos, len));
                pos += len;
            }
            else
            {
                var v = (long)ReadVarint(data, ref pos);
                if (tag >> 3 == 1) type = v;
                else if (tag >> 3 == 2) intVal = (int)v;
            }
        }
        return type == 1 ? strVal : intVal;
    }

    private static JsonNode Quantity(ReadOnlySpan<byte> data)
    {
        var pos = 0;
        var text = "0";
        while (pos < data.Length)
        {
            var tag = ReadVarint(data, ref pos);
            var len = (int)ReadVarint(data, ref pos);
            if (tag >> 3 == 1) text = System.Text.Encoding.UTF8.GetString(data.Slice(pos, len));
            pos += len;
        }
        return text;
    }

    private static ulong ReadVarint(ReadOnlySpan<byte> data, ref int pos)
    {
        ulong result = 0;
        for (var shift = 0; shift < 70; shift += 7)
        {
            if (pos >= data.Length) throw ApiException.BadRequest("truncated protobuf varint");
            var b = data[pos++];
            result |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0) return result;
        }
        throw ApiException.BadRequest("malformed protobuf varint");
    }
}
