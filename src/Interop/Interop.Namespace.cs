using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Hybrid;

internal static partial class Interop
{
    /// <summary>setns(2) and the open(2) it needs, for joining a named network namespace on one thread.</summary>
    internal static partial class Namespace
    {
        internal const int CLONE_NEWNET = 0x40000000;
        internal const int O_RDONLY = 0;
        internal const int O_CLOEXEC = 0x80000;

        [LibraryImport(Libraries.Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
        internal static partial SafeFileHandle Open(string path, int flags);

        [LibraryImport(Libraries.Libc, EntryPoint = "setns", SetLastError = true)]
        internal static partial int SetNs(SafeFileHandle namespaceFile, int namespaceType);
    }
}
