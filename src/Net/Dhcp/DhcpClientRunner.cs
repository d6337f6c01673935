using System.Threading.Channels;
using Hybrid.Domain;
using Microsoft.Extensions.Logging;
using Microsoft.FSharp.Core;
using DhcpClient = Hybrid.Domain.Dhcp;

namespace Hybrid.Net.Dhcp;

/// <summary>
/// Runs the DHCP client of one Service identity: feeds the pure <see cref="DhcpClient.step"/> with the replies
/// received on the macvlan's packet socket, with ticks at the times it asks for, and with stop requests;
/// executes what it returns (sends frames; publishes <see cref="DhcpCommand.Leased"/> and
/// <see cref="DhcpCommand.Lost"/> on <see cref="Events"/>). Time and randomness (xid, jitter) come from
/// here; every decision comes from the domain. One instance serves one run; the socket stays the caller's.
/// </summary>
internal sealed partial class DhcpClientRunner(
    DhcpState initial,
    DhcpPacketSocket socket,
    TimeProvider time,
    ILogger<DhcpClientRunner> logger)
{
    private readonly Channel<DhcpEvent> _inbox = Channel.CreateUnbounded<DhcpEvent>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Channel<DhcpCommand> _events = Channel.CreateUnbounded<DhcpCommand>(new UnboundedChannelOptions { SingleReader = false });
    private readonly string _interface = initial.Identity.Interface.Value;
    private readonly TaskCompletionSource _finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile DhcpState _state = initial;

    /// <summary>Leased (obtained or extended) and Lost commands, in the order the client issued them.</summary>
    public ChannelReader<DhcpCommand> Events => _events.Reader;

    /// <summary>The client's latest state (for status and logs).</summary>
    public DhcpState State => _state;

    /// <summary>
    /// Starts the client (confirming <paramref name="known"/> first when given) and runs it until it is
    /// stopped with <see cref="StopAsync"/>. Cancelling abandons the client on the spot: nothing more is
    /// sent (the same as stopping with <see cref="StopMode.KeepLease"/>, without waiting).
    /// </summary>
    public async Task RunAsync(Ip? known, CancellationToken cancellationToken)
    {
        using var stopReceiving = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var receiver = ReceiveAsync(stopReceiving.Token);
        try
        {
            var start = DhcpEvent.NewStart(known is null ? FSharpOption<Ip>.None : FSharpOption<Ip>.Some(known));
            var wakeAt = await Execute(Step(start)).ConfigureAwait(false);
            while (!_state.Phase.IsStopped)
            {
                var next = await NextEventAsync(wakeAt, cancellationToken).ConfigureAwait(false);
                wakeAt = await Execute(Step(next)).ConfigureAwait(false);
            }
        }
        finally
        {
            await stopReceiving.CancelAsync().ConfigureAwait(false);
            try
            {
                await receiver.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            _events.Writer.TryComplete();
            _finished.TrySetResult();
        }
    }

    /// <summary>
    /// Stops the client: <see cref="StopMode.ReleaseLease"/> sends DHCPRELEASE when a lease is held (the
    /// Service is gone or changed address); <see cref="StopMode.KeepLease"/> sends nothing (the Service
    /// moves to another node, which renews the same lease). Completes when <see cref="RunAsync"/> has ended.
    /// </summary>
    public async Task StopAsync(StopMode mode, CancellationToken cancellationToken)
    {
        _inbox.Writer.TryWrite(DhcpEvent.NewStop(mode));
        await _finished.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<DhcpEvent> NextEventAsync(long? wakeAt, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (_inbox.Reader.TryRead(out var queued)) return queued;
            var wait = wakeAt is { } at ? TimeSpan.FromMilliseconds(Math.Max(0, at - NowMs())) : Timeout.InfiniteTimeSpan;
            if (wait == TimeSpan.Zero) return DhcpEvent.Tick;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            if (wait != Timeout.InfiniteTimeSpan) timeout.CancelAfter(wait);
            try
            {
                await _inbox.Reader.WaitToReadAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return DhcpEvent.Tick;
            }
        }
    }

    /// <summary>One step of the pure client: the new state is kept, the commands returned.</summary>
    private DhcpCommand[] Step(DhcpEvent @event)
    {
        var before = _state;
        var (after, commands) = DhcpClient.step(before, new DhcpInput(@event, NowMs(), Draw(before.Timing)));
        _state = after;
        if (after.Phase.Tag != before.Phase.Tag)
            LogPhase(_interface, DhcpClient.phaseName(before.Phase), DhcpClient.phaseName(after.Phase));
        return commands.ToArray();
    }

    /// <summary>Executes the commands in order; returns the instant to tick at, if any.</summary>
    private async Task<long?> Execute(DhcpCommand[] commands)
    {
        long? wakeAt = null;
        foreach (var command in commands)
        {
            switch (command)
            {
                case DhcpCommand.Send send:
                    await SendAsync(send.Item).ConfigureAwait(false);
                    break;
                case DhcpCommand.Leased leased:
                    LogLeased(_interface, IpModule.format(leased.Item1.Address), leased.Item2.IsObtained ? "obtained" : "extended",
                        IpModule.format(leased.Item1.Server), LeaseSeconds(leased.Item1.Length));
                    _events.Writer.TryWrite(command);
                    break;
                case DhcpCommand.Lost lost:
                    LogLost(_interface, IpModule.format(lost.address), LostReasonModule.describe(lost.reason));
                    _events.Writer.TryWrite(command);
                    break;
                case DhcpCommand.Resolve resolve:
                    await SendArpRequestAsync(resolve.hop, resolve.sender).ConfigureAwait(false);
                    break;
                case DhcpCommand.WakeAt wake:
                    wakeAt = wake.Item;
                    break;
            }
        }
        return wakeAt;
    }

    private async Task SendAsync(ClientMessage message)
    {
        var frame = DhcpFrameCodec.Encode(message);
        try
        {
            // Not cancellable: a RELEASE is sent while stopping, and a frame is handed to the kernel at once.
            // ENOBUFS (a full transmit backlog, seen in the lab under load) is retried briefly: nothing else resends
            // a RELEASE, and the domain's retransmissions of the others are seconds away.
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    await socket.SendAsync(frame, CancellationToken.None).ConfigureAwait(false);
                    break;
                }
                catch (System.Net.Sockets.SocketException e) when (e.SocketErrorCode == System.Net.Sockets.SocketError.NoBufferSpaceAvailable && attempt < 5)
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(20 * attempt), time).ConfigureAwait(false);
                }
            }
            LogSent(_interface, RequestKindModule.name(message.Kind), message.Xid.Value, message.Destination.IsBroadcast ? "broadcast" : "unicast");
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            // The domain retransmits on its own schedule; a link that is down now may be up by then.
            LogSendFailed(_interface, RequestKindModule.name(message.Kind), e.Message);
        }
    }

    private async Task SendArpRequestAsync(Hop hop, Ip sender)
    {
        var frame = DhcpFrameCodec.EncodeArpRequest(hop, sender, _state.Identity.Mac);
        try
        {
            await socket.SendAsync(frame, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            LogSendFailed(_interface, "ARP request", e.Message);
        }
    }

    private async Task ReceiveAsync(CancellationToken cancellationToken)
    {
        var buffer = new byte[DhcpPacketSocket.FrameBufferBytes];
        while (!cancellationToken.IsCancellationRequested)
        {
            int length;
            try
            {
                length = await socket.ReceiveAsync(buffer, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (System.Net.Sockets.SocketException e)
            {
                LogReceiveFailed(_interface, e.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(100), time, cancellationToken).ConfigureAwait(false);
                continue;
            }
            var decoded = DhcpFrameCodec.Decode(buffer.AsSpan(0, length));
            if (decoded.Reply is { } reply)
            {
                LogReceived(_interface, ReplyKindModule.name(reply.Kind), reply.Xid.Value, IpModule.format(reply.YourIp));
                _inbox.Writer.TryWrite(DhcpEvent.NewReceived(reply));
            }
            else
            {
                LogIgnored(_interface, length, decoded.Ignored ?? "");
            }
        }
    }

    private long NowMs() => time.GetTimestamp() * 1000 / time.TimestampFrequency;

    private static Entropy Draw(DhcpTiming timing) =>
        new(Xid.NewXid((uint)Random.Shared.NextInt64(0, 1L << 32)), Random.Shared.NextInt64(-timing.MaxJitter, timing.MaxJitter + 1));

    private static string LeaseSeconds(LeaseLength length) =>
        length is LeaseLength.Finite finite ? $"{finite.Item / 1000} s" : "infinite";

    [LoggerMessage(Level = LogLevel.Debug, Message = "DHCP on {Interface}: {From} -> {To}")]
    private partial void LogPhase(string @interface, string from, string to);

    [LoggerMessage(Level = LogLevel.Information, Message = "DHCP on {Interface}: {Address} {Change} from {Server}, lease {Lease}")]
    private partial void LogLeased(string @interface, string address, string change, string server, string lease);

    [LoggerMessage(Level = LogLevel.Warning, Message = "DHCP on {Interface}: {Address} lost: {Reason}")]
    private partial void LogLost(string @interface, string address, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "DHCP on {Interface}: sent {Message} xid {Xid:x8} ({Destination})")]
    private partial void LogSent(string @interface, string message, uint xid, string destination);

    [LoggerMessage(Level = LogLevel.Warning, Message = "DHCP on {Interface}: sending {Message} failed: {Reason}")]
    private partial void LogSendFailed(string @interface, string message, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "DHCP on {Interface}: received {Message} xid {Xid:x8} for {Address}")]
    private partial void LogReceived(string @interface, string message, uint xid, string address);

    [LoggerMessage(Level = LogLevel.Trace, Message = "DHCP on {Interface}: ignored a {Length}-byte frame: {Reason}")]
    private partial void LogIgnored(string @interface, int length, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "DHCP on {Interface}: receiving failed: {Reason}")]
    private partial void LogReceiveFailed(string @interface, string reason);
}
