using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Hybrid.Facade;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Writes what the domain decided a Service's status should say: status.loadBalancer.ingress (through
/// the status subresource) and the kube-vip.io/vipHost annotation. Both are merge patches carrying the
/// resourceVersion the decision was based on, so a concurrent change is a 409 and a fresh decision, never
/// a blind overwrite. Runs in the background with per-service coalescing and backoff, so that an API
/// outage on status writes never slows the VIP itself.
/// </summary>
internal sealed class StatusWriter(
    IKubernetes client,
    ClusterCache cache,
    ReconcileSignal signal,
    ILogger<StatusWriter> logger) : IAsyncDisposable
{
    private sealed record Request(PlanAction.WriteStatus Desired, string Version);

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Request> _pending = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Request> _written = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (Backoff Backoff, long RetryAt)> _failing = new(StringComparer.Ordinal);
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private Task? _worker;

    public void Start(CancellationToken cancellationToken) => _worker = Task.Run(() => RunAsync(cancellationToken), cancellationToken);

    /// <summary>Queues a write; a newer decision for the same Service replaces an older pending one.</summary>
    public void Enqueue(PlanAction.WriteStatus desired)
    {
        var key = KubeObjects.Key(desired.Namespace, desired.Name);
        var request = new Request(desired, cache.Services.VersionOf(key) ?? "");
        lock (_lock)
        {
            // Already written from this very version: the watch has not caught up yet.
            if (_written.TryGetValue(key, out var done) && Same(done, request)) return;
            _pending[key] = request;
        }
        _wake.Writer.TryWrite(true);
    }

    private static bool Same(Request a, Request b) =>
        a.Version == b.Version && a.Desired.VipHost == b.Desired.VipHost
        && JsonSerializer.Serialize(a.Desired.Ingress) == JsonSerializer.Serialize(b.Desired.Ingress);

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            List<(string Key, Request Request)> batch;
            long? nextRetry = null;
            lock (_lock)
            {
                var now = MonotonicClock.NowMs;
                batch = [];
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
        var observed = cache.Services.Get(key);
        if (observed is null) return; // deleted meanwhile
        try
        {
            var version = request.Version;
            var wrote = false;
            if (!IngressEquals(observed.Ingress, desired.Ingress))
            {
                var written = await client.CoreV1.PatchNamespacedServiceStatusAsync(
                    new V1Patch(StatusPatch(version, desired.Ingress), V1Patch.PatchType.MergePatch),
                    desired.Name, desired.Namespace, cancellationToken: cancellationToken);
                version = written.Metadata.ResourceVersion;
                cache.Observe(written);
                wrote = true;
            }
            var host = observed.Annotations.TryGetValue(Decide.VipHostAnnotation, out var h) ? h : null;
            if (host != desired.VipHost)
            {
                var written = await client.CoreV1.PatchNamespacedServiceAsync(
                    new V1Patch(AnnotationPatch(version, desired.VipHost), V1Patch.PatchType.MergePatch),
                    desired.Name, desired.Namespace, cancellationToken: cancellationToken);
                cache.Observe(written);
                wrote = true;
            }
            lock (_lock)
            {
                _written[key] = request;
                _failing.Remove(key);
            }
            if (wrote)
                logger.LogInformation("{Service} status: ingress [{Ingress}], vipHost {Host}", key,
                string.Join(", ", desired.Ingress.Select(i => i.Ip)), desired.VipHost ?? "(none)");
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (HttpOperationException e) when ((int)e.Response.StatusCode == 404)
        {
            logger.LogDebug("{Service} vanished before its status was written", key);
        }
        catch (Exception e)
        {
            // 409 means the object moved on: the next plan decides again from the newer version.
            var conflict = e is HttpOperationException { Response.StatusCode: System.Net.HttpStatusCode.Conflict };
            TimeSpan delay;
            lock (_lock)
            {
                if (!_failing.TryGetValue(key, out var failing))
                    failing = (new Backoff(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(10)), 0);
                delay = failing.Backoff.Next();
                _failing[key] = (failing.Backoff, MonotonicClock.NowMs + (long)delay.TotalMilliseconds);
                if (!conflict) _pending.TryAdd(key, request);
            }
            if (conflict) signal.Notify("status conflict");
            logger.LogWarning("{Service} status write failed ({Error}); retrying in {Delay} ms", key,
                HeartbeatRenewer.Describe(e), (int)delay.TotalMilliseconds);
        }
    }

    private static bool IngressEquals(IngressInput[] observed, IngressInput[] desired) =>
        observed.Length == desired.Length
        && observed.Zip(desired).All(p => p.First.Ip == p.Second.Ip && p.First.IpMode == p.Second.IpMode
            && p.First.Ports.Length == p.Second.Ports.Length
            && p.First.Ports.Zip(p.Second.Ports).All(q => q.First.Port == q.Second.Port && q.First.Protocol == q.Second.Protocol));

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
            ["annotations"] = new JsonObject { [Decide.VipHostAnnotation] = host },
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
