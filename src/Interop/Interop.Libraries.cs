namespace Hybrid;

internal static partial class Interop
{
    /// <summary>The native libraries this program binds to, by the names the Debian packages install.</summary>
    internal static class Libraries
    {
        /// <summary>glibc (libc6).</summary>
        internal const string Libc = "libc";

        /// <summary>libpcap (libpcap0.8): the same file SharpPcap resolves on Debian.</summary>
        internal const string Pcap = "libpcap.so.0.8";

        /// <summary>libnftables (libnftables1): nftables' own parser and netlink transaction code.</summary>
        internal const string Nftables = "libnftables.so.1";
    }
}
