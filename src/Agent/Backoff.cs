namespace Hybrid.Agent;

/// <summary>
/// Exponential backoff with equal jitter (half fixed, half random), so that many agents retrying after the same API outage do not
/// return in lockstep.
/// </summary>
internal sealed class Backoff(TimeSpan initial, TimeSpan maximum)
{
    private int _failures;

    public TimeSpan Next()
    {
        var exponent = Math.Min(_failures++, 16);
        var ceiling = Math.Min(maximum.TotalMilliseconds, initial.TotalMilliseconds * Math.Pow(2, exponent));
        return TimeSpan.FromMilliseconds(ceiling / 2 + Random.Shared.NextDouble() * ceiling / 2);
    }

    public void Reset() => _failures = 0;

    public Task DelayAsync(CancellationToken cancellationToken) => Task.Delay(Next(), cancellationToken);
}
