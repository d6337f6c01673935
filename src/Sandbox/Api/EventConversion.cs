using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// core/v1 Event and events.k8s.io/v1 Event are two views of one stored object, as in the real API server.
/// Objects are stored in the core/v1 shape; this class renames the fields for the events.k8s.io view
/// (note↔message, regarding↔involvedObject, deprecatedCount↔count, reportingController↔reportingComponent, ...).
/// Fields it does not know pass through unchanged, so nothing is lost in a round trip.
/// </summary>
internal static class EventConversion
{
    private static readonly (string Core, string V1)[] Renames =
    [
        ("message", "note"),
        ("involvedObject", "regarding"),
        ("reportingComponent", "reportingController"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
    ];

    private static readonly Dictionary<string, string> CoreToV1 = Renames.ToDictionary(r => r.Core, r => r.V1);
    private static readonly Dictionary<string, string> V1ToCore = Renames.ToDictionary(r => r.V1, r => r.Core);

    public static JsonObject ToEventsV1(JsonObject core) => Rename(core, CoreToV1, "events.k8s.io/v1");

    public static JsonObject ToCore(JsonObject v1) => Rename(v1, V1ToCore, "v1");

    private static JsonObject Rename(JsonObject source, Dictionary<string, string> map, string apiVersion)
    {
        var result = new JsonObject { ["kind"] = "Event", ["apiVersion"] = apiVersion };
        foreach (var (key, value) in source)
        {
            if (key is "kind" or "apiVersion") continue;
            result[map.TryGetValue(key, out var renamed) ? renamed : key] = value?.DeepClone();
        }
        return result;
    }
}
