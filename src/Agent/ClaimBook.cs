using Hybrid.Facade;

namespace Hybrid.Agent;

/// <summary>
/// The groups this node compare-and-swapped to itself, each with the fence epoch it was made in (the
/// domain ignores claims from an older epoch). Written by the reconcile loop's concurrent Lease writes.
/// </summary>
internal sealed class ClaimBook
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, ClaimInput> _claims = new(StringComparer.Ordinal);

    public void Record(string group, long epoch, string? from)
    {
        lock (_lock) _claims[group] = new ClaimInput { Group = group, Epoch = epoch, From = from };
    }

    public void Forget(string group)
    {
        lock (_lock) _claims.Remove(group);
    }

    public ClaimInput[] Snapshot()
    {
        lock (_lock) return _claims.Values.ToArray();
    }
}
