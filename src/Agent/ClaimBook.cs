using Hybrid.Facade;

namespace Hybrid.Agent;

/// <summary>
/// The groups this node compare-and-swapped to itself, each with the fence epoch it was made in (the
/// domain ignores claims from an older epoch). Touched only by the reconcile loop.
/// </summary>
internal sealed class ClaimBook
{
    private readonly Dictionary<string, ClaimInput> _claims = new(StringComparer.Ordinal);

    public void Record(string group, long epoch, string? from) => _claims[group] = new ClaimInput { Group = group, Epoch = epoch, From = from };

    public void Forget(string group) => _claims.Remove(group);

    public ClaimInput[] Snapshot() => _claims.Values.ToArray();
}
