using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;

namespace Hybrid.Net;

/// <summary>
/// The LAN heartbeat transport: UDP datagrams that stay on the VIP interface's own segment and are never
/// routed. Every <see cref="SendAsync"/> goes out twice, as an IPv4 limited broadcast (255.255.255.255) and as
/// an IPv6 link-local multicast to all nodes (ff02::1), both to one port, from sockets bound to the interface
/// (SO_BINDTODEVICE) with a TTL / hop limit of 1; routers forward neither. Both families are received.
/// <para>
/// Why both, always: nodes then hear each other on IPv4-only, IPv6-only and dual-stack segments alike, with
/// nothing to configure and no dependence on the interface's addresses, which change under the agent
/// (DHCP, SLAAC, the VIPs themselves); a family whose send fails (no such stack on the interface) does not
/// stop the other. The cost is a second datagram of at most 1,400 bytes per heartbeat.
/// </para>
/// <para>
/// Each datagram carries a 20-byte header: a magic number, this socket's random sender id and a sequence
/// number. Receivers drop datagrams without the magic (counted in <see cref="IgnoredDatagrams"/>), their own
/// (the looped-back broadcast), and any copy that is not newer than the last one delivered from that sender:
/// so each heartbeat is delivered at most once, and never after a newer one from the same sender. The
/// header is transport framing only; the payload is the caller's (the domain's heartbeat).
/// </para>
/// <para>
/// Sockets live in the network namespace of the thread that calls <see cref="Open"/>. Datagrams are read
/// by one loop per family from the moment the socket opens, timestamped with the monotonic clock as they are
/// read, and queued (the oldest are dropped beyond <see cref="QueueCapacity"/>) for
/// <see cref="ReceiveAllAsync"/>. Anyone on the segment can send to the port: the payload must carry its
/// own authentication if the protocol needs one.
/// </para>
/// </summary>
internal sealed class HeartbeatSocket : IAsyncDisposable
{
    /// <summary>The largest datagram sent or accepted, header included: well inside any LAN's MTU, never fragmented.</summary>
    public const int MaxDatagramBytes = 1400;

    public const int HeaderBytes = 20;

    /// <summary>The largest payload one heartbeat can carry.</summary>
    public const int MaxPayloadBytes = MaxDatagramBytes - HeaderBytes;

    /// <summary>Received datagrams kept for a slow reader; beyond this the oldest are dropped (only the newest matter).</summary>
    public const int QueueCapacity = 1024;

    private const uint Magic = 0x4859_4842; // "HYHB"
    private const int MaxTrackedSenders = 4096;

    // linux/socket.h, asm-generic/socket.h: .NET names no SO_BINDTODEVICE, but sets it as a raw option.
    private const int SolSocket = 1;
    private const int SoBindToDevice = 25;

    private static readonly IPAddress AllNodes = IPAddress.Parse("ff02::1");

    private readonly Socket? ipv4;
    private readonly Socket? ipv6;
    private readonly IPEndPoint broadcast;
    private readonly IPEndPoint allNodes;
    private readonly Func<long> clockMs;
    private readonly ulong senderId = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));
    private readonly Channel<HeartbeatDatagram> received = Channel.CreateBounded<HeartbeatDatagram>(
        new BoundedChannelOptions(QueueCapacity) { FullMode = BoundedChannelFullMode.DropOldest, SingleWriter = false });
    private readonly Dictionary<ulong, ulong> newestSequence = [];
    private readonly CancellationTokenSource stop = new();
    private readonly Task[] loops;
    private long sequence;
    private long ignored;
    private int disposed;

    private HeartbeatSocket(LinkInfo link, int port, Socket? ipv4, Socket? ipv6, Func<long> clockMs)
    {
        InterfaceName = link.Name;
        Port = port;
        this.ipv4 = ipv4;
        this.ipv6 = ipv6;
        this.clockMs = clockMs;
        broadcast = new IPEndPoint(IPAddress.Broadcast, port);
        allNodes = new IPEndPoint(new IPAddress(AllNodes.GetAddressBytes(), link.Index), port);
        loops = new[] { ipv4, ipv6 }.OfType<Socket>().Select(s => Task.Run(() => ReceiveLoopAsync(s))).ToArray();
    }

    public string InterfaceName { get; }

    public int Port { get; }

    /// <summary>The families this socket sends and receives on (both, unless the host has no IPv6 at all).</summary>
    public HeartbeatFamilies Families => (ipv4 is null ? 0 : HeartbeatFamilies.IPv4) | (ipv6 is null ? 0 : HeartbeatFamilies.IPv6);

    /// <summary>Datagrams on the port that were not heartbeats (no magic, too short, too long).</summary>
    public long IgnoredDatagrams => Interlocked.Read(ref ignored);

    /// <summary>
    /// Opens the heartbeat sockets on <paramref name="link"/> in the calling thread's network namespace and
    /// starts receiving. <paramref name="clockMs"/> is the node's monotonic clock (receive times).
    /// </summary>
    /// <exception cref="SocketException">neither family could be opened (e.g. the port is taken).</exception>
    public static HeartbeatSocket Open(LinkInfo link, int port, Func<long> clockMs)
    {
        ArgumentNullException.ThrowIfNull(link);
        ArgumentNullException.ThrowIfNull(clockMs);
        ArgumentOutOfRangeException.ThrowIfLessThan(port, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        if (link.Index <= 0 || link.Name.Length is 0 or >= 16)
            throw new ArgumentException($"'{link.Name}' (ifindex {link.Index}) is not an interface a socket can bind to", nameof(link));

        var ipv4 = OpenIPv4(link, port);
        Socket? ipv6 = null;
        try
        {
            ipv6 = OpenIPv6(link, port);
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.AddressFamilyNotSupported or SocketError.ProtocolNotSupported)
        {
            // a kernel without IPv6: heartbeats travel on IPv4 alone
        }
        catch
        {
            ipv4.Dispose();
            throw;
        }
        return new HeartbeatSocket(link, port, ipv4, ipv6, clockMs);
    }

    /// <summary>
    /// Sends one heartbeat on every family; returns the families it went out on. A family that fails while
    /// the other succeeds is left out of the result; when all fail, the first error is thrown.
    /// </summary>
    /// <exception cref="ArgumentException">the payload is longer than <see cref="MaxPayloadBytes"/>.</exception>
    public async ValueTask<HeartbeatFamilies> SendAsync(ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        if (payload.Length > MaxPayloadBytes)
            throw new ArgumentException($"a heartbeat payload of {payload.Length} bytes exceeds {MaxPayloadBytes} bytes", nameof(payload));
        ObjectDisposedException.ThrowIf(Volatile.Read(ref disposed) != 0, this);
        // A fresh array per heartbeat (one every retry period): both sends may still read it after a cancellation.
        var datagram = new byte[HeaderBytes + payload.Length];
        WriteHeader(datagram, senderId, (ulong)Interlocked.Increment(ref sequence));
        payload.Span.CopyTo(datagram.AsSpan(HeaderBytes));
        var v4 = ipv4 is null ? null : SendOneAsync(ipv4, datagram, broadcast, cancellationToken);
        var v6 = ipv6 is null ? null : SendOneAsync(ipv6, datagram, allNodes, cancellationToken);
        var errors = new List<Exception>();
        var sent = HeartbeatFamilies.None;
        if (v4 is not null && await Collect(v4, errors).ConfigureAwait(false)) sent |= HeartbeatFamilies.IPv4;
        if (v6 is not null && await Collect(v6, errors).ConfigureAwait(false)) sent |= HeartbeatFamilies.IPv6;
        cancellationToken.ThrowIfCancellationRequested();
        if (sent == HeartbeatFamilies.None)
            throw new IOException($"sending a heartbeat on '{InterfaceName}' port {Port} failed: {string.Join("; ", errors.Select(e => e.Message))}", errors[0]);
        return sent;
    }

    /// <summary>Heartbeats of other senders as they arrive, until cancelled or disposed.</summary>
    public IAsyncEnumerable<HeartbeatDatagram> ReceiveAllAsync(CancellationToken cancellationToken) =>
        received.Reader.ReadAllAsync(cancellationToken);

    /// <summary>The next heartbeat of another sender.</summary>
    public ValueTask<HeartbeatDatagram> ReceiveAsync(CancellationToken cancellationToken) =>
        received.Reader.ReadAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0) return;
        stop.Cancel();
        ipv4?.Dispose();
        ipv6?.Dispose();
        await Task.WhenAll(loops).ConfigureAwait(false);
        received.Writer.TryComplete();
        stop.Dispose();
    }

    private static Socket OpenIPv4(LinkInfo link, int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            BindToDevice(socket, link.Name);
            socket.EnableBroadcast = true;
            socket.Ttl = 1; // the limited broadcast is never forwarded anyway; nothing else leaves the segment either
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true); // a restarting agent's successor may overlap it
            socket.Bind(new IPEndPoint(IPAddress.Any, port));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static Socket OpenIPv6(LinkInfo link, int port)
    {
        var socket = new Socket(AddressFamily.InterNetworkV6, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.DualMode = false; // IPv4 has its own socket on the same port
            BindToDevice(socket, link.Name);
            socket.SetSocketOption(SocketOptionLevel.IPv6, SocketOptionName.MulticastInterface, link.Index);
            socket.SetSocketOption(SocketOptionLevel.IPv6, SocketOptionName.MulticastTimeToLive, 1);
            socket.SetSocketOption(SocketOptionLevel.IPv6, SocketOptionName.MulticastLoopback, false);
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            // ff02::1 needs no join: every IPv6 interface is a member, and Linux delivers a group the interface
            // has joined to every socket bound to the port (IPV6_MULTICAST_ALL).
            socket.Bind(new IPEndPoint(IPAddress.IPv6Any, port));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static void BindToDevice(Socket socket, string interfaceName)
    {
        var name = Encoding.ASCII.GetBytes(interfaceName + "\0");
        socket.SetRawSocketOption(SolSocket, SoBindToDevice, name);
    }

    private static async Task SendOneAsync(Socket socket, ReadOnlyMemory<byte> datagram, IPEndPoint to, CancellationToken cancellationToken) =>
        await socket.SendToAsync(datagram, SocketFlags.None, to, cancellationToken).ConfigureAwait(false);

    private static async Task<bool> Collect(Task send, List<Exception> errors)
    {
        try
        {
            await send.ConfigureAwait(false);
            return true;
        }
        catch (SocketException e)
        {
            errors.Add(e);
            return false;
        }
    }

    private async Task ReceiveLoopAsync(Socket socket)
    {
        var buffer = new byte[MaxDatagramBytes + 1]; // one byte more: a datagram that fills it is too long
        EndPoint any = socket.AddressFamily == AddressFamily.InterNetwork ? new IPEndPoint(IPAddress.Any, 0) : new IPEndPoint(IPAddress.IPv6Any, 0);
        while (!stop.IsCancellationRequested)
        {
            SocketReceiveFromResult result;
            try
            {
                result = await socket.ReceiveFromAsync(buffer, SocketFlags.None, any, stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException
                                          || (e is SocketException && stop.IsCancellationRequested))
            {
                return;
            }
            catch (SocketException)
            {
                // a pending error from an earlier send (e.g. the link was down); the socket itself is fine
                await Task.Delay(10, CancellationToken.None).ConfigureAwait(false);
                continue;
            }
            var receivedAt = clockMs();
            var datagram = buffer.AsSpan(0, result.ReceivedBytes);
            if (datagram.Length is < HeaderBytes or > MaxDatagramBytes || BinaryPrimitives.ReadUInt32BigEndian(datagram) != Magic)
            {
                Interlocked.Increment(ref ignored);
                continue;
            }
            var sender = BinaryPrimitives.ReadUInt64BigEndian(datagram[4..]);
            var number = BinaryPrimitives.ReadUInt64BigEndian(datagram[12..]);
            if (sender == senderId || !IsNewest(sender, number)) continue;
            received.Writer.TryWrite(new HeartbeatDatagram((IPEndPoint)result.RemoteEndPoint, receivedAt, datagram[HeaderBytes..].ToArray()));
        }
    }

    /// <summary>True, and remembered, if <paramref name="number"/> is newer than everything delivered from <paramref name="sender"/>.</summary>
    private bool IsNewest(ulong sender, ulong number)
    {
        lock (newestSequence)
        {
            if (newestSequence.TryGetValue(sender, out var newest) && number <= newest) return false;
            if (newestSequence.Count >= MaxTrackedSenders && !newestSequence.ContainsKey(sender)) newestSequence.Clear(); // senders come and go (restarts); bound the memory
            newestSequence[sender] = number;
            return true;
        }
    }

    private static void WriteHeader(Span<byte> header, ulong sender, ulong number)
    {
        BinaryPrimitives.WriteUInt32BigEndian(header, Magic);
        BinaryPrimitives.WriteUInt64BigEndian(header[4..], sender);
        BinaryPrimitives.WriteUInt64BigEndian(header[12..], number);
    }
}

/// <summary>The address families a heartbeat travels on.</summary>
[Flags]
internal enum HeartbeatFamilies
{
    None = 0,
    IPv4 = 1,
    IPv6 = 2,
}

/// <summary>One heartbeat of another sender: where it came from, when it was read (monotonic ms), and its payload.</summary>
internal sealed record HeartbeatDatagram(IPEndPoint Source, long ReceivedAtMs, byte[] Payload);
