using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>Small helpers over System.Text.Json nodes: typed reads of optional fields, Kubernetes time formats,
/// and the one serializer configuration every response uses.</summary>
internal static class Json
{
    public static readonly JsonSerializerOptions Options = new()
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        WriteIndented = false,
    };

    public static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = true };

    public static byte[] ToBytes(JsonNode node) => JsonSerializer.SerializeToUtf8Bytes(node, Options);

    public static string ToText(JsonNode? node) => node is null ? "null" : node.ToJsonString(Options);

    public static string Timestamp(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    public static string MicroTimestamp(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);

    public static DateTimeOffset? ParseTime(string? s) =>
        s is not null && DateTimeOffset.TryParse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var t) ? t : null;

    public static string? Str(this JsonObject? o, string key) =>
        o is not null && o.TryGetPropertyValue(key, out var v) && v is JsonValue jv && jv.GetValueKind() == JsonValueKind.String ? jv.GetValue<string>() : null;

    public static long? Long(this JsonObject? o, string key) =>
        o is not null && o.TryGetPropertyValue(key, out var v) && v is JsonValue jv ? AsLong(jv) : null;

    /// <summary>A JSON number as a long, whatever CLR type backs the node (parsed element, int, long, double...).</summary>
    public static long? AsLong(JsonValue jv)
    {
        if (jv.GetValueKind() != JsonValueKind.Number) return null;
        if (jv.TryGetValue<JsonElement>(out var e)) return e.TryGetInt64(out var l) ? l : (long)e.GetDouble();
        if (jv.TryGetValue<long>(out var lv)) return lv;
        if (jv.TryGetValue<int>(out var iv)) return iv;
        if (jv.TryGetValue<double>(out var dv)) return (long)dv;
        if (jv.TryGetValue<uint>(out var uv)) return uv;
        if (jv.TryGetValue<short>(out var sv)) return sv;
        if (jv.TryGetValue<ulong>(out var ulv)) return (long)ulv;
        if (jv.TryGetValue<decimal>(out var mv)) return (long)mv;
        if (jv.TryGetValue<float>(out var fv)) return (long)fv;
        return long.TryParse(jv.ToJsonString(), System.Globalization.NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed) ? parsed : null;
    }

    public static bool? Bool(this JsonObject? o, string key) =>
        o is not null && o.TryGetPropertyValue(key, out var v) && v is JsonValue jv && jv.GetValueKind() is JsonValueKind.True or JsonValueKind.False
            ? jv.GetValue<bool>() : null;

    public static JsonObject? Obj(this JsonObject? o, string key) =>
        o is not null && o.TryGetPropertyValue(key, out var v) ? v as JsonObject : null;

    public static JsonArray? Arr(this JsonObject? o, string key) =>
        o is not null && o.TryGetPropertyValue(key, out var v) ? v as JsonArray : null;

    /// <summary>The child object at key, created (and stored) when absent or not an object.</summary>
    public static JsonObject Ensure(this JsonObject o, string key)
    {
        if (o.TryGetPropertyValue(key, out var v) && v is JsonObject existing) return existing;
        var created = new JsonObject();
        o[key] = created;
        return created;
    }

    public static JsonObject Meta(this JsonObject o) => o.Ensure("metadata");

    public static string Name(this JsonObject o) => o.Obj("metadata").Str("name") ?? "";

    public static string Namespace(this JsonObject o) => o.Obj("metadata").Str("namespace") ?? "";

    public static string Uid(this JsonObject o) => o.Obj("metadata").Str("uid") ?? "";

    /// <summary>The value at a dotted path (metadata.name, spec.type, involvedObject.kind) as the string a
    /// field selector compares: strings as-is, numbers and booleans in JSON text, missing as "".</summary>
    public static string FieldText(JsonObject o, string dottedPath)
    {
        JsonNode? cur = o;
        foreach (var part in dottedPath.Split('.'))
        {
            if (cur is not JsonObject co || !co.TryGetPropertyValue(part, out cur)) return "";
        }
        return cur switch
        {
            null => "",
            JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
            JsonValue v => v.ToJsonString(),
            _ => cur.ToJsonString(),
        };
    }

    /// <summary>A label map (metadata.labels or spec.selector) as a dictionary; values that are not strings are skipped.</summary>
    public static Dictionary<string, string> StringMap(JsonObject? o)
    {
        var d = new Dictionary<string, string>(StringComparer.Ordinal);
        if (o is null) return d;
        foreach (var (k, v) in o)
            if (v is JsonValue jv && jv.GetValueKind() == JsonValueKind.String) d[k] = jv.GetValue<string>();
        return d;
    }

    public static bool IsString(JsonNode? n) => n is JsonValue v && v.GetValueKind() == JsonValueKind.String;

    public static bool IsNumber(JsonNode? n) => n is JsonValue v && v.GetValueKind() == JsonValueKind.Number;
}
