using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Hybrid;

/// <summary>
/// Prints a JSON document as block-style YAML for `hybrid manifest` (KubernetesClient.Aot keeps its YAML
/// serializer internal). A string is written plain only when YAML cannot read it as anything else (a number,
/// a boolean, null, a key or a comment); otherwise as a JSON string literal, which YAML reads the same.
/// </summary>
internal static partial class YamlWriter
{
    public static string Write(JsonNode? document)
    {
        var text = new StringBuilder();
        WriteValue(text, document, 0, inSequence: false);
        return text.ToString();
    }

    private static void WriteValue(StringBuilder text, JsonNode? node, int indent, bool inSequence)
    {
        switch (node)
        {
            case JsonObject map when map.Count > 0:
                var first = true;
                foreach (var (key, value) in map)
                {
                    // The first entry of a map inside a sequence item goes on the "- " line.
                    if (!(first && inSequence)) text.Append(' ', indent);
                    first = false;
                    text.Append(Scalar(key)).Append(':');
                    WriteNested(text, value, indent);
                }
                break;
            case JsonArray list when list.Count > 0:
                foreach (var item in list)
                {
                    text.Append(' ', indent).Append("- ");
                    if (item is JsonObject { Count: > 0 } or JsonArray { Count: > 0 }) WriteValue(text, item, indent + 2, inSequence: item is JsonObject);
                    else text.Append(Inline(item)).Append('\n');
                }
                break;
            default:
                text.Append(' ', indent).Append(Inline(node)).Append('\n');
                break;
        }
    }

    private static void WriteNested(StringBuilder text, JsonNode? value, int indent)
    {
        switch (value)
        {
            case JsonObject { Count: > 0 }:
                text.Append('\n');
                WriteValue(text, value, indent + 2, inSequence: false);
                break;
            case JsonArray { Count: > 0 }:
                text.Append('\n');
                WriteValue(text, value, indent, inSequence: false);
                break;
            default:
                text.Append(' ').Append(Inline(value)).Append('\n');
                break;
        }
    }

    private static string Inline(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "{}",
        JsonArray => "[]",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => Scalar(v.GetValue<string>()),
        _ => node.ToJsonString(),
    };

    private static string Scalar(string s) =>
        Plain().IsMatch(s) && !Special().IsMatch(s) ? s : JsonValue.Create(s).ToJsonString();

    [GeneratedRegex(@"^[A-Za-z_/][A-Za-z0-9_./@-]*$")]
    private static partial Regex Plain();

    // YAML 1.1 booleans and nulls that a plain scalar would turn into.
    [GeneratedRegex(@"^(y|n|yes|no|on|off|true|false|null)$", RegexOptions.IgnoreCase)]
    private static partial Regex Special();
}
