using System.Text.Json.Nodes;
using System.Threading.Channels;
using Hybrid.Facade;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Writes the parts of a Service the domain asked for: status.loadBalancer.ingress (through the status
/// subresource) and the kube-vip.io/vipHost annotation. Both are merge patches carrying the resourceVersion
/// the Service had when the request came, so a concurrent change is a 409 and a fresh decision, never a blind
/// overwrite. Runs in the background with per-Service coalescing and backoff, so an API outage on status
/// writes never slows the VIP itself.
/// </summary>
internal sealed class StatusWriter(ApiClient api, ServiceRecords services, AgentMetrics metrics, ILogger<StatusWriter> logger) : IAsyncDisposable
{
    private sealed record Request(ShellCommand.WriteStatus Desired, string Version);

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Request> _pending = new(StringComparer.Ordinal);
    /// <summary>The last write of each Service and the version it was written from: the same request again from
    /// that version is the watch lagging. Another request from it is new (a write that changed nothing, such as
    /// an annotation already set, leaves the version as it was).</summary>
    private readonly Dictionary<string, Request> _writtenFrom = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (Backoff Backoff, long RetryAt)> _failing = new(StringComparer.Ordinal);
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private Task? _worker;

    public void Start(CancellationToken cancellationToken) => _worker = Task.Run(() => RunAsync(cancellationToken), cancellationToken);

    /// <summary>Queues a write; a newer request for the same Service replaces an older pending one.</summary>
    public void Enqueue(ShellCommand.WriteStatus desired)
    {
        var key = KubeObjects.Key(desired.Namespace, desired.Name);
        var version = services.Get(key)?.Version ?? "";
        lock (_lock)
        {
            if (_writtenFrom.TryGetValue(key, out var written) && written.Version == version && written.Desired.Equals(desired)) return;
            _pending[key] = new Request(desired, version);
        }
        _wake.Writer.TryWrite(true);
    }

    /// <summary>The Service is gone: nothing more to write or remember for it.</summary>
    public void Forget(string key)
    {
        lock (_lock)
        {
            _pending.Remove(key);
            _writtenFrom.Remove(key);
            _failing.Remove(key);
        }
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            List<(string Key, Request Request)> batch = [];
            long? nextRetry = null;
            lock (_lock)
            {
                var now = MonotonicClock.NowMs;
                foreach (var (key, request) in _pending)
                {
                    if (_failing.TryGetValue(key, out var failing) && failing.RetryAt > now)
                    {
                        nextRetry = nextRetry is null ? failing.RetryAt : Math.Min(nextRetry.Value, failing.RetryAt);
                        continue;
                    }
                    batch.Add((key, request));
                }
                foreach (var (key, _) in batch) _pending.Remove(key);
            }
            foreach (var (key, request) in batch)
            {
                if (cancellationToken.IsCancellationRequested) return;
                await WriteAsync(key, request, cancellationToken);
            }
            if (batch.Count > 0) continue;
            try
            {
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                if (nextRetry is { } at) wait.CancelAfter(TimeSpan.FromMilliseconds(Math.Max(1, at - MonotonicClock.NowMs)));
                await _wake.Reader.ReadAsync(wait.Token);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task WriteAsync(string key, Request request, CancellationToken cancellationToken)
    {
        var desired = request.Desired;
        try
        {
            var version = request.Version;
            if (desired.Ingress is { } ingress)
            {
                var written = await api.MergePatchAsync(ApiPaths.Service(desired.Namespace, desired.Name) + "/status",
                    StatusPatch(version, ingress), ApiJson.Default.ServiceObject, cancellationToken);
                version = written.Metadata.ResourceVersion ?? version;
            }
            if (desired.SetVipHost)
            {
                await api.MergePatchAsync(ApiPaths.Service(desired.Namespace, desired.Name),
                    AnnotationPatch(version, desired.VipHost), ApiJson.Default.ServiceObject, cancellationToken);
            }
            lock (_lock)
            {
                _writtenFrom[key] = request;
                _failing.Remove(key);
            }
            logger.LogInformation("{Service} status: ingress [{Ingress}], vipHost {Host}", key,
                desired.Ingress is null ? "(unchanged)" : string.Join(", ", desired.Ingress.Select(i => i.Ip)),
                desired.SetVipHost ? desired.VipHost ?? "(none)" : "(unchanged)");
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (ApiException e) when (e.Status == System.Net.HttpStatusCode.NotFound)
        {
            logger.LogDebug("{Service} vanished before its status was written", key);
            Forget(key);
        }
        catch (Exception e)
        {
            // A 409 means the Service moved on: the domain sees the newer version and asks again if needed.
            var conflict = e is ApiException { Status: System.Net.HttpStatusCode.Conflict };
            TimeSpan delay;
            lock (_lock)
            {
                if (!_failing.TryGetValue(key, out var failing))
                    failing = (new Backoff(), 0);
                delay = failing.Backoff.Next();
                _failing[key] = (failing.Backoff, MonotonicClock.NowMs + (long)delay.TotalMilliseconds);
                if (!conflict) _pending.TryAdd(key, request);
            }
            if (conflict)
                logger.LogDebug("{Service} changed while its status was written; the next decision writes it again", key);
            else
            {
                metrics.ReconcileErrors.Add();
                logger.LogWarning("{Service} status write failed ({Error}); retrying in {Delay} ms", key,
                    ApiErrors.Describe(e), (int)delay.TotalMilliseconds);
            }
        }
    }

    private static string StatusPatch(string version, IngressInput[] ingress)
    {
        var entries = new JsonArray(ingress.Select(i => (JsonNode)new JsonObject
        {
            ["ip"] = i.Ip,
            ["ipMode"] = i.IpMode,
            ["ports"] = new JsonArray(i.Ports.Select(p => (JsonNode)new JsonObject { ["port"] = p.Port, ["protocol"] = p.Protocol }).ToArray()),
        }).ToArray());
        return new JsonObject
        {
            ["metadata"] = new JsonObject { ["resourceVersion"] = version },
            ["status"] = new JsonObject { ["loadBalancer"] = new JsonObject { ["ingress"] = ingress.Length == 0 ? null : entries } },
        }.ToJsonString();
    }

    private static string AnnotationPatch(string version, string? host) => new JsonObject
    {
        ["metadata"] = new JsonObject
        {
            ["resourceVersion"] = version,
            ["annotations"] = new JsonObject { [Configuration.VipHostAnnotation] = host },
        },
    }.ToJsonString();

    public async ValueTask DisposeAsync()
    {
        _wake.Writer.TryComplete();
        if (_worker is not null)
        {
            try { await _worker; } catch (OperationCanceledException) { }
        }
    }
}
