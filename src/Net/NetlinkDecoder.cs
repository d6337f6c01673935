using System.Buffers.Binary;
using System.Net;
using System.Net.NetworkInformation;

namespace Hybrid.Net;

/// <summary>Decodes rtnetlink messages (ifaddrmsg, ifinfomsg, rtmsg and their attributes) into plain records.</summary>
internal static class NetlinkDecoder
{
    /// <summary>RTM_NEWADDR / RTM_DELADDR → address; null for other messages or families.</summary>
    public static InterfaceAddress? DecodeAddress(NetlinkMessage message)
    {
        if (message.Type is not (NetlinkProtocol.RTM_NEWADDR or NetlinkProtocol.RTM_DELADDR)) return null;
        var header = message.Payload;
        if (header.Length < NetlinkProtocol.IfAddrMsgSize) return null;
        var family = header[0];
        if (family is not (NetlinkProtocol.AF_INET or NetlinkProtocol.AF_INET6)) return null;
        int prefixLength = header[1];
        uint flags = header[2];
        var index = (int)BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);

        IPAddress? address = null, local = null;
        byte protocol = 0;
        TimeSpan? valid = null, preferred = null;
        foreach (var attribute in message.AttributesAfter(NetlinkProtocol.IfAddrMsgSize))
        {
            switch (attribute.Type)
            {
                case NetlinkProtocol.IFA_ADDRESS: address = attribute.ReadAddress(); break;
                case NetlinkProtocol.IFA_LOCAL: local = attribute.ReadAddress(); break;
                case NetlinkProtocol.IFA_FLAGS: flags = attribute.ReadUInt32(); break;
                case NetlinkProtocol.IFA_PROTO: protocol = attribute.ReadUInt8(); break;
                case NetlinkProtocol.IFA_CACHEINFO when attribute.Value.Length >= 8:
                    preferred = Lifetime(BinaryPrimitives.ReadUInt32LittleEndian(attribute.Value));
                    valid = Lifetime(BinaryPrimitives.ReadUInt32LittleEndian(attribute.Value[4..]));
                    break;
            }
        }
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point links.
        var own = local ?? address;
        return own is null ? null : new InterfaceAddress(index, own, prefixLength, protocol, valid, preferred, flags);
    }

    private static TimeSpan? Lifetime(uint seconds) =>
        seconds == NetlinkProtocol.InfinityLifetime ? null : TimeSpan.FromSeconds(seconds);

    /// <summary>RTM_NEWLINK → link; null for other messages.</summary>
    public static LinkInfo? DecodeLink(NetlinkMessage message)
    {
        if (message.Type != NetlinkProtocol.RTM_NEWLINK) return null;
        var header = message.Payload;
        if (header.Length < NetlinkProtocol.IfInfoMsgSize) return null;
        var index = BinaryPrimitives.ReadInt32LittleEndian(header[4..]);
        var flags = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);

        var name = "";
        var hardware = PhysicalAddress.None;
        var operState = OperationalState.Unknown;
        var mtu = 0;
        foreach (var attribute in message.AttributesAfter(NetlinkProtocol.IfInfoMsgSize))
        {
            switch (attribute.Type)
            {
                case NetlinkProtocol.IFLA_IFNAME: name = attribute.ReadString(); break;
                case NetlinkProtocol.IFLA_ADDRESS: hardware = new PhysicalAddress(attribute.Value.ToArray()); break;
                case NetlinkProtocol.IFLA_MTU: mtu = (int)attribute.ReadUInt32(); break;
                case NetlinkProtocol.IFLA_OPERSTATE: operState = (OperationalState)attribute.ReadUInt8(); break;
            }
        }
        return new LinkInfo(index, name, hardware,
            AdministrativelyUp: (flags & NetlinkProtocol.IFF_UP) != 0,
            LowerUp: (flags & NetlinkProtocol.IFF_LOWER_UP) != 0,
            operState, mtu);
    }

    /// <summary>RTM_DELLINK → (index, name).</summary>
    public static LinkRemoved? DecodeLinkRemoval(NetlinkMessage message)
    {
        if (message.Type != NetlinkProtocol.RTM_DELLINK) return null;
        var header = message.Payload;
        if (header.Length < NetlinkProtocol.IfInfoMsgSize) return null;
        var index = BinaryPrimitives.ReadInt32LittleEndian(header[4..]);
        var name = "";
        foreach (var attribute in message.AttributesAfter(NetlinkProtocol.IfInfoMsgSize))
            if (attribute.Type == NetlinkProtocol.IFLA_IFNAME) name = attribute.ReadString();
        return new LinkRemoved(index, name);
    }

    /// <summary>RTM_NEWROUTE → a default route (dst len 0, unicast) of the main table, or null.</summary>
    public static DefaultRoute? DecodeDefaultRoute(NetlinkMessage message)
    {
        if (message.Type != NetlinkProtocol.RTM_NEWROUTE) return null;
        var header = message.Payload;
        if (header.Length < NetlinkProtocol.RtMsgSize) return null;
        var family = header[0];
        var destinationLength = header[1];
        uint table = header[4];
        var type = header[7];
        var routeFlags = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        if (destinationLength != 0 || type != NetlinkProtocol.RTN_UNICAST) return null;

        var outputInterface = 0;
        uint metric = 0;
        IPAddress? gateway = null;
        var nextHopFlags = routeFlags;
        foreach (var attribute in message.AttributesAfter(NetlinkProtocol.RtMsgSize))
        {
            switch (attribute.Type)
            {
                case NetlinkProtocol.RTA_TABLE: table = attribute.ReadUInt32(); break;
                case NetlinkProtocol.RTA_OIF: outputInterface = (int)attribute.ReadUInt32(); break;
                case NetlinkProtocol.RTA_GATEWAY: gateway = attribute.ReadAddress(); break;
                case NetlinkProtocol.RTA_PRIORITY: metric = attribute.ReadUInt32(); break;
                case NetlinkProtocol.RTA_MULTIPATH when outputInterface == 0 && attribute.Value.Length >= 8:
                    // struct rtnexthop { u16 len; u8 flags; u8 hops; int ifindex; }: take the first hop.
                    nextHopFlags |= attribute.Value[2];
                    outputInterface = BinaryPrimitives.ReadInt32LittleEndian(attribute.Value[4..]);
                    break;
            }
        }
        if (table != NetlinkProtocol.RT_TABLE_MAIN || outputInterface <= 0) return null;
        var usable = (nextHopFlags & (NetlinkProtocol.RTNH_F_DEAD | NetlinkProtocol.RTNH_F_LINKDOWN)) == 0;
        return new DefaultRoute(family, outputInterface, metric, usable, gateway);
    }
}

/// <summary>
/// A default route of the main table: family, output interface, metric, whether its link is up, and its
/// gateway (null for a route without one, or a multipath route's hops).
/// </summary>
internal sealed record DefaultRoute(byte Family, int InterfaceIndex, uint Metric, bool Usable, IPAddress? Gateway);
