using System.Buffers.Binary;

namespace Hybrid.Net;

/// <summary>
/// Reads interfaces (RTM_GETLINK) and finds the interface of the default route (RTM_GETROUTE), the way
/// kube-vip picks its interface when none is configured.
/// </summary>
internal sealed class LinkTable(NetlinkSocket socket) : IDisposable, IAsyncDisposable
{
    private const int InterfaceNameSize = 16; // IFNAMSIZ, including the NUL

    /// <summary>Opens a table on its own netlink socket, in the named namespace when one is given.</summary>
    public static LinkTable Open(string? namespaceName = null) => new(NetlinkSocket.Open(namespaceName));

    /// <summary>The link called <paramref name="name"/>, or null if there is none.</summary>
    public Task<LinkInfo?> GetAsync(string name, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (name.Length == 0 || name.Length >= InterfaceNameSize) return Task.FromResult<LinkInfo?>(null);
        return GetAsync(0, name, $"RTM_GETLINK {name}", cancellationToken);
    }

    /// <summary>The link with ifindex <paramref name="index"/>, or null if there is none.</summary>
    public Task<LinkInfo?> GetAsync(int index, CancellationToken cancellationToken) =>
        index <= 0
            ? Task.FromResult<LinkInfo?>(null)
            : GetAsync(index, null, $"RTM_GETLINK ifindex {index}", cancellationToken);

    private async Task<LinkInfo?> GetAsync(int index, string? name, string operation, CancellationToken cancellationToken)
    {
        var (link, status) = await socket.QueryAsync(writer =>
            {
                WriteLinkRequest(writer, index);
                if (name is not null) writer.AddString(NetlinkProtocol.IFLA_IFNAME, name);
                writer.EndMessage();
            },
            NetlinkDecoder.DecodeLink, operation, cancellationToken).ConfigureAwait(false);
        if (status.Errno == 19 /* ENODEV */) return null;
        if (!status.Succeeded) throw new NetlinkException(operation, status.Errno, status.KernelMessage);
        return link;
    }

    /// <summary>All links of the namespace.</summary>
    public async Task<IReadOnlyList<LinkInfo>> DumpAsync(CancellationToken cancellationToken) =>
        await socket.DumpAsync(writer =>
            {
                WriteLinkRequest(writer, 0);
                writer.EndMessage();
            },
            NetlinkDecoder.DecodeLink, "RTM_GETLINK dump", cancellationToken).ConfigureAwait(false);

    /// <summary>
    /// Name of the interface of the main table's default route: IPv4 first, then IPv6; among several, one whose
    /// link is up, then the lowest metric. Null when there is no default route.
    /// </summary>
    public async Task<string?> DefaultRouteInterfaceAsync(CancellationToken cancellationToken)
    {
        foreach (var family in new[] { NetlinkProtocol.AF_INET, NetlinkProtocol.AF_INET6 })
        {
            var routes = await DefaultRoutesAsync(family, cancellationToken).ConfigureAwait(false);
            foreach (var route in routes.OrderByDescending(r => r.Usable).ThenBy(r => r.Metric))
            {
                if (await GetAsync(route.InterfaceIndex, cancellationToken).ConfigureAwait(false) is { } link)
                    return link.Name;
            }
        }
        return null;
    }

    /// <summary>The gateways of the main table's default routes (IPv4, then IPv6) through ifindex <paramref name="index"/>.</summary>
    public async Task<IReadOnlyList<System.Net.IPAddress>> DefaultGatewaysAsync(int index, CancellationToken cancellationToken)
    {
        var gateways = new List<System.Net.IPAddress>();
        foreach (var family in new[] { NetlinkProtocol.AF_INET, NetlinkProtocol.AF_INET6 })
        {
            var routes = await DefaultRoutesAsync(family, cancellationToken).ConfigureAwait(false);
            gateways.AddRange(routes.Where(r => r.InterfaceIndex == index && r.Gateway is not null).Select(r => r.Gateway!));
        }
        return gateways;
    }

    private Task<List<DefaultRoute>> DefaultRoutesAsync(byte family, CancellationToken cancellationToken) =>
        socket.DumpAsync(writer =>
            {
                writer.BeginMessage(NetlinkProtocol.RTM_GETROUTE, 0);
                var header = writer.AppendFixed(NetlinkProtocol.RtMsgSize); // struct rtmsg
                header[0] = family;
                header[4] = NetlinkProtocol.RT_TABLE_MAIN; // filtered by the kernel under strict checking
                writer.EndMessage();
            },
            NetlinkDecoder.DecodeDefaultRoute,
            family == NetlinkProtocol.AF_INET ? "RTM_GETROUTE dump (IPv4)" : "RTM_GETROUTE dump (IPv6)",
            cancellationToken);

    private static void WriteLinkRequest(NetlinkMessageWriter writer, int index)
    {
        writer.BeginMessage(NetlinkProtocol.RTM_GETLINK, 0);
        var header = writer.AppendFixed(NetlinkProtocol.IfInfoMsgSize); // struct ifinfomsg
        header[0] = NetlinkProtocol.AF_UNSPEC;
        BinaryPrimitives.WriteInt32LittleEndian(header[4..], index);
        writer.AddUInt32(NetlinkProtocol.IFLA_EXT_MASK, NetlinkProtocol.RTEXT_FILTER_SKIP_STATS);
    }

    public void Dispose() => socket.Dispose();

    public ValueTask DisposeAsync() => socket.DisposeAsync();
}
