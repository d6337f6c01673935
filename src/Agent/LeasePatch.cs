using System.Globalization;
using System.Text.Json.Nodes;
using k8s.Models;

namespace Hybrid.Agent;

/// <summary>
/// The merge patches the agent writes to Leases. Heartbeat renewals and group claims share this code path,
/// so the path a takeover needs is already warm (compiled) from the renewals that run every retry period.
/// </summary>
internal static class LeasePatch
{
    public static string Time(DateTime utc) => utc.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", CultureInfo.InvariantCulture);

    /// <summary>Sets the holder (null releases) and the times; `expectedVersion` makes it a compare-and-swap.</summary>
    public static V1Patch Hold(string? holder, DateTime now, int leaseDurationSeconds, string? expectedVersion = null,
        int? transitions = null, bool acquired = false, IReadOnlyDictionary<string, string>? labels = null)
    {
        var metadata = new JsonObject();
        if (expectedVersion is not null) metadata["resourceVersion"] = expectedVersion;
        if (labels is not null)
        {
            var l = new JsonObject();
            foreach (var (key, value) in labels) l[key] = value;
            metadata["labels"] = l;
        }
        var spec = new JsonObject
        {
            ["holderIdentity"] = holder,
            ["renewTime"] = Time(now),
            ["leaseDurationSeconds"] = leaseDurationSeconds,
        };
        if (acquired) spec["acquireTime"] = Time(now);
        if (transitions is { } t) spec["leaseTransitions"] = t;
        var patch = new JsonObject { ["spec"] = spec };
        if (metadata.Count > 0) patch["metadata"] = metadata;
        return new V1Patch(patch.ToJsonString(), V1Patch.PatchType.MergePatch);
    }
}
