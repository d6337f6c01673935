using System.Text;
using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// Event validation as kube-apiserver does it (pkg/apis/core/validation/events.go), on the stored core/v1
/// shape. Every Event passes the legacy rules; a new-style Event (eventTime set) needs reportingController,
/// reportingInstance, action and reason of at most 128 bytes and a message (events.k8s.io's note) of at
/// most 1024 bytes. Writes through events.k8s.io/v1 also get the strict rules: a DNS-subdomain name, the
/// type Normal or Warning, no deprecated fields, a sane series, and immutable content on update.
/// </summary>
internal static class EventRules
{
    public const int ReportingInstanceLengthLimit = 128;
    public const int ActionLengthLimit = 128;
    public const int ReasonLengthLimit = 128;
    public const int NoteLengthLimit = 1024;

    private static int Bytes(string? s) => s is null ? 0 : Encoding.UTF8.GetByteCount(s);

    private static FieldCause TooLong(string field, int limit) =>
        new("FieldValueInvalid", field, $"Invalid value: \"\": can have at most {limit} characters");

    private static FieldCause Required(string field) => new("FieldValueRequired", field, "Required value");

    /// <summary><paramref name="ev"/> and <paramref name="old"/> in the core/v1 shape; <paramref name="rt"/> is the
    /// resource the request came through (its API version decides whether the strict rules apply).</summary>
    public static List<FieldCause> Validate(ResourceType rt, JsonObject ev, JsonObject? old)
    {
        var errors = Legacy(ev);
        if (!rt.IsEventsV1View) return errors;
        if (old is null)
        {
            errors.AddRange(Series(ev));
            if (string.IsNullOrEmpty(ev.Str("eventTime"))) errors.Add(Required("eventTime"));
            var type = ev.Str("type") ?? "";
            if (type is not ("Normal" or "Warning")) errors.Add(new("FieldValueInvalid", "type", $"Invalid value: \"\": has invalid value: {type}"));
            if (!string.IsNullOrEmpty(ev.Str("firstTimestamp"))) errors.Add(new("FieldValueInvalid", "firstTimestamp", "Invalid value: \"\": needs to be unset"));
            if (!string.IsNullOrEmpty(ev.Str("lastTimestamp"))) errors.Add(new("FieldValueInvalid", "lastTimestamp", "Invalid value: \"\": needs to be unset"));
            if (ev.Long("count") is { } count and not 0) errors.Add(new("FieldValueInvalid", "count", "Invalid value: \"\": needs to be unset"));
            if (!string.IsNullOrEmpty(ev.Obj("source").Str("component")) || !string.IsNullOrEmpty(ev.Obj("source").Str("host")))
                errors.Add(new("FieldValueInvalid", "source", "Invalid value: \"\": needs to be unset"));
            return errors;
        }
        if (!JsonNode.DeepEquals(ev["series"], old["series"])) errors.AddRange(Series(ev));
        foreach (var field in new[] { "involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp", "count", "type", "eventTime", "action", "related", "reportingComponent", "reportingInstance" })
        {
            if (JsonNode.DeepEquals(ev[field], old[field])) continue;
            var path = field switch { "reportingComponent" => "reportingController", _ => field };
            errors.Add(new("FieldValueInvalid", path, $"Invalid value: {Json.ToText(ev[field])}: field is immutable"));
        }
        return errors;
    }

    private static List<FieldCause> Legacy(JsonObject ev)
    {
        var errors = new List<FieldCause>();
        var ns = ev.Namespace();
        var involvedNs = ev.Obj("involvedObject").Str("namespace") ?? "";
        if (string.IsNullOrEmpty(ev.Str("eventTime")))
        {
            var mismatch = involvedNs.Length == 0 ? ns is not ("" or "default") : ns != involvedNs;
            if (mismatch) errors.Add(MetadataRules.Invalid("involvedObject.namespace", involvedNs, "does not match event.namespace"));
        }
        else
        {
            if (involvedNs.Length == 0 && ns is not ("default" or "kube-system"))
                errors.Add(MetadataRules.Invalid("involvedObject.namespace", involvedNs, "does not match event.namespace"));
            var controller = ev.Str("reportingComponent") ?? "";
            if (controller.Length == 0) errors.Add(Required("reportingController"));
            errors.AddRange(MetadataRules.QualifiedNameErrors(controller).Select(m => MetadataRules.Invalid("reportingController", controller, m)));
            if (Bytes(ev.Str("reportingInstance")) == 0) errors.Add(Required("reportingInstance"));
            if (Bytes(ev.Str("reportingInstance")) > ReportingInstanceLengthLimit) errors.Add(TooLong("reportingInstance", ReportingInstanceLengthLimit));
            if (Bytes(ev.Str("action")) == 0) errors.Add(Required("action"));
            if (Bytes(ev.Str("action")) > ActionLengthLimit) errors.Add(TooLong("action", ActionLengthLimit));
            if (Bytes(ev.Str("reason")) == 0) errors.Add(Required("reason"));
            if (Bytes(ev.Str("reason")) > ReasonLengthLimit) errors.Add(TooLong("reason", ReasonLengthLimit));
            if (Bytes(ev.Str("message")) > NoteLengthLimit) errors.Add(TooLong("message", NoteLengthLimit));
        }
        errors.AddRange(MetadataRules.Dns1123SubdomainErrors(ns).Select(m => MetadataRules.Invalid("namespace", ns, m)));
        return errors;
    }

    private static IEnumerable<FieldCause> Series(JsonObject ev)
    {
        if (ev.Obj("series") is not { } series) yield break;
        if ((series.Long("count") ?? 0) < 2) yield return new("FieldValueInvalid", "series.count", "Invalid value: \"\": should be at least 2");
        if (string.IsNullOrEmpty(series.Str("lastObservedTime"))) yield return Required("series.lastObservedTime");
    }
}
