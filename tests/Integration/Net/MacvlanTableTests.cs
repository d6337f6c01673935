using System.Net.NetworkInformation;
using System.Text.Json;
using Hybrid.Net;
using Hybrid.Net.Dhcp;
using Xunit;

namespace Hybrid.Integration.Net;

/// <summary>MacvlanTable and MacvlanSysctls against the real kernel, in a throw-away namespace (needs root).</summary>
public sealed class MacvlanTableTests
{
    private static readonly PhysicalAddress Mac = PhysicalAddress.Parse("02:48:44:00:00:01");
    private static readonly PhysicalAddress OtherMac = PhysicalAddress.Parse("02:48:44:00:00:02");

    [Fact]
    public async Task A_macvlan_is_created_down_in_bridge_mode_with_the_service_mac_then_kept_while_it_matches()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = MacvlanTable.Open(ns.Name);

        var link = await table.EnsureAsync(ns.Veth0, "vip-0a1b2c3d", Mac, CancellationToken.None);
        Assert.Equal(("macvlan", ns.Veth0, NetlinkProtocolMacvlanBridge, false), (link.Kind, link.ParentIndex, link.Mode, link.Up));
        Assert.Equal(Mac, link.Mac);
        var shown = await DetailsAsync(ns, "vip-0a1b2c3d");
        Assert.Equal("macvlan", shown.GetProperty("linkinfo").GetProperty("info_kind").GetString());
        Assert.Equal("bridge", shown.GetProperty("linkinfo").GetProperty("info_data").GetProperty("mode").GetString());
        Assert.Equal("veth0", shown.GetProperty("link").GetString());
        Assert.Equal("02:48:44:00:00:01", shown.GetProperty("address").GetString());

        // A restarted agent finds its own macvlan and keeps it (same ifindex: addresses on it survive).
        Assert.Equal(link.Index, (await table.EnsureAsync(ns.Veth0, "vip-0a1b2c3d", Mac, CancellationToken.None)).Index);

        await table.SetUpAsync(link.Index, CancellationToken.None);
        Assert.True((await table.GetAsync("vip-0a1b2c3d", CancellationToken.None))!.Up);

        await table.DeleteAsync("vip-0a1b2c3d", CancellationToken.None);
        Assert.Null(await table.GetAsync("vip-0a1b2c3d", CancellationToken.None));
        await table.DeleteAsync("vip-0a1b2c3d", CancellationToken.None); // already gone: no error
    }

    [Fact]
    public async Task A_link_of_that_name_that_differs_in_mac_parent_or_kind_is_replaced()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = MacvlanTable.Open(ns.Name);
        var first = await table.EnsureAsync(ns.Veth0, "vip-x", Mac, CancellationToken.None);

        var otherMac = await table.EnsureAsync(ns.Veth0, "vip-x", OtherMac, CancellationToken.None);
        Assert.NotEqual(first.Index, otherMac.Index);
        Assert.Equal(OtherMac, otherMac.Mac);

        var otherParent = await table.EnsureAsync(ns.Veth1, "vip-x", OtherMac, CancellationToken.None);
        Assert.Equal(ns.Veth1, otherParent.ParentIndex);

        // e.g. something else (kube-vip, an operator) left a link of another kind under the name
        await table.DeleteAsync("vip-x", CancellationToken.None);
        await ns.IpInAsync("link", "add", "vip-x", "type", "veth", "peer", "name", "vip-x-peer");
        var replaced = await table.EnsureAsync(ns.Veth0, "vip-x", Mac, CancellationToken.None);
        Assert.Equal(("macvlan", ns.Veth0), (replaced.Kind, replaced.ParentIndex));

        // ... or a macvlan in another mode (kube-vip creates its macvlans in mode "private")
        await table.DeleteAsync("vip-x", CancellationToken.None);
        await ns.IpInAsync("link", "add", "link", "veth0", "name", "vip-x", "address", "02:48:44:00:00:01", "type", "macvlan", "mode", "private");
        var bridged = await table.EnsureAsync(ns.Veth0, "vip-x", Mac, CancellationToken.None);
        Assert.Equal("bridge", (await DetailsAsync(ns, "vip-x")).GetProperty("linkinfo").GetProperty("info_data").GetProperty("mode").GetString());
        Assert.Equal(NetlinkProtocolMacvlanBridge, bridged.Mode);

        var error = await Assert.ThrowsAsync<NetlinkException>(() => table.EnsureAsync(987_654, "vip-y", Mac, CancellationToken.None));
        Assert.Equal("ENODEV", error.ErrnoName); // no such parent: the kernel's error, with the operation named
        Assert.Contains("vip-y", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_sysctls_are_set_on_the_macvlan_only()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = MacvlanTable.Open(ns.Name);
        await table.EnsureAsync(ns.Veth0, "vip-s", Mac, CancellationToken.None);
        var before = await SysctlsAsync(ns, "veth0");

        NetworkNamespace.RunIn(ns.Name, () => MacvlanSysctls.Apply("vip-s"));

        Assert.Equal(["1", "2", "2", "1"], await SysctlsAsync(ns, "vip-s"));
        Assert.Equal(before, await SysctlsAsync(ns, "veth0")); // the parent is left as it was
        var error = Assert.Throws<IOException>(() => NetworkNamespace.RunIn(ns.Name, () => MacvlanSysctls.Apply("no-such-link")));
        Assert.Contains("/proc/sys/net/ipv4/conf/no-such-link/arp_ignore", error.Message, StringComparison.Ordinal);
    }

    private const uint NetlinkProtocolMacvlanBridge = 4;

    private static async Task<JsonElement> DetailsAsync(NetlinkTestNamespace ns, string link)
    {
        using var json = JsonDocument.Parse(await ns.IpInAsync("-d", "-j", "link", "show", "dev", link));
        return json.RootElement[0].Clone();
    }

    private static async Task<string[]> SysctlsAsync(NetlinkTestNamespace ns, string link)
    {
        var values = new List<string>();
        foreach (var key in new[] { "ipv4.conf.{0}.arp_ignore", "ipv4.conf.{0}.arp_announce", "ipv4.conf.{0}.rp_filter", "ipv6.conf.{0}.disable_ipv6" })
        {
            var output = await NetlinkTestNamespace.IpAsync("netns", "exec", ns.Name, "sysctl", "-n", "net." + string.Format(System.Globalization.CultureInfo.InvariantCulture, key, link));
            values.Add(output.Trim());
        }
        return values.ToArray();
    }
}
