using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// Discovery documents for kubectl 1.32 and client libraries: /version (v1.32.x so the kubectl dispatcher picks
/// kubectl 1.32), /api, /apis, /apis/GROUP and the per-group-version APIResourceLists with short names,
/// categories and subresources. Served as unaggregated discovery (plain application/json), which clients
/// asking for the aggregated apidiscovery.k8s.io/v2 format accept as the fallback.
/// </summary>
internal static class Discovery
{
    public const string GitVersion = "v1.32.4";

    public static JsonObject Version() => new()
    {
        ["major"] = "1",
        ["minor"] = "32",
        ["gitVersion"] = GitVersion,
        ["gitCommit"] = "59526cd4867447956156ae3a602fcbac10a2c335",
        ["gitTreeState"] = "clean",
        ["buildDate"] = "2025-04-22T16:03:51Z",
        ["goVersion"] = "go1.23.6",
        ["compiler"] = "gc",
        ["platform"] = "linux/amd64",
    };

    public static JsonObject CoreVersions(string serverAddress) => new()
    {
        ["kind"] = "APIVersions",
        ["versions"] = new JsonArray("v1"),
        ["serverAddressByClientCIDRs"] = new JsonArray(new JsonObject { ["clientCIDR"] = "0.0.0.0/0", ["serverAddress"] = serverAddress }),
    };

    private static JsonObject Group(string name)
    {
        var gv = new JsonObject { ["groupVersion"] = name + "/v1", ["version"] = "v1" };
        return new JsonObject
        {
            ["name"] = name,
            ["versions"] = new JsonArray(gv),
            ["preferredVersion"] = gv.DeepClone(),
        };
    }

    public static JsonObject GroupList() => new()
    {
        ["kind"] = "APIGroupList",
        ["apiVersion"] = "v1",
        ["groups"] = new JsonArray(ResourceCatalog.Groups.Select(g => (JsonNode)Group(g)).ToArray()),
    };

    public static JsonObject? GroupDocument(string group)
    {
        if (!ResourceCatalog.Groups.Contains(group)) return null;
        var g = Group(group);
        var result = new JsonObject { ["kind"] = "APIGroup", ["apiVersion"] = "v1" };
        foreach (var (k, v) in g) result[k] = v?.DeepClone();
        return result;
    }

    public static JsonObject? ResourceList(string groupVersion)
    {
        if (!ResourceCatalog.IsServedGroupVersion(groupVersion)) return null;
        var resources = new JsonArray();
        foreach (var rt in ResourceCatalog.InGroupVersion(groupVersion))
        {
            string[] verbs = rt == ResourceCatalog.Namespaces
                ? ["create", "delete", "get", "list", "patch", "update", "watch"]
                : ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
            var r = new JsonObject
            {
                ["name"] = rt.Plural,
                ["singularName"] = rt.Singular,
                ["namespaced"] = rt.Namespaced,
                ["kind"] = rt.Kind,
                ["verbs"] = new JsonArray(verbs.Select(v => (JsonNode)v).ToArray()),
            };
            if (rt.ShortNames.Length > 0) r["shortNames"] = new JsonArray(rt.ShortNames.Select(s => (JsonNode)s).ToArray());
            if (rt.Categories.Length > 0) r["categories"] = new JsonArray(rt.Categories.Select(s => (JsonNode)s).ToArray());
            resources.Add(r);
            foreach (var sub in rt.Subresources)
            {
                var subresource = new JsonObject
                {
                    ["name"] = rt.Plural + "/" + sub,
                    ["singularName"] = "",
                    ["namespaced"] = rt.Namespaced,
                };
                if (sub == "scale")
                {
                    subresource["group"] = "autoscaling";
                    subresource["version"] = "v1";
                    subresource["kind"] = "Scale";
                }
                else subresource["kind"] = rt.Kind;
                subresource["verbs"] = sub == "finalize" ? new JsonArray("update") : new JsonArray("get", "patch", "update");
                resources.Add(subresource);
            }
        }
        return new JsonObject
        {
            ["kind"] = "APIResourceList",
            ["apiVersion"] = "v1",
            ["groupVersion"] = groupVersion,
            ["resources"] = resources,
        };
    }
}
