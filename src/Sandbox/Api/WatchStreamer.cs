using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.AspNetCore.Http;

namespace Hybrid.Sandbox.Api;

/// <summary>What a watch request asked for.</summary>
internal sealed record WatchRequest(
    ResourceType Resource,
    string? Namespace,
    Selector Selector,
    long? FromRv,
    bool SendInitialEvents,
    bool Bookmarks,
    TimeSpan? Timeout,
    string? TableApiVersion,
    string IncludeObject,
    string Client);

/// <summary>
/// Serves one watch as the API server does: HTTP 200 with a chunked body flushed at once, one compact JSON line
/// per event ({"type":"ADDED","object":{...}}), synthetic ADDED events for the current state when no RV was
/// given, replay from history after an RV, a single ERROR event with a 410 Expired Status when that history is
/// gone, selector transitions reported as ADDED/DELETED, BOOKMARKs when allowed, and timeoutSeconds.
/// </summary>
internal sealed class WatchStreamer(ObjectStore store, TimeSpan bookmarkInterval)
{
    private static readonly byte[] AddedPrefix = Encoding.UTF8.GetBytes("{\"type\":\"ADDED\",\"object\":");
    private static readonly byte[] ModifiedPrefix = Encoding.UTF8.GetBytes("{\"type\":\"MODIFIED\",\"object\":");
    private static readonly byte[] DeletedPrefix = Encoding.UTF8.GetBytes("{\"type\":\"DELETED\",\"object\":");
    private static readonly byte[] BookmarkPrefix = Encoding.UTF8.GetBytes("{\"type\":\"BOOKMARK\",\"object\":");
    private static readonly byte[] ErrorPrefix = Encoding.UTF8.GetBytes("{\"type\":\"ERROR\",\"object\":");
    private static readonly byte[] Suffix = Encoding.UTF8.GetBytes("}\n");

    public async Task ServeAsync(HttpContext ctx, WatchRequest request, CancellationToken cancellationToken)
    {
        var rt = request.Resource;
        var start = store.Subscribe(rt.Bucket, rt.Namespaced ? request.Namespace : null, request.FromRv, request.Client);
        var response = ctx.Response;
        response.StatusCode = 200;
        response.ContentType = "application/json";
        response.Headers.CacheControl = "no-cache, private";
        await response.StartAsync(cancellationToken);
        var writer = response.BodyWriter;
        if (start.Subscription is null)
        {
            var status = ApiException.Gone($"too old resource version: {request.FromRv} ({start.OldestRv})").Status;
            Write(writer, ErrorPrefix, Json.ToBytes(status));
            await writer.FlushAsync(cancellationToken);
            return;
        }
        await writer.FlushAsync(cancellationToken);

        using var subscription = start.Subscription;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (request.Timeout is { } t) timeout.CancelAfter(t);
        var token = timeout.Token;
        var columnsSent = false;
        var lastSentRv = start.CurrentRv;

        void Emit(StoreChange change)
        {
            var (prefix, obj) = Classify(request.Selector, change);
            if (prefix is null) return;
            byte[] body;
            if (request.TableApiVersion is { } tableVersion)
            {
                body = Json.ToBytes(TableRenderer.Table(rt, [obj], change.Rv, null, request.IncludeObject, tableVersion, !columnsSent));
                columnsSent = true;
            }
            else body = ResourceService.ViewBytes(rt, obj);
            Write(writer, prefix, body);
            lastSentRv = Math.Max(lastSentRv, change.Rv);
        }

        try
        {
            foreach (var change in start.Backlog) Emit(change);
            if (request.SendInitialEvents && request.FromRv is null)
            {
                Write(writer, BookmarkPrefix, Bookmark(rt, start.CurrentRv, initialEventsEnd: true));
            }
            await writer.FlushAsync(token);

            var reader = subscription.Changes;
            var lastBookmark = DateTimeOffset.UtcNow;
            var timedOut = false;
            while (!token.IsCancellationRequested)
            {
                bool more;
                using (var tick = CancellationTokenSource.CreateLinkedTokenSource(token))
                {
                    tick.CancelAfter(bookmarkInterval);
                    try { more = await reader.WaitToReadAsync(tick.Token); }
                    catch (OperationCanceledException) { more = !token.IsCancellationRequested; if (!more) timedOut = !cancellationToken.IsCancellationRequested; }
                }
                if (!more) break;
                var wrote = false;
                while (reader.TryRead(out var change))
                {
                    Emit(change);
                    wrote = true;
                }
                if (request.Bookmarks && DateTimeOffset.UtcNow - lastBookmark >= bookmarkInterval)
                {
                    Write(writer, BookmarkPrefix, Bookmark(rt, Math.Max(lastSentRv, store.CurrentRv), false));
                    lastBookmark = DateTimeOffset.UtcNow;
                    wrote = true;
                }
                if (wrote) await writer.FlushAsync(token);
            }
            if (request.Bookmarks && timedOut)
            {
                Write(writer, BookmarkPrefix, Bookmark(rt, Math.Max(lastSentRv, store.CurrentRv), false));
                await writer.FlushAsync(cancellationToken);
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (ChannelClosedException)
        {
        }
    }

    /// <summary>The event type a watcher with this selector sees for a change (null = not shown) and the object to send.</summary>
    private static (byte[]? Prefix, StoredObject Object) Classify(Selector selector, StoreChange change)
    {
        if (selector.IsEverything)
        {
            return (change.Type switch
            {
                ChangeType.Added => AddedPrefix,
                ChangeType.Modified => ModifiedPrefix,
                _ => DeletedPrefix,
            }, change.Object);
        }
        switch (change.Type)
        {
            case ChangeType.Added:
                return (selector.Matches(change.Object.Node) ? AddedPrefix : null, change.Object);
            case ChangeType.Deleted:
                return (selector.Matches(change.Object.Node) ? DeletedPrefix : null, change.Object);
            default:
                var now = selector.Matches(change.Object.Node);
                var before = change.Old is not null && selector.Matches(change.Old.Node);
                return ((before, now) switch
                {
                    (true, true) => ModifiedPrefix,
                    (true, false) => DeletedPrefix,
                    (false, true) => AddedPrefix,
                    _ => null,
                }, change.Object);
        }
    }

    private static byte[] Bookmark(ResourceType rt, long rv, bool initialEventsEnd)
    {
        var meta = new JsonObject { ["resourceVersion"] = rv.ToString(CultureInfo.InvariantCulture), ["creationTimestamp"] = null };
        if (initialEventsEnd) meta["annotations"] = new JsonObject { ["k8s.io/initial-events-end"] = "true" };
        return Json.ToBytes(new JsonObject { ["kind"] = rt.Kind, ["apiVersion"] = rt.GroupVersion, ["metadata"] = meta });
    }

    private static void Write(System.IO.Pipelines.PipeWriter writer, byte[] prefix, byte[] body)
    {
        var span = writer.GetSpan(prefix.Length + body.Length + Suffix.Length);
        prefix.CopyTo(span);
        body.CopyTo(span[prefix.Length..]);
        Suffix.CopyTo(span[(prefix.Length + body.Length)..]);
        writer.Advance(prefix.Length + body.Length + Suffix.Length);
    }
}
