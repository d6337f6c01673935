using System.Net;
using Hybrid.Facade;
using Hybrid.Net;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// The single reconcile loop: waits for any observation (or the domain's next wake-up time), builds a
/// snapshot, asks the domain for the plan and executes it in order. Nothing here decides: every "whether"
/// comes from <see cref="Decide.Plan"/>; this class only performs, records and logs. A failing action
/// is logged and retried by a later plan, never allowed to stop the loop.
/// </summary>
internal sealed class ReconcileLoop(
    Settings settings,
    ClusterCache cache,
    NodeState node,
    ClaimBook claims,
    VipTable vips,
    Announcer? announcer,
    GroupLeaseWriter leases,
    StatusWriter status,
    EventRecorder events,
    ReconcileSignal signal,
    ILogger<ReconcileLoop> logger)
{
    private static readonly TimeSpan Idle = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan StopGrace = TimeSpan.FromMilliseconds(300);
    private EventOutput[] _emitted = [];
    private bool _synced;
    private readonly Dictionary<string, (Backoff Backoff, long RetryAt)> _leaseBackoff = new(StringComparer.Ordinal);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        // A stop lets the plan in progress finish for a moment (a claim that lands unseen would name this node
        // in a Lease the stop sequence does not empty), then cancels it; either way the stop sequence follows.
        using var work = new CancellationTokenSource();
        await using var stopping = cancellationToken.Register(() => work.CancelAfter(StopGrace));
        var nextWake = -1L;
        while (!cancellationToken.IsCancellationRequested)
        {
            var wait = nextWake < 0 ? Idle : TimeSpan.FromMilliseconds(Math.Max(0, nextWake - MonotonicClock.NowMs));
            IReadOnlyList<string> why;
            try
            {
                why = await signal.WaitAsync(wait, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            if (!cache.Synced) continue;
            if (!_synced)
            {
                _synced = true;
                logger.LogInformation("Caches synced: {Services} services, {Slices} endpoint slices, {Heartbeats} heartbeats, {Leases} group leases; reconciling",
                    cache.Services.Count, cache.Slices.Count, cache.Heartbeats.Count, cache.GroupLeases.Count);
            }
            var started = MonotonicClock.NowMs;
            try
            {
                nextWake = await ReconcileOnceAsync(work.Token);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            logger.LogDebug("Reconciled on {Why} in {Elapsed} ms; next wake in {Next} ms", string.Join(",", why.Distinct()),
                MonotonicClock.NowMs - started, nextWake < 0 ? -1 : nextWake - MonotonicClock.NowMs);
        }
    }

    /// <summary>
    /// Plans and executes until a plan changes nothing local (a successful claim enables the VIP in the next
    /// plan; an announcement schedules the next one), so that the wake-up time comes from a plan made after
    /// the last change. Returns the instant of the next required wake-up, or -1.
    /// </summary>
    public async Task<long> ReconcileOnceAsync(CancellationToken cancellationToken)
    {
        for (var round = 0; round < 4; round++)
        {
            var snapshot = Snapshot();
            var plan = Decide.Plan(snapshot);
            _emitted = plan.ActiveWarnings;
            node.WaitsForRenewal = plan.WaitsForRenewal;
            var (changed, retryAt) = await ExecuteAsync(plan, cancellationToken);
            // A renewal that landed while this plan was being made did not signal (the flag was not set yet):
            // plan again at once instead of waiting a whole period for the next one.
            if (plan.WaitsForRenewal && !ReferenceEquals(node.Fence, snapshot.Fence)) changed = true;
            if (!changed)
            {
                return (plan.NextWakeAt, retryAt) switch
                {
                    (< 0, < 0) => -1,
                    (< 0, var r) => r,
                    (var w, < 0) => w,
                    var (w, r) => Math.Min(w, r),
                };
            }
        }
        return MonotonicClock.NowMs;
    }

    public SnapshotInput Snapshot() => new()
    {
        Settings = settings,
        Now = MonotonicClock.NowMs,
        Services = cache.Services.Snapshot(),
        Slices = cache.Slices.Snapshot(),
        Heartbeats = cache.Heartbeats.Snapshot(),
        Leases = cache.GroupLeases.Snapshot().Select(l => l.Input).ToArray(),
        Fence = node.Fence,
        Claims = claims.Snapshot(),
        LinkUp = node.LinkUp,
        ShuttingDown = node.ShuttingDown,
        Vips = vips.Snapshot(),
        EmittedWarnings = _emitted,
    };

    /// <summary>Executes a plan; returns whether local state changed (VIPs, announcements, Leases).</summary>
    private async Task<(bool Changed, long RetryAt)> ExecuteAsync(PlanOutput plan, CancellationToken cancellationToken)
    {
        var changed = plan.Actions.Any(a => a is PlanAction.AddVip or PlanAction.RemoveVip or PlanAction.RefreshVip or PlanAction.Announce);
        var retryAt = -1L;
        var refresh = new List<(IPAddress, int)>();
        var refreshLifetime = 0L;
        var epoch = node.Fence.Epoch;
        // Lease writes touch one group each and never depend on one another: they run concurrently, so a node
        // handing over (or taking) many groups pays one API round trip, not one per group.
        var leaseWrites = new List<(string Group, Task<GroupLeaseWriter.Outcome> Write)>();
        var confirmations = new GroupLeaseWriter.Confirmations();

        foreach (var action in plan.Actions)
        {
            if (action is not PlanAction.RefreshVip && refresh.Count > 0)
                await RefreshAsync(refresh, refreshLifetime, cancellationToken);
            try
            {
                switch (action)
                {
                    case PlanAction.RemoveVip remove:
                        await vips.RemoveAsync(IPAddress.Parse(remove.Address), remove.Prefix, cancellationToken);
                        logger.LogInformation("Withdrew {Vip}", remove.Address);
                        break;
                    case PlanAction.AddVip add:
                        await vips.AddAsync(IPAddress.Parse(add.Address), add.Prefix, add.LifetimeMs, cancellationToken);
                        logger.LogInformation("Added {Vip}/{Prefix}", add.Address, add.Prefix);
                        break;
                    case PlanAction.RefreshVip r:
                        refresh.Add((IPAddress.Parse(r.Address), r.Prefix));
                        refreshLifetime = r.LifetimeMs;
                        break;
                    case PlanAction.Announce announce when announcer is not null:
                        var vip = IPAddress.Parse(announce.Address);
                        await announcer.AnnounceAsync(vip, cancellationToken);
                        vips.Announced(vip);
                        break;
                    case PlanAction.Announce announce:
                        vips.Announced(IPAddress.Parse(announce.Address));
                        break;
                    case PlanAction.ClaimLease claim when Throttled(claim.Group, ref retryAt):
                        break;
                    case PlanAction.ClaimLease claim:
                        leaseWrites.Add((claim.Group, Guard(action, leases.ClaimAsync(claim, epoch, confirmations, cancellationToken))));
                        break;
                    case PlanAction.ReleaseLease release when Throttled(release.Group, ref retryAt):
                        break;
                    case PlanAction.ReleaseLease release:
                        leaseWrites.Add((release.Group, Guard(action, leases.ReleaseAsync(release.Group, release.Version, cancellationToken))));
                        break;
                    case PlanAction.DeleteLease delete when Throttled(delete.Group, ref retryAt):
                        break;
                    case PlanAction.DeleteLease delete:
                        leaseWrites.Add((delete.Group, Guard(action, leases.DeleteAsync(delete.Group, delete.Version, cancellationToken))));
                        break;
                    case PlanAction.WriteStatus write:
                        status.Enqueue(write);
                        break;
                    case PlanAction.EmitEvent emit:
                        events.Enqueue(emit.Event);
                        break;
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                throw;
            }
            catch (Exception e)
            {
                logger.LogError("Action {Action} failed: {Error}", action, e.Message);
            }
        }
        if (refresh.Count > 0) await RefreshAsync(refresh, refreshLifetime, cancellationToken);
        foreach (var (group, write) in leaseWrites)
            changed |= Settle(group, await write, ref retryAt);
        return (changed, retryAt);
    }

    /// <summary>A Lease write that throws is logged and counts as failed (retried with backoff by a later plan).</summary>
    private async Task<GroupLeaseWriter.Outcome> Guard(PlanAction action, Task<GroupLeaseWriter.Outcome> write)
    {
        try
        {
            return await write;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogError("Action {Action} failed: {Error}", action, e.Message);
            return GroupLeaseWriter.Outcome.Failed;
        }
    }

    private async Task RefreshAsync(List<(IPAddress, int)> batch, long lifetimeMs, CancellationToken cancellationToken)
    {
        try
        {
            await vips.RefreshAsync(batch, lifetimeMs, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogError("Refreshing {Count} VIP lifetimes failed: {Error}", batch.Count, e.Message);
        }
        batch.Clear();
    }

    /// <summary>A Lease write that failed for a transport reason waits (with backoff) before the next try.</summary>
    private bool Throttled(string group, ref long retryAt)
    {
        if (!_leaseBackoff.TryGetValue(group, out var b) || b.RetryAt <= MonotonicClock.NowMs) return false;
        retryAt = retryAt < 0 ? b.RetryAt : Math.Min(retryAt, b.RetryAt);
        return true;
    }

    private bool Settle(string group, GroupLeaseWriter.Outcome outcome, ref long retryAt)
    {
        if (outcome != GroupLeaseWriter.Outcome.Failed)
        {
            _leaseBackoff.Remove(group);
            return true;
        }
        if (!_leaseBackoff.TryGetValue(group, out var b)) b = (new Backoff(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(5)), 0);
        var at = MonotonicClock.NowMs + (long)b.Backoff.Next().TotalMilliseconds;
        _leaseBackoff[group] = (b.Backoff, at);
        retryAt = retryAt < 0 ? at : Math.Min(retryAt, at);
        return false;
    }
}
