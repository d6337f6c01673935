using System.Net;
using Hybrid.Facade;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Performs the Lease writes the protocol asks for — creates, compare-and-swaps, deletes and re-reads — each
/// with a deadline of its own, and posts every outcome back to the inbox. Writes run concurrently (each
/// touches one Lease, and the domain never has two in flight for one Lease); none blocks the loop.
/// </summary>
internal sealed class LeaseWriter(IKubernetes client, string ns, ProtocolInbox inbox, AgentMetrics metrics, ILogger<LeaseWriter> logger)
{
    /// <summary>A write that has not been answered by then counts as failed (it may still land).</summary>
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(2);

    public void Write(long id, LeaseWriteOutput write, CancellationToken cancellationToken) =>
        _ = RunAsync(id, $"write {write.Name}", KindOf(write), async token =>
        {
            var now = DateTime.UtcNow;
            V1Lease written = write.ExpectedVersion is null
                ? await client.CoordinationV1.CreateNamespacedLeaseAsync(KubeObjects.NewLease(write, ns, now), ns, cancellationToken: token)
                : await client.CoordinationV1.PatchNamespacedLeaseAsync(KubeObjects.LeasePatch(write, now), write.Name, ns, cancellationToken: token);
            return KubeObjects.ToInput(written);
        }, cancellationToken);

    public void Delete(long id, string name, string version, CancellationToken cancellationToken) =>
        _ = RunAsync(id, $"delete {name}", Configuration.GroupLeaseKind, async token =>
        {
            await client.CoordinationV1.DeleteNamespacedLeaseAsync(name, ns,
                new V1DeleteOptions { Preconditions = new V1Preconditions { ResourceVersion = version } }, cancellationToken: token);
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
            var lease = KubeObjects.ToInput(await client.CoordinationV1.ReadNamespacedLeaseAsync(name, ns, cancellationToken: deadline.Token));
            inbox.Post(node => node.LeaseUpserted(lease, MonotonicClock.NowMs));
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            inbox.Post(node => node.LeaseDeleted(name, MonotonicClock.NowMs));
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            logger.LogDebug("Re-reading Lease {Lease} failed: {Error}", name, Describe(e));
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
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict)
        {
            outcome = (WriteResult.Conflict, null, null);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            outcome = (WriteResult.NotFound, null, null);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return;
        }
        catch (Exception e)
        {
            outcome = (WriteResult.Failed, null, Describe(e));
            logger.LogWarning("Lease {What} failed: {Error}", what, outcome.Reason);
        }
        metrics.LeaseWritten(kind, outcome.Result);
        var jitter = Random.Shared.NextDouble();
        inbox.Post(node => node.WriteCompleted(id, outcome.Result, outcome.Lease, outcome.Reason, jitter, MonotonicClock.NowMs));
    }

    /// <summary>An API failure in a few words, for logs.</summary>
    public static string Describe(Exception e) => e switch
    {
        HttpOperationException h => $"HTTP {(int)h.Response.StatusCode} {h.Response.ReasonPhrase}",
        OperationCanceledException => "timed out",
        _ => e.GetBaseException().Message,
    };
}
