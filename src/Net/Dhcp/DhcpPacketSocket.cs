using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using PacketDotNet;
using SharpPcap.LibPcap;

namespace Hybrid.Net.Dhcp;

/// <summary>
/// A raw AF_PACKET socket on one interface (a Service's macvlan) for a DHCP client: it sends whole Ethernet
/// frames, so the source MAC is the macvlan's and equals chaddr, and it receives only frames to UDP port 68,
/// filtered in the kernel (the macvlan also carries the Service's own traffic once its address is up).
/// The descriptor is created by P/Invoke, filtered before it is bound (so no unfiltered frame is ever
/// queued), then wrapped in a <see cref="Socket"/> for epoll-driven, cancellable I/O.
/// </summary>
internal sealed class DhcpPacketSocket : IDisposable
{
    /// <summary>The kernel filter: IPv4 UDP to the DHCP client port (compiled by libpcap).</summary>
    public const string Filter = "udp dst port 68";

    private const int MaxFrameBytes = 1518;

    private readonly Socket _socket;

    private DhcpPacketSocket(Socket socket, int interfaceIndex)
    {
        _socket = socket;
        InterfaceIndex = interfaceIndex;
    }

    public int InterfaceIndex { get; }

    /// <summary>Largest frame <see cref="ReceiveAsync"/> returns (an Ethernet frame without FCS).</summary>
    public static int FrameBufferBytes => MaxFrameBytes;

    /// <summary>Opens the socket on <paramref name="interfaceIndex"/> of the calling thread's network namespace.</summary>
    public static DhcpPacketSocket Open(int interfaceIndex)
    {
        if (interfaceIndex <= 0) throw new ArgumentOutOfRangeException(nameof(interfaceIndex), interfaceIndex, "an interface index is positive");
        // Protocol 0: the socket receives nothing until bind() names a protocol, after the filter is in place.
        var handle = Interop.PacketSocket.Socket(Interop.PacketSocket.AF_PACKET,
            Interop.PacketSocket.SOCK_RAW | Interop.PacketSocket.SOCK_CLOEXEC, 0);
        if (handle.IsInvalid)
        {
            var errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            throw new IOException($"socket(AF_PACKET, SOCK_RAW) failed (needs CAP_NET_RAW): {Interop.ErrnoNames.Describe(errno)}");
        }
        try
        {
            AttachFilter(handle);
            var address = new Interop.PacketSocket.SockaddrLl
            {
                Family = Interop.PacketSocket.AF_PACKET,
                Protocol = BinaryPrimitives.ReverseEndianness(Interop.PacketSocket.ETH_P_IP),
                InterfaceIndex = interfaceIndex,
            };
            if (Interop.PacketSocket.Bind(handle, in address, Marshal.SizeOf<Interop.PacketSocket.SockaddrLl>()) != 0)
                throw new IOException($"bind(AF_PACKET, ifindex {interfaceIndex}) failed: {Interop.ErrnoNames.Describe(Marshal.GetLastPInvokeError())}");
            return new DhcpPacketSocket(new Socket(handle), interfaceIndex);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static void AttachFilter(SafeSocketHandle handle)
    {
        using var program = BpfProgram.Create(LinkLayers.Ethernet, Filter);
        var compiled = Marshal.PtrToStructure<Interop.PacketSocket.BpfProgram>(program.DangerousGetHandle());
        var filter = new Interop.PacketSocket.SockFprog { Length = (ushort)compiled.Length, Instructions = compiled.Instructions };
        var rc = Interop.PacketSocket.SetSockOpt(handle, Interop.PacketSocket.SOL_SOCKET, Interop.PacketSocket.SO_ATTACH_FILTER,
            in filter, Marshal.SizeOf<Interop.PacketSocket.SockFprog>());
        GC.KeepAlive(program);
        if (rc != 0)
            throw new IOException($"setsockopt(SO_ATTACH_FILTER \"{Filter}\") failed: {Interop.ErrnoNames.Describe(Marshal.GetLastPInvokeError())}");
    }

    /// <summary>Sends one Ethernet frame out of the interface.</summary>
    /// <exception cref="SocketException">the kernel refused it (ENETDOWN while the link is down, ENXIO when it is gone).</exception>
    public async ValueTask SendAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken)
    {
        var sent = await _socket.SendAsync(frame, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        if (sent != frame.Length) throw new IOException($"sent {sent} of {frame.Length} bytes on ifindex {InterfaceIndex}");
    }

    /// <summary>Receives the next frame that passed the filter; returns its length.</summary>
    public ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken) =>
        _socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken);

    public void Dispose() => _socket.Dispose();
}
