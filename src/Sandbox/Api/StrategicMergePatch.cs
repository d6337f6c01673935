using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>How a list field merges under a strategic merge patch: by a merge key (ports by `port`, containers
/// by `name`), or, with no key, as a set of primitives. Lists without a strategy are replaced.</summary>
internal sealed record ListStrategy(string? MergeKey);

/// <summary>
/// Server side of strategic merge patch (application/strategic-merge-patch+json) for the built-in kinds the
/// emulator serves: maps merge recursively, null deletes, lists merge by their patchMergeKey, and the
/// directives kubectl sends are honoured: <c>$patch</c> (replace/delete/merge), <c>$retainKeys</c>,
/// <c>$setElementOrder/FIELD</c> and <c>$deleteFromPrimitiveList/FIELD</c>.
/// </summary>
internal static class StrategicMergePatch
{
    private static readonly Dictionary<string, ListStrategy> Metadata = new()
    {
        ["metadata.finalizers"] = new(null),
        ["metadata.ownerReferences"] = new("uid"),
    };

    private static Dictionary<string, ListStrategy> PodSpec(string prefix) => new()
    {
        [prefix + "containers"] = new("name"),
        [prefix + "initContainers"] = new("name"),
        [prefix + "ephemeralContainers"] = new("name"),
        [prefix + "containers.env"] = new("name"),
        [prefix + "initContainers.env"] = new("name"),
        [prefix + "containers.ports"] = new("containerPort"),
        [prefix + "initContainers.ports"] = new("containerPort"),
        [prefix + "containers.volumeMounts"] = new("mountPath"),
        [prefix + "initContainers.volumeMounts"] = new("mountPath"),
        [prefix + "containers.volumeDevices"] = new("devicePath"),
        [prefix + "containers.resizePolicy"] = new("resourceName"),
        [prefix + "volumes"] = new("name"),
        [prefix + "imagePullSecrets"] = new("name"),
        [prefix + "hostAliases"] = new("ip"),
        [prefix + "topologySpreadConstraints"] = new("topologyKey"),
        [prefix + "resourceClaims"] = new("name"),
        [prefix + "schedulingGates"] = new("name"),
    };

    private static Dictionary<string, ListStrategy> With(params Dictionary<string, ListStrategy>[] parts)
    {
        var d = new Dictionary<string, ListStrategy>(Metadata);
        foreach (var p in parts)
            foreach (var (k, v) in p) d[k] = v;
        return d;
    }

    private static readonly Dictionary<string, Dictionary<string, ListStrategy>> ByKind = new()
    {
        ["Service"] = With(new Dictionary<string, ListStrategy> { ["spec.ports"] = new("port") }),
        ["Pod"] = With(PodSpec("spec."), new Dictionary<string, ListStrategy> { ["status.conditions"] = new("type") }),
        ["Deployment"] = With(PodSpec("spec.template.spec."), new Dictionary<string, ListStrategy>
        {
            ["spec.template.metadata.finalizers"] = new(null),
            ["spec.template.metadata.ownerReferences"] = new("uid"),
            ["status.conditions"] = new("type"),
        }),
        ["DaemonSet"] = With(PodSpec("spec.template.spec."), new Dictionary<string, ListStrategy>
        {
            ["spec.template.metadata.finalizers"] = new(null),
            ["spec.template.metadata.ownerReferences"] = new("uid"),
            ["status.conditions"] = new("type"),
        }),
        ["ServiceAccount"] = With(new Dictionary<string, ListStrategy> { ["secrets"] = new("name") }),
        ["Node"] = With(new Dictionary<string, ListStrategy> { ["status.conditions"] = new("type"), ["status.addresses"] = new("type") }),
        ["Namespace"] = With(new Dictionary<string, ListStrategy> { ["status.conditions"] = new("type") }),
    };

    public static JsonObject Apply(string kind, JsonObject original, JsonNode? patch)
    {
        if (patch is not JsonObject po) throw ApiException.BadRequest("json: cannot unmarshal array into Go value of type map[string]interface {}");
        var schema = ByKind.TryGetValue(kind, out var s) ? s : Metadata;
        return MergeMap(original, po, "", schema) ?? new JsonObject();
    }

    private static JsonObject? MergeMap(JsonObject? original, JsonObject patch, string path, Dictionary<string, ListStrategy> schema)
    {
        if (patch.Str("$patch") is { } directive)
        {
            switch (directive)
            {
                case "replace":
                    return (JsonObject)Strip(patch)!;
                case "delete":
                    return null;
                case "merge":
                    break;
                default:
                    throw ApiException.BadRequest($"Unknown patch type: {directive} in map: {Json.ToText(patch)}");
            }
        }
        var result = original is null ? new JsonObject() : (JsonObject)original.DeepClone();
        foreach (var (key, value) in patch)
        {
            if (!key.StartsWith("$deleteFromPrimitiveList/", StringComparison.Ordinal)) continue;
            var field = key["$deleteFromPrimitiveList/".Length..];
            if (result.Arr(field) is { } list && value is JsonArray remove)
                for (var i = list.Count - 1; i >= 0; i--)
                    if (remove.Any(r => JsonNode.DeepEquals(r, list[i]))) list.RemoveAt(i);
        }
        foreach (var (key, value) in patch)
        {
            if (key.StartsWith('$')) continue;
            var childPath = path.Length == 0 ? key : path + "." + key;
            result.TryGetPropertyValue(key, out var existing);
            switch (value)
            {
                case null:
                    result.Remove(key);
                    break;
                case JsonObject childPatch:
                {
                    var merged = MergeMap(existing as JsonObject, childPatch, childPath, schema);
                    if (merged is null) result.Remove(key);
                    else result[key] = merged;
                    break;
                }
                case JsonArray listPatch:
                    result[key] = schema.TryGetValue(childPath, out var strategy)
                        ? MergeList(existing as JsonArray, listPatch, strategy, childPath, schema)
                        : Strip(listPatch);
                    break;
                default:
                    result[key] = value.DeepClone();
                    break;
            }
        }
        foreach (var (key, value) in patch)
        {
            if (!key.StartsWith("$setElementOrder/", StringComparison.Ordinal) || value is not JsonArray order) continue;
            var field = key["$setElementOrder/".Length..];
            var childPath = path.Length == 0 ? field : path + "." + field;
            if (result.Arr(field) is { } list && schema.TryGetValue(childPath, out var strategy))
                result[field] = Reorder(list, order, strategy.MergeKey);
        }
        if (patch.TryGetPropertyValue("$retainKeys", out var retainNode) && retainNode is JsonArray retain)
        {
            var keep = retain.Select(r => r?.GetValue<string>()).ToHashSet();
            foreach (var k in result.Select(kv => kv.Key).ToList())
                if (!keep.Contains(k)) result.Remove(k);
        }
        return result;
    }

    private static JsonArray MergeList(JsonArray? original, JsonArray patch, ListStrategy strategy, string path, Dictionary<string, ListStrategy> schema)
    {
        if (patch.Any(e => e is JsonObject o && o.Str("$patch") == "replace"))
            return Strip(new JsonArray(patch.Where(e => !(e is JsonObject o && o.Str("$patch") == "replace")).Select(e => e?.DeepClone()).ToArray()))!.AsArray();
        var result = original is null ? new JsonArray() : (JsonArray)original.DeepClone();
        foreach (var element in patch)
        {
            if (strategy.MergeKey is null || element is not JsonObject pe)
            {
                if (!result.Any(r => JsonNode.DeepEquals(r, element))) result.Add(element?.DeepClone());
                continue;
            }
            pe.TryGetPropertyValue(strategy.MergeKey, out var keyValue);
            var index = -1;
            for (var i = 0; i < result.Count; i++)
                if (result[i] is JsonObject ro && ro.TryGetPropertyValue(strategy.MergeKey, out var rk) && JsonNode.DeepEquals(rk, keyValue)) { index = i; break; }
            if (pe.Str("$patch") == "delete")
            {
                for (var i = result.Count - 1; i >= 0; i--)
                    if (result[i] is JsonObject ro && ro.TryGetPropertyValue(strategy.MergeKey, out var rk) && JsonNode.DeepEquals(rk, keyValue)) result.RemoveAt(i);
                continue;
            }
            if (index >= 0)
            {
                var merged = MergeMap(result[index] as JsonObject, pe, path, schema);
                if (merged is null) result.RemoveAt(index);
                else result[index] = merged;
            }
            else if (MergeMap(null, pe, path, schema) is { } added) result.Add(added);
        }
        return result;
    }

    /// <summary>Puts the elements named in a $setElementOrder list in that order; elements the patch did not
    /// mention keep their slots.</summary>
    private static JsonArray Reorder(JsonArray list, JsonArray order, string? mergeKey)
    {
        JsonNode? KeyOf(JsonNode? e) => mergeKey is null ? e : (e as JsonObject) is { } o && o.TryGetPropertyValue(mergeKey, out var k) ? k : null;
        int Rank(JsonNode? e)
        {
            var k = KeyOf(e);
            for (var i = 0; i < order.Count; i++)
                if (JsonNode.DeepEquals(KeyOf(order[i]), k)) return i;
            return -1;
        }
        var items = list.Select(e => e?.DeepClone()).ToList();
        var ranked = items.Select((e, i) => (e, rank: Rank(e), i)).ToList();
        var ordered = new Queue<JsonNode?>(ranked.Where(x => x.rank >= 0).OrderBy(x => x.rank).ThenBy(x => x.i).Select(x => x.e));
        var result = new JsonArray();
        foreach (var (e, rank, _) in ranked)
            result.Add(rank >= 0 ? ordered.Dequeue() : e);
        return result;
    }

    /// <summary>A copy of a patch fragment without patch directives, for content that replaces stored content.</summary>
    private static JsonNode? Strip(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject o:
            {
                var copy = new JsonObject();
                foreach (var (k, v) in o)
                    if (!k.StartsWith('$')) copy[k] = Strip(v);
                return copy;
            }
            case JsonArray a:
                return new JsonArray(a.Select(Strip).ToArray());
            default:
                return node?.DeepClone();
        }
    }
}
