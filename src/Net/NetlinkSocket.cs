using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Hybrid.Net;

/// <summary>Turns one received netlink message into a value, or null to skip it.</summary>
internal delegate T? NetlinkParser<T>(NetlinkMessage message) where T : class;

/// <summary>
/// The transport: an AF_NETLINK / NETLINK_ROUTE socket and the request/reply exchange over it (sequence numbers,
/// acks, errors, multi-part dumps). The descriptor is created by P/Invoke (.NET cannot create AF_NETLINK
/// sockets), bound, configured, then wrapped in a <see cref="Socket"/>: that gives epoll-driven async
/// send/receive that honour a <see cref="CancellationToken"/> without a blocked thread, and the descriptor is
/// owned by a <see cref="SafeSocketHandle"/>.
/// Exchanges are serialised on one socket; replies to a cancelled or timed-out exchange are recognised by
/// their sequence numbers and skipped by the next one.
/// </summary>
internal sealed class NetlinkSocket : IDisposable, IAsyncDisposable
{
    /// <summary>Kernel receive queue for request sockets: room for the error answers of a full batch.</summary>
    public const int DefaultReceiveBufferBytes = 1 << 20;

    /// <summary>Requests encoded into one send; their answers must fit in the receive queue at once.</summary>
    public const int MaxMessagesPerSend = 256;

    // Kernel dump datagrams are at most 32 KiB; notifications are single small messages.
    private const int DatagramBufferBytes = 64 * 1024;

    private readonly Socket _socket;
    private readonly SemaphoreSlim _exchange = new(1, 1);
    private readonly byte[] _receiveBuffer = new byte[DatagramBufferBytes];
    private readonly NetlinkMessageWriter _writer = new();
    private uint _nextSequence = (uint)Environment.TickCount;
    private uint? _unfinishedDump; // sequence of a dump abandoned before NLMSG_DONE (cancelled, timed out)

    private NetlinkSocket(Socket socket, uint portId, uint groups)
    {
        _socket = socket;
        PortId = portId;
        MulticastGroups = groups;
    }

    /// <summary>The port id the kernel assigned to this socket.</summary>
    public uint PortId { get; }

    /// <summary>RTMGRP_* bits this socket listens to (0 for a request socket).</summary>
    public uint MulticastGroups { get; }

    /// <summary>How long an exchange waits for the kernel before failing with ETIMEDOUT.</summary>
    public TimeSpan ReplyTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Opens a NETLINK_ROUTE socket, in the named network namespace (/var/run/netns/NAME) when one is given,
    /// otherwise in the calling thread's namespace. <paramref name="multicastGroups"/> are RTMGRP_* bits.
    /// The receive buffer is forced to <paramref name="receiveBufferBytes"/> when the process has
    /// CAP_NET_ADMIN, otherwise capped by net.core.rmem_max.
    /// </summary>
    public static NetlinkSocket Open(string? namespaceName = null, uint multicastGroups = 0,
        int receiveBufferBytes = DefaultReceiveBufferBytes)
    {
        return namespaceName is null
            ? Create(multicastGroups, receiveBufferBytes)
            : NetworkNamespace.RunIn(namespaceName, () => Create(multicastGroups, receiveBufferBytes));
    }

    private static NetlinkSocket Create(uint groups, int receiveBufferBytes)
    {
        var handle = OpenHandle(Interop.Netlink.NETLINK_ROUTE, groups, receiveBufferBytes, out var portId);
        return new NetlinkSocket(new Socket(handle), portId, groups);
    }

    /// <summary>
    /// Creates, configures and binds an AF_NETLINK socket of <paramref name="protocol"/> in the calling thread's
    /// network namespace; returns its descriptor and the port id the kernel gave it.
    /// </summary>
    internal static SafeSocketHandle OpenHandle(int protocol, uint groups, int receiveBufferBytes, out uint portId)
    {
        var handle = Interop.Netlink.Socket(Interop.Netlink.AF_NETLINK,
            Interop.Netlink.SOCK_RAW | Interop.Netlink.SOCK_CLOEXEC, protocol);
        if (handle.IsInvalid)
        {
            var errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            throw new NetlinkException($"socket(AF_NETLINK, SOCK_RAW, {protocol})", errno);
        }
        try
        {
            SetBufferSize(handle, Interop.Netlink.SO_RCVBUFFORCE, Interop.Netlink.SO_RCVBUF, receiveBufferBytes);
            SetBufferSize(handle, Interop.Netlink.SO_SNDBUFFORCE, Interop.Netlink.SO_SNDBUF, DefaultReceiveBufferBytes);
            // Error answers carry the kernel's explanation and omit the echoed request; dump requests are
            // checked strictly so that the kernel filters by ifindex / table itself.
            SetOption(handle, Interop.Netlink.SOL_NETLINK, Interop.Netlink.NETLINK_EXT_ACK, 1, "NETLINK_EXT_ACK");
            SetOption(handle, Interop.Netlink.SOL_NETLINK, Interop.Netlink.NETLINK_CAP_ACK, 1, "NETLINK_CAP_ACK");
            SetOption(handle, Interop.Netlink.SOL_NETLINK, Interop.Netlink.NETLINK_GET_STRICT_CHK, 1, "NETLINK_GET_STRICT_CHK");

            var address = new Interop.Netlink.SockaddrNl { Family = Interop.Netlink.AF_NETLINK, Groups = groups };
            var size = Marshal.SizeOf<Interop.Netlink.SockaddrNl>();
            if (Interop.Netlink.Bind(handle, in address, size) != 0)
                throw new NetlinkException($"bind(AF_NETLINK, groups 0x{groups:x})", Marshal.GetLastPInvokeError());
            if (Interop.Netlink.GetSockName(handle, out var bound, ref size) != 0)
                throw new NetlinkException("getsockname(AF_NETLINK)", Marshal.GetLastPInvokeError());
            portId = bound.PortId;
            return handle;
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static void SetBufferSize(SafeSocketHandle handle, int forceName, int name, int bytes)
    {
        if (Interop.Netlink.SetSockOpt(handle, Interop.Netlink.SOL_SOCKET, forceName, in bytes, sizeof(int)) == 0) return;
        // Without CAP_NET_ADMIN the kernel caps the request at net.core.{r,w}mem_max; that is still usable.
        if (Interop.Netlink.SetSockOpt(handle, Interop.Netlink.SOL_SOCKET, name, in bytes, sizeof(int)) != 0)
            throw new NetlinkException($"setsockopt(SOL_SOCKET, {name}, {bytes})", Marshal.GetLastPInvokeError());
    }

    private static void SetOption(SafeSocketHandle handle, int level, int name, int value, string what)
    {
        if (Interop.Netlink.SetSockOpt(handle, level, name, in value, sizeof(int)) != 0)
            throw new NetlinkException($"setsockopt({what})", Marshal.GetLastPInvokeError());
    }

    /// <summary>
    /// Sends <paramref name="count"/> requests and returns the kernel's answer to each, in order.
    /// <paramref name="encode"/> writes request i as exactly one message (BeginMessage … EndMessage); this method
    /// sets NLM_F_REQUEST and the sequence numbers. Up to <see cref="MaxMessagesPerSend"/> requests go out in
    /// one send; only the last of them asks for an ack: the kernel handles the messages of one send in order
    /// and answers every failure anyway, so that one ack closes the whole batch. Cancelling stops the waiting,
    /// not the kernel: requests already sent stay applied (all requests here are idempotent, so retry).
    /// </summary>
    public async Task<NetlinkStatus[]> ExecuteAsync(int count, Action<NetlinkMessageWriter, int> encode,
        string operation, CancellationToken cancellationToken)
    {
        var results = new NetlinkStatus[count];
        await _exchange.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            for (var start = 0; start < count; start += MaxMessagesPerSend)
            {
                var n = Math.Min(MaxMessagesPerSend, count - start);
                _writer.Reset();
                _writer.NextSequence = ReserveSequences(n);
                for (var i = 0; i < n; i++)
                {
                    encode(_writer, start + i);
                    if (_writer.MessageCount != i + 1)
                        throw new InvalidOperationException("a netlink request encoder must write exactly one message");
                    var last = i == n - 1;
                    _writer.PatchFlags(i,
                        set: (ushort)(NetlinkProtocol.NLM_F_REQUEST | (last ? NetlinkProtocol.NLM_F_ACK : 0)),
                        clear: last ? (ushort)0 : NetlinkProtocol.NLM_F_ACK);
                }
                var first = _writer.SequenceOf(0);
                await SendAsync(_writer.Written, operation, cancellationToken).ConfigureAwait(false);

                using var timeout = StartReplyTimeout(cancellationToken);
                var closed = false;
                while (!closed)
                {
                    var received = await ReceiveReplyAsync(operation, timeout.Token, cancellationToken).ConfigureAwait(false);
                    closed = CollectAnswers(_receiveBuffer.AsSpan(0, received), first, n, results.AsSpan(start, n));
                }
            }
            return results;
        }
        finally
        {
            _exchange.Release();
        }
    }

    private static bool CollectAnswers(ReadOnlySpan<byte> datagram, uint first, int count, Span<NetlinkStatus> results)
    {
        var closed = false;
        foreach (var message in new NetlinkMessageEnumerator(datagram))
        {
            var index = message.Sequence - first;
            if (message.Type != NetlinkProtocol.NLMSG_ERROR || index >= (uint)count) continue; // stale or unrelated
            results[(int)index] = message.ReadStatus();
            if (index == (uint)(count - 1)) closed = true;
        }
        return closed;
    }

    /// <summary>
    /// Sends one dump request (NLM_F_DUMP) and collects every parsed reply until NLMSG_DONE, across as many
    /// datagrams as the kernel needs. A dump the kernel marks inconsistent (NLM_F_DUMP_INTR) is restarted.
    /// </summary>
    public async Task<List<T>> DumpAsync<T>(Action<NetlinkMessageWriter> encode, NetlinkParser<T> parse,
        string operation, CancellationToken cancellationToken) where T : class
    {
        await _exchange.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await FinishAbandonedDumpAsync(cancellationToken).ConfigureAwait(false);
            for (var attempt = 1; ; attempt++)
            {
                _writer.Reset();
                _writer.NextSequence = ReserveSequences(1);
                encode(_writer);
                if (_writer.MessageCount != 1) throw new InvalidOperationException("a netlink dump encoder must write exactly one message");
                _writer.PatchFlags(0, set: NetlinkProtocol.NLM_F_REQUEST | NetlinkProtocol.NLM_F_DUMP, clear: NetlinkProtocol.NLM_F_ACK);
                var sequence = _writer.SequenceOf(0);
                await SendAsync(_writer.Written, operation, cancellationToken).ConfigureAwait(false);

                var state = new DumpState<T>(parse);
                using var timeout = StartReplyTimeout(cancellationToken);
                _unfinishedDump = sequence;
                while (!state.Done)
                {
                    var received = await ReceiveReplyAsync(operation, timeout.Token, cancellationToken).ConfigureAwait(false);
                    state.Collect(_receiveBuffer.AsSpan(0, received), sequence);
                }
                _unfinishedDump = null;
                if (!state.Status.Succeeded)
                    throw new NetlinkException(operation, state.Status.Errno, state.Status.KernelMessage);
                if (!state.Interrupted) return state.Results;
                if (attempt == 5)
                    throw new NetlinkException(operation, 4 /* EINTR */, "dump interrupted by concurrent changes 5 times");
            }
        }
        finally
        {
            _exchange.Release();
        }
    }

    /// <summary>
    /// The kernel keeps one dump per socket going until its NLMSG_DONE has been read, and refuses a new dump with
    /// EBUSY meanwhile. After an abandoned dump, read (and drop) the rest of it before starting another.
    /// </summary>
    private async Task FinishAbandonedDumpAsync(CancellationToken cancellationToken)
    {
        if (_unfinishedDump is not { } stale) return;
        _unfinishedDump = null; // one attempt only: a lost NLMSG_DONE must not stall every later dump
        using var timeout = StartReplyTimeout(cancellationToken);
        while (true)
        {
            var received = await ReceiveReplyAsync("finishing an abandoned netlink dump", timeout.Token, cancellationToken)
                .ConfigureAwait(false);
            if (EndsDump(_receiveBuffer.AsSpan(0, received), stale)) return;
        }
    }

    private static bool EndsDump(ReadOnlySpan<byte> datagram, uint sequence)
    {
        foreach (var message in new NetlinkMessageEnumerator(datagram))
            if (message.Sequence == sequence && message.Type is NetlinkProtocol.NLMSG_DONE or NetlinkProtocol.NLMSG_ERROR)
                return true;
        return false;
    }

    private sealed class DumpState<T>(NetlinkParser<T> parse) where T : class
    {
        public List<T> Results { get; } = [];
        public bool Done { get; private set; }
        public bool Interrupted { get; private set; }
        public NetlinkStatus Status { get; private set; }

        public void Collect(ReadOnlySpan<byte> datagram, uint sequence)
        {
            foreach (var message in new NetlinkMessageEnumerator(datagram))
            {
                if (message.Sequence != sequence || Done) continue;
                if ((message.Flags & NetlinkProtocol.NLM_F_DUMP_INTR) != 0) Interrupted = true;
                switch (message.Type)
                {
                    case NetlinkProtocol.NLMSG_DONE:
                    case NetlinkProtocol.NLMSG_ERROR:
                        Status = message.ReadStatus();
                        Done = true;
                        break;
                    case NetlinkProtocol.NLMSG_NOOP:
                        break;
                    default:
                        if (parse(message) is { } value) Results.Add(value);
                        break;
                }
            }
        }
    }

    /// <summary>
    /// Sends one request that the kernel answers with a single message (e.g. RTM_GETLINK for one link) and
    /// returns the parsed answer, or the error status with a null value.
    /// </summary>
    public async Task<(T? Value, NetlinkStatus Status)> QueryAsync<T>(Action<NetlinkMessageWriter> encode,
        NetlinkParser<T> parse, string operation, CancellationToken cancellationToken) where T : class
    {
        await _exchange.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            _writer.Reset();
            _writer.NextSequence = ReserveSequences(1);
            encode(_writer);
            if (_writer.MessageCount != 1) throw new InvalidOperationException("a netlink query encoder must write exactly one message");
            _writer.PatchFlags(0, set: NetlinkProtocol.NLM_F_REQUEST, clear: NetlinkProtocol.NLM_F_ACK);
            var sequence = _writer.SequenceOf(0);
            await SendAsync(_writer.Written, operation, cancellationToken).ConfigureAwait(false);

            using var timeout = StartReplyTimeout(cancellationToken);
            while (true)
            {
                var received = await ReceiveReplyAsync(operation, timeout.Token, cancellationToken).ConfigureAwait(false);
                if (TryTakeAnswer(_receiveBuffer.AsSpan(0, received), sequence, parse, out var value, out var status))
                    return (value, status);
            }
        }
        finally
        {
            _exchange.Release();
        }
    }

    private static bool TryTakeAnswer<T>(ReadOnlySpan<byte> datagram, uint sequence, NetlinkParser<T> parse,
        out T? value, out NetlinkStatus status) where T : class
    {
        foreach (var message in new NetlinkMessageEnumerator(datagram))
        {
            if (message.Sequence != sequence) continue;
            if (message.Type == NetlinkProtocol.NLMSG_ERROR)
            {
                value = null;
                status = message.ReadStatus();
                return true;
            }
            value = parse(message);
            status = default;
            return true;
        }
        value = null;
        status = default;
        return false;
    }

    /// <summary>
    /// Receives one datagram (a batch of notifications on a multicast socket). Throws
    /// <see cref="SocketException"/> with <see cref="SocketError.NoBufferSpaceAvailable"/> when the kernel
    /// dropped messages because the receive queue was full (ENOBUFS); the socket stays usable.
    /// </summary>
    public ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken) =>
        _socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);

    private uint ReserveSequences(int count)
    {
        var first = _nextSequence;
        _nextSequence += (uint)count;
        return first;
    }

    private CancellationTokenSource StartReplyTimeout(CancellationToken cancellationToken)
    {
        var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(ReplyTimeout);
        return timeout;
    }

    private async Task SendAsync(ReadOnlyMemory<byte> datagram, string operation, CancellationToken cancellationToken)
    {
        int sent;
        try
        {
            sent = await _socket.SendAsync(datagram, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            throw new NetlinkException($"{operation} (send)", e.NativeErrorCode);
        }
        if (sent != datagram.Length)
            throw new NetlinkException($"{operation} (send)", 0, $"sent {sent} of {datagram.Length} bytes");
    }

    private async Task<int> ReceiveReplyAsync(string operation, CancellationToken timeoutToken, CancellationToken callerToken)
    {
        try
        {
            return await _socket.ReceiveAsync(_receiveBuffer, SocketFlags.None, timeoutToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!callerToken.IsCancellationRequested)
        {
            throw new NetlinkException(operation, 110 /* ETIMEDOUT */,
                $"no answer from the kernel within {ReplyTimeout.TotalSeconds:0.#} s");
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.NoBufferSpaceAvailable)
        {
            throw new NetlinkException(operation, 105 /* ENOBUFS */,
                "answers were dropped because the socket's receive queue overflowed; the outcome is unknown, retry");
        }
        catch (SocketException e)
        {
            throw new NetlinkException($"{operation} (receive)", e.NativeErrorCode);
        }
    }

    public void Dispose() => _socket.Dispose();

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
