using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Hybrid.Net;

/// <summary>
/// Builds the Ethernet frame of an unsolicited IPv6 Neighbour Advertisement (RFC 4861 §4.4, §7.2.6) for a
/// VIP: to all-nodes ff02::1 (Ethernet 33:33:00:00:00:01), hop limit 255, Override set, Solicited and
/// Router clear, one Target Link-Layer Address option carrying our MAC, ICMPv6 checksum over the
/// pseudo-header. Receivers with a cache entry for the VIP replace its MAC (Override) and mark it STALE.
/// <para>
/// IPv6 source = the VIP itself. RFC 4861 asks for "an address assigned to the interface", the agent puts
/// the VIP on the interface before announcing it, and Linux sends its own unsolicited NAs for a local
/// address from that address. Receivers do not check the source's scope (Linux ndisc_recv_na does not);
/// the frame goes out through a packet socket, so the local kernel imposes nothing either. Using the VIP
/// also keeps the frame independent of whether a link-local address exists yet (it may still be in DAD).
/// </para>
/// </summary>
internal static class NeighborAdvertisement
{
    public const int FrameLength = EthernetLength + IPv6Length + IcmpLength;

    private const int EthernetLength = 14;
    private const int IPv6Length = 40;
    private const int IcmpLength = 32; // type, code, checksum, flags+reserved (4), target (16), TLLA option (8)
    private const ushort EtherTypeIPv6 = 0x86dd;
    private const byte NextHeaderIcmpV6 = 58;
    private const byte TypeNeighborAdvertisement = 136;
    private const byte FlagOverride = 0x20;
    private const byte OptionTargetLinkLayerAddress = 2;

    private static ReadOnlySpan<byte> AllNodesMac => [0x33, 0x33, 0x00, 0x00, 0x00, 0x01];
    private static ReadOnlySpan<byte> AllNodes => [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01];

    /// <summary>Writes the frame into <paramref name="frame"/> (at least <see cref="FrameLength"/> bytes).</summary>
    public static void WriteUnsolicited(Span<byte> frame, ReadOnlySpan<byte> ownMac, IPAddress vip)
    {
        if (ownMac.Length != 6) throw new ArgumentException($"an Ethernet MAC has 6 bytes, not {ownMac.Length}", nameof(ownMac));
        if (vip.AddressFamily != AddressFamily.InterNetworkV6) throw new ArgumentException($"{vip} is not an IPv6 address", nameof(vip));
        frame = frame[..FrameLength];

        // Ethernet II: IPv6 multicast MAC of ff02::1, source us.
        AllNodesMac.CopyTo(frame);
        ownMac.CopyTo(frame[6..12]);
        BinaryPrimitives.WriteUInt16BigEndian(frame[12..], EtherTypeIPv6);

        // IPv6 header: version 6, traffic class 0, flow label 0.
        var ip = frame.Slice(EthernetLength, IPv6Length);
        BinaryPrimitives.WriteUInt32BigEndian(ip, 0x6000_0000);
        BinaryPrimitives.WriteUInt16BigEndian(ip[4..], IcmpLength);
        ip[6] = NextHeaderIcmpV6;
        ip[7] = 255; // hop limit: receivers drop NDP with anything else (it proves the sender is on-link)
        vip.TryWriteBytes(ip[8..24], out _);
        AllNodes.CopyTo(ip[24..40]);

        // ICMPv6 Neighbour Advertisement.
        var icmp = frame.Slice(EthernetLength + IPv6Length, IcmpLength);
        icmp[0] = TypeNeighborAdvertisement;
        icmp[1] = 0;
        icmp[2] = icmp[3] = 0; // checksum, filled below
        icmp[4] = FlagOverride; // R=0, S=0 (unsolicited, and must be 0 to a multicast destination), O=1
        icmp[5] = icmp[6] = icmp[7] = 0;
        vip.TryWriteBytes(icmp[8..24], out _);
        icmp[24] = OptionTargetLinkLayerAddress;
        icmp[25] = 1; // length in units of 8 bytes
        ownMac.CopyTo(icmp[26..32]);

        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], Checksum(ip[8..24], ip[24..40], icmp));
    }

    /// <summary>Internet checksum (RFC 1071) of the ICMPv6 message and the IPv6 pseudo-header (RFC 8200 §8.1).</summary>
    private static ushort Checksum(ReadOnlySpan<byte> source, ReadOnlySpan<byte> destination, ReadOnlySpan<byte> message)
    {
        ulong sum = SumWords(source) + SumWords(destination) + (uint)message.Length + NextHeaderIcmpV6 + SumWords(message);
        while (sum >> 16 != 0) sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }

    private static ulong SumWords(ReadOnlySpan<byte> bytes)
    {
        ulong sum = 0;
        for (var i = 0; i + 1 < bytes.Length; i += 2) sum += BinaryPrimitives.ReadUInt16BigEndian(bytes[i..]);
        if (bytes.Length % 2 == 1) sum += (uint)bytes[^1] << 8;
        return sum;
    }
}
