using System.Runtime.InteropServices;

namespace Hybrid;

internal static partial class Interop
{
    /// <summary>glibc's allocator, used by libnftables, libpcap and OpenSSL inside the agent.</summary>
    internal static partial class Malloc
    {
        /// <summary>mallopt(3) parameter: the most arenas the allocator creates.</summary>
        internal const int M_ARENA_MAX = -8;

        /// <summary>mallopt(3): returns 1 on success, 0 on error.</summary>
        [LibraryImport(Libraries.Libc, EntryPoint = "mallopt")]
        internal static partial int SetOption(int parameter, int value);
    }
}
