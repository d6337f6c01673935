using System.Globalization;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

namespace Hybrid.Sandbox.Api;

/// <summary>How the client asked unknown fields to be treated (metav1.FieldValidation*).</summary>
internal enum FieldValidation { Ignore, Warn, Strict }

/// <summary>
/// Query parameters read as kube-apiserver reads them (k8s.io/apimachinery's url.Values conversions and
/// meta/v1 validation): a boolean is false only when absent, "0" or "false" (any case) and true for any
/// other value, including an empty one; integers are Go's strconv.ParseInt and a bad one is 400; dryRun
/// accepts only "All" and fieldValidation only Ignore, Warn or Strict (422 naming the options kind).
/// </summary>
internal static class QueryParameters
{
    /// <summary>runtime.Convert_Slice_string_To_bool: the first value decides.</summary>
    public static bool Flag(IQueryCollection query, string name)
    {
        if (!query.TryGetValue(name, out var values) || values.Count == 0) return false;
        var first = values[0] ?? "";
        return !(first == "0" || first.Equals("false", StringComparison.OrdinalIgnoreCase));
    }

    /// <summary>strconv.ParseInt(s, 10, 64) of the first value; null when absent.</summary>
    public static long? Integer(IQueryCollection query, string name)
    {
        if (!query.TryGetValue(name, out var values) || values.Count == 0) return null;
        var text = values[0] ?? "";
        var digits = text.Length > 0 && text[0] is '+' or '-' ? text[1..] : text;
        if (digits.Length == 0 || !digits.All(char.IsAsciiDigit))
            throw ApiException.BadRequest($"strconv.ParseInt: parsing {MetadataRules.GoQuote(text)}: invalid syntax");
        if (!long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
            throw ApiException.BadRequest($"strconv.ParseInt: parsing {MetadataRules.GoQuote(text)}: value out of range");
        return value;
    }

    /// <summary>Whether a write is a dry run; any value but "All" is refused as the server does.</summary>
    public static bool DryRun(IQueryCollection query, string optionsKind)
    {
        if (!query.TryGetValue("dryRun", out var values) || values.Count == 0) return false;
        if (values.Any(v => v != "All"))
            throw ApiException.InvalidOptions(optionsKind, [new("FieldValueNotSupported", "dryRun",
                $"Unsupported value: []string{{{string.Join(", ", values.Select(v => MetadataRules.GoQuote(v ?? "")))}}}: supported values: \"All\"")]);
        return true;
    }

    /// <summary>The fieldValidation directive; absent or empty means Warn, the server's default.</summary>
    public static FieldValidation Validation(IQueryCollection query, string optionsKind)
    {
        var value = query.TryGetValue("fieldValidation", out var values) && values.Count > 0 ? values[0] ?? "" : "";
        return value switch
        {
            "" or "Warn" => FieldValidation.Warn,
            "Ignore" => FieldValidation.Ignore,
            "Strict" => FieldValidation.Strict,
            _ => throw ApiException.InvalidOptions(optionsKind, [new("FieldValueNotSupported", "fieldValidation",
                $"Unsupported value: {MetadataRules.GoQuote(value)}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"")]),
        };
    }

    public static string? Text(IQueryCollection query, string name) =>
        query.TryGetValue(name, out StringValues values) && values.Count > 0 ? values[0] : null;
}
