using System.Buffers.Binary;

namespace Hybrid.Net;

/// <summary>
/// The set-element changes of one nf_tables transaction on one table, encoded as netlink messages for
/// <see cref="NftablesElementSocket.Commit"/>. Changes apply in the order they are written, and all of them or
/// none. Keys are the set's key bytes exactly as the kernel stores them (ipv4_addr: 4 bytes in network order;
/// iface_index: 4 bytes in host order; a 128-bit payload: 16 bytes as on the wire).
/// </summary>
internal sealed class NftablesElementBatch
{
    // An attribute's length is 16 bits: a long list of keys is split over several messages of the same batch.
    private const int MaxElementsPerMessage = 1_000;

    private readonly NetlinkMessageWriter writer;
    private readonly byte family;
    private readonly string table;

    internal NftablesElementBatch(NetlinkMessageWriter writer, byte family, string table)
    {
        this.writer = writer;
        this.family = family;
        this.table = table;
    }

    /// <summary>How many element messages were written (each is answered by the kernel).</summary>
    public int Messages { get; private set; }

    /// <summary>
    /// Adds the keys to <paramref name="set"/>, each with <paramref name="timeoutMs"/> when it is positive. A key
    /// already in the set is left as it is (its expiry too): not an error.
    /// </summary>
    public void Add(string set, IReadOnlyList<byte[]> keys, long timeoutMs = 0) =>
        Write(NftablesProtocol.NFT_MSG_NEWSETELEM, NetlinkProtocol.NLM_F_CREATE, set, keys, timeoutMs);

    /// <summary>Deletes the keys from <paramref name="set"/>; a key that is not there fails the whole transaction (ENOENT).</summary>
    public void Delete(string set, IReadOnlyList<byte[]> keys) =>
        Write(NftablesProtocol.NFT_MSG_DELSETELEM, 0, set, keys, 0);

    private void Write(ushort message, ushort flags, string set, IReadOnlyList<byte[]> keys, long timeoutMs)
    {
        for (var start = 0; start < keys.Count; start += MaxElementsPerMessage)
        {
            writer.BeginMessage(NftablesProtocol.MessageType(message), (ushort)(flags | NetlinkProtocol.NLM_F_REQUEST | NetlinkProtocol.NLM_F_ACK));
            WriteHeader(writer.AppendFixed(NftablesProtocol.NfGenMsgSize), family, resourceId: 0);
            writer.AddString(NftablesProtocol.NFTA_SET_ELEM_LIST_TABLE, table);
            writer.AddString(NftablesProtocol.NFTA_SET_ELEM_LIST_SET, set);
            var elements = writer.BeginNested(NftablesProtocol.NFTA_SET_ELEM_LIST_ELEMENTS);
            for (var i = start; i < Math.Min(keys.Count, start + MaxElementsPerMessage); i++)
            {
                var element = writer.BeginNested(NftablesProtocol.NFTA_LIST_ELEM);
                var key = writer.BeginNested(NftablesProtocol.NFTA_SET_ELEM_KEY);
                writer.AddAttribute(NftablesProtocol.NFTA_DATA_VALUE, keys[i]);
                writer.EndNested(key);
                if (timeoutMs > 0) writer.AddUInt64BigEndian(NftablesProtocol.NFTA_SET_ELEM_TIMEOUT, (ulong)timeoutMs);
                writer.EndNested(element);
            }
            writer.EndNested(elements);
            writer.EndMessage();
            Messages++;
        }
    }

    /// <summary>Writes a nfgenmsg: family, version 0, resource id (big-endian).</summary>
    internal static void WriteHeader(Span<byte> header, byte family, ushort resourceId)
    {
        header[0] = family;
        header[1] = NftablesProtocol.NFNETLINK_V0;
        BinaryPrimitives.WriteUInt16BigEndian(header[2..], resourceId);
    }
}
