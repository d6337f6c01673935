using System.Text;
using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// The OpenAPI documents kubectl needs for `apply` and `create` with validation on (the default):
/// <list type="bullet">
/// <item>/openapi/v3 and /openapi/v3/{api/v1,apis/GROUP/v1}: every PATCH/PUT/POST operation tagged with its
/// x-kubernetes-group-version-kind and listing the fieldValidation query parameter, so kubectl's
/// query-param verifier concludes the server validates fields itself and sends fieldValidation=Strict
/// instead of validating on the client. components.schemas is present but empty, so kubectl computes
/// strategic merge patches from its compiled-in Go types (exactly what it does for built-in kinds).</item>
/// <item>/openapi/v2: a minimal valid gnostic OpenAPIv2 Document (protobuf, or JSON when asked), because kubectl's
/// validator construction downloads it; with no definitions, client-side schema validation has nothing to
/// reject.</item>
/// </list>
/// </summary>
internal static class OpenApi
{
    private const string Hash = "0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9";

    public static JsonObject V3Root()
    {
        var paths = new JsonObject();
        foreach (var gv in ResourceCatalog.All.Select(r => r.GroupVersion).Distinct())
        {
            var path = gv.Contains('/') ? "apis/" + gv : "api/" + gv;
            paths[path] = new JsonObject { ["serverRelativeURL"] = "/openapi/v3/" + path + "?hash=" + Hash };
        }
        return new JsonObject { ["paths"] = paths };
    }

    public static JsonObject? V3GroupVersion(string path)
    {
        var gv = path.StartsWith("apis/", StringComparison.Ordinal) ? path[5..] : path.StartsWith("api/", StringComparison.Ordinal) ? path[4..] : null;
        if (gv is null || !ResourceCatalog.IsServedGroupVersion(gv)) return null;
        var paths = new JsonObject();
        foreach (var rt in ResourceCatalog.InGroupVersion(gv))
        {
            var collection = rt.ApiPrefix + (rt.Namespaced ? "/namespaces/{namespace}/" : "/") + rt.Plural;
            var item = collection + "/{name}";
            paths[collection] = new JsonObject
            {
                ["get"] = Operation(rt, "list", false),
                ["post"] = Operation(rt, "post", true),
                ["parameters"] = PathParameters(rt, false),
            };
            paths[item] = new JsonObject
            {
                ["get"] = Operation(rt, "get", false),
                ["put"] = Operation(rt, "put", true),
                ["patch"] = Operation(rt, "patch", true),
                ["delete"] = Operation(rt, "delete", false),
                ["parameters"] = PathParameters(rt, true),
            };
            foreach (var sub in rt.Subresources.Where(s => s != "scale"))
            {
                paths[item + "/" + sub] = new JsonObject
                {
                    ["get"] = Operation(rt, "get", false),
                    ["put"] = Operation(rt, "put", true),
                    ["patch"] = Operation(rt, "patch", true),
                    ["parameters"] = PathParameters(rt, true),
                };
            }
        }
        return new JsonObject
        {
            ["openapi"] = "3.0.0",
            ["info"] = new JsonObject { ["title"] = "Kubernetes", ["version"] = Discovery.GitVersion },
            ["paths"] = paths,
            ["components"] = new JsonObject { ["schemas"] = new JsonObject() },
        };
    }

    private static JsonArray PathParameters(ResourceType rt, bool named)
    {
        var list = new JsonArray();
        if (named) list.Add(Param("name", "path", true));
        if (rt.Namespaced) list.Add(Param("namespace", "path", true));
        list.Add(Param("pretty", "query", false));
        return list;
    }

    private static JsonObject Param(string name, string @in, bool required) => new()
    {
        ["name"] = name,
        ["in"] = @in,
        ["required"] = required,
        ["schema"] = new JsonObject { ["type"] = "string", ["uniqueItems"] = true },
    };

    private static JsonObject Operation(ResourceType rt, string action, bool writes)
    {
        var parameters = new JsonArray();
        if (writes)
        {
            parameters.Add(Param("dryRun", "query", false));
            parameters.Add(Param("fieldManager", "query", false));
            parameters.Add(Param("fieldValidation", "query", false));
            if (action == "patch") parameters.Add(Param("force", "query", false));
        }
        return new JsonObject
        {
            ["operationId"] = action + rt.Kind,
            ["parameters"] = parameters,
            ["responses"] = new JsonObject { ["200"] = new JsonObject { ["description"] = "OK" } },
            ["x-kubernetes-action"] = action,
            ["x-kubernetes-group-version-kind"] = new JsonObject { ["group"] = rt.Group, ["version"] = rt.Version, ["kind"] = rt.Kind },
        };
    }

    public static JsonObject V2Json() => new()
    {
        ["swagger"] = "2.0",
        ["info"] = new JsonObject { ["title"] = "Kubernetes", ["version"] = Discovery.GitVersion },
        ["paths"] = new JsonObject(),
        ["definitions"] = new JsonObject(),
    };

    /// <summary>The same document as protobuf (gnostic openapi_v2.Document: swagger=1, info=2{title=1,version=2}, paths=8, definitions=9).</summary>
    public static byte[] V2Protobuf()
    {
        var info = new List<byte>();
        AddString(info, 1, "Kubernetes");
        AddString(info, 2, Discovery.GitVersion);
        var doc = new List<byte>();
        AddString(doc, 1, "2.0");
        AddBytes(doc, 2, info);
        AddBytes(doc, 8, []);
        AddBytes(doc, 9, []);
        return [.. doc];
    }

    private static void AddString(List<byte> buffer, int field, string value) => AddBytes(buffer, field, Encoding.UTF8.GetBytes(value));

    private static void AddBytes(List<byte> buffer, int field, IReadOnlyCollection<byte> value)
    {
        AddVarint(buffer, (ulong)((field << 3) | 2));
        AddVarint(buffer, (ulong)value.Count);
        buffer.AddRange(value);
    }

    private static void AddVarint(List<byte> buffer, ulong v)
    {
        while (v >= 0x80)
        {
            buffer.Add((byte)(v | 0x80));
            v >>= 7;
        }
        buffer.Add((byte)v);
    }
}
