using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Gives memory back after a burst. When many Services, Leases or status changes arrive at once the
/// collector grows its regions and keeps them committed for tens of seconds after the live heap has shrunk
/// (1,000 Services with svc_election: 20–30 MiB committed for a 10 MiB heap). When committed memory exceeds
/// the live heap by <see cref="Slack"/> at two checks in a row, one aggressive collection decommits the
/// free regions. It costs a pause of a few milliseconds, only after such bursts.
/// </summary>
internal sealed class HeapTrimmer(ILogger<HeapTrimmer> logger)
{
    private const long Slack = 8L << 20;
    private static readonly TimeSpan Period = TimeSpan.FromSeconds(2);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(Period);
        var swollen = false;
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                var before = GC.GetGCMemoryInfo();
                var excess = before.TotalCommittedBytes - before.HeapSizeBytes > Slack;
                if (excess && swollen)
                {
                    GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
                    var after = GC.GetGCMemoryInfo();
                    logger.LogDebug("Collector trimmed: committed {Before} → {After} bytes, heap {Heap} bytes",
                        before.TotalCommittedBytes, after.TotalCommittedBytes, after.HeapSizeBytes);
                    excess = false;
                }
                swollen = excess;
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
