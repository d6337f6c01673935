using System.Threading.Channels;
using Hybrid.Facade;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Emits the domain's Events through events.k8s.io/v1 (and logs each one, so the reason is in the log of
/// the node that decided it). Queued and retried with backoff: an API outage delays Events, it never drops
/// them unless more than the queue holds pile up.
/// </summary>
internal sealed class EventRecorder(
    IKubernetes client,
    Settings settings,
    ClusterCache cache,
    ILogger<EventRecorder> logger) : IAsyncDisposable
{
    public const string ReportingController = "hybrid.kube-vip.io/agent";

    private readonly Channel<EventOutput> _queue = Channel.CreateBounded<EventOutput>(
        new BoundedChannelOptions(2000) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
    private readonly Backoff _backoff = new(TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(10));
    private Task? _worker;

    public void Start(CancellationToken cancellationToken) => _worker = Task.Run(() => RunAsync(cancellationToken), cancellationToken);

    public void Enqueue(EventOutput e)
    {
        var level = e.Type == "Warning" ? LogLevel.Warning : LogLevel.Information;
        logger.Log(level, "{Service} {Reason}: {Message}", $"{e.Namespace}/{e.Name}", e.Reason, e.Message);
        _queue.Writer.TryWrite(e);
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var e in _queue.Reader.ReadAllAsync(cancellationToken))
            {
                while (!await TryPostAsync(e, cancellationToken))
                    await _backoff.DelayAsync(cancellationToken);
                _backoff.Reset();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task<bool> TryPostAsync(EventOutput e, CancellationToken cancellationToken)
    {
        var now = DateTime.UtcNow;
        var uid = cache.Services.Get(KubeObjects.Key(e.Namespace, e.Name))?.Uid;
        var body = new Eventsv1Event
        {
            Metadata = new V1ObjectMeta
            {
                Name = $"{e.Name}.{now.Ticks:x}{Random.Shared.Next(0x1000):x3}",
                NamespaceProperty = e.Namespace,
            },
            EventTime = now,
            ReportingController = ReportingController,
            ReportingInstance = $"{ReportingController}-{settings.NodeName}",
            Action = e.Reason,
            Reason = e.Reason,
            Note = e.Message,
            Type = e.Type,
            Regarding = new V1ObjectReference
            {
                ApiVersion = "v1",
                Kind = "Service",
                NamespaceProperty = e.Namespace,
                Name = e.Name,
                Uid = string.IsNullOrEmpty(uid) ? null : uid,
            },
        };
        try
        {
            await client.EventsV1.CreateNamespacedEventAsync(body, e.Namespace, cancellationToken: cancellationToken);
            return true;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex)
        {
            logger.LogDebug("Posting event {Reason} for {Service} failed: {Error}", e.Reason, $"{e.Namespace}/{e.Name}",
                HeartbeatRenewer.Describe(ex));
            return false;
        }
    }

    /// <summary>Posts what is still queued (the Withdrawn events of a stopping agent) within the deadline.</summary>
    public async Task FlushAsync(CancellationToken cancellationToken)
    {
        while (_queue.Reader.TryRead(out var e))
        {
            if (cancellationToken.IsCancellationRequested) return;
            try
            {
                await TryPostAsync(e, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        if (_worker is not null)
        {
            try { await _worker; } catch (OperationCanceledException) { }
        }
    }
}
