using System.Buffers.Binary;
using System.Net.NetworkInformation;

namespace Hybrid.Net;

/// <summary>
/// Creates, finds, brings up and deletes macvlan links (RTM_NEWLINK / RTM_GETLINK / RTM_DELLINK with
/// IFLA_LINKINFO kind "macvlan"): the interfaces DHCP Services lease their addresses on, each with the
/// Service's own MAC on the VIP interface (the parent). Mode bridge: the macvlans of one parent reach each
/// other directly, as separate hosts on the LAN would.
/// </summary>
internal sealed class MacvlanTable(NetlinkSocket socket) : IDisposable, IAsyncDisposable
{
    /// <summary>Opens a table on its own netlink socket, in the named namespace when one is given.</summary>
    public static MacvlanTable Open(string? namespaceName = null) => new(NetlinkSocket.Open(namespaceName));

    /// <summary>The link called <paramref name="name"/> with its kind, parent and mode; null if there is none.</summary>
    public async Task<MacvlanLink?> GetAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var operation = $"RTM_GETLINK {name}";
        var (link, status) = await socket.QueryAsync(writer =>
            {
                writer.BeginMessage(NetlinkProtocol.RTM_GETLINK, 0);
                writer.AppendFixed(NetlinkProtocol.IfInfoMsgSize);
                writer.AddUInt32(NetlinkProtocol.IFLA_EXT_MASK, NetlinkProtocol.RTEXT_FILTER_SKIP_STATS);
                writer.AddString(NetlinkProtocol.IFLA_IFNAME, name);
                writer.EndMessage();
            },
            Decode, operation, cancellationToken).ConfigureAwait(false);
        if (status.Errno == 19 /* ENODEV */) return null;
        if (!status.Succeeded) throw new NetlinkException(operation, status.Errno, status.KernelMessage);
        return link;
    }

    /// <summary>
    /// The macvlan ready to carry a Service's traffic: <see cref="EnsureAsync"/> (a new one down), its sysctls
    /// (<see cref="Dhcp.MacvlanSysctls"/>), then up. The DHCP client and the admission of a leased address both
    /// start here, whichever comes first on a new holder.
    /// </summary>
    public async Task<MacvlanLink> PrepareAsync(int parentIndex, string name, PhysicalAddress mac, CancellationToken cancellationToken)
    {
        var made = await EnsureAsync(parentIndex, name, mac, cancellationToken).ConfigureAwait(false);
        Dhcp.MacvlanSysctls.Apply(name);
        await SetUpAsync(made.Index, cancellationToken).ConfigureAwait(false);
        return made;
    }

    /// <summary>
    /// Makes <paramref name="name"/> a macvlan in bridge mode on <paramref name="parentIndex"/> with
    /// <paramref name="mac"/>: an existing link that already is one is kept (a restarted agent finds its own);
    /// any other link of that name (another kind, parent, MAC or mode, e.g. left by kube-vip) is replaced.
    /// A new link is created DOWN, so that its sysctls can be set before it sends anything; see
    /// <see cref="SetUpAsync"/>.
    /// </summary>
    public async Task<MacvlanLink> EnsureAsync(int parentIndex, string name, PhysicalAddress mac, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(parentIndex);
        if (mac.GetAddressBytes().Length != 6) throw new ArgumentException($"a macvlan needs a 6-byte MAC, not '{mac}'", nameof(mac));
        var existing = await GetAsync(name, cancellationToken).ConfigureAwait(false);
        if (existing is { Kind: "macvlan", Mode: NetlinkProtocol.MACVLAN_MODE_BRIDGE } && existing.ParentIndex == parentIndex && existing.Mac.Equals(mac))
            return existing;
        if (existing is not null) await DeleteAsync(name, cancellationToken).ConfigureAwait(false);

        var operation = $"RTM_NEWLINK macvlan {name} on ifindex {parentIndex} with {mac}";
        var results = await socket.ExecuteAsync(1, (writer, _) =>
            {
                writer.BeginMessage(NetlinkProtocol.RTM_NEWLINK, NetlinkProtocol.NLM_F_CREATE | NetlinkProtocol.NLM_F_EXCL);
                writer.AppendFixed(NetlinkProtocol.IfInfoMsgSize);
                writer.AddString(NetlinkProtocol.IFLA_IFNAME, name);
                writer.AddUInt32(NetlinkProtocol.IFLA_LINK, (uint)parentIndex);
                writer.AddAttribute(NetlinkProtocol.IFLA_ADDRESS, mac.GetAddressBytes());
                var linkInfo = writer.BeginNested(NetlinkProtocol.IFLA_LINKINFO);
                writer.AddString(NetlinkProtocol.IFLA_INFO_KIND, "macvlan");
                var data = writer.BeginNested(NetlinkProtocol.IFLA_INFO_DATA);
                writer.AddUInt32(NetlinkProtocol.IFLA_MACVLAN_MODE, NetlinkProtocol.MACVLAN_MODE_BRIDGE);
                writer.EndNested(data);
                writer.EndNested(linkInfo);
                writer.EndMessage();
            },
            operation, cancellationToken).ConfigureAwait(false);
        if (!results[0].Succeeded) throw new NetlinkException(operation, results[0].Errno, results[0].KernelMessage);
        return await GetAsync(name, cancellationToken).ConfigureAwait(false)
            ?? throw new NetlinkException(operation, 19, "the new link vanished at once");
    }

    /// <summary>Sets the link administratively up (idempotent).</summary>
    public async Task SetUpAsync(int index, CancellationToken cancellationToken)
    {
        var operation = $"RTM_NEWLINK ifindex {index} up";
        var results = await socket.ExecuteAsync(1, (writer, _) =>
            {
                writer.BeginMessage(NetlinkProtocol.RTM_NEWLINK, 0);
                var header = writer.AppendFixed(NetlinkProtocol.IfInfoMsgSize); // struct ifinfomsg
                BinaryPrimitives.WriteInt32LittleEndian(header[4..], index);
                BinaryPrimitives.WriteUInt32LittleEndian(header[8..], NetlinkProtocol.IFF_UP); // ifi_flags
                BinaryPrimitives.WriteUInt32LittleEndian(header[12..], NetlinkProtocol.IFF_UP); // ifi_change
                writer.EndMessage();
            },
            operation, cancellationToken).ConfigureAwait(false);
        if (!results[0].Succeeded) throw new NetlinkException(operation, results[0].Errno, results[0].KernelMessage);
    }

    /// <summary>Deletes the link; a link that is not there counts as deleted.</summary>
    public async Task DeleteAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var operation = $"RTM_DELLINK {name}";
        var results = await socket.ExecuteAsync(1, (writer, _) =>
            {
                writer.BeginMessage(NetlinkProtocol.RTM_DELLINK, 0);
                writer.AppendFixed(NetlinkProtocol.IfInfoMsgSize);
                writer.AddString(NetlinkProtocol.IFLA_IFNAME, name);
                writer.EndMessage();
            },
            operation, cancellationToken).ConfigureAwait(false);
        if (!results[0].Succeeded && results[0].Errno != 19 /* ENODEV */)
            throw new NetlinkException(operation, results[0].Errno, results[0].KernelMessage);
    }

    private static MacvlanLink? Decode(NetlinkMessage message)
    {
        if (message.Type != NetlinkProtocol.RTM_NEWLINK || message.Payload.Length < NetlinkProtocol.IfInfoMsgSize) return null;
        var index = BinaryPrimitives.ReadInt32LittleEndian(message.Payload[4..]);
        var flags = BinaryPrimitives.ReadUInt32LittleEndian(message.Payload[8..]);
        string name = "", kind = "";
        var parent = 0;
        uint mode = 0;
        var mac = PhysicalAddress.None;
        foreach (var attribute in message.AttributesAfter(NetlinkProtocol.IfInfoMsgSize))
        {
            switch (attribute.Type)
            {
                case NetlinkProtocol.IFLA_IFNAME: name = attribute.ReadString(); break;
                case NetlinkProtocol.IFLA_ADDRESS: mac = new PhysicalAddress(attribute.Value.ToArray()); break;
                case NetlinkProtocol.IFLA_LINK: parent = (int)attribute.ReadUInt32(); break;
                case NetlinkProtocol.IFLA_LINKINFO:
                    foreach (var info in new NetlinkAttributeEnumerator(attribute.Value))
                    {
                        if (info.Type == NetlinkProtocol.IFLA_INFO_KIND) kind = info.ReadString();
                        else if (info.Type == NetlinkProtocol.IFLA_INFO_DATA)
                            foreach (var data in new NetlinkAttributeEnumerator(info.Value))
                                if (data.Type == NetlinkProtocol.IFLA_MACVLAN_MODE) mode = data.ReadUInt32();
                    }
                    break;
            }
        }
        return new MacvlanLink(index, name, kind, parent, mac, mode, (flags & NetlinkProtocol.IFF_UP) != 0);
    }

    public void Dispose() => socket.Dispose();

    public ValueTask DisposeAsync() => socket.DisposeAsync();
}

/// <summary>A link as <see cref="MacvlanTable"/> sees it: Kind is IFLA_INFO_KIND ("" for a physical link).</summary>
internal sealed record MacvlanLink(int Index, string Name, string Kind, int ParentIndex, PhysicalAddress Mac, uint Mode, bool Up);
