using System.ComponentModel;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Hybrid;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>setns(2) nstype selecting a network namespace.</summary>
        internal const int CLONE_NEWNET = 0x40000000;

        [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
        private static partial int SetNsNative(SafeFileHandle namespaceFd, int nstype);

        /// <summary>
        /// Moves the CALLING THREAD (only it: Linux keeps the network namespace per task) into the network
        /// namespace referred to by <paramref name="namespaceFd"/>, e.g. an open /var/run/netns/NAME.
        /// Sockets created afterwards by this thread belong to that namespace, and stay there when used
        /// from other threads.
        /// </summary>
        internal static void SetNetworkNamespace(SafeFileHandle namespaceFd, string path)
        {
            if (SetNsNative(namespaceFd, CLONE_NEWNET) == 0) return;
            var errno = Marshal.GetLastPInvokeError();
            throw new Win32Exception(errno,
                $"setns({path}, CLONE_NEWNET) failed: errno {errno} ({Marshal.GetPInvokeErrorMessage(errno)}); entering a network namespace needs CAP_SYS_ADMIN");
        }
    }
}
