namespace Hybrid.Net;

/// <summary>
/// Numbers of the nf_tables netlink protocol that the set-element writes use, from linux/netfilter/nfnetlink.h,
/// linux/netfilter/nf_tables.h and linux/netfilter.h. Message types are (subsystem &lt;&lt; 8) | message; every
/// message carries a 4-byte nfgenmsg (family, version, resource id in network byte order) before its
/// attributes.
/// </summary>
internal static class NftablesProtocol
{
    public const int NfGenMsgSize = 4;
    public const byte NFNETLINK_V0 = 0;

    public const ushort NFNL_SUBSYS_NFTABLES = 10;

    // A transaction: everything between BEGIN and END is applied together or not at all.
    public const ushort NFNL_MSG_BATCH_BEGIN = 16;
    public const ushort NFNL_MSG_BATCH_END = 17;

    public const ushort NFT_MSG_NEWSETELEM = 12;
    public const ushort NFT_MSG_DELSETELEM = 14;

    public const byte NFPROTO_NETDEV = 5;

    // enum nft_set_elem_list_attributes
    public const ushort NFTA_SET_ELEM_LIST_TABLE = 1;
    public const ushort NFTA_SET_ELEM_LIST_SET = 2;
    public const ushort NFTA_SET_ELEM_LIST_ELEMENTS = 3;

    // enum nft_list_attributes
    public const ushort NFTA_LIST_ELEM = 1;

    // enum nft_set_elem_attributes
    public const ushort NFTA_SET_ELEM_KEY = 1;
    public const ushort NFTA_SET_ELEM_TIMEOUT = 4; // milliseconds, big-endian u64

    // enum nft_data_attributes
    public const ushort NFTA_DATA_VALUE = 1;

    public static ushort MessageType(ushort message) => (ushort)((NFNL_SUBSYS_NFTABLES << 8) | message);
}
