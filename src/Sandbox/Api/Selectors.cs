using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>A parsed labelSelector/fieldSelector pair that tells whether an object is in a list or watch.</summary>
internal sealed class Selector
{
    private enum Op { Equals, NotEquals, In, NotIn, Exists, NotExists }

    private sealed record Requirement(string Key, Op Op, string[] Values);

    private readonly Requirement[] _labels;
    private readonly Requirement[] _fields;

    public static readonly Selector Everything = new([], []);

    private Selector(Requirement[] labels, Requirement[] fields)
    {
        _labels = labels;
        _fields = fields;
    }

    public bool IsEverything => _labels.Length == 0 && _fields.Length == 0;

    public static Selector Parse(string? labelSelector, string? fieldSelector)
    {
        if (string.IsNullOrWhiteSpace(labelSelector) && string.IsNullOrWhiteSpace(fieldSelector)) return Everything;
        return new Selector(ParseLabels(labelSelector ?? ""), ParseFields(fieldSelector ?? ""));
    }

    public bool Matches(JsonObject obj)
    {
        if (_labels.Length > 0)
        {
            var labels = obj.Obj("metadata").Obj("labels");
            foreach (var r in _labels)
            {
                var has = labels is not null && labels.TryGetPropertyValue(r.Key, out var v) && Json.IsString(v);
                var value = has ? labels!.Str(r.Key)! : null;
                var ok = r.Op switch
                {
                    Op.Exists => has,
                    Op.NotExists => !has,
                    Op.Equals => value == r.Values[0],
                    Op.NotEquals => value != r.Values[0],
                    Op.In => value is not null && r.Values.Contains(value),
                    Op.NotIn => value is null || !r.Values.Contains(value),
                    _ => false,
                };
                if (!ok) return false;
            }
        }
        foreach (var r in _fields)
        {
            var value = Json.FieldText(obj, r.Key);
            if (r.Op == Op.Equals ? value != r.Values[0] : value == r.Values[0]) return false;
        }
        return true;
    }

    /// <summary>Whether a plain label map (a Service selector's target) satisfies a matchLabels-style map.</summary>
    public static bool MapMatches(IReadOnlyDictionary<string, string> selector, JsonObject? labels)
    {
        foreach (var (k, v) in selector)
            if (labels.Str(k) != v) return false;
        return true;
    }

    private static IEnumerable<string> SplitTopLevel(string s)
    {
        var depth = 0;
        var start = 0;
        for (var i = 0; i < s.Length; i++)
        {
            if (s[i] == '(') depth++;
            else if (s[i] == ')') depth--;
            else if (s[i] == ',' && depth == 0)
            {
                yield return s[start..i];
                start = i + 1;
            }
        }
        yield return s[start..];
    }

    private static Requirement[] ParseLabels(string s)
    {
        var result = new List<Requirement>();
        foreach (var raw in SplitTopLevel(s))
        {
            var part = raw.Trim();
            if (part.Length == 0) continue;
            if (part.StartsWith('!')) { result.Add(new Requirement(CheckKey(part[1..].Trim(), part), Op.NotExists, [])); continue; }
            var inIdx = IndexOfWord(part, " notin ");
            if (inIdx > 0) { result.Add(new Requirement(CheckKey(part[..inIdx].Trim(), part), Op.NotIn, SetValues(part[(inIdx + 7)..], part))); continue; }
            inIdx = IndexOfWord(part, " in ");
            if (inIdx > 0) { result.Add(new Requirement(CheckKey(part[..inIdx].Trim(), part), Op.In, SetValues(part[(inIdx + 4)..], part))); continue; }
            int eq;
            if ((eq = part.IndexOf("!=", StringComparison.Ordinal)) > 0)
                result.Add(new Requirement(CheckKey(part[..eq].Trim(), part), Op.NotEquals, [part[(eq + 2)..].Trim()]));
            else if ((eq = part.IndexOf("==", StringComparison.Ordinal)) > 0)
                result.Add(new Requirement(CheckKey(part[..eq].Trim(), part), Op.Equals, [part[(eq + 2)..].Trim()]));
            else if ((eq = part.IndexOf('=')) > 0)
                result.Add(new Requirement(CheckKey(part[..eq].Trim(), part), Op.Equals, [part[(eq + 1)..].Trim()]));
            else
                result.Add(new Requirement(CheckKey(part, part), Op.Exists, []));
        }
        return [.. result];
    }

    private static int IndexOfWord(string s, string word) => s.IndexOf(word, StringComparison.Ordinal);

    private static string[] SetValues(string rest, string whole)
    {
        rest = rest.Trim();
        if (!rest.StartsWith('(') || !rest.EndsWith(')'))
            throw ApiException.BadRequest($"unable to parse requirement: found '{rest}', expected: '('");
        return rest[1..^1].Split(',').Select(v => v.Trim()).Where(v => v.Length > 0).ToArray();
    }

    private static string CheckKey(string key, string whole)
    {
        if (key.Length == 0 || key.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '/')))
            throw ApiException.BadRequest($"unable to parse requirement: <nil>: Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.'");
        return key;
    }

    private static Requirement[] ParseFields(string s)
    {
        var result = new List<Requirement>();
        foreach (var raw in s.Split(','))
        {
            var part = raw.Trim();
            if (part.Length == 0) continue;
            int eq;
            if ((eq = part.IndexOf("!=", StringComparison.Ordinal)) > 0)
                result.Add(new Requirement(part[..eq].Trim(), Op.NotEquals, [part[(eq + 2)..].Trim()]));
            else if ((eq = part.IndexOf("==", StringComparison.Ordinal)) > 0)
                result.Add(new Requirement(part[..eq].Trim(), Op.Equals, [part[(eq + 2)..].Trim()]));
            else if ((eq = part.IndexOf('=')) > 0)
                result.Add(new Requirement(part[..eq].Trim(), Op.Equals, [part[(eq + 1)..].Trim()]));
            else
                throw ApiException.BadRequest($"invalid selector: '{s}'; can't understand '{part}'");
        }
        return [.. result];
    }
}
