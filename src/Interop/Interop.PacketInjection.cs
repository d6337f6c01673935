using System.Runtime.InteropServices;
using SharpPcap.LibPcap;

namespace Hybrid;

internal static partial class Interop
{
    internal static partial class Pcap
    {
        internal const int ENOBUFS = 105;

        [LibraryImport(Libraries.Pcap, EntryPoint = "pcap_inject", SetLastError = true)]
        private static unsafe partial int InjectNative(PcapHandle handle, byte* frame, nuint length);

        /// <summary>
        /// Sends one frame with pcap_inject (a send(2) on the device's packet socket) and returns 0, or the errno
        /// of the failed send. SharpPcap's SendPacket throws with libpcap's text only, and the agent must tell
        /// ENOBUFS (the kernel dropped the frame on its way out, e.g. the kernel fence's egress chain) from
        /// other failures.
        /// </summary>
        internal static unsafe int Inject(LibPcapLiveDevice device, ReadOnlySpan<byte> frame)
        {
            fixed (byte* data = frame)
            {
                var sent = InjectNative(device.Handle, data, (nuint)frame.Length);
                if (sent == frame.Length) return 0;
                var errno = Marshal.GetLastPInvokeError();
                // A short write or a failure libpcap reports without errno: EIO with libpcap's text in LastError.
                return sent < 0 && errno != 0 ? errno : 5 /* EIO */;
            }
        }
    }
}
