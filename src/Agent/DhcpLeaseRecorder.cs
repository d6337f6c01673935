using System.Text.Json.Nodes;
using System.Threading.Channels;
using Hybrid.Facade;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Writes the domain's RecordDhcpLease onto Services: kube-vip.io/requestedIP and kube-vip.io/hwaddr for a lease
/// obtained, or requestedIP removed and status.loadBalancer.ingress emptied for a lease lost. The domain asks once
/// per lease, so a failed write is retried here (newest request per Service wins); a vanished Service is dropped.
/// In the background, so an API outage never slows the VIPs.
/// </summary>
internal sealed class DhcpLeaseRecorder(ApiClient api, ILogger<DhcpLeaseRecorder> logger) : IAsyncDisposable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, ShellCommand.RecordDhcpLease> _pending = new(StringComparer.Ordinal);
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private Task? _worker;

    public void Start(CancellationToken cancellationToken) => _worker = Task.Run(() => RunAsync(cancellationToken), cancellationToken);

    public void Enqueue(ShellCommand.RecordDhcpLease record)
    {
        lock (_lock) _pending[KubeObjects.Key(record.Namespace, record.Name)] = record;
        _wake.Writer.TryWrite(true);
    }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        var backoff = new Backoff();
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                List<KeyValuePair<string, ShellCommand.RecordDhcpLease>> batch;
                lock (_lock)
                {
                    batch = [.. _pending];
                    _pending.Clear();
                }
                var failed = false;
                foreach (var (key, record) in batch)
                {
                    if (await WriteAsync(key, record, cancellationToken)) continue;
                    failed = true;
                    lock (_lock) _pending.TryAdd(key, record);
                }
                if (failed)
                {
                    await backoff.DelayAsync(cancellationToken);
                    continue;
                }
                backoff.Reset();
                await _wake.Reader.ReadAsync(cancellationToken);
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (ChannelClosedException)
        {
        }
    }

    /// <summary>True when done (or the Service is gone); false to retry.</summary>
    private async Task<bool> WriteAsync(string key, ShellCommand.RecordDhcpLease record, CancellationToken cancellationToken)
    {
        var path = ApiPaths.Service(record.Namespace, record.Name);
        try
        {
            var annotations = new JsonObject
            {
                [Configuration.RequestedIPAnnotation] = record.Address,
                [Configuration.HwAddrAnnotation] = record.HwAddr,
            };
            await api.MergePatchAsync(path, new JsonObject { ["metadata"] = new JsonObject { ["annotations"] = annotations } }.ToJsonString(),
                ApiJson.Default.ServiceObject, cancellationToken);
            if (record.Address is null)
            {
                // The status is where Admission would otherwise still find the lost address.
                var status = new JsonObject { ["status"] = new JsonObject { ["loadBalancer"] = new JsonObject { ["ingress"] = null } } };
                await api.MergePatchAsync(path + "/status", status.ToJsonString(), ApiJson.Default.ServiceObject, cancellationToken);
            }
            logger.LogInformation("{Service} DHCP lease recorded: requestedIP {Address}, hwaddr {HwAddr}", key, record.Address ?? "(removed)", record.HwAddr);
            return true;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (ApiException e) when (e.Status == System.Net.HttpStatusCode.NotFound)
        {
            logger.LogDebug("{Service} vanished before its DHCP lease was recorded", key);
            return true;
        }
        catch (Exception e)
        {
            logger.LogWarning("Recording the DHCP lease of {Service} failed ({Error}); retrying", key, ApiErrors.Describe(e));
            return false;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _wake.Writer.TryComplete();
        if (_worker is not null)
        {
            try { await _worker; } catch (OperationCanceledException) { }
        }
    }
}
