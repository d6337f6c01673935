namespace Hybrid.Agent;

/// <summary>
/// One resource's objects as this node observed them, converted to the domain's input form on arrival (so
/// the full Kubernetes objects are not kept), each stamped with the monotonic instant at which its current
/// resourceVersion was first seen. A relist keeps the stamp of objects whose version did not change: liveness
/// is "how long since I saw it change", and a reconnect must not make a dead node look alive.
/// </summary>
internal sealed class ObservedStore<T>(Func<T, long, T> stamp) where T : class
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, (string Version, T Value)> _items = new(StringComparer.Ordinal);
    private T[]? _snapshot;

    public bool Synced { get; private set; }

    /// <summary>Adds or replaces one object; returns whether anything changed.</summary>
    public bool Upsert(string key, string version, T value)
    {
        lock (_lock)
        {
            if (_items.TryGetValue(key, out var existing) && existing.Version == version) return false;
            _items[key] = (version, stamp(value, MonotonicClock.NowMs));
            _snapshot = null;
            return true;
        }
    }

    public bool Remove(string key)
    {
        lock (_lock)
        {
            if (!_items.Remove(key)) return false;
            _snapshot = null;
            return true;
        }
    }

    /// <summary>Replaces everything with a fresh list (after a relist).</summary>
    public void ReplaceAll(IEnumerable<(string Key, string Version, T Value)> items)
    {
        lock (_lock)
        {
            var now = MonotonicClock.NowMs;
            var fresh = new Dictionary<string, (string, T)>(StringComparer.Ordinal);
            foreach (var (key, version, value) in items)
            {
                fresh[key] = _items.TryGetValue(key, out var existing) && existing.Version == version
                    ? existing
                    : (version, stamp(value, now));
            }
            _items.Clear();
            foreach (var kv in fresh) _items[kv.Key] = kv.Value;
            _snapshot = null;
            Synced = true;
        }
    }

    public T? Get(string key)
    {
        lock (_lock) return _items.TryGetValue(key, out var item) ? item.Value : null;
    }

    public string? VersionOf(string key)
    {
        lock (_lock) return _items.TryGetValue(key, out var item) ? item.Version : null;
    }

    /// <summary>The current objects; the same array is returned until something changes.</summary>
    public T[] Snapshot()
    {
        lock (_lock) return _snapshot ??= _items.Values.Select(v => v.Value).ToArray();
    }

    public int Count
    {
        get { lock (_lock) return _items.Count; }
    }
}
