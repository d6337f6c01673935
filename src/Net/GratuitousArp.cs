using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Hybrid.Net;

/// <summary>
/// Builds the two Ethernet frames of a gratuitous ARP for an IPv4 address. Both are broadcast and carry
/// sender IP = target IP = the VIP and sender MAC = ours, so every host on the segment that has the VIP in
/// its ARP cache rewrites the entry at once:
/// <list type="bullet">
/// <item>the request form (RFC 5227 "ARP announcement"): target MAC 00:00:00:00:00:00;</item>
/// <item>the reply form: target MAC = our MAC. Linux only treats a REPLY as gratuitous (skipping its
/// 1 s locktime) when target MAC equals sender MAC; some other stacks only honour replies.</item>
/// </list>
/// Frames are 42 bytes, like the kernel's own ARP; the driver pads them to the Ethernet minimum.
/// </summary>
internal static class GratuitousArp
{
    public const int FrameLength = 42;

    private const ushort EtherTypeArp = 0x0806;
    private const ushort HardwareEthernet = 1;
    private const ushort ProtocolIPv4 = 0x0800;
    private const ushort OperationRequest = 1;
    private const ushort OperationReply = 2;

    /// <summary>Writes the request form into <paramref name="frame"/> (at least <see cref="FrameLength"/> bytes).</summary>
    public static void WriteRequest(Span<byte> frame, ReadOnlySpan<byte> ownMac, IPAddress vip) =>
        Write(frame, ownMac, vip, OperationRequest, targetMacIsOwn: false);

    /// <summary>Writes the reply form into <paramref name="frame"/> (at least <see cref="FrameLength"/> bytes).</summary>
    public static void WriteReply(Span<byte> frame, ReadOnlySpan<byte> ownMac, IPAddress vip) =>
        Write(frame, ownMac, vip, OperationReply, targetMacIsOwn: true);

    private static void Write(Span<byte> frame, ReadOnlySpan<byte> ownMac, IPAddress vip, ushort operation, bool targetMacIsOwn)
    {
        if (ownMac.Length != 6) throw new ArgumentException($"an Ethernet MAC has 6 bytes, not {ownMac.Length}", nameof(ownMac));
        if (vip.AddressFamily != AddressFamily.InterNetwork) throw new ArgumentException($"{vip} is not an IPv4 address", nameof(vip));
        frame = frame[..FrameLength];

        // Ethernet II: destination broadcast, source us, EtherType ARP.
        frame[..6].Fill(0xff);
        ownMac.CopyTo(frame[6..12]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], EtherTypeArp);

        // ARP (RFC 826) for Ethernet/IPv4.
        var arp = frame[14..];
        BinaryPrimitives.WriteUInt16BigEndian(arp, HardwareEthernet);
        BinaryPrimitives.WriteUInt16BigEndian(arp[2..], ProtocolIPv4);
        arp[4] = 6;
        arp[5] = 4;
        BinaryPrimitives.WriteUInt16BigEndian(arp[6..], operation);
        ownMac.CopyTo(arp[8..14]);
        vip.TryWriteBytes(arp[14..18], out _);
        if (targetMacIsOwn) ownMac.CopyTo(arp[18..24]);
        else arp[18..24].Clear();
        vip.TryWriteBytes(arp[24..28], out _);
    }
}
