using System.Net;
using System.Threading.Channels;
using Hybrid.Domain;
using Microsoft.Extensions.Logging;
using Microsoft.FSharp.Collections;
using Microsoft.FSharp.Core;

namespace Hybrid.Net;

/// <summary>
/// Runs the UPnP rules: asks <see cref="Upnp.decide"/> what must happen, makes those calls (concurrently, each
/// with the domain's timeout), folds every outcome back with <see cref="Upnp.evolve"/>, and decides again when
/// an outcome arrives, the wants change, or the decision's wake-up time comes. It decides nothing itself.
/// <para>
/// The agent passes what its protocol wants with <see cref="Update"/> (every Service's forward, whether this
/// node holds its group, and the VIPs it answers for) and gets a <see cref="ForwardingReport"/> after every
/// decision (external addresses for status, problems for Events), which it hands back to the protocol.
/// Stopping keeps every mapping: its VIP moves to the next holder, who refreshes it.
/// </para>
/// </summary>
internal sealed partial class UpnpForwarder(
    GatewayDiscovery discovery, IgdClient client, TimeProvider time, Action<ForwardingReport> report, ILogger<UpnpForwarder> logger)
{
    private readonly Lock gate = new();
    private readonly Channel<bool> wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private UpnpState state = Upnp.initial;
    private Wants wants = new(false, FSharpList<ServiceForward>.Empty, FSharpList<Tuple<ServiceKey, ForwardProblem>>.Empty);
    private FSharpSet<Ip> localVips = SetModule.Empty<Ip>();
    private FSharpList<Tuple<ServiceKey, ForwardProblem>> problems = FSharpList<Tuple<ServiceKey, ForwardProblem>>.Empty;

    /// <summary>The node's monotonic clock in milliseconds.</summary>
    private long NowMs => time.GetTimestamp() * 1000 / time.TimestampFrequency;

    /// <summary>The current state (for logs, tests and explanations).</summary>
    public UpnpState State
    {
        get { lock (gate) return state; }
    }

    /// <summary>Problems of the Services this node holds, from the last decision (for Warning Events).</summary>
    public FSharpList<Tuple<ServiceKey, ForwardProblem>> Problems
    {
        get { lock (gate) return problems; }
    }

    /// <summary>Replaces what is wanted and which VIPs this node answers for; the next decision follows at once.</summary>
    public void Update(ForwardingRequest next)
    {
        lock (gate)
        {
            wants = next.Wants;
            localVips = next.LocalVips;
        }
        wake.Writer.TryWrite(true);
    }

    /// <inheritdoc cref="Update(ForwardingRequest)"/>
    public void Update(Wants next, IEnumerable<Ip> vips) => Update(new ForwardingRequest(next, SetModule.OfSeq(vips)));

    /// <summary>The gateways' external addresses on which <paramref name="service"/> has a port mapped.</summary>
    public IReadOnlyList<Ip> ExternalAddresses(ServiceKey service)
    {
        lock (gate) return [.. Upnp.externalAddresses(state, service)];
    }

    /// <summary>Decides and calls until cancelled; calls in flight are cancelled with it.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var inFlight = new List<Task>();
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                UpnpDecision decision;
                ForwardingReport changed;
                lock (gate)
                {
                    decision = Upnp.decide(wants, localVips, state, NowMs);
                    state = decision.State;
                    problems = decision.Problems;
                    changed = Upnp.report(state, problems, NowMs);
                }
                report(changed);
                foreach (var command in decision.Commands) inFlight.Add(ExecuteAsync(command, cancellationToken));
                inFlight.RemoveAll(t => t.IsCompleted);
                await WaitAsync(decision.NextWakeAt, cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        await Task.WhenAll(inFlight);
    }

    private async Task WaitAsync(FSharpOption<long>? wakeAt, CancellationToken cancellationToken)
    {
        using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        if (wakeAt is not null) timer.CancelAfter(TimeSpan.FromMilliseconds(Math.Max(0, wakeAt.Value - NowMs)));
        try
        {
            await wake.Reader.WaitToReadAsync(timer.Token);
            wake.Reader.TryRead(out _);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // the wake-up time came
        }
    }

    private async Task ExecuteAsync(UpnpCommand command, CancellationToken cancellationToken)
    {
        UpnpOutcome outcome;
        try
        {
            outcome = await CallAsync(command, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return;
        }
        catch (Exception e)
        {
            // A bug or a surprise of the platform must not leave the call "in flight" for ever: report it as a
            // failed call, which the rules retry with backoff.
            LogUnexpected(e, command.ToString() ?? "");
            outcome = Unexpected(command, $"{e.GetType().Name}: {e.Message}");
        }
        lock (gate) state = Upnp.evolve(state, NowMs, JitterModule.ofFraction(Random.Shared.NextDouble()), outcome);
        Log(outcome);
        wake.Writer.TryWrite(true);
    }

    private async Task<UpnpOutcome> CallAsync(UpnpCommand command, CancellationToken cancellationToken)
    {
        switch (command)
        {
            case var _ when command.IsDiscover:
                try
                {
                    var found = await discovery.DiscoverAsync(cancellationToken);
                    return UpnpOutcome.NewDiscovered(ListModule.OfSeq(found));
                }
                catch (System.Net.Sockets.SocketException e)
                {
                    return UpnpOutcome.NewDiscoveryFailed(e.Message);
                }
            case UpnpCommand.ReadExternalAddress read:
                try
                {
                    var address = await client.GetExternalIPAddressAsync(read.Item, null, cancellationToken);
                    var ip = address is null ? FSharpOption<Ip>.None : IpModule.tryParse(address.ToString());
                    return UpnpOutcome.NewExternalAddressRead(read.Item.Id, ip);
                }
                catch (UpnpCallException e)
                {
                    return UpnpOutcome.NewExternalAddressFailed(read.Item.Id, e.Failure);
                }
            case UpnpCommand.AddMapping add:
                try
                {
                    await client.AddPortMappingAsync(add.Item1, add.Item2, cancellationToken);
                    return UpnpOutcome.NewAdded(add.Item2.Key);
                }
                catch (UpnpCallException e)
                {
                    return UpnpOutcome.NewAddFailed(add.Item2.Key, e.Failure);
                }
            case UpnpCommand.DeleteMapping delete:
                try
                {
                    var source = delete.source is null ? null : IPAddress.Parse(IpModule.format(delete.source.Value));
                    await client.DeletePortMappingAsync(delete.Item1, delete.Item2, source, cancellationToken);
                    return UpnpOutcome.NewDeleted(delete.Item2);
                }
                catch (UpnpCallException e)
                {
                    return UpnpOutcome.NewDeleteFailed(delete.Item2, e.Failure);
                }
            default:
                throw new InvalidOperationException($"unknown UPnP command {command}");
        }
    }

    private static UpnpOutcome Unexpected(UpnpCommand command, string detail) => command switch
    {
        UpnpCommand.ReadExternalAddress read => UpnpOutcome.NewExternalAddressFailed(read.Item.Id, CallFailure.NewMalformed(detail)),
        UpnpCommand.AddMapping add => UpnpOutcome.NewAddFailed(add.Item2.Key, CallFailure.NewMalformed(detail)),
        UpnpCommand.DeleteMapping delete => UpnpOutcome.NewDeleteFailed(delete.Item2, CallFailure.NewMalformed(detail)),
        _ => UpnpOutcome.NewDiscoveryFailed(detail),
    };

    private void Log(UpnpOutcome outcome)
    {
        switch (outcome)
        {
            case UpnpOutcome.Discovered d when d.Item.IsEmpty:
                LogNoGateway();
                break;
            case UpnpOutcome.Discovered d:
                LogGateways(string.Join(", ", d.Item.Select(g => $"{g.Id} ({g.ControlUrl})")));
                break;
            case UpnpOutcome.DiscoveryFailed f:
                LogDiscoveryFailed(f.detail);
                break;
            case UpnpOutcome.ExternalAddressRead r:
                LogExternalAddress(r.Item1.ToString(), r.Item2 is null ? "none" : IpModule.format(r.Item2.Value));
                break;
            case UpnpOutcome.Added a:
                LogMapped(a.Item.ExternalPort, MappingProtocolModule.name(a.Item.Protocol), a.Item.Gateway.ToString());
                break;
            case UpnpOutcome.Deleted d:
                LogUnmapped(d.Item.ExternalPort, MappingProtocolModule.name(d.Item.Protocol), d.Item.Gateway.ToString());
                break;
            case UpnpOutcome.AddFailed f:
                LogCallFailed("AddPortMapping", f.Item1.ExternalPort, MappingProtocolModule.name(f.Item1.Protocol),
                    FailureReasonModule.describe(FailureReasonModule.ofFailure(f.Item2)));
                break;
            case UpnpOutcome.DeleteFailed f:
                LogCallFailed("DeletePortMapping", f.Item1.ExternalPort, MappingProtocolModule.name(f.Item1.Protocol),
                    FailureReasonModule.describe(FailureReasonModule.ofFailure(f.Item2)));
                break;
            case UpnpOutcome.ExternalAddressFailed f:
                LogCallFailed("GetExternalIPAddress", 0, "", FailureReasonModule.describe(FailureReasonModule.ofFailure(f.Item2)));
                break;
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "UPnP call {Command} failed unexpectedly")]
    private partial void LogUnexpected(Exception exception, string command);

    [LoggerMessage(Level = LogLevel.Information, Message = "No UPnP gateway answered; searching again later")]
    private partial void LogNoGateway();

    [LoggerMessage(Level = LogLevel.Information, Message = "UPnP gateways: {Gateways}")]
    private partial void LogGateways(string gateways);

    [LoggerMessage(Level = LogLevel.Warning, Message = "UPnP search failed: {Reason}")]
    private partial void LogDiscoveryFailed(string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "UPnP gateway {Gateway} has external address {Address}")]
    private partial void LogExternalAddress(string gateway, string address);

    [LoggerMessage(Level = LogLevel.Information, Message = "Forwarded {Port}/{Protocol} on gateway {Gateway}")]
    private partial void LogMapped(int port, string protocol, string gateway);

    [LoggerMessage(Level = LogLevel.Information, Message = "Removed forward {Port}/{Protocol} on gateway {Gateway}")]
    private partial void LogUnmapped(int port, string protocol, string gateway);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Action} for {Port}/{Protocol} failed: {Reason}")]
    private partial void LogCallFailed(string action, int port, string protocol, string reason);
}
