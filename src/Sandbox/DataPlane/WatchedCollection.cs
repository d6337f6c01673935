using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Hybrid.Sandbox.DataPlane;

/// <summary>
/// An informer for the lab's kubelets and kube-proxies: lists the objects, then watches from the list's
/// resourceVersion and keeps the latest copy of each (by namespace/name). After every change it calls
/// <c>changed</c>. A 410 Expired or a broken stream relists after a short pause, as client-go does.
/// </summary>
internal sealed class WatchedCollection<TObject, TList>(
    string resource,
    Func<CancellationToken, Task<TList>> list,
    Func<string, Action<Exception>, CancellationToken, IAsyncEnumerable<(WatchEventType, TObject)>> watch,
    Action changed,
    ILogger logger)
    where TObject : IKubernetesObject<V1ObjectMeta>
    where TList : IKubernetesObject<V1ListMeta>, IItems<TObject>
{
    private static readonly TimeSpan MinPause = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan MaxPause = TimeSpan.FromSeconds(2);

    private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly object _gate = new();
    private Dictionary<string, TObject> _items = new(StringComparer.Ordinal);

    /// <summary>Completes after the first successful list.</summary>
    public Task Synced => _synced.Task;

    /// <summary>The objects as last seen (a copy, safe to enumerate while the watch goes on).</summary>
    public IReadOnlyList<TObject> Snapshot()
    {
        lock (_gate) return [.. _items.Values];
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        string? version = null;
        var pause = MinPause;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                if (version is null)
                {
                    var listed = await list(cancellationToken);
                    lock (_gate) _items = listed.Items.ToDictionary(Key, StringComparer.Ordinal);
                    version = listed.Metadata.ResourceVersion;
                    _synced.TrySetResult();
                    changed();
                }
                Exception? streamError = null;
                await foreach (var (type, item) in watch(version!, e => streamError ??= e, cancellationToken))
                {
                    if (type is WatchEventType.Added or WatchEventType.Modified or WatchEventType.Deleted)
                    {
                        lock (_gate)
                        {
                            if (type == WatchEventType.Deleted) _items.Remove(Key(item));
                            else _items[Key(item)] = item;
                        }
                        changed();
                    }
                    version = item.Metadata?.ResourceVersion ?? version;
                    pause = MinPause;
                }
                if (streamError is KubernetesException { Status.Code: 410 }) version = null;
                else if (streamError is not null) throw streamError;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                logger.LogDebug("Watch of {Resource} failed ({Error}); relisting in {Pause} ms", resource, e.Message, (int)pause.TotalMilliseconds);
                version = null;
                try { await Task.Delay(pause, cancellationToken); }
                catch (OperationCanceledException) { return; }
                pause = TimeSpan.FromTicks(Math.Min(pause.Ticks * 2, MaxPause.Ticks));
            }
        }
    }

    private static string Key(TObject item) => $"{item.Metadata.NamespaceProperty}/{item.Metadata.Name}";
}
