using System.Diagnostics;
using System.Net;
using Hybrid.Net;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Net;

/// <summary>AddressTable against the real kernel, inside a throw-away namespace (needs root).</summary>
public sealed class NetlinkAddressTests(ITestOutputHelper output)
{
    private static readonly TimeSpan OneSecond = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task Vip_with_lifetime_is_marked_visible_to_ip_and_expires_by_itself()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = AddressTable.Open(ns.Name);
        var vip = IPAddress.Parse("198.18.10.1");

        await table.AddOrRefreshAsync(ns.Veth0, vip, 32, OneSecond, CancellationToken.None);
        var added = Stopwatch.StartNew();

        var dumped = Assert.Single(await table.DumpAsync(ns.Veth0, CancellationToken.None), a => a.Address.Equals(vip));
        Assert.True(dumped.IsHybrid);
        Assert.Equal(AddressTable.HybridProtocol, dumped.Protocol);
        Assert.Equal(32, dumped.PrefixLength);
        Assert.NotNull(dumped.ValidLifetime);
        Assert.True(dumped.ValidLifetime <= OneSecond, $"valid lifetime {dumped.ValidLifetime}");
        Assert.Contains("198.18.10.1/32", await ns.IpInAsync("addr", "show", "dev", "veth0"));

        await NetlinkPoll.UntilTrueAsync(async () =>
                !(await table.DumpAsync(ns.Veth0, CancellationToken.None)).Any(a => a.Address.Equals(vip)),
            TimeSpan.FromSeconds(5), "VIP expired");
        var gone = added.Elapsed;
        output.WriteLine($"1 s VIP gone {gone.TotalSeconds:0.000} s after the add was acknowledged");
        Assert.True(gone >= TimeSpan.FromSeconds(0.9), $"expired early: {gone}");
        Assert.DoesNotContain("198.18.10.1", await ns.IpInAsync("addr", "show", "dev", "veth0"));
    }

    [Fact]
    public async Task Refreshing_before_expiry_keeps_the_vip_and_stopping_lets_it_expire()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = AddressTable.Open(ns.Name);
        await using var events = new NetlinkEventRecorder(NetlinkMonitor.Open(ns.Name));
        var vip = IPAddress.Parse("198.18.10.2");

        // Two-second lifetimes refreshed every 300 ms: a refresh may come late while other tests load the machine.
        var lifetime = TimeSpan.FromSeconds(2);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(3))
        {
            await table.AddOrRefreshAsync(ns.Veth0, vip, 32, lifetime, CancellationToken.None);
            Assert.Contains(await table.DumpAsync(ns.Veth0, CancellationToken.None), a => a.Address.Equals(vip));
            await Task.Delay(300);
        }
        Assert.DoesNotContain(events.Drain(), e => e is AddressRemoved r && r.Address.Address.Equals(vip));

        var lastRefresh = Stopwatch.StartNew();
        await table.AddOrRefreshAsync(ns.Veth0, vip, 32, lifetime, CancellationToken.None);
        await events.WaitForAsync<AddressRemoved>(r => r.Address.Address.Equals(vip), TimeSpan.FromSeconds(5), "VIP removed by the kernel");
        output.WriteLine($"after 3 s of refreshes every 300 ms, gone {lastRefresh.Elapsed.TotalSeconds:0.000} s after the last refresh");
    }

    [Fact]
    public async Task Remove_is_idempotent()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = AddressTable.Open(ns.Name);
        var vip = IPAddress.Parse("198.18.10.3");

        await table.AddOrRefreshAsync(ns.Veth0, vip, 32, null, CancellationToken.None);
        var forever = Assert.Single(await table.DumpAsync(ns.Veth0, CancellationToken.None), a => a.Address.Equals(vip));
        Assert.Null(forever.ValidLifetime);
        Assert.True((forever.Flags & InterfaceAddressFlags.Permanent) != 0);

        await table.RemoveAsync(ns.Veth0, vip, 32, CancellationToken.None);
        Assert.DoesNotContain(await table.DumpAsync(ns.Veth0, CancellationToken.None), a => a.Address.Equals(vip));
        await table.RemoveAsync(ns.Veth0, vip, 32, CancellationToken.None); // not there: still success
        await table.RemoveAsync(ns.Veth0, IPAddress.Parse("2001:db8::99"), 128, CancellationToken.None);
        await table.RemoveAsync(987_654, vip, 32, CancellationToken.None); // no such interface: nothing to remove
    }

    [Fact]
    public async Task Ipv6_vip_is_usable_at_once_and_carries_the_marker()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = AddressTable.Open(ns.Name);
        var vip = IPAddress.Parse("2001:db8:48::10");

        await table.AddOrRefreshAsync(ns.Veth0, vip, 128, TimeSpan.FromSeconds(30), CancellationToken.None);

        var dumped = Assert.Single(await table.DumpAsync(ns.Veth0, CancellationToken.None), a => a.Address.Equals(vip));
        Assert.True(dumped.IsHybrid);
        Assert.False(dumped.IsTentative, dumped.ToString());
        Assert.True((dumped.Flags & InterfaceAddressFlags.NoDad) != 0, dumped.ToString());
        Assert.True((dumped.Flags & InterfaceAddressFlags.NoPrefixRoute) != 0, dumped.ToString());
        var shown = await ns.IpInAsync("-6", "addr", "show", "dev", "veth0");
        var line = Assert.Single(shown.Split('\n'), l => l.Contains("2001:db8:48::10/128"));
        Assert.DoesNotContain("tentative", line);

        // Refreshing an IPv6 address replaces its lifetime too.
        await table.AddOrRefreshAsync(ns.Veth0, vip, 128, OneSecond, CancellationToken.None);
        var refreshed = Assert.Single(await table.DumpAsync(ns.Veth0, CancellationToken.None), a => a.Address.Equals(vip));
        Assert.True(refreshed.ValidLifetime <= OneSecond, refreshed.ToString());
        Assert.True(refreshed.IsHybrid);

        await table.RemoveAsync(ns.Veth0, vip, 128, CancellationToken.None);
        Assert.DoesNotContain(await table.DumpAsync(ns.Veth0, CancellationToken.None), a => a.Address.Equals(vip));
    }

    [Fact]
    public async Task Foreign_address_is_dumped_as_not_hybrid()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = AddressTable.Open(ns.Name);
        await ns.IpInAsync("addr", "add", "198.18.20.1/24", "dev", "veth0");
        await table.AddOrRefreshAsync(ns.Veth0, IPAddress.Parse("198.18.20.50"), 32, null, CancellationToken.None);

        var all = await table.DumpAsync(null, CancellationToken.None);
        var foreign = Assert.Single(all, a => a.Address.Equals(IPAddress.Parse("198.18.20.1")));
        Assert.False(foreign.IsHybrid);
        Assert.Equal(24, foreign.PrefixLength);
        Assert.Equal(ns.Veth0, foreign.InterfaceIndex);
        Assert.Contains(all, a => a.Address.Equals(IPAddress.Parse("198.18.20.50")) && a.IsHybrid);
        Assert.Contains(all, a => a.Address.Equals(IPAddress.Loopback) && !a.IsHybrid);
        Assert.DoesNotContain(await table.DumpAsync(ns.Veth1, CancellationToken.None), a => a.InterfaceIndex != ns.Veth1);
    }

    [Fact]
    public async Task Adding_an_address_somebody_else_put_on_the_interface_leaves_it_untouched_and_says_so()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = AddressTable.Open(ns.Name);
        // Put there by an administrator, forever, without Hybrid's mark: IPv4 and IPv6.
        await ns.IpInAsync("addr", "add", "198.18.20.7/32", "dev", "veth0");
        await ns.IpInAsync("-6", "addr", "add", "2001:db8::7/128", "dev", "veth0", "nodad");
        foreach (var (text, prefix) in new[] { ("198.18.20.7", 32), ("2001:db8::7", 128) })
        {
            var ip = IPAddress.Parse(text);
            var before = Assert.Single(await table.DumpAsync(ns.Veth0, CancellationToken.None), a => a.Address.Equals(ip));
            Assert.Equal(AddressAddOutcome.NotOurs, await table.AddAsync(ns.Veth0, ip, prefix, OneSecond, CancellationToken.None));
            var after = Assert.Single(await table.DumpAsync(ns.Veth0, CancellationToken.None), a => a.Address.Equals(ip));
            Assert.False(after.IsHybrid);
            Assert.Equal(before.Protocol, after.Protocol);
            Assert.Null(after.ValidLifetime); // still forever: a lifetime would have the kernel delete it
            Assert.Equal(before.Flags, after.Flags);
        }

        // A new address is added with the mark; adding it again (an earlier agent's) restarts its lifetime.
        var vip = IPAddress.Parse("198.18.20.8");
        Assert.Equal(AddressAddOutcome.Added, await table.AddAsync(ns.Veth0, vip, 32, OneSecond, CancellationToken.None));
        Assert.Equal(AddressAddOutcome.Refreshed, await table.AddAsync(ns.Veth0, vip, 32, TimeSpan.FromSeconds(30), CancellationToken.None));
        var ours = Assert.Single(await table.DumpAsync(ns.Veth0, CancellationToken.None), a => a.Address.Equals(vip));
        Assert.True(ours.IsHybrid);
        Assert.True(ours.ValidLifetime > TimeSpan.FromSeconds(20), $"lifetime {ours.ValidLifetime}");
    }

    [Fact]
    public async Task Adding_to_a_missing_interface_names_the_operation_and_ENODEV()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = AddressTable.Open(ns.Name);

        var error = await Assert.ThrowsAsync<NetlinkException>(() =>
            table.AddOrRefreshAsync(987_654, IPAddress.Parse("198.18.10.9"), 32, OneSecond, CancellationToken.None));
        output.WriteLine(error.Message);
        Assert.Equal(19, error.Errno);
        Assert.Equal("ENODEV", error.ErrnoName);
        Assert.Contains("RTM_NEWADDR", error.Message);
        Assert.Contains("198.18.10.9/32", error.Message);
        Assert.Contains("ENODEV", error.Message);
    }

    [Fact]
    public async Task A_batch_reports_exactly_the_requests_the_kernel_refused()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = AddressTable.Open(ns.Name);
        var batch = Enumerable.Range(1, 600)
            .Select(i => new AddressAssignment(i % 100 == 0 ? 987_654 : ns.Veth0, IPAddress.Parse($"198.18.{40 + i / 250}.{i % 250 + 1}"), 32, TimeSpan.FromSeconds(60)))
            .ToList();

        var failures = await table.AddOrRefreshManyAsync(batch, CancellationToken.None);

        Assert.Equal(batch.Where(a => a.InterfaceIndex == 987_654), failures.Select(f => f.Assignment));
        Assert.All(failures, f => Assert.Equal(19, f.Error.Errno));
        var present = (await table.DumpAsync(ns.Veth0, CancellationToken.None)).Where(a => a.IsHybrid).Select(a => a.Address).ToHashSet();
        Assert.Equal(594, present.Count);
    }

    [Fact]
    public async Task Thousand_vips_are_added_refreshed_dumped_and_removed_in_batches()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = AddressTable.Open(ns.Name);
        var vips = Enumerable.Range(0, 1000)
            .Select(i => new AddressAssignment(ns.Veth0, IPAddress.Parse($"198.18.{100 + i / 250}.{i % 250 + 1}"), 32, TimeSpan.FromSeconds(30)))
            .ToList();

        var clock = Stopwatch.StartNew();
        Assert.Empty(await table.AddOrRefreshManyAsync(vips, CancellationToken.None));
        var addTime = clock.Elapsed;
        var refreshTimes = new List<double>();
        for (var round = 0; round < 10; round++)
        {
            clock.Restart();
            Assert.Empty(await table.AddOrRefreshManyAsync(vips, CancellationToken.None));
            refreshTimes.Add(clock.Elapsed.TotalMilliseconds);
        }

        // 1,000 addresses need several dump datagrams (the kernel sends at most 32 KiB each).
        var dumped = await table.DumpAsync(ns.Veth0, CancellationToken.None);
        Assert.Equal(1000, dumped.Count(a => a.IsHybrid));
        Assert.Equal(vips.Select(v => v.Address).ToHashSet(), dumped.Where(a => a.IsHybrid).Select(a => a.Address).ToHashSet());

        clock.Restart();
        Assert.Empty(await table.RemoveManyAsync(vips, CancellationToken.None));
        var removeTime = clock.Elapsed;
        Assert.DoesNotContain(await table.DumpAsync(ns.Veth0, CancellationToken.None), a => a.IsHybrid);

        refreshTimes.Sort();
        output.WriteLine($"1,000 VIPs: add {addTime.TotalMilliseconds:0.0} ms; refresh (10 rounds) median {refreshTimes[5]:0.0} ms, max {refreshTimes[^1]:0.0} ms; remove {removeTime.TotalMilliseconds:0.0} ms");
    }

    [Fact]
    public async Task A_dump_abandoned_halfway_does_not_break_the_next_one()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        var socket = NetlinkSocket.Open(ns.Name);
        await using var table = new AddressTable(socket);
        var vips = Enumerable.Range(0, 1000)
            .Select(i => new AddressAssignment(ns.Veth0, IPAddress.Parse($"198.18.{120 + i / 250}.{i % 250 + 1}"), 32))
            .ToList();
        Assert.Empty(await table.AddOrRefreshManyAsync(vips, CancellationToken.None));

        // Cancel while the first of several dump datagrams is being parsed: the kernel's dump stays open.
        using var cancel = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => socket.DumpAsync(writer =>
            {
                writer.BeginMessage(NetlinkProtocol.RTM_GETADDR, 0);
                writer.AppendFixed(NetlinkProtocol.IfAddrMsgSize)[0] = NetlinkProtocol.AF_INET;
                writer.EndMessage();
            },
            message =>
            {
                cancel.Cancel();
                return NetlinkDecoder.DecodeAddress(message);
            },
            "RTM_GETADDR dump", cancel.Token));

        Assert.Equal(1000, (await table.DumpAsync(ns.Veth0, CancellationToken.None)).Count(a => a.IsHybrid));
        Assert.Empty(await table.RemoveManyAsync(vips.Take(10).ToList(), CancellationToken.None));
        Assert.Equal(990, (await table.DumpAsync(ns.Veth0, CancellationToken.None)).Count(a => a.IsHybrid));
    }

    [Fact]
    public async Task Expiry_delay_of_one_second_lifetimes_is_measured()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var table = AddressTable.Open(ns.Name);
        await using var events = new NetlinkEventRecorder(NetlinkMonitor.Open(ns.Name));
        var delays = new List<double>();
        for (var i = 1; i <= 8; i++)
        {
            var vip = IPAddress.Parse($"198.18.11.{i}");
            await table.AddOrRefreshAsync(ns.Veth0, vip, 32, OneSecond, CancellationToken.None);
            var acknowledged = Stopwatch.GetTimestamp();
            var (_, at) = await events.WaitForAsync<AddressRemoved>(r => r.Address.Address.Equals(vip), TimeSpan.FromSeconds(5), $"{vip} expired");
            delays.Add(Stopwatch.GetElapsedTime(acknowledged, at).TotalSeconds);
        }
        delays.Sort();
        output.WriteLine($"1 s lifetime, gone after (s): {string.Join(' ', delays.Select(d => d.ToString("0.000")))}");
        Assert.All(delays, d => Assert.True(d >= 0.9, $"expired early: {d:0.000} s"));
    }
}
