using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Hybrid.Net;

/// <summary>
/// Listens to the kernel's link and address notifications (RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR)
/// and yields them as <see cref="NetlinkEvent"/>s as they arrive (no polling: the kernel pushes them the moment
/// the change is made). Subscribe first, then dump: events that happen after <see cref="Open"/> are queued in
/// the socket until read. If the queue overflows the kernel drops notifications and the stream yields
/// <see cref="Overrun"/>: the reader must re-dump. Refreshing an address produces an <see cref="AddressAdded"/>
/// too (the kernel announces every RTM_NEWADDR), so 1,000 refreshed VIPs mean 1,000 events per refresh round;
/// the default queue of 4 MiB holds several rounds.
/// </summary>
internal sealed class NetlinkMonitor(NetlinkSocket socket) : IDisposable, IAsyncDisposable
{
    public const uint Groups = NetlinkProtocol.RTMGRP_LINK | NetlinkProtocol.RTMGRP_IPV4_IFADDR | NetlinkProtocol.RTMGRP_IPV6_IFADDR;

    /// <summary>Kernel queue for notifications (forced when the process has CAP_NET_ADMIN).</summary>
    public const int DefaultReceiveBufferBytes = 4 << 20;

    private readonly byte[] _buffer = new byte[64 * 1024];
    private int _reading;
    private volatile bool _disposed;

    /// <summary>Subscribes, in the named namespace when one is given.</summary>
    public static NetlinkMonitor Open(string? namespaceName = null, int receiveBufferBytes = DefaultReceiveBufferBytes) =>
        new(NetlinkSocket.Open(namespaceName, Groups, receiveBufferBytes));

    /// <summary>
    /// Yields events until cancelled (then throws <see cref="OperationCanceledException"/>) or until the monitor
    /// is disposed (then the stream ends). One reader at a time.
    /// </summary>
    public async IAsyncEnumerable<NetlinkEvent> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _reading, 1) == 1)
            throw new InvalidOperationException("NetlinkMonitor.ReadAllAsync already has a reader");
        try
        {
            var events = new List<NetlinkEvent>();
            while (true)
            {
                var received = await ReceiveAsync(cancellationToken).ConfigureAwait(false);
                if (received == Disposed) yield break;
                if (received == OverrunReported)
                {
                    yield return new Overrun();
                    continue;
                }
                events.Clear();
                Decode(_buffer.AsSpan(0, received), events);
                foreach (var e in events) yield return e;
            }
        }
        finally
        {
            Volatile.Write(ref _reading, 0);
        }
    }

    private const int OverrunReported = -1;
    private const int Disposed = -2;

    /// <summary>Bytes received, <see cref="OverrunReported"/> (ENOBUFS) or <see cref="Disposed"/>.</summary>
    private async Task<int> ReceiveAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await socket.ReceiveAsync(_buffer, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.NoBufferSpaceAvailable)
        {
            return OverrunReported;
        }
        catch (ObjectDisposedException)
        {
            return Disposed;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.OperationAborted && _disposed)
        {
            return Disposed;
        }
        catch (SocketException e)
        {
            throw new NetlinkException("netlink monitor receive", e.NativeErrorCode);
        }
    }

    private static void Decode(ReadOnlySpan<byte> datagram, List<NetlinkEvent> events)
    {
        foreach (var message in new NetlinkMessageEnumerator(datagram))
        {
            NetlinkEvent? e = message.Type switch
            {
                NetlinkProtocol.RTM_NEWLINK => NetlinkDecoder.DecodeLink(message) is { } link ? new LinkChanged(link) : null,
                NetlinkProtocol.RTM_DELLINK => NetlinkDecoder.DecodeLinkRemoval(message),
                NetlinkProtocol.RTM_NEWADDR => NetlinkDecoder.DecodeAddress(message) is { } added ? new AddressAdded(added) : null,
                NetlinkProtocol.RTM_DELADDR => NetlinkDecoder.DecodeAddress(message) is { } removed ? new AddressRemoved(removed) : null,
                NetlinkProtocol.NLMSG_OVERRUN => new Overrun(),
                _ => null,
            };
            if (e is not null) events.Add(e);
        }
    }

    public void Dispose()
    {
        _disposed = true;
        socket.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
