using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace Hybrid.Sandbox.Api;

internal enum ChangeType { Added, Modified, Deleted }

/// <summary>An object as stored: its JSON tree (never mutated once stored), the serialized bytes served to
/// readers, and its resourceVersion.</summary>
internal sealed class StoredObject(JsonObject node, byte[] json, long rv, string key)
{
    public JsonObject Node { get; } = node;
    public byte[] Json { get; } = json;
    public long Rv { get; } = rv;
    public string Key { get; } = key;
    public string Namespace => Node.Namespace();
    public string Name => Node.Name();
}

/// <summary>One change in a bucket's history: the object after the change (for a deletion, the last state
/// with the deletion's resourceVersion) and the object before it (for selector transitions).</summary>
internal sealed record StoreChange(long Rv, ChangeType Type, StoredObject Object, StoredObject? Old);

/// <summary>A live watch on one bucket: the store pushes every change into <see cref="Changes"/> in order.</summary>
internal sealed class Subscription(ObjectStore store, string bucket, string? ns, string client) : IDisposable
{
    private readonly Channel<StoreChange> _changes = Channel.CreateUnbounded<StoreChange>();
    public string Bucket { get; } = bucket;
    public string? Namespace { get; } = ns;
    public string Client { get; } = client;
    public ChannelReader<StoreChange> Changes => _changes.Reader;
    internal ChannelWriter<StoreChange> Writer => _changes.Writer;

    /// <summary>Ends the stream (fault injection, partition, shutdown or a consumer too slow to keep up).</summary>
    public void Close() => _changes.Writer.TryComplete();

    public void Dispose() => store.Unsubscribe(this);
}

/// <summary>The result of starting a watch: the subscription and the changes to replay first, or "too old".</summary>
internal readonly record struct WatchStart(Subscription? Subscription, IReadOnlyList<StoreChange> Backlog, long OldestRv, long CurrentRv);

/// <summary>
/// In-memory object storage with one global resourceVersion counter, per-bucket change history for watch
/// resumption, and fan-out of every committed change to live subscriptions. One lock guards everything:
/// each critical section is a dictionary operation plus a serialization, so it is short.
/// </summary>
internal sealed class ObjectStore(int historyLimit)
{
    private const int SlowWatcherLimit = 200_000;

    private sealed class Bucket(int historyLimit)
    {
        public readonly Dictionary<string, StoredObject> Items = new(StringComparer.Ordinal);
        public readonly StoreChange?[] Ring = new StoreChange?[Math.Max(1, historyLimit)];
        public int Head;      // next slot to write
        public int Count;
        public long CompactedRv; // changes with rv <= this are gone from history
        public readonly List<Subscription> Subscribers = [];

        public void Record(StoreChange change)
        {
            if (Count == Ring.Length)
            {
                var evicted = Ring[Head]!;
                CompactedRv = Math.Max(CompactedRv, evicted.Rv);
            }
            else Count++;
            Ring[Head] = change;
            Head = (Head + 1) % Ring.Length;
        }

        public IEnumerable<StoreChange> InOrder()
        {
            var start = (Head - Count + Ring.Length) % Ring.Length;
            for (var i = 0; i < Count; i++) yield return Ring[(start + i) % Ring.Length]!;
        }
    }

    private readonly Lock _gate = new();
    private readonly Dictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);
    private long _rv = 1;
    private long _compactedRv;

    /// <summary>Raised after every committed change (outside the lock) with the bucket name.</summary>
    public event Action<string>? Changed;

    public long CurrentRv { get { lock (_gate) return _rv; } }

    public static string KeyOf(string? ns, string name) => string.IsNullOrEmpty(ns) ? name : ns + "/" + name;

    private Bucket BucketOf(string name)
    {
        if (!_buckets.TryGetValue(name, out var b)) _buckets[name] = b = new Bucket(historyLimit) { CompactedRv = _compactedRv };
        return b;
    }

    public StoredObject? Get(string bucket, string key)
    {
        lock (_gate) return _buckets.TryGetValue(bucket, out var b) && b.Items.TryGetValue(key, out var o) ? o : null;
    }

    /// <summary>A consistent snapshot of a bucket (optionally one namespace), sorted by key, and the RV it reflects.</summary>
    public (List<StoredObject> Items, long Rv) List(string bucket, string? ns)
    {
        List<StoredObject> items;
        long rv;
        lock (_gate)
        {
            rv = _rv;
            if (!_buckets.TryGetValue(bucket, out var b)) return ([], rv);
            items = new List<StoredObject>(b.Items.Count);
            foreach (var o in b.Items.Values)
                if (string.IsNullOrEmpty(ns) || o.Namespace == ns) items.Add(o);
        }
        items.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
        return (items, rv);
    }

    /// <summary>Stores a new object; null when the key already exists. The store owns <paramref name="node"/> afterwards.</summary>
    public StoredObject? TryCreate(string bucket, string key, JsonObject node)
    {
        StoredObject stored;
        lock (_gate)
        {
            var b = BucketOf(bucket);
            if (b.Items.ContainsKey(key)) return null;
            stored = Seal(node, key, ++_rv);
            b.Items[key] = stored;
            Publish(b, new StoreChange(stored.Rv, ChangeType.Added, stored, null));
        }
        Changed?.Invoke(bucket);
        return stored;
    }

    /// <summary>Replaces the object at key if its RV is still <paramref name="expectedRv"/>; null otherwise.</summary>
    public StoredObject? TryReplace(string bucket, string key, long expectedRv, JsonObject node)
    {
        StoredObject stored;
        lock (_gate)
        {
            var b = BucketOf(bucket);
            if (!b.Items.TryGetValue(key, out var old) || old.Rv != expectedRv) return null;
            stored = Seal(node, key, ++_rv);
            b.Items[key] = stored;
            Publish(b, new StoreChange(stored.Rv, ChangeType.Modified, stored, old));
        }
        Changed?.Invoke(bucket);
        return stored;
    }

    /// <summary>Removes the object at key if its RV is still <paramref name="expectedRv"/>; returns its final state
    /// (stamped with the deletion's resourceVersion), or null when it changed or vanished meanwhile.</summary>
    public StoredObject? TryDelete(string bucket, string key, long expectedRv)
    {
        StoredObject final;
        lock (_gate)
        {
            var b = BucketOf(bucket);
            if (!b.Items.TryGetValue(key, out var old) || old.Rv != expectedRv) return null;
            b.Items.Remove(key);
            var node = (JsonObject)old.Node.DeepClone();
            final = Seal(node, key, ++_rv);
            Publish(b, new StoreChange(final.Rv, ChangeType.Deleted, final, old));
        }
        Changed?.Invoke(bucket);
        return final;
    }

    private static StoredObject Seal(JsonObject node, string key, long rv)
    {
        node.Meta()["resourceVersion"] = rv.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return new StoredObject(node, Json.ToBytes(node), rv, key);
    }

    private static void Publish(Bucket b, StoreChange change)
    {
        b.Record(change);
        for (var i = b.Subscribers.Count - 1; i >= 0; i--)
        {
            var s = b.Subscribers[i];
            if (s.Namespace is not null && s.Namespace != change.Object.Namespace) continue;
            if (s.Changes.Count > SlowWatcherLimit || !s.Writer.TryWrite(change))
            {
                s.Close();
                b.Subscribers.RemoveAt(i);
            }
        }
    }

    /// <summary>
    /// Starts a watch. <paramref name="fromRv"/> null means "current state first": the backlog is a synthetic
    /// ADDED for every object. Otherwise the backlog is the history after that RV, or the subscription is null
    /// when that part of the history is gone (the caller answers 410 Expired).
    /// </summary>
    public WatchStart Subscribe(string bucket, string? ns, long? fromRv, string client)
    {
        lock (_gate)
        {
            var b = BucketOf(bucket);
            var backlog = new List<StoreChange>();
            if (fromRv is null)
            {
                foreach (var o in b.Items.Values)
                    if (string.IsNullOrEmpty(ns) || o.Namespace == ns) backlog.Add(new StoreChange(o.Rv, ChangeType.Added, o, null));
                backlog.Sort(static (x, y) => x.Rv.CompareTo(y.Rv));
            }
            else
            {
                if (fromRv.Value < b.CompactedRv) return new WatchStart(null, [], b.CompactedRv + 1, _rv);
                foreach (var c in b.InOrder())
                    if (c.Rv > fromRv.Value && (string.IsNullOrEmpty(ns) || c.Object.Namespace == ns)) backlog.Add(c);
            }
            var sub = new Subscription(this, bucket, string.IsNullOrEmpty(ns) ? null : ns, client);
            b.Subscribers.Add(sub);
            return new WatchStart(sub, backlog, b.CompactedRv + 1, _rv);
        }
    }

    internal void Unsubscribe(Subscription s)
    {
        lock (_gate)
        {
            if (_buckets.TryGetValue(s.Bucket, out var b)) b.Subscribers.Remove(s);
        }
        s.Close();
    }

    /// <summary>Closes every open watch for which <paramref name="match"/> holds; returns how many.</summary>
    public int CloseWatches(Func<Subscription, bool> match)
    {
        var closed = new List<Subscription>();
        lock (_gate)
        {
            foreach (var b in _buckets.Values)
                for (var i = b.Subscribers.Count - 1; i >= 0; i--)
                    if (match(b.Subscribers[i])) { closed.Add(b.Subscribers[i]); b.Subscribers.RemoveAt(i); }
        }
        foreach (var s in closed) s.Close();
        return closed.Count;
    }

    public int OpenWatches()
    {
        lock (_gate) return _buckets.Values.Sum(b => b.Subscribers.Count);
    }

    /// <summary>Forgets all history: a watch resuming from any RV before now gets 410 Expired.</summary>
    public long Compact()
    {
        lock (_gate)
        {
            _compactedRv = _rv;
            foreach (var b in _buckets.Values)
            {
                Array.Clear(b.Ring);
                b.Head = 0;
                b.Count = 0;
                b.CompactedRv = _rv;
            }
            return _rv;
        }
    }
}
