using System.Collections.Concurrent;
using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>Request accounting for the lab's reliability tests: counts per verb × resource and per client × verb ×
/// resource, lock-free on the request path. Served at GET /_lab/stats (format in <see cref="LabEndpoints"/>).</summary>
internal sealed class RequestStats
{
    private sealed class Counter
    {
        public long Value;
    }

    private readonly ConcurrentDictionary<(string Verb, string Resource), Counter> _byVerb = new();
    private readonly ConcurrentDictionary<(string Client, string Verb, string Resource), Counter> _byClient = new();
    private long _total;
    private DateTimeOffset _since = DateTimeOffset.UtcNow;

    public void Count(string client, string verb, string resource)
    {
        Interlocked.Increment(ref _total);
        Interlocked.Increment(ref _byVerb.GetOrAdd((verb, resource), static _ => new Counter()).Value);
        Interlocked.Increment(ref _byClient.GetOrAdd((client, verb, resource), static _ => new Counter()).Value);
    }

    /// <summary>How many requests of a verb on a resource were counted (e.g. ("update", "services/status")).</summary>
    public long Get(string verb, string resource) => _byVerb.TryGetValue((verb, resource), out var c) ? Volatile.Read(ref c.Value) : 0;

    public long GetForClient(string client, string verb, string resource) =>
        _byClient.TryGetValue((client, verb, resource), out var c) ? Volatile.Read(ref c.Value) : 0;

    public long Total => Volatile.Read(ref _total);

    public void Reset()
    {
        _byVerb.Clear();
        _byClient.Clear();
        Interlocked.Exchange(ref _total, 0);
        _since = DateTimeOffset.UtcNow;
    }

    public JsonObject Snapshot()
    {
        var requests = new JsonObject();
        foreach (var ((verb, resource), c) in _byVerb.OrderBy(kv => kv.Key.Verb, StringComparer.Ordinal).ThenBy(kv => kv.Key.Resource, StringComparer.Ordinal))
            requests.Ensure(verb)[resource] = Volatile.Read(ref c.Value);
        var clients = new JsonObject();
        foreach (var ((client, verb, resource), c) in _byClient.OrderBy(kv => kv.Key.Client, StringComparer.Ordinal)
                     .ThenBy(kv => kv.Key.Verb, StringComparer.Ordinal).ThenBy(kv => kv.Key.Resource, StringComparer.Ordinal))
            clients.Ensure(client).Ensure(verb)[resource] = Volatile.Read(ref c.Value);
        return new JsonObject
        {
            ["since"] = Json.MicroTimestamp(_since),
            ["total"] = Total,
            ["requests"] = requests,
            ["clients"] = clients,
        };
    }
}
