using Hybrid.Facade;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Keeps this node's heartbeat Lease H(n) fresh: one write every retry period, whose START time, once
/// acknowledged, extends the node's right to announce (the fence). Releases the Lease (empty holder) when
/// the domain says so: VIP interface down, or stopping. Runs apart from the reconcile loop so a slow plan
/// never delays a renewal.
/// </summary>
internal sealed class HeartbeatRenewer(
    IKubernetes client,
    Settings settings,
    NodeState node,
    ReconcileSignal signal,
    ILogger<HeartbeatRenewer> logger)
{
    private readonly string _name = Decide.HeartbeatLeaseName(settings.NodeName);
    private V1Lease? _last;
    private bool _released;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var period = TimeSpan.FromMilliseconds(settings.RetryPeriodMs);
        using var timer = new PeriodicTimer(period);
        do
        {
            var action = Decide.HeartbeatAction(node.LinkUp, node.ShuttingDown);
            if (action.IsRenew) await RenewAsync(cancellationToken);
            else if (action.IsReleaseHeartbeat && !_released) await ReleaseAsync(cancellationToken);
        }
        while (await WaitAsync(timer, cancellationToken));
    }

    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken cancellationToken)
    {
        try
        {
            return await timer.WaitForNextTickAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>One renewal; a failure only means the fence is not extended this time.</summary>
    public async Task RenewAsync(CancellationToken cancellationToken)
    {
        var started = MonotonicClock.NowMs;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromMilliseconds(settings.RenewDeadlineMs));
        try
        {
            _last = await WriteAsync(settings.NodeName, timeout.Token);
            _released = false;
            var newEpoch = node.Renewed(started, MonotonicClock.NowMs);
            if (newEpoch) logger.LogInformation("Heartbeat renewed; new fence epoch {Epoch}", node.Fence.Epoch);
            // Only a plan that waits for a renewal needs one now; otherwise the renewal changes nothing.
            if (newEpoch || node.WaitsForRenewal) signal.Notify("heartbeat renewed");
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (Exception e)
        {
            logger.LogWarning("Heartbeat renewal failed: {Error}", Describe(e));
        }
    }

    /// <summary>The last write this renewer made released the heartbeat.</summary>
    public bool Released => Volatile.Read(ref _released);

    /// <summary>Empties the holder so that other nodes stop counting this one at once.</summary>
    public async Task ReleaseAsync(CancellationToken cancellationToken)
    {
        // Before the write: once it lands others may take over at once, even if its answer never arrives.
        node.Releasing();
        try
        {
            _last = await WriteAsync(null, cancellationToken);
            _released = true;
            logger.LogInformation("Heartbeat released");
            signal.Notify("heartbeat released");
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            logger.LogWarning("Heartbeat release failed: {Error}", Describe(e));
        }
    }

    /// <summary>
    /// A merge patch of this node's own Lease (nobody else writes it, so no version precondition); created
    /// on first use or when an operator deleted it.
    /// </summary>
    private async Task<V1Lease> WriteAsync(string? holder, CancellationToken cancellationToken)
    {
        if (_last is null)
        {
            // The same read a takeover uses to confirm a silent holder: doing it here keeps that path warm.
            try
            {
                _last = await client.CoordinationV1.ReadNamespacedLeaseAsync(_name, settings.LeaseNamespace,
                    cancellationToken: cancellationToken);
            }
            catch (HttpOperationException e) when ((int)e.Response.StatusCode == 404)
            {
            }
        }
        var now = DateTime.UtcNow;
        var changesHolder = _last?.Spec?.HolderIdentity != holder;
        if (_last is not null)
        {
            try
            {
                return await client.CoordinationV1.PatchNamespacedLeaseAsync(
                    LeasePatch.Hold(holder, now, LeaseSeconds, acquired: changesHolder), _name, settings.LeaseNamespace,
                    cancellationToken: cancellationToken);
            }
            catch (HttpOperationException e) when ((int)e.Response.StatusCode == 404)
            {
                _last = null;
            }
        }
        try
        {
            return await client.CoordinationV1.CreateNamespacedLeaseAsync(New(holder, now), settings.LeaseNamespace,
                cancellationToken: cancellationToken);
        }
        catch (HttpOperationException e) when ((int)e.Response.StatusCode == 409)
        {
            // Left by an earlier run of this agent: take it over.
            return await client.CoordinationV1.PatchNamespacedLeaseAsync(
                LeasePatch.Hold(holder, now, LeaseSeconds, acquired: true), _name, settings.LeaseNamespace,
                cancellationToken: cancellationToken);
        }
    }

    private int LeaseSeconds => (int)Math.Ceiling(settings.LeaseDurationMs / 1000.0);

    private V1Lease New(string? holder, DateTime now) => new()
    {
        Metadata = new V1ObjectMeta
        {
            Name = _name,
            NamespaceProperty = settings.LeaseNamespace,
            Labels = new Dictionary<string, string>
            {
                [KubeObjects.ManagedByLabel] = KubeObjects.ManagedByValue,
                [KubeObjects.KindLabel] = "heartbeat",
                [KubeObjects.NodeLabel] = settings.NodeName,
            },
        },
        Spec = new V1LeaseSpec
        {
            HolderIdentity = holder,
            AcquireTime = now,
            RenewTime = now,
            LeaseDurationSeconds = LeaseSeconds,
        },
    };

    internal static string Describe(Exception e) => e switch
    {
        HttpOperationException h => $"HTTP {(int)h.Response.StatusCode} {h.Response.ReasonPhrase}",
        OperationCanceledException => "timed out",
        _ => e.GetBaseException().Message,
    };
}
