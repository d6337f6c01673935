using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Hybrid.Facade;

namespace Hybrid.Agent;

/// <summary>What a line of a watch stream says.</summary>
internal enum WatchEventKind { Added, Modified, Deleted, Bookmark }

/// <summary>One event of a watch: the object (for a bookmark only its resourceVersion is set).</summary>
internal readonly record struct WatchEvent<T>(WatchEventKind Kind, T Object);

/// <summary>The server no longer has the history a watch asked for (410 Expired): list again.</summary>
internal sealed class WatchExpiredException(string message) : Exception(message);

/// <summary>A watch stream ended with an ERROR event other than 410.</summary>
internal sealed class WatchErrorException(StatusObject? status)
    : Exception($"watch error {status?.Code} {status?.Reason}: {status?.Message}");

/// <summary>
/// Lists and watches one collection (path and selectors, e.g. `api/v1/services`): chunked JSON lines,
/// bookmarks, 410 as <see cref="WatchExpiredException"/>, read with the agent's source-generated serializers.
/// </summary>
internal sealed class CollectionClient<TObject>(
    ApiClient api, string path, JsonTypeInfo<TObject> objectType, JsonTypeInfo<ObjectList<TObject>> listType)
    where TObject : IApiObject
{
    public string Path => path;

    public async Task<ObjectList<TObject>> ListAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(api.ListTimeout);
        return await api.GetAsync(path, listType, timeout.Token);
    }

    /// <summary>
    /// Watches from <paramref name="version"/> until the server ends the stream (after about
    /// <paramref name="timeoutSeconds"/>), or until it has been silent past the domain's limit for that
    /// timeout; throws <see cref="WatchExpiredException"/> on 410.
    /// </summary>
    public async IAsyncEnumerable<WatchEvent<TObject>> WatchAsync(string version, int timeoutSeconds,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var query = $"watch=1&allowWatchBookmarks=true&resourceVersion={Uri.EscapeDataString(version)}&timeoutSeconds={timeoutSeconds}";
        using var silence = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        silence.CancelAfter(TimeSpan.FromMilliseconds(Configuration.WatchSilenceLimitMs(timeoutSeconds)));
        using var response = await api.OpenAsync(path + (path.Contains('?') ? '&' : '?') + query, silence.Token);
        if (response.StatusCode == HttpStatusCode.Gone) throw new WatchExpiredException($"HTTP 410 for version {version}");
        await ApiClient.EnsureSuccessAsync(response, silence.Token);
        var reader = PipeReader.Create(await response.Content.ReadAsStreamAsync(silence.Token));
        try
        {
            while (true)
            {
                ReadResult read;
                try
                {
                    read = await reader.ReadAsync(silence.Token);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    yield break; // the server stayed silent past its own timeout: open a new watch
                }
                var buffer = read.Buffer;
                while (buffer.PositionOf((byte)'\n') is { } end)
                {
                    var line = buffer.Slice(0, end);
                    buffer = buffer.Slice(buffer.GetPosition(1, end));
                    if (!IsBlank(line)) yield return Parse(line);
                }
                if (read.IsCompleted)
                {
                    if (!IsBlank(buffer)) yield return Parse(buffer);
                    yield break;
                }
                reader.AdvanceTo(buffer.Start, buffer.End);
            }
        }
        finally
        {
            await reader.CompleteAsync();
        }
    }

    // {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}, in either order.
    private WatchEvent<TObject> Parse(ReadOnlySequence<byte> line)
    {
        var json = new Utf8JsonReader(line);
        var body = default(Utf8JsonReader);
        var hasBody = false;
        string? type = null;
        json.Read();
        while (json.Read() && json.TokenType == JsonTokenType.PropertyName)
        {
            var isType = json.ValueTextEquals("type"u8);
            var isObject = json.ValueTextEquals("object"u8);
            json.Read();
            if (isType) type = json.GetString();
            else if (isObject)
            {
                body = json; // a copy, positioned at the object's opening brace
                hasBody = true;
            }
            json.Skip();
        }
        if (!hasBody) throw new JsonException($"watch event of {path} without an object (type {type})");
        if (type == "ERROR")
        {
            var status = JsonSerializer.Deserialize(ref body, ApiJson.Default.StatusObject);
            if (status?.Code == 410) throw new WatchExpiredException(status.Message ?? "410 Expired");
            throw new WatchErrorException(status);
        }
        var kind = type switch
        {
            "ADDED" => WatchEventKind.Added,
            "MODIFIED" => WatchEventKind.Modified,
            "DELETED" => WatchEventKind.Deleted,
            "BOOKMARK" => WatchEventKind.Bookmark,
            _ => throw new JsonException($"unknown watch event type '{type}' from {path}"),
        };
        return new(kind, JsonSerializer.Deserialize(ref body, objectType) ?? throw new JsonException($"null object in a watch event of {path}"));
    }

    private static bool IsBlank(ReadOnlySequence<byte> line)
    {
        foreach (var segment in line)
            if (segment.Span.IndexOfAnyExcept(" \t\r"u8) >= 0) return false;
        return true;
    }
}
