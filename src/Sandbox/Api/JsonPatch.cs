using System.Globalization;
using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>JSON patch (RFC 6902, application/json-patch+json): add, remove, replace, move, copy, test.</summary>
internal static class JsonPatch
{
    public static JsonObject Apply(JsonObject document, JsonNode? patch)
    {
        if (patch is not JsonArray ops)
            throw ApiException.BadRequest("json: cannot unmarshal object into Go value of type jsonpatch.Patch");
        JsonNode root = document.DeepClone();
        foreach (var opNode in ops)
        {
            if (opNode is not JsonObject op) throw ApiException.BadRequest("invalid JSON patch operation");
            var kind = op.Str("op") ?? throw ApiException.UnprocessablePatch("Unexpected kind: missing op");
            var path = op.Str("path") ?? throw ApiException.UnprocessablePatch($"{kind} operation: missing path");
            switch (kind)
            {
                case "add":
                    root = Add(root, path, Value(op));
                    break;
                case "remove":
                    root = Remove(root, path, out _);
                    break;
                case "replace":
                    Get(root, path, "replace");
                    root = Remove(root, path, out _);
                    root = Add(root, path, Value(op));
                    break;
                case "move":
                {
                    var from = op.Str("from") ?? throw ApiException.UnprocessablePatch("move operation: missing from");
                    root = Remove(root, from, out var moved);
                    root = Add(root, path, moved);
                    break;
                }
                case "copy":
                {
                    var from = op.Str("from") ?? throw ApiException.UnprocessablePatch("copy operation: missing from");
                    root = Add(root, path, Get(root, from, "copy")?.DeepClone());
                    break;
                }
                case "test":
                    if (!JsonNode.DeepEquals(Get(root, path, "test"), Value(op)))
                        throw ApiException.UnprocessablePatch($"testing value {path} failed: test failed");
                    break;
                default:
                    throw ApiException.UnprocessablePatch($"Unexpected kind: {kind}");
            }
        }
        return root as JsonObject ?? throw ApiException.UnprocessablePatch("patch replaced the whole object with a non-object");
    }

    private static JsonNode? Value(JsonObject op) =>
        op.TryGetPropertyValue("value", out var v) ? v?.DeepClone() : throw ApiException.UnprocessablePatch("operation: missing value");

    private static List<string> Tokens(string pointer)
    {
        if (pointer.Length == 0) return [];
        if (pointer[0] != '/') throw ApiException.UnprocessablePatch($"invalid JSON pointer: {pointer}");
        return pointer[1..].Split('/').Select(t => t.Replace("~1", "/").Replace("~0", "~")).ToList();
    }

    private static JsonNode? Get(JsonNode root, string pointer, string op)
    {
        JsonNode? cur = root;
        foreach (var t in Tokens(pointer))
        {
            cur = cur switch
            {
                JsonObject o when o.TryGetPropertyValue(t, out var v) => v,
                JsonArray a when int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var i) && i < a.Count => a[i],
                _ => throw ApiException.UnprocessablePatch($"{op} operation does not apply: doc is missing path: \"{pointer}\": missing value"),
            };
        }
        return cur;
    }

    private static (JsonNode Parent, string Last) Parent(JsonNode root, string pointer, string op)
    {
        var tokens = Tokens(pointer);
        if (tokens.Count == 0) throw ApiException.UnprocessablePatch($"{op} operation on the document root is not supported");
        var parentPointer = "/" + string.Join('/', tokens.Take(tokens.Count - 1).Select(t => t.Replace("~", "~0").Replace("/", "~1")));
        var parent = tokens.Count == 1 ? root : Get(root, parentPointer, op);
        return (parent ?? throw ApiException.UnprocessablePatch($"{op} operation does not apply: doc is missing path: \"{pointer}\""), tokens[^1]);
    }

    private static JsonNode Add(JsonNode root, string pointer, JsonNode? value)
    {
        if (pointer.Length == 0) return value ?? throw ApiException.UnprocessablePatch("cannot replace the document with null");
        var (parent, last) = Parent(root, pointer, "add");
        switch (parent)
        {
            case JsonObject o:
                o[last] = value;
                break;
            case JsonArray a when last == "-":
                a.Add(value);
                break;
            case JsonArray a when int.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out var i) && i <= a.Count:
                a.Insert(i, value);
                break;
            default:
                throw ApiException.UnprocessablePatch($"add operation does not apply: doc is missing path: \"{pointer}\"");
        }
        return root;
    }

    private static JsonNode Remove(JsonNode root, string pointer, out JsonNode? removed)
    {
        var (parent, last) = Parent(root, pointer, "remove");
        switch (parent)
        {
            case JsonObject o when o.TryGetPropertyValue(last, out removed):
                o.Remove(last);
                return root;
            case JsonArray a when int.TryParse(last, NumberStyles.None, CultureInfo.InvariantCulture, out var i) && i < a.Count:
                removed = a[i];
                a.RemoveAt(i);
                return root;
            default:
                throw ApiException.UnprocessablePatch($"remove operation does not apply: doc is missing path: \"{pointer}\": missing value");
        }
    }
}
