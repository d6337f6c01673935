using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using PacketDotNet;
using PacketDotNet.Ndp;

namespace Hybrid.Sandbox.Lab;

/// <summary>What a captured L2 address-resolution packet is.</summary>
internal enum ArpOp
{
    Request = 1,
    Reply = 2,
    /// <summary>An IPv6 Neighbour Advertisement (ICMPv6 type 136), IPv6's counterpart of an ARP reply.</summary>
    NeighborAdvertisement = 136,
}

/// <summary>The flags of a Neighbour Advertisement (same bit values as the wire byte).</summary>
[Flags]
internal enum NdpFlags
{
    None = 0,
    Override = 0x20,
    Solicited = 0x40,
    Router = 0x80,
}

/// <summary>
/// One ARP packet or IPv6 Neighbour Advertisement seen by <see cref="ArpCapture"/>.
/// <para>
/// <see cref="At"/> is the kernel's receive timestamp (CLOCK_REALTIME, nanosecond precision from libpcap).
/// <see cref="MonotonicTicks"/> is the same instant on the <see cref="System.Diagnostics.Stopwatch"/>
/// clock (CLOCK_MONOTONIC on Linux), so a test subtracts a Stopwatch.GetTimestamp() taken before an action
/// to get the delay; it is derived from the packet's age when read (real-time now − <see cref="At"/>),
/// taken off a monotonic reading made at the same moment, so a wall-clock step between captures does not
/// distort it.
/// </para>
/// <para>
/// ARP: the fields are the ARP header's (sender/target hardware and protocol addresses). Neighbour
/// Advertisement: Sender* = Ethernet source MAC and IPv6 source, TargetIp = the advertised target address,
/// TargetMac = the Target Link-Layer Address option (<see cref="PhysicalAddress.None"/> if absent).
/// IsGratuitous: an ARP whose sender IP equals its target IP (announcement, not probe); an NA without the
/// Solicited flag. <see cref="AnnouncedIp"/>/<see cref="AnnouncedMac"/> give the mapping the packet
/// teaches receivers, whatever its kind.
/// </para>
/// </summary>
internal sealed record CapturedArp(
    DateTimeOffset At,
    long MonotonicTicks,
    ArpOp Operation,
    PhysicalAddress SenderMac,
    IPAddress SenderIp,
    PhysicalAddress TargetMac,
    IPAddress TargetIp,
    bool IsGratuitous)
{
    public required PhysicalAddress EthernetSource { get; init; }

    public required PhysicalAddress EthernetDestination { get; init; }

    /// <summary>Neighbour Advertisement flags; <see cref="NdpFlags.None"/> for ARP.</summary>
    public NdpFlags Flags { get; init; }

    /// <summary>The captured Ethernet frame, for checks the fields above do not cover.</summary>
    public required byte[] Frame { get; init; }

    public IPAddress AnnouncedIp => Operation == ArpOp.NeighborAdvertisement ? TargetIp : SenderIp;

    public PhysicalAddress AnnouncedMac => Operation == ArpOp.NeighborAdvertisement ? TargetMac : SenderMac;

    public override string ToString() =>
        Operation switch
        {
            ArpOp.Request => FormattableString.Invariant($"{At:HH:mm:ss.ffffff} ARP request who-has {TargetIp} tell {SenderIp} ({Format(SenderMac)}), target MAC {Format(TargetMac)}{(IsGratuitous ? ", gratuitous" : "")}"),
            ArpOp.Reply => FormattableString.Invariant($"{At:HH:mm:ss.ffffff} ARP reply {SenderIp} is-at {Format(SenderMac)} to {TargetIp} ({Format(TargetMac)}){(IsGratuitous ? ", gratuitous" : "")}"),
            _ => FormattableString.Invariant($"{At:HH:mm:ss.ffffff} NA {TargetIp} is-at {Format(TargetMac)} from {SenderIp} ({Format(SenderMac)}) to {Format(EthernetDestination)} flags [{Flags}]"),
        };

    /// <summary>aa:bb:cc:dd:ee:ff, the notation of `ip link` and tcpdump.</summary>
    public static string Format(PhysicalAddress mac) =>
        string.Join(':', mac.GetAddressBytes().Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));

    /// <summary>Parses an Ethernet frame; null when it is neither an ARP packet nor a Neighbour Advertisement.</summary>
    public static CapturedArp? TryParse(ReadOnlySpan<byte> frame, DateTimeOffset at, long monotonicTicks)
    {
        var bytes = frame.ToArray();
        Packet packet;
        try
        {
            packet = Packet.ParsePacket(LinkLayers.Ethernet, bytes);
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or InvalidOperationException)
        {
            return null; // truncated or malformed: not something an announcement test can use
        }
        if (packet is not EthernetPacket ethernet) return null;

        if (ethernet.Extract<ArpPacket>() is { } arp && arp.Operation is ArpOperation.Request or ArpOperation.Response)
        {
            return new CapturedArp(
                at, monotonicTicks,
                arp.Operation == ArpOperation.Request ? ArpOp.Request : ArpOp.Reply,
                arp.SenderHardwareAddress, arp.SenderProtocolAddress,
                arp.TargetHardwareAddress, arp.TargetProtocolAddress,
                IsGratuitous: arp.SenderProtocolAddress.Equals(arp.TargetProtocolAddress) && !arp.SenderProtocolAddress.Equals(IPAddress.Any))
            {
                EthernetSource = ethernet.SourceHardwareAddress,
                EthernetDestination = ethernet.DestinationHardwareAddress,
                Frame = bytes,
            };
        }

        if (ethernet.Extract<NdpNeighborAdvertisementPacket>() is { } na && ethernet.Extract<IPv6Packet>() is { } ipv6)
        {
            var flags = (na.Override ? NdpFlags.Override : 0) | (na.Solicited ? NdpFlags.Solicited : 0) | (na.Router ? NdpFlags.Router : 0);
            var targetMac = na.OptionsCollection.OfType<NdpLinkLayerAddressOption>()
                .FirstOrDefault(o => o.Type == OptionTypes.TargetLinkLayerAddress)?.LinkLayerAddress ?? PhysicalAddress.None;
            return new CapturedArp(
                at, monotonicTicks, ArpOp.NeighborAdvertisement,
                ethernet.SourceHardwareAddress, ipv6.SourceAddress,
                targetMac, na.TargetAddress,
                IsGratuitous: !na.Solicited)
            {
                EthernetSource = ethernet.SourceHardwareAddress,
                EthernetDestination = ethernet.DestinationHardwareAddress,
                Flags = flags,
                Frame = bytes,
            };
        }
        return null;
    }
}
