using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>JSON merge patch (RFC 7386, application/merge-patch+json): objects merge, null deletes, anything else replaces.</summary>
internal static class MergePatch
{
    public static JsonNode? Apply(JsonNode? target, JsonNode? patch)
    {
        if (patch is not JsonObject po) return patch?.DeepClone();
        var result = target is JsonObject to ? (JsonObject)to.DeepClone() : new JsonObject();
        foreach (var (key, value) in po)
        {
            if (value is null) result.Remove(key);
            else
            {
                result.TryGetPropertyValue(key, out var existing);
                result[key] = Apply(existing?.DeepClone(), value);
            }
        }
        return result;
    }
}
