using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// rbac.authorization.k8s.io/v1 as kube-apiserver validates it (pkg/apis/rbac/validation): rules need verbs
/// and, for resources, API groups and resources; bindings reference a Role or ClusterRole of the RBAC group,
/// which can never change; subjects are ServiceAccounts (with a namespace in cluster bindings), Users or
/// Groups. Subjects and roleRefs get the API group defaults of the v1 API.
/// </summary>
internal static class RbacRules
{
    private const string Group = "rbac.authorization.k8s.io";

    private static bool IsBinding(string kind) => kind is "RoleBinding" or "ClusterRoleBinding";

    public static void Prepare(string kind, JsonObject obj)
    {
        if (!IsBinding(kind)) return;
        var roleRef = obj.Ensure("roleRef");
        if (string.IsNullOrEmpty(roleRef.Str("apiGroup"))) roleRef["apiGroup"] = Group;
        foreach (var subject in obj.Arr("subjects")?.OfType<JsonObject>() ?? [])
            if (subject.Str("apiGroup") is null or "" && subject.Str("kind") is "User" or "Group") subject["apiGroup"] = Group;
    }

    private static List<string> Strings(JsonObject rule, string key) =>
        rule.Arr(key)?.Select(n => n?.ToString() ?? "").ToList() ?? [];

    private static string GoSlice(List<string> items) => "[]string{" + string.Join(", ", items.Select(MetadataRules.GoQuote)) + "}";

    public static IEnumerable<FieldCause> Validate(string kind, JsonObject obj, JsonObject? old)
    {
        if (IsBinding(kind))
        {
            foreach (var e in ValidateBinding(kind, obj, old)) yield return e;
            yield break;
        }
        var namespaced = kind == "Role";
        var rules = obj.Arr("rules") ?? [];
        for (var i = 0; i < rules.Count; i++)
        {
            var rule = rules[i] as JsonObject ?? [];
            var path = $"rules[{i}]";
            if (Strings(rule, "verbs").Count == 0)
                yield return new("FieldValueRequired", path + ".verbs", "Required value: verbs must contain at least one value");
            var urls = Strings(rule, "nonResourceURLs");
            if (urls.Count > 0)
            {
                if (namespaced)
                    yield return new("FieldValueInvalid", path + ".nonResourceURLs", $"Invalid value: {GoSlice(urls)}: namespaced rules cannot apply to non-resource URLs");
                if (Strings(rule, "apiGroups").Count > 0 || Strings(rule, "resources").Count > 0 || Strings(rule, "resourceNames").Count > 0)
                    yield return new("FieldValueInvalid", path + ".nonResourceURLs", $"Invalid value: {GoSlice(urls)}: rules cannot apply to both regular resources and non-resource URLs");
                continue;
            }
            if (Strings(rule, "apiGroups").Count == 0)
                yield return new("FieldValueRequired", path + ".apiGroups", "Required value: resource rules must supply at least one api group");
            if (Strings(rule, "resources").Count == 0)
                yield return new("FieldValueRequired", path + ".resources", "Required value: resource rules must supply at least one resource");
            if (Strings(rule, "resourceNames").Count > 0 && Strings(rule, "resources").Count > 1)
                yield return new("FieldValueRequired", path + ".resourceNames", "Required value: resource names cannot apply to multiple resources");
        }
    }

    private static IEnumerable<FieldCause> ValidateBinding(string kind, JsonObject binding, JsonObject? old)
    {
        var namespaced = kind == "RoleBinding";
        var roleRef = binding.Obj("roleRef") ?? [];
        var apiGroup = roleRef.Str("apiGroup") ?? "";
        if (apiGroup != Group)
            yield return new("FieldValueNotSupported", "roleRef.apiGroup", $"Unsupported value: {MetadataRules.GoQuote(apiGroup)}: supported values: \"{Group}\"");
        var roleKind = roleRef.Str("kind") ?? "";
        if (namespaced ? roleKind is not ("Role" or "ClusterRole") : roleKind != "ClusterRole")
            yield return new("FieldValueNotSupported", "roleRef.kind",
                $"Unsupported value: {MetadataRules.GoQuote(roleKind)}: supported values: {(namespaced ? "\"Role\", \"ClusterRole\"" : "\"ClusterRole\"")}");
        var roleName = roleRef.Str("name") ?? "";
        if (roleName.Length == 0) yield return new("FieldValueRequired", "roleRef.name", "Required value");
        else foreach (var m in MetadataRules.PathSegmentErrors(roleName)) yield return MetadataRules.Invalid("roleRef.name", roleName, m);

        var subjects = binding.Arr("subjects") ?? [];
        for (var i = 0; i < subjects.Count; i++)
        {
            var s = subjects[i] as JsonObject ?? [];
            var path = $"subjects[{i}]";
            var name = s.Str("name") ?? "";
            var group = s.Str("apiGroup") ?? "";
            if (name.Length == 0) yield return new("FieldValueRequired", path + ".name", "Required value");
            switch (s.Str("kind") ?? "")
            {
                case "ServiceAccount":
                    if (name.Length > 0)
                        foreach (var m in MetadataRules.Dns1123SubdomainErrors(name)) yield return MetadataRules.Invalid(path + ".name", name, m);
                    if (group.Length > 0)
                        yield return new("FieldValueNotSupported", path + ".apiGroup", $"Unsupported value: {MetadataRules.GoQuote(group)}: supported values: \"\"");
                    if (!namespaced && string.IsNullOrEmpty(s.Str("namespace")))
                        yield return new("FieldValueRequired", path + ".namespace", "Required value");
                    break;
                case "User" or "Group":
                    if (name.Length == 0)
                        yield return MetadataRules.Invalid(path + ".name", name, $"{s.Str("kind")!.ToLowerInvariant()} name cannot be empty");
                    if (group != Group)
                        yield return new("FieldValueNotSupported", path + ".apiGroup", $"Unsupported value: {MetadataRules.GoQuote(group)}: supported values: \"{Group}\"");
                    break;
                case var other:
                    yield return new("FieldValueNotSupported", path + ".kind", $"Unsupported value: {MetadataRules.GoQuote(other)}: supported values: \"ServiceAccount\", \"User\", \"Group\"");
                    break;
            }
        }
        if (old is not null && !JsonNode.DeepEquals(roleRef, old.Obj("roleRef")))
            yield return new("FieldValueInvalid", "roleRef",
                $"Invalid value: rbac.RoleRef{{APIGroup:{MetadataRules.GoQuote(apiGroup)}, Kind:{MetadataRules.GoQuote(roleKind)}, Name:{MetadataRules.GoQuote(roleName)}}}: cannot change roleRef");
    }
}
