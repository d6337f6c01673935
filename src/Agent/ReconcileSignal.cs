using System.Threading.Channels;

namespace Hybrid.Agent;

/// <summary>
/// The one channel every observation goes through (watch events, lease results, heartbeats, link
/// changes, timers): producers only say "something changed, and why"; the reconcile loop drains it and plans
/// once for any number of changes.
/// </summary>
internal sealed class ReconcileSignal
{
    private readonly Channel<string> _channel = Channel.CreateBounded<string>(
        new BoundedChannelOptions(1024) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });

    public void Notify(string why) => _channel.Writer.TryWrite(why);

    /// <summary>Waits until a signal arrives or the deadline passes; then drains everything pending.</summary>
    public async Task<IReadOnlyList<string>> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timer.CancelAfter(timeout < TimeSpan.Zero ? TimeSpan.Zero : timeout);
        try
        {
            await _channel.Reader.WaitToReadAsync(timer.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return ["timer"];
        }
        var reasons = new List<string>();
        while (_channel.Reader.TryRead(out var why)) reasons.Add(why);
        return reasons;
    }
}
