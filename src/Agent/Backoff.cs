using Hybrid.Facade;

namespace Hybrid.Agent;

/// <summary>
/// Counts the failures of one API call and waits the domain's retry delay for the next attempt (exponential with
/// equal jitter, so agents retrying after the same outage do not return in lockstep).
/// </summary>
internal sealed class Backoff
{
    private int _failures;

    public TimeSpan Next() =>
        TimeSpan.FromMilliseconds(Configuration.ApiRetryDelayMs(_failures++, Random.Shared.NextDouble()));

    public void Reset() => _failures = 0;

    public Task DelayAsync(CancellationToken cancellationToken) => Task.Delay(Next(), cancellationToken);
}
