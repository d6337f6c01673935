using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// kube-apiserver's ObjectMeta validation (k8s.io/apimachinery 1.32: pkg/api/validation/objectmeta.go,
/// pkg/util/validation): names by kind, label keys and values, annotation keys and their 256 kB total,
/// finalizer names, owner references, with the server's field paths and messages word for word. Lengths
/// are Go's len(), which counts UTF-8 bytes.
/// </summary>
internal static partial class MetadataRules
{
    public enum NameKind { Dns1123Subdomain, Dns1123Label, Dns1035Label, PathSegment }

    private const string QualifiedNameFmt = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
    private const string QualifiedNameErrMsg = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
    private const string LabelValueFmt = "(" + QualifiedNameFmt + ")?";
    private const string LabelValueErrMsg = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
    private const string Dns1123LabelFmt = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
    private const string Dns1123LabelErrMsg = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
    private const string Dns1123SubdomainFmt = Dns1123LabelFmt + "(\\." + Dns1123LabelFmt + ")*";
    private const string Dns1123SubdomainErrMsg = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
    private const string Dns1035LabelFmt = "[a-z]([-a-z0-9]*[a-z0-9])?";
    private const string Dns1035LabelErrMsg = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";

    /// <summary>Total bytes of annotation keys and values (TotalAnnotationSizeLimitB).</summary>
    public const int TotalAnnotationSizeLimit = 256 * 1024;

    [GeneratedRegex("^" + QualifiedNameFmt + "$")]
    private static partial Regex QualifiedName();

    [GeneratedRegex("^" + LabelValueFmt + "$")]
    private static partial Regex LabelValue();

    [GeneratedRegex("^" + Dns1123LabelFmt + "$")]
    private static partial Regex Dns1123Label();

    [GeneratedRegex("^" + Dns1123SubdomainFmt + "$")]
    private static partial Regex Dns1123Subdomain();

    [GeneratedRegex("^" + Dns1035LabelFmt + "$")]
    private static partial Regex Dns1035Label();

    private static int Bytes(string s) => Encoding.UTF8.GetByteCount(s);

    private static string MaxLenError(int length) => $"must be no more than {length} characters";

    private static string RegexError(string message, string format, params string[] examples)
    {
        if (examples.Length == 0) return message + " (regex used for validation is '" + format + "')";
        var text = new StringBuilder(message).Append(" (e.g. ");
        for (var i = 0; i < examples.Length; i++)
        {
            if (i > 0) text.Append(" or ");
            text.Append('\'').Append(examples[i]).Append("', ");
        }
        return text.Append("regex used for validation is '").Append(format).Append("')").ToString();
    }

    public static List<string> Dns1123SubdomainErrors(string value)
    {
        var errors = new List<string>();
        if (Bytes(value) > 253) errors.Add(MaxLenError(253));
        if (!Dns1123Subdomain().IsMatch(value)) errors.Add(RegexError(Dns1123SubdomainErrMsg, Dns1123SubdomainFmt, "example.com"));
        return errors;
    }

    public static List<string> Dns1123LabelErrors(string value)
    {
        var errors = new List<string>();
        if (Bytes(value) > 63) errors.Add(MaxLenError(63));
        if (!Dns1123Label().IsMatch(value))
            errors.Add(Dns1123Subdomain().IsMatch(value) ? "must not contain dots" : RegexError(Dns1123LabelErrMsg, Dns1123LabelFmt, "my-name", "123-abc"));
        return errors;
    }

    public static List<string> Dns1035LabelErrors(string value)
    {
        var errors = new List<string>();
        if (Bytes(value) > 63) errors.Add(MaxLenError(63));
        if (!Dns1035Label().IsMatch(value)) errors.Add(RegexError(Dns1035LabelErrMsg, Dns1035LabelFmt, "my-name", "abc-123"));
        return errors;
    }

    /// <summary>path.IsValidPathSegmentName: the names of RBAC objects and core/v1 Events.</summary>
    public static List<string> PathSegmentErrors(string value)
    {
        if (value is "." or "..") return [$"may not be '{value}'"];
        var errors = new List<string>();
        if (value.Contains('/')) errors.Add("may not contain '/'");
        if (value.Contains('%')) errors.Add("may not contain '%'");
        return errors;
    }

    /// <summary>IsQualifiedName: an optional DNS-subdomain prefix and '/', then a name of at most 63 characters.</summary>
    public static List<string> QualifiedNameErrors(string value)
    {
        var errors = new List<string>();
        var parts = value.Split('/');
        string name;
        switch (parts.Length)
        {
            case 1:
                name = parts[0];
                break;
            case 2:
                name = parts[1];
                if (parts[0].Length == 0) errors.Add("prefix part must be non-empty");
                else errors.AddRange(Dns1123SubdomainErrors(parts[0]).Select(m => "prefix part " + m));
                break;
            default:
                return ["a qualified name " + RegexError(QualifiedNameErrMsg, QualifiedNameFmt, "MyName", "my.name", "123-abc")
                    + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"];
        }
        if (name.Length == 0) errors.Add("name part must be non-empty");
        else if (Bytes(name) > 63) errors.Add("name part " + MaxLenError(63));
        if (!QualifiedName().IsMatch(name)) errors.Add("name part " + RegexError(QualifiedNameErrMsg, QualifiedNameFmt, "MyName", "my.name", "123-abc"));
        return errors;
    }

    public static List<string> LabelValueErrors(string value)
    {
        var errors = new List<string>();
        if (Bytes(value) > 63) errors.Add(MaxLenError(63));
        if (!LabelValue().IsMatch(value)) errors.Add(RegexError(LabelValueErrMsg, LabelValueFmt, "MyValue", "my_value", "12345"));
        return errors;
    }

    public static NameKind NameKindOf(ResourceType rt) => rt.Kind switch
    {
        "Service" => NameKind.Dns1035Label,
        "Namespace" => NameKind.Dns1123Label,
        "Event" when !rt.IsEventsV1View => NameKind.PathSegment,
        "ClusterRole" or "ClusterRoleBinding" or "Role" or "RoleBinding" => NameKind.PathSegment,
        _ => NameKind.Dns1123Subdomain,
    };

    public static List<string> NameErrors(string name, NameKind kind) => kind switch
    {
        NameKind.Dns1035Label => Dns1035LabelErrors(name),
        NameKind.Dns1123Label => Dns1123LabelErrors(name),
        NameKind.PathSegment => PathSegmentErrors(name),
        _ => Dns1123SubdomainErrors(name),
    };

    /// <summary>"Invalid value: …" with Go's %q of a string.</summary>
    public static FieldCause Invalid(string field, string value, string detail) =>
        new("FieldValueInvalid", field, $"Invalid value: {GoQuote(value)}: {detail}");

    /// <summary>Go's %q: a double-quoted string with Go escapes (printable non-ASCII kept).</summary>
    public static string GoQuote(string value)
    {
        var text = new StringBuilder("\"");
        foreach (var rune in value.EnumerateRunes())
        {
            switch (rune.Value)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case < 0x20 or 0x7f: text.Append($"\\x{rune.Value:x2}"); break;
                default:
                    if (Rune.IsControl(rune)) text.Append(rune.Value > 0xffff ? $"\\U{rune.Value:x8}" : $"\\u{rune.Value:x4}");
                    else text.Append(rune.ToString());
                    break;
            }
        }
        return text.Append('"').ToString();
    }

    /// <summary>
    /// ValidateObjectMeta for a write: the name on create (it cannot change later), label keys and values,
    /// annotation keys and total size, finalizer names, owner references. core/v1 Events skip all but their
    /// name, as the API server's legacy Event validation does.
    /// </summary>
    public static List<FieldCause> Validate(ResourceType rt, JsonObject obj, JsonObject? old)
    {
        var errors = new List<FieldCause>();
        var meta = obj.Obj("metadata");
        var name = meta.Str("name") ?? "";
        if (old is null)
        {
            if (name.Length == 0) errors.Add(new("FieldValueRequired", "metadata.name", "Required value: name or generateName is required"));
            else errors.AddRange(NameErrors(name, NameKindOf(rt)).Select(m => Invalid("metadata.name", name, m)));
        }
        if (rt.Kind == "Event" && !rt.IsEventsV1View) return errors;
        foreach (var (key, value) in Strings(meta.Obj("labels")))
        {
            errors.AddRange(QualifiedNameErrors(key).Select(m => Invalid("metadata.labels", key, m)));
            errors.AddRange(LabelValueErrors(value).Select(m => Invalid("metadata.labels", value, m)));
        }
        var annotations = Strings(meta.Obj("annotations"));
        foreach (var (key, _) in annotations)
            errors.AddRange(QualifiedNameErrors(key.ToLowerInvariant()).Select(m => Invalid("metadata.annotations", key, m)));
        if (annotations.Sum(a => (long)Bytes(a.Key) + Bytes(a.Value)) > TotalAnnotationSizeLimit)
            errors.Add(new("FieldValueTooLong", "metadata.annotations", $"Too long: may not be more than {TotalAnnotationSizeLimit} bytes"));
        var owners = meta.Arr("ownerReferences")?.OfType<JsonObject>().ToList() ?? [];
        foreach (var owner in owners)
        {
            var apiVersion = owner.Str("apiVersion") ?? "";
            if (apiVersion.Length == 0 || apiVersion.EndsWith('/'))
                errors.Add(Invalid("metadata.ownerReferences.apiVersion", apiVersion, "version must not be empty"));
            if (string.IsNullOrEmpty(owner.Str("kind"))) errors.Add(Invalid("metadata.ownerReferences.kind", "", "kind must not be empty"));
            if (string.IsNullOrEmpty(owner.Str("name"))) errors.Add(Invalid("metadata.ownerReferences.name", "", "name must not be empty"));
            if (string.IsNullOrEmpty(owner.Str("uid"))) errors.Add(Invalid("metadata.ownerReferences.uid", "", "uid must not be empty"));
        }
        foreach (var finalizer in meta.Arr("finalizers")?.Select(f => f is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : "") ?? [])
            errors.AddRange(QualifiedNameErrors(finalizer).Select(m => Invalid("metadata.finalizers", finalizer, m)));
        return errors;
    }

    private static List<KeyValuePair<string, string>> Strings(JsonObject? map) =>
        map is null ? [] : map.Select(kv => new KeyValuePair<string, string>(kv.Key, kv.Value is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : "")).ToList();
}
