using System.Runtime.InteropServices;

namespace Hybrid;

internal static partial class Interop
{
    /// <summary>Linux errno values by symbolic name, so error messages say "ENODEV" and not just "19".</summary>
    internal static class ErrnoNames
    {
        private static readonly Dictionary<int, string> Names = new()
        {
            [1] = "EPERM", [2] = "ENOENT", [3] = "ESRCH", [4] = "EINTR", [5] = "EIO", [6] = "ENXIO", [7] = "E2BIG",
            [9] = "EBADF", [11] = "EAGAIN", [12] = "ENOMEM", [13] = "EACCES", [14] = "EFAULT", [16] = "EBUSY",
            [17] = "EEXIST", [19] = "ENODEV", [20] = "ENOTDIR", [22] = "EINVAL", [23] = "ENFILE", [24] = "EMFILE",
            [28] = "ENOSPC", [34] = "ERANGE", [61] = "ENODATA", [71] = "EPROTO", [75] = "EOVERFLOW",
            [88] = "ENOTSOCK", [90] = "EMSGSIZE", [93] = "EPROTONOSUPPORT", [95] = "EOPNOTSUPP",
            [97] = "EAFNOSUPPORT", [98] = "EADDRINUSE", [99] = "EADDRNOTAVAIL", [100] = "ENETDOWN",
            [101] = "ENETUNREACH", [105] = "ENOBUFS", [110] = "ETIMEDOUT", [113] = "EHOSTUNREACH",
        };

        /// <summary>"ENODEV" for 19; "errno 4242" for values without a known name.</summary>
        internal static string Name(int errno) => Names.TryGetValue(errno, out var name) ? name : $"errno {errno}";

        /// <summary>"ENODEV (No such device)".</summary>
        internal static string Describe(int errno) => $"{Name(errno)} ({Marshal.GetPInvokeErrorMessage(errno)})";
    }
}
