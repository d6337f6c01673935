using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// What kube-apiserver does to an apps/v1 DaemonSet on write: the defaults (RollingUpdate with
/// maxUnavailable 1 and maxSurge 0, revisionHistoryLimit 10, the Pod template's defaults), generation bumps
/// on spec changes, the zeroed status a new DaemonSet starts with, and the validations of its selector,
/// template and update strategy.
/// </summary>
internal static class DaemonSetRules
{
    public static void Prepare(JsonObject ds, JsonObject? old, bool statusWrite)
    {
        if (old is not null && statusWrite)
        {
            ds["spec"] = old["spec"]?.DeepClone();
            return;
        }
        ds["status"] = old?["status"]?.DeepClone() ?? new JsonObject
        {
            ["currentNumberScheduled"] = 0,
            ["numberMisscheduled"] = 0,
            ["desiredNumberScheduled"] = 0,
            ["numberReady"] = 0,
        };
        var spec = ds.Ensure("spec");
        var strategy = spec.Ensure("updateStrategy");
        if (string.IsNullOrEmpty(strategy.Str("type"))) strategy["type"] = "RollingUpdate";
        if (strategy.Str("type") == "RollingUpdate")
        {
            var rolling = strategy.Ensure("rollingUpdate");
            if (rolling["maxUnavailable"] is null) rolling["maxUnavailable"] = 1;
            if (rolling["maxSurge"] is null) rolling["maxSurge"] = 0;
        }
        if (spec.Long("revisionHistoryLimit") is null) spec["revisionHistoryLimit"] = 10;
        var template = spec.Ensure("template");
        template.Ensure("metadata");
        ObjectRules.DefaultPodSpec(template.Ensure("spec"));
        var generation = old?.Obj("metadata").Long("generation") ?? 0;
        ds.Meta()["generation"] = old is null ? 1 : JsonNode.DeepEquals(spec, old.Obj("spec")) ? generation : generation + 1;
    }

    public static IEnumerable<FieldCause> Validate(JsonObject ds, JsonObject? old)
    {
        var spec = ds.Obj("spec");
        var selector = spec.Obj("selector");
        var match = Json.StringMap(selector.Obj("matchLabels"));
        if (selector is null || (match.Count == 0 && selector.Arr("matchExpressions") is not { Count: > 0 }))
            yield return new("FieldValueRequired", "spec.selector", "Required value");
        var template = spec.Obj("template");
        var labels = template.Obj("metadata").Obj("labels");
        if (match.Count > 0 && !Selector.MapMatches(match, labels))
            yield return new("FieldValueInvalid", "spec.template.metadata.labels", $"Invalid value: {Json.ToText(labels)}: `selector` does not match template `labels`");
        var podSpec = template.Obj("spec");
        if (podSpec.Arr("containers") is not { Count: > 0 })
            yield return new("FieldValueRequired", "spec.template.spec.containers", "Required value");
        if (podSpec.Str("restartPolicy") is { } restart && restart != "Always")
            yield return new("FieldValueNotSupported", "spec.template.spec.restartPolicy", $"Unsupported value: {MetadataRules.GoQuote(restart)}: supported values: \"Always\"");
        var strategy = spec.Obj("updateStrategy");
        if (strategy.Str("type") is { } type && type is not ("RollingUpdate" or "OnDelete"))
            yield return new("FieldValueNotSupported", "spec.updateStrategy.type", $"Unsupported value: {MetadataRules.GoQuote(type)}: supported values: \"OnDelete\", \"RollingUpdate\"");
        if (old is not null && !JsonNode.DeepEquals(selector, old.Obj("spec").Obj("selector")))
            yield return new("FieldValueInvalid", "spec.selector", $"Invalid value: {Json.ToText(selector)}: field is immutable");
    }
}
