using Hybrid.Facade;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// List, then watch from the list's resourceVersion, resuming from the last version seen after the stream
/// ends or breaks; a 410 Expired (history compacted) forces a relist. Errors back off with jitter and
/// never clear the cache: a broken watch leaves the last known state in place (only the fencing rule may
/// withdraw a VIP, never a transient API failure).
/// </summary>
internal sealed class ResourceWatch<TObject>(
    string resource,
    CollectionClient<TObject> collection,
    Action<IEnumerable<TObject>> replaceAll,
    Action<TObject> upsert,
    Action<TObject> remove,
    AgentMetrics metrics,
    ILogger logger)
    where TObject : IApiObject
{
    private readonly Backoff _backoff = new();
    private readonly Counter _ended = metrics.WatchRestarts(resource, "ended");
    private readonly Counter _expired = metrics.WatchRestarts(resource, "expired");
    private readonly Counter _failed = metrics.WatchRestarts(resource, "failed");

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        string? version = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                if (version is null)
                {
                    var items = await collection.ListAsync(cancellationToken);
                    replaceAll(items.Items);
                    version = items.Metadata.ResourceVersion;
                    logger.LogDebug("Listed {Count} {Resource} at version {Version}", items.Items.Count, resource, version);
                }

                await foreach (var (kind, item) in collection.WatchAsync(version!, Configuration.WatchTimeoutSeconds(Random.Shared.NextDouble()), cancellationToken))
                {
                    switch (kind)
                    {
                        case WatchEventKind.Added or WatchEventKind.Modified:
                            upsert(item);
                            break;
                        case WatchEventKind.Deleted:
                            remove(item);
                            break;
                    }
                    version = item.Metadata?.ResourceVersion ?? version;
                    _backoff.Reset();
                }
                _ended.Add();
            }
            catch (WatchExpiredException e)
            {
                logger.LogInformation("Watch of {Resource} expired at version {Version} ({Reason}); relisting", resource, version, e.Message);
                version = null;
                _expired.Add();
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                _failed.Add();
                var delay = _backoff.Next();
                logger.LogWarning("Watch of {Resource} failed ({Error}); retrying in {Delay} ms, keeping the last known state",
                    resource, ApiErrors.Describe(e), (int)delay.TotalMilliseconds);
                try
                {
                    await Task.Delay(delay, cancellationToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }
}
