using Hybrid.Facade;
using Fence = Hybrid.Domain.Fence;

namespace Hybrid.Agent;

/// <summary>
/// This node's own state that several effects share: its fence (folded by the domain from heartbeat
/// renewals), whether its VIP interface is usable, and whether it is stopping.
/// </summary>
internal sealed class NodeState(Settings settings)
{
    private readonly Lock _lock = new();
    private Fence _fence = Decide.InitialFence;

    public Fence Fence
    {
        get { lock (_lock) return _fence; }
    }

    public volatile bool LinkUp = true;
    public volatile bool ShuttingDown;

    /// <summary>The last plan held something back until the next successful renewal (set by the loop).</summary>
    public volatile bool WaitsForRenewal = true;

    /// <summary>Ends the right to announce before the heartbeat is released (see Fence.released).</summary>
    public void Releasing()
    {
        lock (_lock) _fence = Decide.ReleasedFence(_fence);
    }

    /// <summary>Records a successful heartbeat renewal; returns whether a new fence epoch began.</summary>
    public bool Renewed(long startedAt, long completedAt)
    {
        lock (_lock)
        {
            var next = Decide.RenewedFence(settings, _fence, startedAt, completedAt);
            var newEpoch = next.Epoch != _fence.Epoch;
            _fence = next;
            return newEpoch;
        }
    }
}
