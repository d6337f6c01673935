using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Hybrid;

internal static partial class Interop
{
    /// <summary>
    /// The libc calls that open an AF_PACKET socket bound to one interface with a classic BPF filter, which
    /// <see cref="Socket"/> cannot do itself. Constants are from linux/if_packet.h, linux/if_ether.h,
    /// linux/filter.h and asm-generic/socket.h.
    /// </summary>
    internal static partial class PacketSocket
    {
        internal const int AF_PACKET = 17;
        internal const int SOCK_RAW = 3;
        internal const int SOCK_CLOEXEC = 0x80000;
        internal const ushort ETH_P_IP = 0x0800;

        internal const int SOL_SOCKET = 1;
        internal const int SO_ATTACH_FILTER = 26;

        /// <summary>struct sockaddr_ll (20 bytes).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal unsafe struct SockaddrLl
        {
            public ushort Family;
            /// <summary>Ethernet protocol in network byte order.</summary>
            public ushort Protocol;
            public int InterfaceIndex;
            public ushort HardwareType;
            public byte PacketType;
            public byte AddressLength;
            public fixed byte Address[8];
        }

        /// <summary>struct sock_fprog: a classic BPF program (the kernel copies it at SO_ATTACH_FILTER).</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct SockFprog
        {
            public ushort Length;
            public nint Instructions;
        }

        /// <summary>libpcap's struct bpf_program, whose instructions have the layout of struct sock_filter.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct BpfProgram
        {
            public uint Length;
            public nint Instructions;
        }

        [LibraryImport(Libraries.Libc, EntryPoint = "socket", SetLastError = true)]
        internal static partial SafeSocketHandle Socket(int domain, int type, int protocol);

        [LibraryImport(Libraries.Libc, EntryPoint = "bind", SetLastError = true)]
        internal static partial int Bind(SafeSocketHandle socket, in SockaddrLl address, int addressLength);

        [LibraryImport(Libraries.Libc, EntryPoint = "setsockopt", SetLastError = true)]
        internal static partial int SetSockOpt(SafeSocketHandle socket, int level, int name, in SockFprog value, int valueLength);
    }
}
