using System.Net;
using System.Threading.Channels;
using Hybrid.Facade;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Posts the domain's Events through events.k8s.io/v1 and logs each one, so the reason is also in the log of
/// the node that decided it. Queued in the background: an API outage delays Events, it never slows the VIPs.
/// An Event the server refuses for good (4xx) is dropped with a warning instead of blocking the ones behind
/// it; a transient failure (5xx, 429, no answer) is retried with backoff until it is posted, so the Events
/// of an API outage arrive when it ends (the queue keeps the newest 2000); the same Event repeated within
/// <see cref="RepeatWindow"/> is posted once, and at most <see cref="BurstLimit"/> per second go out.
/// </summary>
internal sealed class EventRecorder(
    ApiClient api,
    Settings settings,
    ServiceRecords services,
    ILogger<EventRecorder> logger) : IAsyncDisposable
{
    public const string ReportingController = "hybrid.kube-vip.io/agent";
    private static readonly TimeSpan RepeatWindow = TimeSpan.FromMinutes(10);
    private const int BurstLimit = 20;

    /// <summary>What an Event is about.</summary>
    private enum Subject { Service, Node, ConfigMap }

    private sealed record Pending(EventOutput Event, Subject About);

    private readonly Channel<Pending> _queue = Channel.CreateBounded<Pending>(
        new BoundedChannelOptions(2000) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
    private readonly Dictionary<(string, string, string, string), long> _recent = [];
    private readonly Backoff _backoff = new();
    private Task? _worker;

    /// <summary>reportingInstance may have at most 128 characters.</summary>
    private string ReportingInstance { get; } = Bounded($"{ReportingController}-{settings.NodeName}", 128);

    public void Start(CancellationToken cancellationToken) => _worker = Task.Run(() => RunAsync(cancellationToken), cancellationToken);

    public void Enqueue(EventOutput e)
    {
        logger.Log(e.Type == EventKind.Warning ? LogLevel.Warning : LogLevel.Information, "{Service} {Reason}: {Message}",
            $"{e.Namespace}/{e.Name}", e.Reason, e.Message);
        _queue.Writer.TryWrite(new Pending(e, Subject.Service));
    }

    /// <summary>A Warning about a ConfigMap (the pool ConfigMap's bad entries).</summary>
    public void EnqueueForConfigMap(string ns, string name, string reason, string message)
    {
        logger.LogWarning("ConfigMap {ConfigMap} {Reason}: {Message}", $"{ns}/{name}", reason, message);
        _queue.Writer.TryWrite(new Pending(new EventOutput(ns, name, EventKind.Warning, reason, message), Subject.ConfigMap));
    }

    /// <summary>A Warning about this node itself (its Node object).</summary>
    public void EnqueueForNode(string reason, string message) =>
        _queue.Writer.TryWrite(new Pending(new EventOutput("default", settings.NodeName, EventKind.Warning, reason, message), Subject.Node));

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var windowStart = MonotonicClock.NowMs;
        var sentInWindow = 0;
        try
        {
            await foreach (var pending in _queue.Reader.ReadAllAsync(cancellationToken))
            {
                if (Repeated(pending.Event)) continue;
                if (MonotonicClock.NowMs - windowStart >= 1000)
                {
                    windowStart = MonotonicClock.NowMs;
                    sentInWindow = 0;
                }
                if (++sentInWindow > BurstLimit)
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(Math.Max(1, 1000 - (MonotonicClock.NowMs - windowStart))), cancellationToken);
                    windowStart = MonotonicClock.NowMs;
                    sentInWindow = 1;
                }
                while (await TryPostAsync(pending, cancellationToken) is (false, false))
                    await _backoff.DelayAsync(cancellationToken);
                _backoff.Reset();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private bool Repeated(EventOutput e)
    {
        var key = (e.Namespace, e.Name, e.Reason, e.Message);
        var now = MonotonicClock.NowMs;
        foreach (var stale in _recent.Where(kv => now - kv.Value > RepeatWindow.TotalMilliseconds).Select(kv => kv.Key).ToList())
            _recent.Remove(stale);
        if (_recent.ContainsKey(key)) return true;
        _recent[key] = now;
        return false;
    }

    private async Task<(bool Posted, bool Permanent)> TryPostAsync(Pending pending, CancellationToken cancellationToken)
    {
        var e = pending.Event;
        var now = DateTime.UtcNow;
        var regarding = pending.About switch
        {
            Subject.Node => new ObjectReference { ApiVersion = "v1", Kind = "Node", Name = e.Name },
            Subject.ConfigMap => new ObjectReference { ApiVersion = "v1", Kind = "ConfigMap", Namespace = e.Namespace, Name = e.Name },
            _ => new ObjectReference
            {
                ApiVersion = "v1",
                Kind = "Service",
                Namespace = e.Namespace,
                Name = e.Name,
                Uid = services.Get(KubeObjects.Key(e.Namespace, e.Name))?.Uid is { Length: > 0 } uid ? uid : null,
            },
        };
        var body = new EventObject
        {
            Metadata = new ObjectMeta
            {
                Name = Bounded($"{e.Name}", 230) + $".{now.Ticks:x}{Random.Shared.Next(0x1000):x3}",
                Namespace = e.Namespace,
            },
            EventTime = KubeObjects.Time(now),
            ReportingController = ReportingController,
            ReportingInstance = ReportingInstance,
            Action = e.Reason,
            Reason = e.Reason,
            Note = e.Message,
            Type = e.Type.ToString(),
            Regarding = regarding,
        };
        try
        {
            await api.CreateAsync(ApiPaths.Events(e.Namespace), body,
                ApiJson.Default.EventObject, ApiJson.Default.EventObject, cancellationToken);
            return (true, false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (ApiException h) when ((int)h.Status is >= 400 and < 500 and not 429)
        {
            logger.LogWarning("Event {Reason} for {Object} refused ({Error}); dropped", e.Reason, $"{e.Namespace}/{e.Name}", ApiErrors.Describe(h));
            return (false, true);
        }
        catch (Exception ex)
        {
            logger.LogWarning("Posting Event {Reason} for {Object} failed: {Error}", e.Reason, $"{e.Namespace}/{e.Name}", ApiErrors.Describe(ex));
            return (false, false);
        }
    }

    /// <summary>Keeps a name within a length limit, unique by a hash of what was cut.</summary>
    private static string Bounded(string text, int limit)
    {
        if (text.Length <= limit) return text;
        var hash = 14695981039346656037UL;
        foreach (var c in text) hash = (hash ^ c) * 1099511628211UL;
        return text[..(limit - 17)] + "-" + hash.ToString("x16");
    }

    /// <summary>Posts what is still queued (the Events of a stopping agent) within the deadline.</summary>
    public async Task FlushAsync(CancellationToken cancellationToken)
    {
        while (_queue.Reader.TryRead(out var pending))
        {
            if (cancellationToken.IsCancellationRequested) return;
            try
            {
                if (!Repeated(pending.Event)) await TryPostAsync(pending, cancellationToken);
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
