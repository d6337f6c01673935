using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// Runtime fault rules (POST /_lab/faults): fail or delay requests that match a path substring or regex, a verb,
/// a resource and/or a client, for the next N requests or for a duration; and partitions that cut a client off.
/// The request path asks <see cref="Evaluate"/> and <see cref="IsPartitioned"/>; both return at once when no rule
/// exists. The JSON formats are documented in <see cref="LabEndpoints"/>.
/// </summary>
internal sealed class FaultInjector
{
    internal sealed class Rule
    {
        public required string Id { get; init; }
        public required string Kind { get; init; } // fail | delay
        public string? Path { get; init; }
        public Regex? PathRegex { get; init; }
        public string? Verb { get; init; }
        public string? Resource { get; init; }
        public string? Client { get; init; }
        public int Status { get; init; }
        public int? RetryAfterSeconds { get; init; }
        public string? Message { get; init; }
        public TimeSpan Delay { get; init; }
        public long Remaining; // -1 = unlimited
        public DateTimeOffset? Until { get; init; }
        public long Hits;

        public bool Matches(string client, string verb, string method, string resource, string pathAndQuery) =>
            (Verb is null || Verb == verb || Verb == method)
            && (Resource is null || Resource == resource)
            && (Client is null || Client == client)
            && (Path is null || pathAndQuery.Contains(Path, StringComparison.Ordinal))
            && (PathRegex is null || PathRegex.IsMatch(pathAndQuery));

        public JsonObject ToJson()
        {
            var o = new JsonObject { ["id"] = Id, ["kind"] = Kind };
            if (Path is not null) o["path"] = Path;
            if (PathRegex is not null) o["pathRegex"] = PathRegex.ToString();
            if (Verb is not null) o["verb"] = Verb;
            if (Resource is not null) o["resource"] = Resource;
            if (Client is not null) o["client"] = Client;
            if (Kind == "fail") o["status"] = Status;
            if (RetryAfterSeconds is { } r) o["retryAfterSeconds"] = r;
            if (Message is not null) o["message"] = Message;
            if (Kind == "delay") o["delayMs"] = (long)Delay.TotalMilliseconds;
            var remaining = Interlocked.Read(ref Remaining);
            if (remaining >= 0) o["remaining"] = remaining;
            if (Until is { } u) o["until"] = Json.MicroTimestamp(u);
            o["hits"] = Interlocked.Read(ref Hits);
            return o;
        }
    }

    private volatile Rule[] _rules = [];
    private readonly Lock _gate = new();
    private readonly ConcurrentDictionary<string, DateTimeOffset> _partitions = new(StringComparer.Ordinal);
    private int _nextId;

    /// <summary>Raised when a partition starts, with the client name, so its open connections can be aborted.</summary>
    public event Action<string>? PartitionStarted;

    public IReadOnlyList<Rule> Rules => _rules;

    public Rule AddFail(int status, string? path = null, string? pathRegex = null, string? verb = null, string? resource = null,
        string? client = null, long count = -1, TimeSpan? duration = null, int? retryAfterSeconds = null, string? message = null)
    {
        if (status is < 400 or > 599) throw ApiException.BadRequest($"fault status must be 4xx or 5xx, got {status}");
        return AddRule(new Rule
        {
            Id = NextId(), Kind = "fail", Status = status, Path = path, PathRegex = CompileRegex(pathRegex), Verb = verb, Resource = resource,
            Client = client, Remaining = count, Until = duration is { } d ? DateTimeOffset.UtcNow + d : null,
            RetryAfterSeconds = retryAfterSeconds ?? (status == 429 ? 1 : null), Message = message,
        });
    }

    public Rule AddDelay(TimeSpan delay, string? path = null, string? pathRegex = null, string? verb = null, string? resource = null,
        string? client = null, long count = -1, TimeSpan? duration = null) =>
        AddRule(new Rule
        {
            Id = NextId(), Kind = "delay", Delay = delay, Path = path, PathRegex = CompileRegex(pathRegex), Verb = verb, Resource = resource,
            Client = client, Remaining = count, Until = duration is { } d ? DateTimeOffset.UtcNow + d : null,
        });

    private static Regex? CompileRegex(string? pattern)
    {
        if (pattern is null) return null;
        try { return new Regex(pattern, RegexOptions.CultureInvariant); }
        catch (ArgumentException e) { throw ApiException.BadRequest($"invalid pathRegex: {e.Message}"); }
    }

    private string NextId() => "fault-" + Interlocked.Increment(ref _nextId).ToString(CultureInfo.InvariantCulture);

    private Rule AddRule(Rule rule)
    {
        lock (_gate) _rules = [.. _rules, rule];
        return rule;
    }

    public bool Remove(string id)
    {
        lock (_gate)
        {
            var before = _rules.Length;
            _rules = _rules.Where(r => r.Id != id).ToArray();
            var removed = _rules.Length != before;
            return _partitions.TryRemove(id.StartsWith("partition:", StringComparison.Ordinal) ? id["partition:".Length..] : "\0", out _) || removed;
        }
    }

    /// <summary>Removes every rule and ends every partition.</summary>
    public void Clear()
    {
        lock (_gate) _rules = [];
        _partitions.Clear();
    }

    /// <summary>The injected failure and the delay for one request (null / zero when nothing matches).</summary>
    public (ApiException? Failure, TimeSpan Delay) Evaluate(string client, string verb, string method, string resource, string pathAndQuery)
    {
        var rules = _rules;
        if (rules.Length == 0) return (null, TimeSpan.Zero);
        var now = DateTimeOffset.UtcNow;
        ApiException? failure = null;
        var delay = TimeSpan.Zero;
        var expired = false;
        foreach (var r in rules)
        {
            if (r.Until is { } until && now >= until) { expired = true; continue; }
            if (Interlocked.Read(ref r.Remaining) == 0) { expired = true; continue; }
            if (!r.Matches(client, verb, method, resource, pathAndQuery)) continue;
            if (r.Kind == "fail" && failure is not null) continue;
            if (Interlocked.Read(ref r.Remaining) > 0 && Interlocked.Decrement(ref r.Remaining) < 0) { Interlocked.Exchange(ref r.Remaining, 0); continue; }
            Interlocked.Increment(ref r.Hits);
            if (r.Kind == "fail") failure = ApiException.Injected(r.Status, r.Message, r.RetryAfterSeconds);
            else delay += r.Delay;
        }
        if (expired) Prune(now);
        return (failure, delay);
    }

    private void Prune(DateTimeOffset now)
    {
        lock (_gate)
            _rules = _rules.Where(r => !(r.Until is { } u && now >= u) && Interlocked.Read(ref r.Remaining) != 0).ToArray();
    }

    public void Partition(string client, TimeSpan? duration)
    {
        _partitions[client] = duration is { } d ? DateTimeOffset.UtcNow + d : DateTimeOffset.MaxValue;
        PartitionStarted?.Invoke(client);
    }

    public bool EndPartition(string client) => _partitions.TryRemove(client, out _);

    public bool IsPartitioned(string client)
    {
        if (_partitions.IsEmpty || !_partitions.TryGetValue(client, out var until)) return false;
        if (DateTimeOffset.UtcNow < until) return true;
        _partitions.TryRemove(client, out _);
        return false;
    }

    public JsonArray PartitionsJson() => new(_partitions.Where(kv => kv.Value > DateTimeOffset.UtcNow).Select(kv => (JsonNode)new JsonObject
    {
        ["id"] = "partition:" + kv.Key,
        ["kind"] = "partition",
        ["client"] = kv.Key,
        ["until"] = kv.Value == DateTimeOffset.MaxValue ? null : Json.MicroTimestamp(kv.Value),
    }).ToArray());
}
