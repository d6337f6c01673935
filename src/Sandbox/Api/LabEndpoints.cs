// =====================================================================================================
// Test hooks of the Kubernetes API emulator (not part of the Kubernetes API; paths start with /_lab).
// Requests to /_lab are never counted, faulted or partitioned.
//
// REQUEST ACCOUNTING
//   GET    /_lab/stats          -> 200 {"since":"<RFC3339 micro>","total":N,
//                                       "requests":{"<verb>":{"<resource>":N,...},...},
//                                       "clients":{"<client>":{"<verb>":{"<resource>":N,...},...},...}}
//          verb     = get | list | watch | create | update | patch | delete | deletecollection
//          resource = plural, plus "/<subresource>" for subresources: "leases", "services/status"
//          client   = remote IP ("127.0.0.1") or the ClientName of the Unix-socket listener used
//          Only resource requests count (not discovery, /version, /openapi). Faulted requests count.
//   DELETE /_lab/stats          -> 200 {"reset":true}   (also POST /_lab/stats/reset)
//
// FAULT INJECTION
//   POST   /_lab/faults  body: one fault object, an array of them, or {"faults":[...]}
//          -> 200 {"faults":[<result>,...]}  (each result is the stored rule, or the action's outcome)
//   Fault object fields (all optional unless marked):
//     "kind":   "fail" (default) | "delay" | "partition" | "dropWatches" | "compact"
//     match fields for fail/delay (all given must match; none = every request):
//       "path":      substring of the request path + query ("/leases/", "fieldSelector=")
//       "pathRegex": .NET regex over the request path + query
//       "verb":      get|list|watch|create|update|patch|delete|deletecollection, or an HTTP method (GET, PUT...)
//       "resource":  exact resource as in stats ("services/status")
//       "client":    only requests from this client (IP or Unix listener name)
//     lifetime for fail/delay: "count": N (next N matching requests), and/or "durationSeconds": S (or
//       "durationMs"); neither = until cleared.
//     fail:      "status": 409|429|500|503|... (required), "retryAfterSeconds" (429 defaults to 1; sets the
//                Retry-After header and details.retryAfterSeconds), "message" (default: the server's text).
//                The body is a metav1.Status with the reason the real server uses for that code
//                (Conflict, TooManyRequests, InternalError, ServiceUnavailable, ...).
//     delay:     "delayMs": D (required); the response is held D ms before being served (delays add up).
//     partition: "client": NAME (required), "durationSeconds"/"durationMs" (neither = until cleared).
//                The client's open connections (watches included) are aborted at once; new connections and
//                requests from it are closed without a response until the partition ends.
//                Result: {"id":"partition:NAME","kind":"partition","client":NAME,"aborted":<connections>}
//     dropWatches: closes open watch streams cleanly (the chunked body ends); optional "client" and
//                "resource" (plural) filters. Result: {"kind":"dropWatches","closed":N}
//     compact:   forgets all watch history; a watch resuming from an older RV gets a 410 ERROR event.
//                Result: {"kind":"compact","resourceVersion":"<RV compacted at>"}
//   GET    /_lab/faults         -> 200 {"faults":[rule...],"partitions":[{"id","kind","client","until"}...]}
//          rule = {"id":"fault-N","kind","path"?,"pathRegex"?,"verb"?,"resource"?,"client"?,"status"?,
//                  "retryAfterSeconds"?,"message"?,"delayMs"?,"remaining"?,"until"?,"hits":N}
//   DELETE /_lab/faults         -> 200 {"cleared":true}   every rule and every partition
//   DELETE /_lab/faults/{id}    -> 200 {"removed":true|false}   one rule, or a partition ("partition:NAME")
//   GET    /_lab/watches        -> 200 {"open":N}   open watch streams
// =====================================================================================================

using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace Hybrid.Sandbox.Api;

/// <summary>The /_lab test hooks: request stats and fault injection (formats in the comment block above).</summary>
internal sealed class LabEndpoints(RequestStats stats, FaultInjector faults, ObjectStore store, ClientConnections connections)
{
    public async Task HandleAsync(HttpContext ctx, string path)
    {
        var method = ctx.Request.Method;
        JsonNode result;
        int status = 200;
        try
        {
            result = (method, path.TrimEnd('/')) switch
            {
                ("GET", "/_lab/stats") => stats.Snapshot(),
                ("DELETE", "/_lab/stats") or ("POST", "/_lab/stats/reset") => Reset(),
                ("GET", "/_lab/faults") => new JsonObject
                {
                    ["faults"] = new JsonArray(faults.Rules.Select(r => (JsonNode)r.ToJson()).ToArray()),
                    ["partitions"] = faults.PartitionsJson(),
                },
                ("POST", "/_lab/faults") => await AddAsync(ctx),
                ("DELETE", "/_lab/faults") => Clear(),
                ("DELETE", var p) when p.StartsWith("/_lab/faults/", StringComparison.Ordinal) =>
                    new JsonObject { ["removed"] = faults.Remove(p["/_lab/faults/".Length..]) },
                ("GET", "/_lab/watches") => new JsonObject { ["open"] = store.OpenWatches() },
                _ => throw ApiException.PathNotFound(),
            };
        }
        catch (ApiException e)
        {
            result = e.Status;
            status = e.Code;
        }
        catch (JsonException e)
        {
            result = ApiException.BadRequest("invalid fault JSON: " + e.Message).Status;
            status = 400;
        }
        var bytes = Json.ToBytes(result);
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = bytes.Length;
        await ctx.Response.Body.WriteAsync(bytes, ctx.RequestAborted);
    }

    private JsonObject Reset()
    {
        stats.Reset();
        return new JsonObject { ["reset"] = true };
    }

    private JsonObject Clear()
    {
        faults.Clear();
        return new JsonObject { ["cleared"] = true };
    }

    private async Task<JsonObject> AddAsync(HttpContext ctx)
    {
        var body = await JsonNode.ParseAsync(ctx.Request.Body, cancellationToken: ctx.RequestAborted);
        var specs = body switch
        {
            JsonArray a => a.OfType<JsonObject>().ToList(),
            JsonObject o when o.Arr("faults") is { } list => list.OfType<JsonObject>().ToList(),
            JsonObject o => [o],
            _ => throw ApiException.BadRequest("expected a fault object, an array of them, or {\"faults\":[...]}"),
        };
        var results = new JsonArray();
        foreach (var spec in specs) results.Add(Apply(spec));
        return new JsonObject { ["faults"] = results };
    }

    /// <summary>Applies one fault object (also used in-process by <see cref="ApiEmulator.InjectFault"/>).</summary>
    public JsonObject Apply(JsonObject spec)
    {
        var kind = spec.Str("kind") ?? "fail";
        TimeSpan? duration = spec.Long("durationMs") is { } ms ? TimeSpan.FromMilliseconds(ms)
            : Seconds(spec, "durationSeconds") is { } s ? TimeSpan.FromSeconds(s) : null;
        var count = spec.Long("count") ?? -1;
        switch (kind)
        {
            case "fail":
            {
                var code = (int)(spec.Long("status") ?? throw ApiException.BadRequest("a fail fault needs \"status\""));
                return faults.AddFail(code, spec.Str("path"), spec.Str("pathRegex"), spec.Str("verb"), spec.Str("resource"), spec.Str("client"),
                    count, duration, (int?)spec.Long("retryAfterSeconds"), spec.Str("message")).ToJson();
            }
            case "delay":
            {
                var delay = spec.Long("delayMs") ?? throw ApiException.BadRequest("a delay fault needs \"delayMs\"");
                return faults.AddDelay(TimeSpan.FromMilliseconds(delay), spec.Str("path"), spec.Str("pathRegex"), spec.Str("verb"),
                    spec.Str("resource"), spec.Str("client"), count, duration).ToJson();
            }
            case "partition":
            {
                var client = spec.Str("client") ?? throw ApiException.BadRequest("a partition needs \"client\"");
                faults.Partition(client, duration);
                // Abort first so the client sees a broken connection (as on a real network partition), not the
                // clean end of its watch streams; then release the subscriptions.
                var aborted = connections.Abort(client);
                var closedWatches = store.CloseWatches(s => s.Client == client);
                return new JsonObject
                {
                    ["id"] = "partition:" + client,
                    ["kind"] = "partition",
                    ["client"] = client,
                    ["aborted"] = aborted,
                    ["watchesClosed"] = closedWatches,
                };
            }
            case "dropWatches":
            {
                var client = spec.Str("client");
                var resource = spec.Str("resource");
                var closed = store.CloseWatches(s => (client is null || s.Client == client)
                    && (resource is null || ResourceCatalog.All.Any(r => r.Plural == resource && r.Bucket == s.Bucket)));
                return new JsonObject { ["kind"] = "dropWatches", ["closed"] = closed };
            }
            case "compact":
                return new JsonObject { ["kind"] = "compact", ["resourceVersion"] = store.Compact().ToString(System.Globalization.CultureInfo.InvariantCulture) };
            default:
                throw ApiException.BadRequest($"unknown fault kind \"{kind}\": expected fail, delay, partition, dropWatches or compact");
        }
    }

    /// <summary>A number of seconds, whatever CLR type backs the node (in-process faults are built with ints).</summary>
    private static double? Seconds(JsonObject spec, string key) =>
        spec.TryGetPropertyValue(key, out var v) && v is JsonValue jv && jv.GetValueKind() == System.Text.Json.JsonValueKind.Number
            ? double.Parse(jv.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture)
            : null;
}
