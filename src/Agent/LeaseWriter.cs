using System.Net;
using Hybrid.Facade;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Performs the Lease writes the protocol asks for — creates, compare-and-swaps, deletes and re-reads — each
/// with a deadline of its own, and posts every outcome back to the inbox. Writes run concurrently (each
/// touches one Lease, and the domain never has two in flight for one Lease); none blocks the loop.
/// </summary>
internal sealed class LeaseWriter(ApiClient api, string ns, ProtocolInbox inbox, AgentMetrics metrics, ILogger<LeaseWriter> logger)
{
    /// <summary>A write that has not been answered by then counts as failed (it may still land).</summary>
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(2);

    private string PathOf(string name) => ApiPaths.Lease(ns, name);

    public void Write(long id, LeaseWriteOutput write, CancellationToken cancellationToken) =>
        _ = RunAsync(id, $"write {write.Name}", KindOf(write), async token =>
        {
            var now = DateTime.UtcNow;
            var lease = ApiJson.Default.LeaseObject;
            var written = write.ExpectedVersion is null
                ? await api.CreateAsync(ApiPaths.Leases(ns), KubeObjects.NewLease(write, ns, now), lease, lease, token)
                : await api.MergePatchAsync(PathOf(write.Name), KubeObjects.LeasePatch(write, now), lease, token);
            return KubeObjects.ToInput(written);
        }, cancellationToken);

    public void Delete(long id, string name, string version, CancellationToken cancellationToken) =>
        _ = RunAsync(id, $"delete {name}", Configuration.GroupLeaseKind, async token =>
        {
            await api.DeleteAsync(PathOf(name), new DeleteOptions { Preconditions = new Preconditions { ResourceVersion = version } }, token);
            return null;
        }, cancellationToken);

    /// <summary>Re-reads a Lease and reports it as an observation (after a conflict, to decide afresh).</summary>
    public void Read(string name, CancellationToken cancellationToken) => _ = ReadAsync(name, cancellationToken);

    private async Task ReadAsync(string name, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(RequestTimeout);
        try
        {
            var lease = KubeObjects.ToInput(await api.GetAsync(PathOf(name), ApiJson.Default.LeaseObject, deadline.Token));
            inbox.Post(node => node.LeaseUpserted(lease, MonotonicClock.NowMs));
        }
        catch (ApiException e) when (e.Status == HttpStatusCode.NotFound)
        {
            inbox.Post(node => node.LeaseDeleted(name, MonotonicClock.NowMs));
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            logger.LogDebug("Re-reading Lease {Lease} failed: {Error}", name, ApiErrors.Describe(e));
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>What the write's own label says it is (registration or group), for the metrics.</summary>
    private static string KindOf(LeaseWriteOutput write) =>
        write.Labels.TryGetValue(Configuration.LeaseKindLabel, out var kind) ? kind : "unknown";

    private async Task RunAsync(long id, string what, string kind, Func<CancellationToken, Task<LeaseInput?>> request, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(RequestTimeout);
        (WriteResult Result, LeaseInput? Lease, string? Reason) outcome;
        try
        {
            outcome = (WriteResult.Done, await request(deadline.Token), null);
        }
        catch (ApiException e) when (e.Status == HttpStatusCode.Conflict)
        {
            outcome = (WriteResult.Conflict, null, null);
        }
        catch (ApiException e) when (e.Status == HttpStatusCode.NotFound)
        {
            outcome = (WriteResult.NotFound, null, null);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return;
        }
        catch (Exception e)
        {
            outcome = (WriteResult.Failed, null, ApiErrors.Describe(e));
            logger.LogWarning("Lease {What} failed: {Error}", what, outcome.Reason);
        }
        metrics.LeaseWritten(kind, outcome.Result);
        var jitter = Random.Shared.NextDouble();
        inbox.Post(node => node.WriteCompleted(id, outcome.Result, outcome.Lease, outcome.Reason, jitter, MonotonicClock.NowMs));
    }
}
