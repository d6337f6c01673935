using System.Threading.Channels;
using Hybrid.Facade;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Writes the addresses the domain assigned from the pools onto their Services: a merge patch from the
/// resourceVersion the domain decided on, so a Service that changed meanwhile is a 409 and a fresh decision,
/// never an overwrite. On success it posts the Normal Event the domain wrote. In the background, so an API
/// outage never slows the VIPs; a failed write is not retried here (the domain decides again once it has
/// waited for the address to appear).
/// </summary>
internal sealed class AddressAssigner(ApiClient api, EventRecorder events, ILogger<AddressAssigner> logger) : IAsyncDisposable
{
    private readonly Channel<ShellCommand.AssignAddress> _queue =
        Channel.CreateUnbounded<ShellCommand.AssignAddress>(new UnboundedChannelOptions { SingleReader = true });
    private Task? _worker;

    public void Start(CancellationToken cancellationToken) => _worker = Task.Run(() => RunAsync(cancellationToken), cancellationToken);

    public void Enqueue(ShellCommand.AssignAddress assign) => _queue.Writer.TryWrite(assign);

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var assign in _queue.Reader.ReadAllAsync(cancellationToken))
                await WriteAsync(assign, cancellationToken);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task WriteAsync(ShellCommand.AssignAddress assign, CancellationToken cancellationToken)
    {
        var key = KubeObjects.Key(assign.Namespace, assign.Name);
        try
        {
            await api.MergePatchAsync(ApiPaths.Service(assign.Namespace, assign.Name), KubeObjects.AssignmentPatch(assign),
                ApiJson.Default.ServiceObject, cancellationToken);
            events.Enqueue(new EventOutput(assign.Namespace, assign.Name, EventKind.Normal, assign.Reason, assign.Message));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (ApiException e) when (e.Status is System.Net.HttpStatusCode.Conflict or System.Net.HttpStatusCode.NotFound)
        {
            logger.LogDebug("{Service} changed or vanished before its address was written; the next decision sees it", key);
        }
        catch (Exception e)
        {
            logger.LogWarning("Writing the address assigned to {Service} failed ({Error}); it is decided again shortly", key, ApiErrors.Describe(e));
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
