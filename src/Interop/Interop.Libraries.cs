namespace Hybrid;

internal static partial class Interop
{
    /// <summary>The native libraries P/Invoke binds to, named once (dotnet/runtime's Interop.Libraries).</summary>
    internal static class Libraries
    {
        internal const string Libc = "libc";

        /// <summary>The libpcap SharpPcap resolves on Debian.</summary>
        internal const string LibPcap = "libpcap.so.0.8";
    }
}
