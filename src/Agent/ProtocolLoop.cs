using Hybrid.Facade;
using Hybrid.Net;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// The agent's one decision loop: takes every observation and outcome from the inbox in order, hands it to
/// the protocol node (the domain), and executes the commands that come back, in order. Nothing here decides:
/// every "whether", "when" and "in which order" comes from the domain; this class only performs, posts
/// outcomes back, and wakes the node when it asked to be woken.
/// </summary>
internal sealed class ProtocolLoop(
    ProtocolNode node,
    ProtocolInbox inbox,
    HeartbeatSocket heartbeat,
    KernelExecutor kernel,
    LeaseWriter leases,
    StatusWriter status,
    EventRecorder events,
    AddressAssigner assigner,
    DhcpSupervisor dhcp,
    DhcpLeaseRecorder dhcpLeases,
    UpnpForwarder? forwarder,
    AgentMetrics metrics,
    ILogger<ProtocolLoop> logger)
{
    /// <summary>How long the loop sleeps when the node scheduled nothing (it always does while running).</summary>
    private static readonly TimeSpan Idle = TimeSpan.FromSeconds(1);

    private bool _synced;
    private long _forwardingSeen = -1;
    private long _lastTurnAtMs = MonotonicClock.NowMs;
    private volatile bool _ready;

    /// <summary>When the loop last finished a turn (monotonic ms); read by the health endpoint.</summary>
    public long LastTurnAtMs => Interlocked.Read(ref _lastTurnAtMs);

    /// <summary>Caches synced and this node joined: it decides from a complete view.</summary>
    public bool Ready => _ready;

    /// <summary>Runs until the node has stopped (after StopRequested) or <paramref name="cancellationToken"/> fires.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested && !node.Stopped)
        {
            if (!_synced && node.Synced)
            {
                _synced = true;
                logger.LogInformation("Caches synced: Services, EndpointSlices, Leases, Nodes and the pool ConfigMap listed, VIP interface read");
            }
            var wake = node.NextWakeAt;
            var wait = wake is { } at ? TimeSpan.FromMilliseconds(Math.Clamp(at - MonotonicClock.NowMs, 0, Idle.TotalMilliseconds)) : Idle;
            if (wait > TimeSpan.Zero) await inbox.WaitAsync(wait, cancellationToken);
            if (cancellationToken.IsCancellationRequested) return;
            // Everything that queued up while the loop was acting is one batch: one decision for all of it.
            var started = MonotonicClock.NowMs;
            var inputs = 0;
            while (inbox.TryTake(out var entry))
            {
                entry(node);
                inputs++;
            }
            node.Tick(MonotonicClock.NowMs);
            var commands = node.Decide();
            var decided = MonotonicClock.NowMs;
            metrics.Record(node.HoldChanges);
            HandOverForwarding();
            await ExecuteAsync(commands, cancellationToken);
            metrics.Publish(node.Reading);
            ReportStall(wake, started, decided, inputs, commands.Length);
            _ready = node.Synced && node.Summary.Joined;
            Interlocked.Exchange(ref _lastTurnAtMs, MonotonicClock.NowMs);
        }
    }

    /// <summary>The UPnP forwarder (enable_upnp) works towards what the last decision wants, when that changed.</summary>
    private void HandOverForwarding()
    {
        if (forwarder is null || node.ForwardingChanges == _forwardingSeen) return;
        _forwardingSeen = node.ForwardingChanges;
        forwarder.Update(node.Forwarding);
    }

    /// <summary>
    /// A pass that woke late or took long delays heartbeats and fence refreshes: worth a line in the log, as a
    /// stalled node is what makes its peers arm API fences or depose it.
    /// </summary>
    private void ReportStall(long? wake, long started, long decided, int inputs, int commands)
    {
        var late = wake is { } at ? started - at : 0;
        var took = MonotonicClock.NowMs - started;
        if (late + took < StallWarning) return;
        logger.LogWarning("Protocol loop stalled: woke {Late} ms late, decided in {Decide} ms and acted in {Act} ms ({Inputs} inputs, {Commands} commands)",
            late, decided - started, took - (decided - started), inputs, commands);
    }

    /// <summary>Announcements sent, and kernel actions that failed (a Service's announcement not carried out): once per VIP they failed for.</summary>
    private void Count(KernelAction action, KernelReport report)
    {
        var failed = report.Result switch
        {
            KernelResult.Failed => action switch
            {
                KernelAction.Admit a => a.Vips.Length,
                KernelAction.Withdraw w => w.Vips.Length,
                KernelAction.Hold h => h.Addresses.Length,
                KernelAction.Unhold u => u.Addresses.Length,
                _ => 1,
            },
            _ => (report.Exceptions ?? []).Count(v => v.Result == KernelResult.Failed),
        };
        if (failed > 0) metrics.ReconcileErrors.Add(failed);
        if (report.Result == KernelResult.Applied && action.IsAnnounce) metrics.Announcements.Add();
    }

    /// <summary>Half a heartbeat interval at the defaults: a delay peers can notice.</summary>
    private const long StallWarning = 50;

    private async Task ExecuteAsync(ShellCommand[] commands, CancellationToken cancellationToken)
    {
        foreach (var command in commands)
        {
            if (command is not ShellCommand.SendDatagrams && logger.IsEnabled(LogLevel.Trace))
                logger.LogTrace("Performing {Command}", command);
            switch (command)
            {
                case ShellCommand.SendDatagrams send:
                    foreach (var datagram in send.Datagrams)
                    {
                        try
                        {
                            await heartbeat.SendAsync(datagram, cancellationToken);
                        }
                        catch (Exception e) when (e is not OperationCanceledException)
                        {
                            logger.LogDebug("Heartbeat send failed: {Error}", e.Message);
                        }
                    }
                    break;
                case ShellCommand.WriteLease write:
                    leases.Write(write.Id, write.Write, cancellationToken);
                    break;
                case ShellCommand.DeleteLease delete:
                    leases.Delete(delete.Id, delete.Name, delete.Version, cancellationToken);
                    break;
                case ShellCommand.ReadLease read:
                    leases.Read(read.Name, cancellationToken);
                    break;
                case ShellCommand.Kernel k:
                    var report = await kernel.ApplyAsync(k.Action, cancellationToken);
                    Count(k.Action, report);
                    var id = k.Id;
                    if (report.AnsweringEndsByMs is { } endsBy)
                        inbox.Post(n => n.FenceExtended(id, endsBy, MonotonicClock.NowMs));
                    else
                        inbox.Post(n => n.KernelCompleted(id, report.Result, report.Reason, [.. report.Exceptions ?? []], MonotonicClock.NowMs));
                    break;
                case ShellCommand.WriteStatus write:
                    status.Enqueue(write);
                    break;
                case ShellCommand.EmitEvent emit:
                    events.Enqueue(emit.Event);
                    break;
                case ShellCommand.EmitConfigMapEvent emit:
                    events.EnqueueForConfigMap(emit.Namespace, emit.Name, emit.Reason, emit.Message);
                    break;
                case ShellCommand.AssignAddress assign:
                    assigner.Enqueue(assign);
                    break;
                case ShellCommand.StartDhcp start:
                    dhcp.Start(start, cancellationToken);
                    break;
                case ShellCommand.StopDhcp stop:
                    dhcp.Stop(stop);
                    break;
                case ShellCommand.RecordDhcpLease record:
                    dhcpLeases.Enqueue(record);
                    break;
                case ShellCommand.EmitNodeEvent emit:
                    events.EnqueueForNode(emit.Reason, emit.Message);
                    break;
                case ShellCommand.Log log:
                    logger.Log(log.Entry.Level switch
                    {
                        LogLevelName.Warning => LogLevel.Warning,
                        LogLevelName.Information => LogLevel.Information,
                        _ => LogLevel.Debug,
                    }, log.Entry.Template, log.Entry.Arguments);
                    break;
            }
        }
    }
}
