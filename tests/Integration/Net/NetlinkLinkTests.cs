using System.Diagnostics;
using System.Net;
using Hybrid.Net;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Net;

/// <summary>LinkTable and NetlinkMonitor against the real kernel, inside a throw-away namespace (needs root).</summary>
public sealed class NetlinkLinkTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Links_are_found_by_name_and_index_and_dumped()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var links = LinkTable.Open(ns.Name);

        var veth0 = await links.GetAsync("veth0", CancellationToken.None);
        Assert.NotNull(veth0);
        Assert.Equal(ns.Veth0, veth0.Index);
        Assert.Equal(veth0, await links.GetAsync(ns.Veth0, CancellationToken.None));
        Assert.Equal(6, veth0.HardwareAddress.GetAddressBytes().Length);
        Assert.Equal(1500, veth0.Mtu);
        Assert.True(veth0.AdministrativelyUp);

        // Carrier comes up asynchronously after `ip link set up` of both ends.
        var up = await NetlinkPoll.UntilAsync(async () => await links.GetAsync("veth0", CancellationToken.None) is { LowerUp: true, OperState: OperationalState.Up } l ? l : null,
            Deadline, "veth0 has carrier");
        Assert.True(up.AdministrativelyUp);
        var shown = await ns.IpInAsync("link", "show", "dev", "veth0");
        Assert.Contains(up.HardwareAddress.ToString().ToLowerInvariant(), shown.Replace(":", "").ToLowerInvariant());

        var all = await links.DumpAsync(CancellationToken.None);
        Assert.Equal(["lo", "veth0", "veth1"], all.Select(l => l.Name).Order());
        Assert.Equal(OperationalState.Unknown, Assert.Single(all, l => l.Name == "lo").OperState);

        Assert.Null(await links.GetAsync("nosuchlink0", CancellationToken.None));
        Assert.Null(await links.GetAsync(987_654, CancellationToken.None));
        Assert.Null(await links.GetAsync("a-name-much-too-long-for-a-link", CancellationToken.None));
    }

    [Fact]
    public async Task Admin_down_up_and_carrier_loss_arrive_as_link_events()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var links = LinkTable.Open(ns.Name);
        await NetlinkPoll.UntilAsync(async () => await links.GetAsync(ns.Veth0, CancellationToken.None) is { LowerUp: true, OperState: OperationalState.Up } l ? l : null,
            Deadline, "veth0 has carrier");
        await using var events = new NetlinkEventRecorder(NetlinkMonitor.Open(ns.Name));

        var started = Stopwatch.GetTimestamp();
        await ns.IpInAsync("link", "set", "dev", "veth0", "down");
        var (down, at) = await events.WaitForAsync<LinkChanged>(e => e.Link.Index == ns.Veth0 && !e.Link.AdministrativelyUp, Deadline, "veth0 admin down");
        Assert.False(down.Link.LowerUp);
        output.WriteLine($"admin down seen {Stopwatch.GetElapsedTime(started, at).TotalMilliseconds:0.0} ms after `ip link set down` started");

        started = Stopwatch.GetTimestamp();
        await ns.IpInAsync("link", "set", "dev", "veth0", "up");
        (var upAgain, at) = await events.WaitForAsync<LinkChanged>(e => e.Link.Index == ns.Veth0 && e.Link is { AdministrativelyUp: true, LowerUp: true, OperState: OperationalState.Up }, Deadline, "veth0 up with carrier");
        // (Flags and the RFC 2863 operstate may arrive in separate notifications: wait for the settled state.)
        Assert.Equal("veth0", upAgain.Link.Name);
        output.WriteLine($"admin up + carrier seen {Stopwatch.GetElapsedTime(started, at).TotalMilliseconds:0.0} ms after `ip link set up` started");

        // The peer going down takes veth0's carrier away while veth0 stays administratively up.
        started = Stopwatch.GetTimestamp();
        await ns.IpInAsync("link", "set", "dev", "veth1", "down");
        (var carrierLost, at) = await events.WaitForAsync<LinkChanged>(e => e.Link.Index == ns.Veth0 && e.Link is { AdministrativelyUp: true, LowerUp: false, OperState: OperationalState.LowerLayerDown }, Deadline, "veth0 carrier lost");
        Assert.Equal("veth0", carrierLost.Link.Name);
        output.WriteLine($"carrier loss seen {Stopwatch.GetElapsedTime(started, at).TotalMilliseconds:0.0} ms after the peer was set down");

        started = Stopwatch.GetTimestamp();
        await ns.IpInAsync("link", "set", "dev", "veth1", "up");
        (_, at) = await events.WaitForAsync<LinkChanged>(e => e.Link.Index == ns.Veth0 && e.Link is { AdministrativelyUp: true, LowerUp: true, OperState: OperationalState.Up }, Deadline, "veth0 carrier back");
        output.WriteLine($"carrier back seen {Stopwatch.GetElapsedTime(started, at).TotalMilliseconds:0.0} ms after the peer was set up");
    }

    [Fact]
    public async Task Link_creation_and_deletion_arrive_as_events()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var events = new NetlinkEventRecorder(NetlinkMonitor.Open(ns.Name));

        await ns.IpInAsync("link", "add", "vx0", "type", "veth", "peer", "name", "vx1");
        var (created, _) = await events.WaitForAsync<LinkChanged>(e => e.Link.Name == "vx0", Deadline, "vx0 created");
        await ns.IpInAsync("link", "del", "vx0");
        var (removed, _) = await events.WaitForAsync<LinkRemoved>(e => e.Name == "vx0", Deadline, "vx0 deleted");
        Assert.Equal(created.Link.Index, removed.Index);
        await events.WaitForAsync<LinkRemoved>(e => e.Name == "vx1", Deadline, "vx1 deleted with its peer");
    }

    [Fact]
    public async Task Address_additions_and_removals_arrive_as_events()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = AddressTable.Open(ns.Name);
        await using var events = new NetlinkEventRecorder(NetlinkMonitor.Open(ns.Name));
        var vip = IPAddress.Parse("198.18.12.1");
        var vip6 = IPAddress.Parse("2001:db8:48::12");

        await table.AddOrRefreshAsync(ns.Veth0, vip, 32, TimeSpan.FromSeconds(30), CancellationToken.None);
        var (added, _) = await events.WaitForAsync<AddressAdded>(e => e.Address.Address.Equals(vip), Deadline, "VIP added");
        Assert.True(added.Address.IsHybrid);
        Assert.Equal(ns.Veth0, added.Address.InterfaceIndex);
        Assert.Equal(TimeSpan.FromSeconds(30), added.Address.ValidLifetime);

        await table.AddOrRefreshAsync(ns.Veth0, vip6, 128, null, CancellationToken.None);
        await events.WaitForAsync<AddressAdded>(e => e.Address.Address.Equals(vip6) && e.Address.IsHybrid, Deadline, "IPv6 VIP added");

        await ns.IpInAsync("addr", "add", "198.18.12.2/32", "dev", "veth1");
        var (foreign, _) = await events.WaitForAsync<AddressAdded>(e => e.Address.Address.Equals(IPAddress.Parse("198.18.12.2")), Deadline, "foreign address added");
        Assert.False(foreign.Address.IsHybrid);

        await table.RemoveAsync(ns.Veth0, vip, 32, CancellationToken.None);
        var (removed, _) = await events.WaitForAsync<AddressRemoved>(e => e.Address.Address.Equals(vip), Deadline, "VIP removed");
        Assert.True(removed.Address.IsHybrid);
        await table.RemoveAsync(ns.Veth0, vip6, 128, CancellationToken.None);
        await events.WaitForAsync<AddressRemoved>(e => e.Address.Address.Equals(vip6), Deadline, "IPv6 VIP removed");
    }

    [Fact]
    public async Task An_overflowing_monitor_reports_an_overrun_and_keeps_working()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = AddressTable.Open(ns.Name);
        // A tiny queue that nobody reads while 500 notifications are generated.
        var monitor = NetlinkMonitor.Open(ns.Name, receiveBufferBytes: 4096);
        var vips = Enumerable.Range(1, 500).Select(i => new AddressAssignment(ns.Veth0, IPAddress.Parse($"198.18.{13 + i / 250}.{i % 250 + 1}"), 32)).ToList();
        Assert.Empty(await table.AddOrRefreshManyAsync(vips, CancellationToken.None));

        await using var events = new NetlinkEventRecorder(monitor);
        await events.WaitForAsync<Overrun>(_ => true, Deadline, "overrun reported");

        // The kernel still holds the queued notifications that fitted; until the reader has drained them a new
        // one can be dropped again (a second overrun, which a real consumer answers with a dump). "Keeps working"
        // means: some fresh address change is delivered before the deadline.
        var deadline = Stopwatch.StartNew();
        for (var attempt = 1; ; attempt++)
        {
            var fresh = IPAddress.Parse($"198.18.15.{attempt}");
            await table.AddOrRefreshAsync(ns.Veth0, fresh, 32, null, CancellationToken.None);
            try
            {
                await events.WaitForAsync<AddressAdded>(e => e.Address.Address.Equals(fresh), TimeSpan.FromSeconds(1), $"{fresh} added after the overrun");
                return;
            }
            catch (TimeoutException) when (deadline.Elapsed < Deadline)
            {
            }
        }
    }

    [Fact]
    public async Task Default_route_interface_is_found_for_ipv4_then_ipv6_and_null_without()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var links = LinkTable.Open(ns.Name);
        Assert.Null(await links.DefaultRouteInterfaceAsync(CancellationToken.None));

        await ns.IpInAsync("-6", "route", "add", "default", "dev", "veth1");
        Assert.Equal("veth1", await links.DefaultRouteInterfaceAsync(CancellationToken.None));

        await ns.IpInAsync("addr", "add", "198.18.16.1/24", "dev", "veth0");
        await ns.IpInAsync("route", "add", "default", "via", "198.18.16.254", "dev", "veth0");
        Assert.Equal("veth0", await links.DefaultRouteInterfaceAsync(CancellationToken.None)); // IPv4 wins

        await ns.IpInAsync("route", "del", "default");
        await ns.IpInAsync("-6", "route", "del", "default", "dev", "veth1");
        Assert.Null(await links.DefaultRouteInterfaceAsync(CancellationToken.None));
    }
}
