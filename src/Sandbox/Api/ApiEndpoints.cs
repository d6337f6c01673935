using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Hybrid.Sandbox.Api;

/// <summary>What one request addresses, parsed from its path, method and query.</summary>
internal sealed record RequestTarget(string Verb, ResourceType Resource, string? Namespace, string? Name, string? Subresource, bool LegacyWatchPath)
{
    /// <summary>The resource as counted in stats and matched by fault rules: "leases", "services/status".</summary>
    public string StatsResource => Subresource is null ? Resource.Plural : Resource.Plural + "/" + Subresource;
}

/// <summary>
/// The HTTP surface of the emulator: routes Kubernetes API paths (/api/v1/..., /apis/GROUP/v1/..., namespaced,
/// all-namespaces and legacy /watch/ paths, ?watch=true) to <see cref="ResourceService"/> and
/// <see cref="WatchStreamer"/>, serves discovery, /version and OpenAPI, negotiates Table and
/// PartialObjectMetadata responses, and applies the lab's request accounting and fault rules to every
/// request. The lab hooks themselves (/_lab/stats, /_lab/faults) are documented in <see cref="LabEndpoints"/>.
/// </summary>
internal sealed class ApiEndpoints(
    ResourceService resources,
    WatchStreamer watches,
    RequestStats stats,
    FaultInjector faults,
    LabEndpoints lab,
    ILogger logger,
    bool verbose)
{
    private static readonly byte[] Ok = "ok"u8.ToArray();
    private string _serverAddress = "127.0.0.1:6443";

    public void SetServerAddress(string address) => _serverAddress = address;

    public static string ClientOf(HttpContext ctx)
    {
        var items = ctx.Features.Get<IConnectionItemsFeature>()?.Items;
        if (items is not null && items.TryGetValue(ClientConnections.ClientItemKey, out var v) && v is string s) return s;
        return ctx.Connection.RemoteIpAddress is { } ip ? ClientConnections.Normalize(ip) : "unknown";
    }

    public async Task HandleAsync(HttpContext ctx)
    {
        var path = ctx.Request.Path.Value ?? "/";
        if (path.StartsWith("/_lab", StringComparison.Ordinal))
        {
            await lab.HandleAsync(ctx, path);
            return;
        }
        var client = ClientOf(ctx);
        if (faults.IsPartitioned(client))
        {
            ctx.Abort();
            return;
        }
        var started = verbose ? Stopwatch.GetTimestamp() : 0;
        try
        {
            await DispatchAsync(ctx, path, client);
        }
        catch (ApiException e)
        {
            await WriteErrorAsync(ctx, e);
        }
        catch (JsonException e)
        {
            await WriteErrorAsync(ctx, ApiException.BadRequest("the object provided is unrecognized: " + e.Message));
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
        }
        if (verbose)
            logger.LogInformation("{Client} {Method} {Path}{Query} -> {Status} in {Elapsed} ms", client, ctx.Request.Method, path,
                ctx.Request.QueryString.Value, ctx.Response.StatusCode, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    private static async Task WriteErrorAsync(HttpContext ctx, ApiException e)
    {
        if (ctx.Response.HasStarted) return;
        ctx.Response.StatusCode = e.Code;
        if (e.RetryAfterSeconds is { } r) ctx.Response.Headers.RetryAfter = r.ToString(CultureInfo.InvariantCulture);
        await WriteJsonAsync(ctx, Json.ToBytes(e.Status), e.Code);
    }

    private static async Task WriteJsonAsync(HttpContext ctx, byte[] body, int status = 200, string contentType = "application/json")
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = contentType;
        ctx.Response.ContentLength = body.Length;
        await ctx.Response.Body.WriteAsync(body, ctx.RequestAborted);
    }

    private static Task WriteJsonAsync(HttpContext ctx, JsonNode body, int status = 200) => WriteJsonAsync(ctx, Json.ToBytes(body), status);

    private async Task DispatchAsync(HttpContext ctx, string path, string client)
    {
        var method = ctx.Request.Method;
        var segments = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var target = ParseTarget(method, segments, ctx.Request.Query);
        var verb = target?.Verb ?? (method == "GET" ? "get" : method.ToLowerInvariant());
        var resource = target?.StatsResource ?? "";
        if (target is not null) stats.Count(client, verb, resource);

        var (failure, delay) = faults.Evaluate(client, verb, method, resource, path + ctx.Request.QueryString.Value);
        if (delay > TimeSpan.Zero) await Task.Delay(delay, ctx.RequestAborted);
        if (failure is not null) throw failure;

        if (target is not null)
        {
            await ServeResourceAsync(ctx, target, client);
            return;
        }
        if (method != "GET") throw ApiException.MethodNotAllowed();
        switch (segments)
        {
            case []:
                await WriteJsonAsync(ctx, new JsonObject { ["paths"] = new JsonArray("/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version") });
                return;
            case ["version"]:
                await WriteJsonAsync(ctx, Discovery.Version());
                return;
            case ["healthz" or "livez" or "readyz", ..]:
                await WriteJsonAsync(ctx, Ok, 200, "text/plain; charset=utf-8");
                return;
            case ["api"]:
                await WriteJsonAsync(ctx, Discovery.CoreVersions(_serverAddress));
                return;
            case ["api", var v]:
                await WriteJsonAsync(ctx, Discovery.ResourceList(v) ?? throw ApiException.PathNotFound());
                return;
            case ["apis"]:
                await WriteJsonAsync(ctx, Discovery.GroupList());
                return;
            case ["apis", var g]:
                await WriteJsonAsync(ctx, Discovery.GroupDocument(g) ?? throw ApiException.PathNotFound());
                return;
            case ["apis", var g, var v]:
                await WriteJsonAsync(ctx, Discovery.ResourceList(g + "/" + v) ?? throw ApiException.PathNotFound());
                return;
            case ["openapi", "v2"]:
                var accept = ctx.Request.Headers.Accept.ToString();
                if (accept.Contains("protobuf", StringComparison.Ordinal))
                    // kube-openapi answers the deprecated '@' media type with a parseable one: Go's mime parser
                    // (client-go) rejects '@' ("mime: unexpected content after media subtype").
                    await WriteJsonAsync(ctx, OpenApi.V2Protobuf(), 200, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf");
                else await WriteJsonAsync(ctx, OpenApi.V2Json());
                return;
            case ["openapi", "v3"]:
                await WriteJsonAsync(ctx, OpenApi.V3Root());
                return;
            case ["openapi", "v3", .. var rest]:
                await WriteJsonAsync(ctx, OpenApi.V3GroupVersion(string.Join('/', rest)) ?? throw ApiException.PathNotFound());
                return;
            default:
                throw ApiException.PathNotFound();
        }
    }

    /// <summary>Parses a resource path; null for non-resource paths (discovery, version, openapi).</summary>
    private static RequestTarget? ParseTarget(string method, string[] segments, IQueryCollection query)
    {
        string groupVersion;
        int index;
        if (segments.Length >= 3 && segments[0] == "api") { groupVersion = segments[1]; index = 2; }
        else if (segments.Length >= 4 && segments[0] == "apis") { groupVersion = segments[1] + "/" + segments[2]; index = 3; }
        else return null;
        if (!ResourceCatalog.IsServedGroupVersion(groupVersion)) throw ApiException.PathNotFound();
        var rest = segments.AsSpan(index);
        var legacyWatch = false;
        if (rest.Length > 0 && rest[0] == "watch")
        {
            legacyWatch = true;
            rest = rest[1..];
        }
        string? ns = null;
        if (rest.Length >= 3 && rest[0] == "namespaces" && !(groupVersion == "v1" && rest.Length == 3 && rest[2] is "status" or "finalize"))
        {
            ns = rest[1];
            rest = rest[2..];
        }
        if (rest.Length is 0 or > 3) throw ApiException.PathNotFound();
        var rt = ResourceCatalog.Find(groupVersion, rest[0]) ?? throw ApiException.PathNotFound();
        var name = rest.Length > 1 ? rest[1] : null;
        var sub = rest.Length > 2 ? rest[2] : null;
        if (sub is not null && !rt.Subresources.Contains(sub)) throw ApiException.PathNotFound();
        if (ns is not null && !rt.Namespaced) throw ApiException.PathNotFound();
        if (rt.Namespaced && ns is null && name is not null) throw ApiException.PathNotFound();
        // As kube-apiserver's RequestInfo: ?watch turns a collection GET into a watch; a GET of one object
        // stays a get (only the deprecated /watch/ paths watch one object).
        var watchQuery = name is null && QueryParameters.Flag(query, "watch");
        var verb = method switch
        {
            "GET" when legacyWatch || watchQuery => "watch",
            "GET" => name is null ? "list" : "get",
            "POST" when name is null && sub is null => "create",
            "PUT" when name is not null => "update",
            "PATCH" when name is not null => "patch",
            "DELETE" => name is null ? "deletecollection" : "delete",
            _ => throw ApiException.MethodNotAllowed(),
        };
        if (rt.Namespaced && ns is null && verb is "create" or "deletecollection") throw ApiException.MethodNotAllowed();
        return new RequestTarget(verb, rt, ns, name, sub, legacyWatch);
    }

    private async Task ServeResourceAsync(HttpContext ctx, RequestTarget t, string client)
    {
        var q = ctx.Request.Query;
        var rt = t.Resource;
        if (t.Subresource == "scale")
        {
            await ServeScaleAsync(ctx, t);
            return;
        }
        switch (t.Verb)
        {
            case "get":
            {
                var o = resources.Get(rt, t.Namespace, t.Name!);
                await WriteObjectAsync(ctx, rt, o, 200);
                return;
            }
            case "list":
            {
                var selector = Selector.Parse(q["labelSelector"], q["fieldSelector"]);
                var limit = QueryParameters.Integer(q, "limit") ?? 0;
                var page = resources.List(rt, t.Namespace, selector, limit, q["continue"]);
                await WriteListAsync(ctx, rt, page);
                return;
            }
            case "watch":
            {
                var fieldSelector = q["fieldSelector"].ToString();
                if (t.Name is not null) fieldSelector = string.IsNullOrEmpty(fieldSelector) ? "metadata.name=" + t.Name : fieldSelector + ",metadata.name=" + t.Name;
                var rvText = q["resourceVersion"].ToString();
                long? fromRv = null;
                if (rvText.Length > 0 && rvText != "0")
                {
                    if (!long.TryParse(rvText, NumberStyles.None, CultureInfo.InvariantCulture, out var rv))
                        throw ApiException.BadRequest($"resourceVersion: Invalid value: \"{rvText}\": must be a non-negative integer");
                    fromRv = rv;
                }
                var timeout = QueryParameters.Integer(q, "timeoutSeconds") is > 0 and var secs ? TimeSpan.FromSeconds(secs) : (TimeSpan?)null;
                var accept = ctx.Request.Headers.Accept.ToString();
                var request = new WatchRequest(rt, t.Namespace, Selector.Parse(q["labelSelector"], fieldSelector), fromRv,
                    QueryParameters.Flag(q, "sendInitialEvents"), QueryParameters.Flag(q, "allowWatchBookmarks"), timeout,
                    accept.Contains("as=Table", StringComparison.Ordinal) ? TableRenderer.TableApiVersion(accept) : null,
                    q["includeObject"].ToString(), client);
                await watches.ServeAsync(ctx, request, ctx.RequestAborted);
                return;
            }
            case "create":
            {
                var dryRun = QueryParameters.DryRun(q, "CreateOptions");
                var validation = QueryParameters.Validation(q, "CreateOptions");
                var body = await ReadObjectAsync(ctx, rt);
                Admit(ctx, rt, body, validation);
                var o = resources.Create(rt, t.Namespace, body, dryRun);
                await WriteObjectAsync(ctx, rt, o, 201);
                return;
            }
            case "update":
            {
                var dryRun = QueryParameters.DryRun(q, "UpdateOptions");
                var validation = QueryParameters.Validation(q, "UpdateOptions");
                var body = await ReadObjectAsync(ctx, rt);
                Admit(ctx, rt, body, validation);
                var o = resources.Update(rt, t.Namespace, t.Name!, t.Subresource, body, dryRun);
                await WriteObjectAsync(ctx, rt, o, 200);
                return;
            }
            case "patch":
            {
                var dryRun = QueryParameters.DryRun(q, "PatchOptions");
                var validation = QueryParameters.Validation(q, "PatchOptions");
                var patchType = PatchTypeOf(ctx);
                var patch = await ReadJsonAsync(ctx);
                var (o, created) = resources.Patch(rt, t.Namespace, t.Name!, t.Subresource, patchType, patch, q["fieldManager"], dryRun,
                    patched => Admit(ctx, rt, patched, validation));
                await WriteObjectAsync(ctx, rt, o, created ? 201 : 200);
                return;
            }
            case "delete":
            {
                var options = await ReadDeleteOptionsAsync(ctx, QueryParameters.DryRun(q, "DeleteOptions"));
                var (o, gone) = resources.Delete(rt, t.Namespace, t.Name!, options);
                if (!gone || rt.Bucket is "services" or "pods" or "namespaces") await WriteObjectAsync(ctx, rt, o, 200);
                else await WriteJsonAsync(ctx, ApiException.Success(rt, o.Name, o.Node.Uid()));
                return;
            }
            case "deletecollection":
            {
                var options = await ReadDeleteOptionsAsync(ctx, QueryParameters.DryRun(q, "DeleteOptions"));
                var selector = Selector.Parse(q["labelSelector"], q["fieldSelector"]);
                var deleted = new List<StoredObject>();
                foreach (var item in resources.List(rt, t.Namespace, selector).Items)
                {
                    try { deleted.Add(resources.Delete(rt, item.Namespace, item.Name, options).Object); }
                    catch (ApiException e) when (e.Code == 404) { }
                }
                await WriteListAsync(ctx, rt, new ListPage(deleted, resources.Store.CurrentRv, null, null));
                return;
            }
        }
    }

    /// <summary>Drops the fields the kind does not have, as decoding into the API's types does; reports them
    /// as the client asked (fieldValidation): 400 when Strict, a Warning header each when Warn.</summary>
    private static void Admit(HttpContext ctx, ResourceType rt, JsonObject body, FieldValidation validation)
    {
        var unknown = KnownFields.Prune(rt, body);
        if (unknown.Count == 0 || validation == FieldValidation.Ignore) return;
        if (validation == FieldValidation.Strict)
            throw ApiException.BadRequest($"{rt.Kind} in version \"{rt.Version}\" cannot be handled as a {rt.Kind}: strict decoding error: "
                + string.Join(", ", unknown.Select(f => $"unknown field \"{f}\"")));
        foreach (var field in unknown) ctx.Response.Headers.Append("Warning", $"299 - \"unknown field \\\"{field}\\\"\"");
    }

    private async Task ServeScaleAsync(HttpContext ctx, RequestTarget t)
    {
        StoredObject result;
        switch (t.Verb)
        {
            case "get":
                result = resources.Get(t.Resource, t.Namespace, t.Name!);
                break;
            case "update":
                result = resources.Scale(t.Resource, t.Namespace, t.Name!, null, await ReadJsonAsync(ctx));
                break;
            case "patch":
                result = resources.Scale(t.Resource, t.Namespace, t.Name!, PatchTypeOf(ctx), await ReadJsonAsync(ctx));
                break;
            default:
                throw ApiException.MethodNotAllowed();
        }
        await WriteJsonAsync(ctx, ResourceService.ScaleOf(result));
    }

    private static string PatchTypeOf(HttpContext ctx) => (ctx.Request.ContentType ?? "").Split(';')[0].Trim() switch
    {
        "application/json-patch+json" => "json",
        "application/merge-patch+json" => "merge",
        "application/strategic-merge-patch+json" => "strategic",
        "application/apply-patch+yaml" or "application/apply-patch+json" => "apply",
        _ => throw ApiException.UnsupportedMediaType("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"),
    };

    private static async Task<JsonNode?> ReadJsonAsync(HttpContext ctx, ResourceType? protobufType = null)
    {
        var contentType = ctx.Request.ContentType ?? "";
        var protobuf = contentType.StartsWith("application/vnd.kubernetes.protobuf", StringComparison.Ordinal);
        if ((protobuf && protobufType is null) || contentType.Contains("cbor", StringComparison.Ordinal))
            throw ApiException.UnsupportedMediaType("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml");
        using var buffer = new MemoryStream();
        await ctx.Request.Body.CopyToAsync(buffer, ctx.RequestAborted);
        if (buffer.Length == 0) throw ApiException.BadRequest("the body of the request was empty");
        if (protobuf) return ProtobufDecoder.Decode(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), protobufType!);
        try
        {
            return JsonNode.Parse(buffer.GetBuffer().AsMemory(0, (int)buffer.Length).Span);
        }
        catch (JsonException e)
        {
            throw ApiException.BadRequest($"the body of the request could not be decoded as JSON: {e.Message}");
        }
    }

    private static async Task<JsonObject> ReadObjectAsync(HttpContext ctx, ResourceType rt)
    {
        var node = await ReadJsonAsync(ctx, rt);
        return node as JsonObject ?? throw ApiException.BadRequest($"the object provided is unrecognized (must be of type {rt.Kind}): json: cannot unmarshal {(node is JsonArray ? "array" : "value")} into Go value of type struct");
    }

    private static async Task<DeleteRequest> ReadDeleteOptionsAsync(HttpContext ctx, bool dryRun)
    {
        var q = ctx.Request.Query;
        string? policy = q["propagationPolicy"];
        string? uid = null, rv = null;
        if (QueryParameters.Flag(q, "orphanDependents")) policy = "Orphan";
        if (ctx.Request.ContentLength is > 0 || ctx.Request.Headers.TransferEncoding.Count > 0)
        {
            using var buffer = new MemoryStream();
            await ctx.Request.Body.CopyToAsync(buffer, ctx.RequestAborted);
            if (buffer.Length > 0 && !(ctx.Request.ContentType ?? "").Contains("protobuf", StringComparison.Ordinal))
            {
                JsonObject? body;
                try { body = JsonNode.Parse(buffer.ToArray()) as JsonObject; }
                catch (JsonException e) { throw ApiException.BadRequest("invalid DeleteOptions: " + e.Message); }
                policy = body.Str("propagationPolicy") ?? (body.Bool("orphanDependents") == true ? "Orphan" : policy);
                uid = body.Obj("preconditions").Str("uid");
                rv = body.Obj("preconditions").Str("resourceVersion");
                if (body.Arr("dryRun")?.Any(d => d?.ToString() == "All") == true) dryRun = true;
            }
        }
        return new DeleteRequest(policy, uid, rv, dryRun);
    }

    private static string Accept(HttpContext ctx) => ctx.Request.Headers.Accept.ToString();

    private static async Task WriteObjectAsync(HttpContext ctx, ResourceType rt, StoredObject o, int status)
    {
        var accept = Accept(ctx);
        if (accept.Contains("as=Table", StringComparison.Ordinal))
        {
            await WriteJsonAsync(ctx, Json.ToBytes(TableRenderer.Table(rt, [o], o.Rv, null, ctx.Request.Query["includeObject"].ToString(),
                TableRenderer.TableApiVersion(accept))), status);
            return;
        }
        if (accept.Contains("as=PartialObjectMetadata", StringComparison.Ordinal))
        {
            await WriteJsonAsync(ctx, Json.ToBytes(PartialMetadata(rt, o)), status);
            return;
        }
        await WriteJsonAsync(ctx, ResourceService.ViewBytes(rt, o), status);
    }

    private static JsonObject PartialMetadata(ResourceType rt, StoredObject o) => new()
    {
        ["kind"] = "PartialObjectMetadata",
        ["apiVersion"] = "meta.k8s.io/v1",
        ["metadata"] = ResourceService.View(rt, o).Obj("metadata")?.DeepClone(),
    };

    private static async Task WriteListAsync(HttpContext ctx, ResourceType rt, ListPage page)
    {
        var accept = Accept(ctx);
        if (accept.Contains("as=Table", StringComparison.Ordinal))
        {
            await WriteJsonAsync(ctx, Json.ToBytes(TableRenderer.Table(rt, page.Items, page.Rv, page.Continue,
                ctx.Request.Query["includeObject"].ToString(), TableRenderer.TableApiVersion(accept))));
            return;
        }
        var partial = accept.Contains("as=PartialObjectMetadataList", StringComparison.Ordinal);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, Json.WriterOptions))
        {
            w.WriteStartObject();
            w.WriteString("kind", partial ? "PartialObjectMetadataList" : rt.ListKind);
            w.WriteString("apiVersion", partial ? "meta.k8s.io/v1" : rt.GroupVersion);
            w.WriteStartObject("metadata");
            w.WriteString("resourceVersion", page.Rv.ToString(CultureInfo.InvariantCulture));
            if (page.Continue is not null) w.WriteString("continue", page.Continue);
            if (page.Remaining is { } remaining) w.WriteNumber("remainingItemCount", remaining);
            w.WriteEndObject();
            w.WritePropertyName("items");
            w.WriteStartArray();
            foreach (var item in page.Items)
                w.WriteRawValue(partial ? Json.ToBytes(PartialMetadata(rt, item)) : ResourceService.ViewBytes(rt, item), skipInputValidation: true);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        await WriteJsonAsync(ctx, buffer.ToArray());
    }
}
