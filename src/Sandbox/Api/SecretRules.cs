using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// core/v1 Secrets and ConfigMaps as kube-apiserver stores them: a Secret's stringData is merged into data
/// (base64) and never stored, its type defaults to Opaque; keys must be valid config keys; a Secret holds at
/// most 1 MiB; immutable objects keep their data.
/// </summary>
internal static partial class SecretRules
{
    public const int MaxSize = 1024 * 1024;

    [GeneratedRegex("^[-._a-zA-Z0-9]+$")]
    private static partial Regex ConfigKey();

    /// <summary>A data value as the JSON decoder reads []byte: standard base64, else 400 as the server answers.</summary>
    private static byte[] Decode(string text)
    {
        var bytes = new byte[text.Length];
        if (Convert.TryFromBase64String(text, bytes, out var n)) return bytes[..n];
        var at = text.TakeWhile(c => char.IsAsciiLetterOrDigit(c) || c is '+' or '/').Count();
        throw ApiException.BadRequest($"Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte {at}");
    }

    public static void PrepareSecret(JsonObject secret)
    {
        if (string.IsNullOrEmpty(secret.Str("type"))) secret["type"] = "Opaque";
        if (secret.Obj("stringData") is not { } plain) return;
        var data = secret.Ensure("data");
        foreach (var (key, value) in plain)
            data[key] = Convert.ToBase64String(Encoding.UTF8.GetBytes(value is JsonValue v ? v.ToString() : ""));
        secret.Remove("stringData");
    }

    /// <summary>IsConfigMapKey.</summary>
    public static IEnumerable<string> KeyErrors(string key)
    {
        if (Encoding.UTF8.GetByteCount(key) > 253) yield return "must be no more than 253 characters";
        if (!ConfigKey().IsMatch(key))
            yield return "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
        if (key == ".") yield return "must not be '.'";
        else if (key == "..") yield return "must not be '..'";
        else if (key.StartsWith("..", StringComparison.Ordinal)) yield return "must not start with '..'";
    }

    public static IEnumerable<FieldCause> ValidateSecret(JsonObject secret, JsonObject? old)
    {
        var size = 0L;
        foreach (var (key, value) in secret.Obj("data") ?? [])
        {
            foreach (var m in KeyErrors(key)) yield return MetadataRules.Invalid($"data[{key}]", key, m);
            size += Decode(value is JsonValue v ? v.ToString() : "").Length;
        }
        if (size > MaxSize) yield return new("FieldValueTooLong", "data", $"Too long: may not be more than {MaxSize} bytes");
        if (old is null) yield break;
        if (old.Str("type") != secret.Str("type"))
            yield return MetadataRules.Invalid("type", secret.Str("type") ?? "", "field is immutable");
        if (old.Bool("immutable") == true)
        {
            if (secret.Bool("immutable") != true)
                yield return new("FieldValueForbidden", "immutable", "Forbidden: field is immutable when `immutable` is set");
            if (!JsonNode.DeepEquals(secret["data"], old["data"]))
                yield return new("FieldValueForbidden", "data", "Forbidden: field is immutable when `immutable` is set");
        }
    }

    public static IEnumerable<FieldCause> ValidateConfigMap(JsonObject map, JsonObject? old)
    {
        var data = map.Obj("data") ?? [];
        foreach (var (key, _) in data)
            foreach (var m in KeyErrors(key)) yield return MetadataRules.Invalid($"data[{key}]", key, m);
        foreach (var (key, _) in map.Obj("binaryData") ?? [])
        {
            foreach (var m in KeyErrors(key)) yield return MetadataRules.Invalid($"binaryData[{key}]", key, m);
            if (data.ContainsKey(key)) yield return MetadataRules.Invalid($"binaryData[{key}]", key, "duplicate of key present in data");
        }
        if (old?.Bool("immutable") == true)
        {
            if (map.Bool("immutable") != true)
                yield return new("FieldValueForbidden", "immutable", "Forbidden: field is immutable when `immutable` is set");
            if (!JsonNode.DeepEquals(map["data"], old["data"]) || !JsonNode.DeepEquals(map["binaryData"], old["binaryData"]))
                yield return new("FieldValueForbidden", "data", "Forbidden: field is immutable when `immutable` is set");
        }
    }
}
