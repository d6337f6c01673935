using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Hybrid;

internal static partial class Interop
{
    /// <summary>
    /// The libc calls needed to open an AF_NETLINK socket, which <see cref="Socket"/> cannot create itself.
    /// Once bound and configured the descriptor is wrapped in a <see cref="Socket"/> for cancellable I/O.
    /// Constants are from linux/netlink.h, linux/socket.h and asm-generic/socket.h.
    /// </summary>
    internal static partial class Netlink
    {
        internal const int AF_NETLINK = 16;
        internal const int SOCK_RAW = 3;
        internal const int SOCK_CLOEXEC = 0x80000;
        internal const int NETLINK_ROUTE = 0;

        internal const int SOL_SOCKET = 1;
        internal const int SO_SNDBUF = 7;
        internal const int SO_RCVBUF = 8;
        internal const int SO_SNDBUFFORCE = 32;
        internal const int SO_RCVBUFFORCE = 33;

        internal const int SOL_NETLINK = 270;
        internal const int NETLINK_CAP_ACK = 10;
        internal const int NETLINK_EXT_ACK = 11;
        internal const int NETLINK_GET_STRICT_CHK = 12;

        /// <summary>struct sockaddr_nl.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct SockaddrNl
        {
            public ushort Family;
            public ushort Pad;
            public uint PortId;
            public uint Groups;
        }

        [LibraryImport(Libraries.Libc, EntryPoint = "socket", SetLastError = true)]
        internal static partial SafeSocketHandle Socket(int domain, int type, int protocol);

        [LibraryImport(Libraries.Libc, EntryPoint = "bind", SetLastError = true)]
        internal static partial int Bind(SafeSocketHandle socket, in SockaddrNl address, int addressLength);

        [LibraryImport(Libraries.Libc, EntryPoint = "getsockname", SetLastError = true)]
        internal static partial int GetSockName(SafeSocketHandle socket, out SockaddrNl address, ref int addressLength);

        [LibraryImport(Libraries.Libc, EntryPoint = "setsockopt", SetLastError = true)]
        internal static partial int SetSockOpt(SafeSocketHandle socket, int level, int name, in int value, int valueLength);
    }
}
