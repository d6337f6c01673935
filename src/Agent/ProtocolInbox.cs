using System.Threading.Channels;
using Hybrid.Facade;

namespace Hybrid.Agent;

/// <summary>
/// Everything that happens to the agent, in the order it happened: each entry reports one observation or
/// outcome to the protocol node, and only <see cref="ProtocolLoop"/> runs them. Watches, the heartbeat
/// receiver, Lease writes and the link watcher post here from their own threads; the clock reading goes with
/// the entry, taken where the event was seen.
/// </summary>
internal sealed class ProtocolInbox
{
    private readonly Channel<Action<ProtocolNode>> _entries =
        Channel.CreateUnbounded<Action<ProtocolNode>>(new UnboundedChannelOptions { SingleReader = true });

    public void Post(Action<ProtocolNode> entry) => _entries.Writer.TryWrite(entry);

    public bool TryTake(out Action<ProtocolNode> entry) => _entries.Reader.TryRead(out entry!);

    /// <summary>Waits for an entry, or until <paramref name="timeout"/> passes (false).</summary>
    public async ValueTask<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (_entries.Reader.TryPeek(out _)) return true;
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        wait.CancelAfter(timeout);
        try
        {
            return await _entries.Reader.WaitToReadAsync(wait.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }
}
