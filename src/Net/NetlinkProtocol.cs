namespace Hybrid.Net;

/// <summary>
/// Numbers of the netlink and rtnetlink wire protocol, from linux/netlink.h, linux/rtnetlink.h,
/// linux/if_addr.h, linux/if_link.h and linux/if.h. Layouts (all host byte order, 4-byte aligned):
/// nlmsghdr 16 bytes, ifaddrmsg 8, ifinfomsg 16, rtmsg 12, rtattr 4 + value.
/// </summary>
internal static class NetlinkProtocol
{
    public const int Alignment = 4;
    public const int HeaderSize = 16;
    public const int AttributeHeaderSize = 4;
    public const int IfAddrMsgSize = 8;
    public const int IfInfoMsgSize = 16;
    public const int RtMsgSize = 12;

    public static int Align(int length) => (length + Alignment - 1) & ~(Alignment - 1);

    // nlmsg_type: control messages
    public const ushort NLMSG_NOOP = 1;
    public const ushort NLMSG_ERROR = 2;
    public const ushort NLMSG_DONE = 3;
    public const ushort NLMSG_OVERRUN = 4;

    // nlmsg_type: rtnetlink
    public const ushort RTM_NEWLINK = 16;
    public const ushort RTM_DELLINK = 17;
    public const ushort RTM_GETLINK = 18;
    public const ushort RTM_NEWADDR = 20;
    public const ushort RTM_DELADDR = 21;
    public const ushort RTM_GETADDR = 22;
    public const ushort RTM_NEWROUTE = 24;
    public const ushort RTM_GETROUTE = 26;

    // nlmsg_flags
    public const ushort NLM_F_REQUEST = 0x1;
    public const ushort NLM_F_MULTI = 0x2;
    public const ushort NLM_F_ACK = 0x4;
    public const ushort NLM_F_DUMP_INTR = 0x10;
    public const ushort NLM_F_DUMP = 0x300;
    public const ushort NLM_F_REPLACE = 0x100;
    public const ushort NLM_F_EXCL = 0x200;
    public const ushort NLM_F_CREATE = 0x400;
    public const ushort NLM_F_CAPPED = 0x100; // on NLMSG_ERROR: original payload omitted
    public const ushort NLM_F_ACK_TLVS = 0x200; // on NLMSG_ERROR: extended-ack attributes follow

    // struct nlmsgerr attributes
    public const ushort NLMSGERR_ATTR_MSG = 1;

    // nlattr type bits
    public const ushort NLA_TYPE_MASK = 0x3FFF;
    public const ushort NLA_F_NESTED = 0x8000;

    // multicast groups (bind() bitmask form)
    public const uint RTMGRP_LINK = 0x1;
    public const uint RTMGRP_IPV4_IFADDR = 0x10;
    public const uint RTMGRP_IPV6_IFADDR = 0x100;

    // address families
    public const byte AF_UNSPEC = 0;
    public const byte AF_INET = 2;
    public const byte AF_INET6 = 10;

    // ifaddrmsg attributes
    public const ushort IFA_ADDRESS = 1;
    public const ushort IFA_LOCAL = 2;
    public const ushort IFA_LABEL = 3;
    public const ushort IFA_CACHEINFO = 6;
    public const ushort IFA_FLAGS = 8;
    public const ushort IFA_PROTO = 11;

    public const uint InfinityLifetime = 0xFFFFFFFF;

    // ifinfomsg attributes
    public const ushort IFLA_ADDRESS = 1;
    public const ushort IFLA_IFNAME = 3;
    public const ushort IFLA_MTU = 4;
    public const ushort IFLA_LINK = 5;
    public const ushort IFLA_OPERSTATE = 16;
    public const ushort IFLA_LINKINFO = 18;
    public const ushort IFLA_EXT_MASK = 29;
    public const uint RTEXT_FILTER_SKIP_STATS = 1 << 3;

    // IFLA_LINKINFO nested attributes, and IFLA_INFO_DATA of kind "macvlan"
    public const ushort IFLA_INFO_KIND = 1;
    public const ushort IFLA_INFO_DATA = 2;
    public const ushort IFLA_MACVLAN_MODE = 1;
    public const uint MACVLAN_MODE_BRIDGE = 4;

    // ifi_flags
    public const uint IFF_UP = 0x1;
    public const uint IFF_LOWER_UP = 0x10000;

    // rtmsg
    public const byte RT_TABLE_MAIN = 254;
    public const byte RTN_UNICAST = 1;
    public const ushort RTA_OIF = 4;
    public const ushort RTA_GATEWAY = 5;
    public const ushort RTA_PRIORITY = 6;
    public const ushort RTA_MULTIPATH = 9;
    public const ushort RTA_TABLE = 15;
    public const uint RTNH_F_DEAD = 1;
    public const uint RTNH_F_LINKDOWN = 16;

    /// <summary>"RTM_NEWADDR" for 20, for error messages.</summary>
    public static string TypeName(ushort type) => type switch
    {
        RTM_NEWLINK => "RTM_NEWLINK",
        RTM_DELLINK => "RTM_DELLINK",
        RTM_GETLINK => "RTM_GETLINK",
        RTM_NEWADDR => "RTM_NEWADDR",
        RTM_DELADDR => "RTM_DELADDR",
        RTM_GETADDR => "RTM_GETADDR",
        RTM_NEWROUTE => "RTM_NEWROUTE",
        RTM_GETROUTE => "RTM_GETROUTE",
        _ => $"netlink type {type}",
    };
}
