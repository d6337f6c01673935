using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// List, then watch from the list's resourceVersion, resuming from the last version seen after the stream
/// ends or breaks; a 410 Expired (history compacted) forces a relist. Errors back off with jitter and
/// never clear the cache: a broken watch leaves the last known state in place (only the fencing rule may
/// withdraw a VIP, never a transient API failure).
/// </summary>
internal sealed class ResourceWatch<TObject, TList>(
    string resource,
    Func<CancellationToken, Task<TList>> list,
    Func<string, Action<Exception>, CancellationToken, IAsyncEnumerable<(WatchEventType, TObject)>> watch,
    Action<IEnumerable<TObject>> replaceAll,
    Action<TObject> upsert,
    Action<TObject> remove,
    AgentMetrics metrics,
    ILogger logger)
    where TObject : IKubernetesObject<V1ObjectMeta>
    where TList : IKubernetesObject<V1ListMeta>, IItems<TObject>
{
    private readonly Backoff _backoff = new();
    private readonly Counter _ended = metrics.WatchRestarts(resource, "ended");
    private readonly Counter _expired = metrics.WatchRestarts(resource, "expired");
    private readonly Counter _failed = metrics.WatchRestarts(resource, "failed");

    /// <summary>Server-side watch timeout; spread so that many agents do not reconnect together.</summary>
    public static int WatchTimeoutSeconds() => 240 + Random.Shared.Next(120);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        string? version = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                if (version is null)
                {
                    var items = await list(cancellationToken);
                    replaceAll(items.Items);
                    version = items.Metadata.ResourceVersion;
                    logger.LogDebug("Listed {Count} {Resource} at version {Version}", items.Items.Count, resource, version);
                }

                Exception? streamError = null;
                await foreach (var (type, item) in watch(version!, e => streamError ??= e, cancellationToken))
                {
                    switch (type)
                    {
                        case WatchEventType.Added or WatchEventType.Modified:
                            upsert(item);
                            break;
                        case WatchEventType.Deleted:
                            remove(item);
                            break;
                    }
                    version = item.Metadata?.ResourceVersion ?? version;
                    _backoff.Reset();
                }

                if (streamError is KubernetesException { Status.Code: 410 })
                {
                    logger.LogInformation("Watch of {Resource} expired at version {Version}; relisting", resource, version);
                    version = null;
                    _expired.Add();
                }
                else if (streamError is not null)
                {
                    throw streamError;
                }
                else
                {
                    _ended.Add();
                }
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
