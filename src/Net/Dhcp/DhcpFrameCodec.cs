using System.Net;
using System.Net.NetworkInformation;
using Hybrid.Domain;
using Microsoft.FSharp.Collections;
using Microsoft.FSharp.Core;
using PacketDotNet;
using PacketDotNet.DhcpV4;
using PacketDotNet.Utils;

namespace Hybrid.Net.Dhcp;

/// <summary>
/// Turns the domain's <see cref="ClientMessage"/> into an Ethernet/IPv4/UDP/DHCP frame and a received frame
/// into a <see cref="DhcpReply"/>, with PacketDotNet. It decides nothing: which fields a message carries
/// and where it goes are the domain's; frames that are not a server's OFFER, ACK or NAK come back as a
/// reason to ignore them. The IP source is ciaddr (0.0.0.0 without one), the Ethernet source is chaddr.
/// PacketDotNet reads options only when the message type (53) is the first option, as every common
/// server writes it.
/// </summary>
internal static class DhcpFrameCodec
{
    private const ushort ClientPort = 68;
    private const ushort ServerPort = 67;
    private const uint MagicCookie = 0x63825363;
    private const int FixedFieldsBytes = 240; // BOOTP header and magic cookie
    private const int MinimumBootpBytes = 300; // RFC 1542 §2.1: relays may drop shorter messages
    private const int MaximumBootpBytes = 576 - 28;

    private static readonly PhysicalAddress EthernetBroadcast = PhysicalAddress.Parse("FF-FF-FF-FF-FF-FF");

    /// <summary>
    /// Encodes and decodes one frame of each kind and discards them, so that the first DISCOVER of the process
    /// does not pay for loading and compiling PacketDotNet's code (measured 0.9–1.5 s on the 2-core VM, which
    /// also made the first retransmission fall due at once). The agent calls it once at startup.
    /// </summary>
    public static void WarmUp()
    {
        var mac = MacModule.ofBytes([2, 0, 0, 0, 0, 1]).ResultValue;
        var ip = Ip.NewV4(0xC0000201); // 192.0.2.1
        var message = new ClientMessage(RequestKind.Discover, Xid.NewXid(1), 0, mac, FSharpOption<Ip>.None,
            FSharpOption<Ip>.Some(ip), FSharpOption<Ip>.None, ClientIdModule.ofMac(mac), FSharpOption<Hostname>.None,
            ListModule.OfSeq(Hybrid.Domain.Dhcp.ParameterRequests), Destination.Broadcast);
        _ = Decode(Encode(message));
        _ = EncodeArpRequest(new Hop(ip, mac), ip, mac);
    }

    /// <summary>The frame for <paramref name="message"/>.</summary>
    public static byte[] Encode(ClientMessage message)
    {
        var (destinationIp, destinationMac) = message.Destination switch
        {
            Destination.Unicast unicast => (ToAddress(unicast.server), new PhysicalAddress(unicast.hop.Mac.Bytes)),
            _ => (IPAddress.Broadcast, EthernetBroadcast),
        };
        var sourceIp = message.ClientIp is { } ciaddr ? ToAddress(ciaddr.Value) : IPAddress.Any;
        var clientMac = new PhysicalAddress(message.ClientMac.Bytes);

        var payload = new byte[MaximumBootpBytes];
        payload[FixedFieldsBytes] = (byte)DhcpV4OptionType.DHCPMsgType; // SetOptions replaces what GetOptions finds
        payload[FixedFieldsBytes + 1] = 1;
        payload[FixedFieldsBytes + 2] = (byte)DhcpV4MessageType.Discover;
        payload[FixedFieldsBytes + 3] = (byte)DhcpV4OptionType.End;
        var udp = new UdpPacket(ClientPort, ServerPort) { PayloadDataSegment = new ByteArraySegment(payload, 0, FixedFieldsBytes + 4) };
        var ip = new IPv4Packet(sourceIp, destinationIp) { PayloadPacket = udp, TimeToLive = 64 };
        var ethernet = new EthernetPacket(clientMac, destinationMac, EthernetType.IPv4) { PayloadPacket = ip };

        var dhcp = new DhcpV4Packet(udp.PayloadDataSegment, udp)
        {
            Operation = DhcpV4Operation.BootRequest,
            HardwareType = DhcpV4HardwareType.Ethernet,
            HardwareLength = 6,
            Xid = message.Xid.Value,
            Secs = (ushort)Math.Clamp(message.Seconds, 0, ushort.MaxValue),
            ClientAddress = sourceIp,
            ClientHardwareAddress = clientMac,
            MagicNumber = MagicCookie,
        };
        dhcp.SetOptions(Options(message));
        if (udp.PayloadDataSegment.Length < MinimumBootpBytes)
        {
            udp.PayloadDataSegment.Length = MinimumBootpBytes; // zeros after the End option are padding
            udp.UpdateCalculatedValues();
            ip.UpdateCalculatedValues();
        }
        udp.UpdateUdpChecksum();
        ip.UpdateIPChecksum();
        return ethernet.Bytes;
    }

    private static List<DhcpV4Option> Options(ClientMessage message)
    {
        var type = message.Kind.Tag switch
        {
            RequestKind.Tags.Discover => DhcpV4MessageType.Discover,
            RequestKind.Tags.Request => DhcpV4MessageType.Request,
            _ => DhcpV4MessageType.Release,
        };
        var clientId = message.ClientId.Bytes;
        var options = new List<DhcpV4Option>
        {
            new MessageTypeOption(type),
            new ClientIdOption(clientId, 0, clientId.Length), // exactly these bytes (type byte included)
        };
        if (message.Hostname is { } hostname) options.Add(new HostNameOption(hostname.Value.Value));
        if (message.RequestedIp is { } requested) options.Add(new AddressRequestOption(ToAddress(requested.Value)));
        if (message.ServerId is { } server) options.Add(new ServerIdOption(ToAddress(server.Value)));
        if (!message.ParameterRequests.IsEmpty)
            options.Add(new ParameterListOption(message.ParameterRequests.Select(o => (DhcpV4OptionType)o).ToHashSet()));
        return options;
    }

    /// <summary>
    /// The ARP request of <see cref="DhcpCommand.Resolve"/>: who has the hop's address, tell the leased
    /// address at <paramref name="senderMac"/>; framed to the hop's MAC (it is known, so no broadcast).
    /// </summary>
    public static byte[] EncodeArpRequest(Hop hop, Ip sender, Mac senderMac)
    {
        var mac = new PhysicalAddress(senderMac.Bytes);
        var arp = new ArpPacket(ArpOperation.Request, PhysicalAddress.Parse("00-00-00-00-00-00"), ToAddress(hop.Ip), mac, ToAddress(sender));
        return new EthernetPacket(mac, new PhysicalAddress(hop.Mac.Bytes), EthernetType.Arp) { PayloadPacket = arp }.Bytes;
    }

    /// <summary>A server's OFFER, ACK or NAK to the client port, or why the frame is not one.</summary>
    public static DecodedFrame Decode(ReadOnlySpan<byte> frame)
    {
        EthernetPacket ethernet;
        try
        {
            if (Packet.ParsePacket(LinkLayers.Ethernet, frame.ToArray()) is not EthernetPacket parsed)
                return DecodedFrame.Ignore("not an Ethernet frame");
            ethernet = parsed;
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or InvalidOperationException)
        {
            return DecodedFrame.Ignore($"malformed frame ({e.GetType().Name})");
        }
        if (ethernet.Extract<IPv4Packet>() is not { } ip || ip.Extract<UdpPacket>() is not { SourcePort: ServerPort, DestinationPort: ClientPort } udp)
            return DecodedFrame.Ignore("not UDP over IPv4 from port 67 to port 68");
        // PacketDotNet decodes port 67/68 payloads as DHCP itself; the segment is the fallback.
        var dhcp = udp.PayloadPacket as DhcpV4Packet
            ?? (udp.PayloadDataSegment is { } segment ? new DhcpV4Packet(segment, udp) : null);
        if (dhcp is null || dhcp.HeaderData.Length <= FixedFieldsBytes)
            return DecodedFrame.Ignore("shorter than a BOOTP message");
        if (dhcp.Operation != DhcpV4Operation.BootReply || dhcp.MagicNumber != MagicCookie)
            return DecodedFrame.Ignore("not a DHCP reply");
        if (dhcp.HardwareType != DhcpV4HardwareType.Ethernet || dhcp.HardwareLength != 6)
            return DecodedFrame.Ignore("not for an Ethernet client");
        var kind = dhcp.MessageType switch
        {
            DhcpV4MessageType.Offer => ReplyKind.Offer,
            DhcpV4MessageType.Ack => ReplyKind.Ack,
            DhcpV4MessageType.Nak => ReplyKind.Nak,
            DhcpV4MessageType.End => null,
            _ => null,
        };
        if (kind is null) return DecodedFrame.Ignore($"DHCP message type {dhcp.MessageType} (not OFFER, ACK or NAK, or option 53 not first)");

        Ip? serverId = null, mask = null;
        LeaseLength? lease = null;
        long? renewal = null, rebinding = null;
        string? text = null;
        var routers = new List<Ip>();
        foreach (var option in dhcp.GetOptions())
        {
            switch (option)
            {
                case ServerIdOption o: serverId = ToIp(o.ServerId); break;
                case AddressTimeOption o: lease = LeaseOf(o.AddressTime); break;
                case RenewalTimeOption o: renewal = Milliseconds(o.RenewalTime); break;
                case RebindingTimeOption o: rebinding = Milliseconds(o.RebindingTime); break;
                case SubnetMaskOption o: mask = ToIp(o.SubnetMask); break;
                case RouterOption o: routers.AddRange(o.Routers.Select(ToIp).OfType<Ip>()); break;
                case MessageOption o: text = o.DhcpMessage; break;
            }
        }
        if (MacModule.ofBytes(dhcp.ClientHardwareAddress.GetAddressBytes()) is not { IsOk: true } chaddr)
            return DecodedFrame.Ignore("chaddr is not six bytes");
        if (MacModule.ofBytes(ethernet.SourceHardwareAddress.GetAddressBytes()) is not { IsOk: true } hopMac)
            return DecodedFrame.Ignore("Ethernet source is not six bytes");
        var hop = new Hop(ToIp(ip.SourceAddress) ?? Ip.NewV4(0), hopMac.ResultValue);

        return new DecodedFrame(new DhcpReply(
            kind,
            Xid.NewXid(dhcp.Xid),
            chaddr.ResultValue,
            ToIp(dhcp.YourAddress) ?? Ip.NewV4(0),
            Option(serverId),
            hop,
            Option(lease),
            renewal is { } r ? FSharpOption<long>.Some(r) : FSharpOption<long>.None,
            rebinding is { } b ? FSharpOption<long>.Some(b) : FSharpOption<long>.None,
            Option(mask),
            ListModule.OfSeq(routers),
            Option(text)), null);
    }

    private static FSharpOption<T> Option<T>(T? value) where T : class =>
        value is null ? FSharpOption<T>.None : FSharpOption<T>.Some(value);

    private static LeaseLength LeaseOf(TimeSpan time) =>
        time.TotalSeconds >= uint.MaxValue ? LeaseLength.Infinite : LeaseLength.NewFinite(Milliseconds(time));

    private static long Milliseconds(TimeSpan time) => (long)time.TotalSeconds * 1000L;

    /// <summary>The domain's form of an IPv4 address; null for anything else.</summary>
    public static Ip? ToIp(IPAddress address)
    {
        if (address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork) return null;
        Span<byte> bytes = stackalloc byte[4];
        address.TryWriteBytes(bytes, out _);
        return Ip.NewV4(System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(bytes));
    }

    /// <summary>An IPv4 address of the domain as <see cref="IPAddress"/>.</summary>
    public static IPAddress ToAddress(Ip ip) => ip switch
    {
        Ip.V4 v4 => new IPAddress(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(v4.Item)),
        _ => throw new ArgumentException($"{IpModule.format(ip)} is not an IPv4 address; DHCPv4 carries only IPv4", nameof(ip)),
    };
}

/// <summary>A decoded server reply, or the reason the frame was not one (for debug logs).</summary>
internal readonly record struct DecodedFrame(DhcpReply? Reply, string? Ignored)
{
    public static DecodedFrame Ignore(string reason) => new(null, reason);
}
