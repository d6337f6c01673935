using Hybrid.Facade;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Writes group Leases exactly as the domain asks: compare-and-swap claims (after confirming, when asked,
/// that the previous holder's heartbeat has not moved), releases and deletions, each with a
/// resourceVersion precondition. Results go straight into the cache so the next plan sees them; a lost race
/// (409) is not an error, only news.
/// </summary>
internal sealed class GroupLeaseWriter(
    IKubernetes client,
    Settings settings,
    ClusterCache cache,
    ClaimBook claims,
    ILogger<GroupLeaseWriter> logger)
{
    private string Namespace => settings.LeaseNamespace;
    private int LeaseSeconds => (int)Math.Ceiling(settings.LeaseDurationMs / 1000.0);

    public enum Outcome { Done, Lost, Failed }

    /// <summary>
    /// The heartbeat reads of one plan: the claims of many groups from one silent node share a single read
    /// (a node that died holding 20 groups costs one GET, not 20, at the moment the API server is busiest).
    /// </summary>
    public sealed class Confirmations
    {
        private readonly Lock _lock = new();
        private readonly Dictionary<(string Node, string Version), Task<bool>> _reads = [];

        public Task<bool> GetOrRead((string Node, string Version) key, Func<Task<bool>> read)
        {
            lock (_lock)
            {
                if (!_reads.TryGetValue(key, out var task)) _reads[key] = task = read();
                return task;
            }
        }
    }

    public async Task<Outcome> ClaimAsync(PlanAction.ClaimLease claim, long epoch, Confirmations confirmations, CancellationToken cancellationToken)
    {
        try
        {
            if (claim.ConfirmNode is { } previous && !await confirmations.GetOrRead((previous, claim.ConfirmVersion ?? ""),
                    () => StillSilentAsync(previous, claim.ConfirmVersion ?? "", cancellationToken)))
            {
                logger.LogInformation("Not taking {Group}: {Node}'s heartbeat moved, it is alive", claim.Group, previous);
                return Outcome.Lost;
            }

            var now = DateTime.UtcNow;
            V1Lease written;
            if (claim.ExpectedVersion is null)
            {
                written = await client.CoordinationV1.CreateNamespacedLeaseAsync(NewGroupLease(claim.Group, now), Namespace,
                    cancellationToken: cancellationToken);
            }
            else
            {
                var transitions = cache.GroupLeases.Get(claim.Group)?.Transitions ?? 0;
                var patch = LeasePatch.Hold(settings.NodeName, now, LeaseSeconds, claim.ExpectedVersion,
                    claim.Previous == settings.NodeName ? transitions : transitions + 1, acquired: true, Labels());
                written = await client.CoordinationV1.PatchNamespacedLeaseAsync(patch, claim.Group, Namespace,
                    cancellationToken: cancellationToken);
            }
            claims.Record(claim.Group, epoch, claim.Previous);
            cache.Observe(written);
            logger.LogInformation("Claimed {Group} (previous holder {Previous})", claim.Group, claim.Previous ?? "none");
            return Outcome.Done;
        }
        catch (HttpOperationException e) when ((int)e.Response.StatusCode is 409 or 404)
        {
            logger.LogInformation("Lost the race for {Group} ({Status}); re-reading it", claim.Group, (int)e.Response.StatusCode);
            await RefreshAsync(claim.Group, cancellationToken);
            return Outcome.Lost;
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            logger.LogWarning("Claiming {Group} failed: {Error}", claim.Group, HeartbeatRenewer.Describe(e));
            return Outcome.Failed;
        }
    }

    public async Task<Outcome> ReleaseAsync(string group, string version, CancellationToken cancellationToken)
    {
        try
        {
            var written = await client.CoordinationV1.PatchNamespacedLeaseAsync(
                LeasePatch.Hold(null, DateTime.UtcNow, LeaseSeconds, version), group, Namespace,
                cancellationToken: cancellationToken);
            claims.Forget(group);
            cache.Observe(written);
            logger.LogInformation("Released {Group}", group);
            return Outcome.Done;
        }
        catch (HttpOperationException e) when ((int)e.Response.StatusCode is 409 or 404)
        {
            claims.Forget(group);
            await RefreshAsync(group, cancellationToken);
            return Outcome.Lost;
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            logger.LogWarning("Releasing {Group} failed: {Error}", group, HeartbeatRenewer.Describe(e));
            return Outcome.Failed;
        }
    }

    public async Task<Outcome> DeleteAsync(string group, string version, CancellationToken cancellationToken)
    {
        try
        {
            await client.CoordinationV1.DeleteNamespacedLeaseAsync(group, Namespace,
                new V1DeleteOptions { Preconditions = new V1Preconditions { ResourceVersion = version } },
                cancellationToken: cancellationToken);
            claims.Forget(group);
            cache.GroupLeases.Remove(group);
            logger.LogInformation("Deleted the Lease of {Group}: no service uses it any more", group);
            return Outcome.Done;
        }
        catch (HttpOperationException e) when ((int)e.Response.StatusCode is 409 or 404)
        {
            await RefreshAsync(group, cancellationToken);
            return Outcome.Lost;
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            logger.LogWarning("Deleting the Lease of {Group} failed: {Error}", group, HeartbeatRenewer.Describe(e));
            return Outcome.Failed;
        }
    }

    /// <summary>
    /// The takeover check of the protocol: a fresh read of the previous holder's heartbeat. It is still
    /// silent if its version is the one the domain saw (or it is still absent, for version "").
    /// </summary>
    private async Task<bool> StillSilentAsync(string node, string version, CancellationToken cancellationToken)
    {
        try
        {
            var lease = await client.CoordinationV1.ReadNamespacedLeaseAsync(Decide.HeartbeatLeaseName(node), Namespace,
                cancellationToken: cancellationToken);
            if (lease.Metadata.ResourceVersion == version) return true;
            cache.Observe(lease);
            return false;
        }
        catch (HttpOperationException e) when ((int)e.Response.StatusCode == 404)
        {
            return true;
        }
    }

    private async Task RefreshAsync(string group, CancellationToken cancellationToken)
    {
        try
        {
            cache.Observe(await client.CoordinationV1.ReadNamespacedLeaseAsync(group, Namespace, cancellationToken: cancellationToken));
        }
        catch (HttpOperationException e) when ((int)e.Response.StatusCode == 404)
        {
            cache.GroupLeases.Remove(group);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogDebug("Re-reading {Group} failed: {Error}", group, HeartbeatRenewer.Describe(e));
        }
    }

    private static Dictionary<string, string> Labels() => new()
    {
        [KubeObjects.ManagedByLabel] = KubeObjects.ManagedByValue,
        [KubeObjects.KindLabel] = "group",
    };

    private V1Lease NewGroupLease(string group, DateTime now) => new()
    {
        Metadata = new V1ObjectMeta { Name = group, NamespaceProperty = Namespace, Labels = Labels() },
        Spec = new V1LeaseSpec
        {
            HolderIdentity = settings.NodeName,
            AcquireTime = now,
            RenewTime = now,
            LeaseDurationSeconds = LeaseSeconds,
            LeaseTransitions = 0,
        },
    };
}
