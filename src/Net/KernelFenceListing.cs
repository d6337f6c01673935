using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Hybrid.Net;

/// <summary>
/// Reads a kernel fence table back from nft's listings. Set contents come from the JSON listing; the
/// device, the recorded interface index (a rule comment) and the fence element's expiry only from the text
/// one (nft 1.0.6's JSON omits chain devices and gives timeouts in whole seconds).
/// </summary>
internal static partial class KernelFenceListing
{
    /// <summary>Whether `list tables netdev` (JSON) names <paramref name="table"/>.</summary>
    public static bool HasTable(string tablesJson, string table)
    {
        using var document = JsonDocument.Parse(tablesJson);
        return Objects(document, "table").Any(t => t.GetProperty("name").GetString() == table);
    }

    /// <summary>Builds the read-back from `list table netdev NAME` in JSON and in text.</summary>
    public static InstalledFence Parse(string tableJson, string tableText, string table)
    {
        using var document = JsonDocument.Parse(tableJson);
        var sets = Objects(document, "set")
            .Where(s => s.GetProperty("table").GetString() == table)
            .ToDictionary(s => s.GetProperty("name").GetString()!, Elements);
        IReadOnlySet<IPAddress> Addresses(string role) =>
            (sets.GetValueOrDefault(role + "4") ?? []).Select(IPv4)
                .Concat((sets.GetValueOrDefault(role + "6") ?? []).Select(IPv6))
                .ToHashSet();

        var device = IngressDevicePattern().Match(tableText);
        var comment = CommentPattern().Match(tableText);
        if (!device.Success || !comment.Success)
            throw new InvalidDataException($"table netdev {table} is not a kernel fence (no device or no '{KernelFenceRuleset.CommentPrefix}' comment):\n{tableText}");
        var fence = FenceExpiryPattern().Match(tableText);
        return new InstalledFence(
            device.Groups[1].Value,
            int.Parse(comment.Groups[1].Value, CultureInfo.InvariantCulture),
            Addresses("managed"),
            Addresses("held"),
            fence.Success ? DurationMs(fence.Groups[1].Value) : null);
    }

    /// <summary>
    /// The device both base chains of a fence table's text listing are bound to, or null when either is
    /// missing or bound to several devices ("devices = { … }").
    /// </summary>
    private static string? BoundDevice(string tableText)
    {
        var ingress = IngressDevicePattern().Match(tableText);
        var egress = EgressDevicePattern().Match(tableText);
        return ingress.Success && egress.Success && ingress.Groups[1].Value == egress.Groups[1].Value ? ingress.Groups[1].Value : null;
    }

    /// <summary>
    /// What <see cref="KernelFence.Install"/> needs to know of a table already there, from `list table` in JSON and
    /// in text: the one device both base chains are bound to, the interface index and rules digest its comment
    /// records, and whether every chain holds as many rules as this version writes. Null when the base chains
    /// are not bound to one device.
    /// </summary>
    public static FenceBinding? Binding(string tableJson, string tableText, string table)
    {
        if (BoundDevice(tableText) is not { } device) return null;
        using var document = JsonDocument.Parse(tableJson);
        var rules = Objects(document, "rule")
            .Where(r => r.GetProperty("table").GetString() == table)
            .GroupBy(r => r.GetProperty("chain").GetString()!)
            .ToDictionary(g => g.Key, g => g.Count());
        var comment = CommentPattern().Match(tableText);
        return new FenceBinding(
            device,
            comment.Success ? int.Parse(comment.Groups[1].Value, CultureInfo.InvariantCulture) : null,
            comment.Success && comment.Groups[2].Success ? comment.Groups[2].Value : null,
            KernelFenceRuleset.RulesPerChain.All(chain => rules.GetValueOrDefault(chain.Key) == chain.Value) &&
            rules.Keys.All(KernelFenceRuleset.RulesPerChain.ContainsKey));
    }

    /// <summary>Milliseconds of an nft duration such as "1m", "4s908ms", "1d2h3m4s5ms".</summary>
    public static long DurationMs(string duration)
    {
        long total = 0;
        var matched = 0;
        foreach (Match part in DurationPartPattern().Matches(duration))
        {
            var value = long.Parse(part.Groups[1].Value, CultureInfo.InvariantCulture);
            total += part.Groups[2].Value switch
            {
                "d" => value * 86_400_000,
                "h" => value * 3_600_000,
                "m" => value * 60_000,
                "s" => value * 1_000,
                _ => value,
            };
            matched += part.Length;
        }
        if (matched != duration.Length || matched == 0) throw new FormatException($"'{duration}' is not an nft duration");
        return total;
    }

    private static IEnumerable<JsonElement> Objects(JsonDocument document, string kind) =>
        document.RootElement.GetProperty("nftables").EnumerateArray()
            .Where(o => o.TryGetProperty(kind, out _))
            .Select(o => o.GetProperty(kind));

    private static List<JsonElement> Elements(JsonElement set) =>
        set.TryGetProperty("elem", out var elements)
            ? elements.ValueKind == JsonValueKind.Array ? elements.EnumerateArray().ToList() : [elements]
            : [];

    private static IPAddress IPv4(JsonElement element) =>
        IPAddress.Parse(element.GetString() ?? throw new InvalidDataException($"unexpected IPv4 set element {element}"));

    /// <summary>An IPv6 set element: a 128-bit integer, printed as a JSON number when small, else as "0x…".</summary>
    private static IPAddress IPv6(JsonElement element)
    {
        var value = element.ValueKind == JsonValueKind.Number
            ? new System.Numerics.BigInteger(element.GetUInt64())
            : element.GetString() is { } text && text.StartsWith("0x", StringComparison.Ordinal)
                ? System.Numerics.BigInteger.Parse("0" + text[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture)
                : throw new InvalidDataException($"unexpected IPv6 set element {element}");
        var bytes = value.ToByteArray(isUnsigned: true, isBigEndian: true);
        if (bytes.Length > 16) throw new InvalidDataException($"IPv6 set element {element} has more than 128 bits");
        var address = new byte[16];
        bytes.CopyTo(address, 16 - bytes.Length);
        return new IPAddress(address);
    }

    [GeneratedRegex(@"hook ingress device ""([^""]+)""")]
    private static partial Regex IngressDevicePattern();

    [GeneratedRegex(@"hook egress device ""([^""]+)""")]
    private static partial Regex EgressDevicePattern();

    [GeneratedRegex(@"comment """ + KernelFenceRuleset.CommentPrefix + @"(\d+)(?:, rules ([0-9a-f]+))?""")]
    private static partial Regex CommentPattern();

    /// <summary>The expiry of the fence set's element: "set fence { … elements = { "eth0" timeout 300ms expires 212ms } }".</summary>
    [GeneratedRegex("""set fence \{[^}]*elements = \{[^}]*expires ([0-9dhms]+)""")]
    private static partial Regex FenceExpiryPattern();

    [GeneratedRegex("([0-9]+)(ms|d|h|m|s)")]
    private static partial Regex DurationPartPattern();
}

/// <summary>A fence table found bound to <paramref name="Device"/> (see <see cref="KernelFenceListing.Binding"/>).</summary>
/// <param name="InterfaceIndex">The index its comment records; null without the comment.</param>
/// <param name="RulesDigest">The <see cref="KernelFenceRuleset.RulesDigest"/> its comment records; null from a version before digests.</param>
/// <param name="RulesComplete">Every chain holds as many rules as this version writes, and there is no other chain.</param>
internal sealed record FenceBinding(string Device, int? InterfaceIndex, string? RulesDigest, bool RulesComplete);
