using System.Runtime.InteropServices;
using SharpPcap.LibPcap;

namespace Hybrid;

internal static partial class Interop
{
    /// <summary>
    /// The two libpcap calls SharpPcap 6.3.1 does not expose in a usable form: a blocking pcap_next_ex that
    /// pcap_breakloop can interrupt at once (SharpPcap's GetNextPacket polls in fixed 500 ms slices, so
    /// stopping a capture would stall), and pcap_breakloop itself. The handle is SharpPcap's own
    /// <see cref="PcapHandle"/>; the library is the same libpcap.so.0.8 SharpPcap resolves on Debian.
    /// </summary>
    internal static partial class Pcap
    {
        /// <summary>pcap_next_ex: a packet was read.</summary>
        internal const int PacketRead = 1;
        /// <summary>pcap_next_ex: no packet (non-blocking mode; a blocking live capture on Linux keeps waiting).</summary>
        internal const int Timeout = 0;
        /// <summary>PCAP_ERROR: libpcap reported an error (text in pcap_geterr).</summary>
        internal const int Error = -1;
        /// <summary>PCAP_ERROR_BREAK: pcap_breakloop was called.</summary>
        internal const int Break = -2;

        /// <summary>struct pcap_pkthdr on LP64 Linux: struct timeval ts; bpf_u_int32 caplen; bpf_u_int32 len.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal readonly struct PacketHeader
        {
            /// <summary>Seconds since the Unix epoch (CLOCK_REALTIME of the kernel's packet timestamp).</summary>
            public readonly long Seconds;
            /// <summary>Microseconds, or nanoseconds when the handle was opened with nanosecond precision.</summary>
            public readonly long Fraction;
            public readonly uint CaptureLength;
            public readonly uint WireLength;
        }

        [LibraryImport(Libraries.LibPcap, EntryPoint = "pcap_next_ex", SetLastError = true)]
        private static partial int NextExNative(PcapHandle handle, out nint header, out nint data);

        [LibraryImport(Libraries.LibPcap, EntryPoint = "pcap_breakloop", SetLastError = true)]
        private static partial void BreakLoopNative(PcapHandle handle);

        /// <summary>
        /// Waits for the next packet; libpcap on Linux does NOT return when the read timeout expires without
        /// one, so only a packet or <see cref="BreakLoop"/> ends the wait. Returns <see cref="PacketRead"/>,
        /// <see cref="Timeout"/> or <see cref="Break"/>; on <see cref="Error"/> throws with libpcap's text.
        /// The returned span is valid only until the next call on this handle.
        /// </summary>
        internal static unsafe int NextEx(LibPcapLiveDevice device, out PacketHeader header, out ReadOnlySpan<byte> frame)
        {
            var rc = NextExNative(device.Handle, out var headerPointer, out var dataPointer);
            if (rc == PacketRead)
            {
                header = *(PacketHeader*)headerPointer;
                frame = new ReadOnlySpan<byte>((void*)dataPointer, (int)header.CaptureLength);
                return rc;
            }
            header = default;
            frame = default;
            if (rc is Timeout or Break) return rc;
            throw new IOException($"pcap_next_ex on '{device.Name}' failed ({rc}): {device.LastError}");
        }

        /// <summary>
        /// Makes a pending or the next <see cref="NextEx"/> on this handle return <see cref="Break"/> (once the
        /// packets already received are read). Safe from any thread; does nothing once the device is closed.
        /// </summary>
        internal static void BreakLoop(LibPcapLiveDevice device)
        {
            try
            {
                BreakLoopNative(device.Handle);
            }
            catch (ObjectDisposedException)
            {
                // closed meanwhile: nobody is waiting any more
            }
        }
    }
}
