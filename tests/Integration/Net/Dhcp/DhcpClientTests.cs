using System.Net;
using Hybrid.Domain;
using Hybrid.Net.Dhcp;
using Hybrid.Integration.Lab;
using Hybrid.Sandbox.Lab;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Net.Dhcp;

/// <summary>
/// The DHCP client against the real dnsmasq: a lab whose "dhcp" host serves 198.18.0.100–.199, and node
/// namespaces whose Services lease on their own macvlan of eth0. Timers are short through configuration
/// (dnsmasq's T1/T2 options, a short retransmission schedule), never by waiting.
/// </summary>
public sealed class DhcpClientTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    /// <summary>RFC 2131's schedule scaled down 8×: 0.5 s doubling to 8 s, ±0.1 s.</summary>
    private static readonly DhcpTiming Fast = DhcpTimingModule.create(500, 8_000, 100, 4, 2, 60_000).ResultValue;

    private static DnsmasqConfig Range(int first = 100, int last = 199) =>
        DnsmasqServer.Fast(IPAddress.Parse($"198.18.0.{first}"), IPAddress.Parse($"198.18.0.{last}"));

    private static async Task<(NetnsLab Lab, CancellationToken Ct)> LabAsync(int nodes)
    {
        Requires.Root();
        Requires.Tool("ip", "iproute2");
        var ct = await LabTestSupport.StartAsync();
        var lab = await NetnsLab.CreateAsync(LabTopology.Create(new LabSpec(Name: LabTestSupport.UniqueName(), Nodes: nodes, Ipv6: false)), ct);
        return (lab, ct);
    }

    [Fact]
    public async Task A_Service_leases_an_address_under_its_hostname_and_client_id()
    {
        var (lab, ct) = await LabAsync(nodes: 1);
        await using var _ = lab;
        await using var server = await DnsmasqServer.StartAsync(lab, Range(), output, ct);
        var identity = DhcpTestClient.IdentityOf(Guid.NewGuid().ToString(), (Annotations.LoadBalancerHostname, "mydhcp-test"));
        await using var client = await DhcpTestClient.StartAsync(lab.Topology.Node(1), identity, Fast, null, output, ct);

        var lease = await client.ObtainedAsync(Patience);
        var address = DhcpFrameCodec.ToAddress(lease.Address);
        output.WriteLine($"leased {address} from {IpModule.format(lease.Server)}; dnsmasq: {string.Join(" | ", server.LogOf(client.Mac))}");

        var line = Assert.Single(server.Leases());
        Assert.Equal(address, line.Address);
        Assert.Equal(client.Mac, line.Mac);
        Assert.Equal("mydhcp-test", line.Hostname);
        Assert.Equal(Convert.ToHexString("mydhcp-test"u8).ToLowerInvariant(), line.ClientId.Replace(":", ""));
        Assert.Equal(DhcpFrameCodec.ToAddress(lease.Server), server.Host.Ipv4);
        Assert.Equal(Microsoft.FSharp.Core.FSharpOption<int>.Some(24), lease.PrefixLength);
    }

    [Fact]
    public async Task Renewals_at_T1_keep_the_address()
    {
        var (lab, ct) = await LabAsync(nodes: 1);
        await using var _ = lab;
        await using var server = await DnsmasqServer.StartAsync(lab, Range(), output, ct);
        await using var client = await DhcpTestClient.StartAsync(lab.Topology.Node(1), DhcpTestClient.IdentityOf(Guid.NewGuid().ToString()), Fast, null, output, ct);
        var lease = await client.ObtainedAsync(Patience);

        // T1 = 3 s (option 58): two renewals within 10 s, each unicast to dnsmasq and answered.
        for (var i = 1; i <= 2; i++)
        {
            var extended = await client.WaitForAsync<DhcpCommand.Leased>(l => l.Item2.IsExtended, Patience, $"renewal {i}");
            Assert.Equal(lease.Address, extended.Item1.Address);
            Assert.True(extended.Item1.Start > lease.Start, "a renewal restarts the lease clock");
            lease = extended.Item1;
        }
        Assert.DoesNotContain(client.History, c => c is DhcpCommand.Lost);
        var line = Assert.Single(server.Leases());
        Assert.Equal(DhcpFrameCodec.ToAddress(lease.Address), line.Address);
        // dnsmasq logs a renewal as a DHCPREQUEST naming the address (ciaddr) and its DHCPACK.
        Assert.True(server.LogOf(client.Mac).Count(l => l.Contains($"DHCPACK(eth0) {line.Address} ", StringComparison.Ordinal)) >= 3);
    }

    [Fact]
    public async Task Another_node_with_the_same_identity_gets_the_same_address_on_one_lease()
    {
        var (lab, ct) = await LabAsync(nodes: 2);
        await using var _ = lab;
        await using var server = await DnsmasqServer.StartAsync(lab, Range(), output, ct);
        var identity = DhcpTestClient.IdentityOf(Guid.NewGuid().ToString(), (Annotations.LoadBalancerHostname, "takeover"));

        Lease first;
        await using (var holder = await DhcpTestClient.StartAsync(lab.Topology.Node(1), identity, Fast, null, output, ct))
        {
            first = await holder.ObtainedAsync(Patience);
            await holder.StopAsync(StopMode.KeepLease, ct); // hand-over: the old holder gives nothing back
        }
        Assert.Single(server.Leases());
        var discovers = server.LogOf(identity.Mac.ToString()).Count(l => l.Contains("DHCPDISCOVER", StringComparison.Ordinal));

        // The successor knows the address (kube-vip.io/requestedIP) and confirms it with INIT-REBOOT.
        await using (var successor = await DhcpTestClient.StartAsync(lab.Topology.Node(2), identity, Fast, first.Address, output, ct))
        {
            var confirmed = await successor.ObtainedAsync(Patience);
            Assert.Equal(first.Address, confirmed.Address);
            await successor.StopAsync(StopMode.KeepLease, ct);
        }
        Assert.Equal(discovers, server.LogOf(identity.Mac.ToString()).Count(l => l.Contains("DHCPDISCOVER", StringComparison.Ordinal)));

        // A holder that knows nothing (status lost) discovers, and the server still recognises the client.
        await using (var third = await DhcpTestClient.StartAsync(lab.Topology.Node(1), identity, Fast, null, output, ct))
            Assert.Equal(first.Address, (await third.ObtainedAsync(Patience)).Address);

        var line = Assert.Single(server.Leases());
        Assert.Equal(DhcpFrameCodec.ToAddress(first.Address), line.Address);
        Assert.Equal(identity.Mac.ToString(), line.Mac);
    }

    [Fact]
    public async Task Stopping_with_release_gives_the_address_back()
    {
        var (lab, ct) = await LabAsync(nodes: 1);
        await using var _ = lab;
        await using var server = await DnsmasqServer.StartAsync(lab, Range(), output, ct);
        await using var client = await DhcpTestClient.StartAsync(lab.Topology.Node(1), DhcpTestClient.IdentityOf(Guid.NewGuid().ToString()), Fast, null, output, ct);
        var lease = await client.ObtainedAsync(Patience);
        Assert.Single(server.Leases());

        await client.StopAsync(StopMode.ReleaseLease, ct);

        var address = DhcpFrameCodec.ToAddress(lease.Address);
        await Eventually.WaitAsync(() => server.LogOf(client.Mac).Any(l => l.Contains($"DHCPRELEASE(eth0) {address} ", StringComparison.Ordinal)),
            Patience, "dnsmasq logs the DHCPRELEASE");
        await Eventually.WaitAsync(() => server.Leases().Count == 0, Patience, "the lease leaves dnsmasq's lease file");
        Assert.True(client.Runner.State.Phase.IsStopped);
    }

    [Fact]
    public async Task A_server_that_forgot_the_lease_NAKs_the_renewal_and_the_client_starts_over()
    {
        var (lab, ct) = await LabAsync(nodes: 1);
        await using var _ = lab;
        var config = Range();
        await using var server = await DnsmasqServer.StartAsync(lab, config, output, ct);
        await using var client = await DhcpTestClient.StartAsync(lab.Topology.Node(1), DhcpTestClient.IdentityOf(Guid.NewGuid().ToString()), Fast, null, output, ct);
        var lease = await client.ObtainedAsync(Patience);

        await server.RestartAsync(config, forgetLeases: true, ct);

        // The next renewal (T1 = 3 s) is unicast for a lease dnsmasq no longer has: "lease not found", NAK.
        var lost = await client.WaitForAsync<DhcpCommand.Lost>(_ => true, Patience, "the address lost");
        Assert.Equal(lease.Address, lost.address);
        var refused = Assert.IsType<LostReason.Refused>(lost.reason);
        Assert.Contains("lease not found", refused.message!.Value, StringComparison.Ordinal);
        var again = await client.ObtainedAsync(Patience);
        Assert.Contains(server.LogOf(client.Mac), l => l.Contains("DHCPNAK", StringComparison.Ordinal));
        Assert.Equal(DhcpFrameCodec.ToAddress(again.Address), Assert.Single(server.Leases()).Address);
    }

    [Fact]
    public async Task An_authoritative_server_NAKs_a_known_address_outside_its_range_and_discovery_follows()
    {
        var (lab, ct) = await LabAsync(nodes: 1);
        await using var _ = lab;
        await using var server = await DnsmasqServer.StartAsync(lab, Range() with { Authoritative = true }, output, ct);
        var stale = Ip.NewV4(0xC6_12_00_FA); // 198.18.0.250, outside .100-.199
        await using var client = await DhcpTestClient.StartAsync(lab.Topology.Node(1), DhcpTestClient.IdentityOf(Guid.NewGuid().ToString()), Fast, stale, output, ct);

        var lost = await client.WaitForAsync<DhcpCommand.Lost>(_ => true, Patience, "the known address refused");
        Assert.Equal(stale, lost.address);
        Assert.IsType<LostReason.Refused>(lost.reason);
        var lease = await client.ObtainedAsync(Patience);
        var address = DhcpFrameCodec.ToAddress(lease.Address).GetAddressBytes()[3];
        Assert.InRange(address, 100, 199);
        Assert.Contains(server.LogOf(client.Mac), l => l.Contains("DHCPNAK", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_silent_server_leaves_INIT_REBOOT_unanswered_and_discovery_follows()
    {
        var (lab, ct) = await LabAsync(nodes: 1);
        await using var _ = lab;
        await using var server = await DnsmasqServer.StartAsync(lab, Range(), output, ct); // not authoritative
        var stale = Ip.NewV4(0xC6_12_00_FA);
        await using var client = await DhcpTestClient.StartAsync(lab.Topology.Node(1), DhcpTestClient.IdentityOf(Guid.NewGuid().ToString()), Fast, stale, output, ct);

        var started = System.Diagnostics.Stopwatch.StartNew();
        var lease = await client.ObtainedAsync(Patience);
        Assert.NotEqual(stale, lease.Address);
        Assert.DoesNotContain(client.History, c => c is DhcpCommand.Lost); // nothing was refused: the server never answered
        // dnsmasq drops an INIT-REBOOT for a lease it does not have without a word (rfc2131.c), so the client
        // waits out its RebootAttempts (0.5 + 1 s, ±0.1 s) and then discovers, the old address as a hint.
        Assert.True(started.Elapsed >= TimeSpan.FromSeconds(1.2), $"discovered after {started.Elapsed.TotalSeconds:0.00} s");
        var log = server.LogOf(client.Mac);
        Assert.DoesNotContain(log, l => l.Contains("DHCPREQUEST(eth0) 198.18.0.250 ", StringComparison.Ordinal));
        Assert.Contains(log, l => l.Contains("DHCPDISCOVER(eth0) 198.18.0.250 ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task An_exhausted_range_leaves_a_client_retrying_with_backoff_until_an_address_frees_up()
    {
        var (lab, ct) = await LabAsync(nodes: 1);
        await using var _ = lab;
        await using var server = await DnsmasqServer.StartAsync(lab, Range(100, 101), output, ct);
        var node = lab.Topology.Node(1);
        await using var first = await DhcpTestClient.StartAsync(node, DhcpTestClient.IdentityOf(Guid.NewGuid().ToString()), Fast, null, output, ct);
        await using var second = await DhcpTestClient.StartAsync(node, DhcpTestClient.IdentityOf(Guid.NewGuid().ToString()), Fast, null, output, ct);
        var freed = await first.ObtainedAsync(Patience);
        await second.ObtainedAsync(Patience);

        var started = System.Diagnostics.Stopwatch.StartNew();
        await using var third = await DhcpTestClient.StartAsync(node, DhcpTestClient.IdentityOf(Guid.NewGuid().ToString()), Fast, null, output, ct);
        int Refusals() => server.LogOf(third.Mac).Count(l => l.Contains("no address available", StringComparison.Ordinal));
        await Eventually.WaitAsync(() => Refusals() >= 4, Patience, "four DISCOVERs refused");
        // Four DISCOVERs at 0, 0.5, 1.5 and 3.5 s (±0.1 s each): a client without backoff would be there in 1.5 s.
        Assert.True(started.Elapsed >= TimeSpan.FromSeconds(3.1), $"four DISCOVERs after {started.Elapsed.TotalSeconds:0.00} s: no backoff");
        Assert.True(third.Runner.State.Phase.IsSelecting);
        Assert.Empty(third.History);

        await first.StopAsync(StopMode.ReleaseLease, ct);
        // The next DISCOVER (at most 8.1 s away: the schedule's cap) gets the released address.
        var lease = await third.ObtainedAsync(TimeSpan.FromSeconds(12));
        Assert.Equal(freed.Address, lease.Address);
    }

    [Fact]
    public async Task Twenty_Services_get_twenty_distinct_addresses_with_their_own_client_ids()
    {
        var (lab, ct) = await LabAsync(nodes: 1);
        await using var _ = lab;
        await using var server = await DnsmasqServer.StartAsync(lab, Range(), output, ct);
        var node = lab.Topology.Node(1);
        var clients = new List<DhcpTestClient>();
        try
        {
            for (var i = 0; i < 20; i++)
                clients.Add(await DhcpTestClient.StartAsync(node, DhcpTestClient.IdentityOf(Guid.NewGuid().ToString()), Fast, null, output, ct));
            var leases = await Task.WhenAll(clients.Select(c => c.ObtainedAsync(TimeSpan.FromSeconds(30))));

            Assert.Equal(20, leases.Select(l => l.Address).Distinct().Count());
            var lines = server.Leases();
            Assert.Equal(20, lines.Count);
            foreach (var (client, lease) in clients.Zip(leases))
            {
                var line = Assert.Single(lines, l => l.Mac == client.Mac);
                Assert.Equal(DhcpFrameCodec.ToAddress(lease.Address), line.Address);
                Assert.Equal("01:" + client.Mac, line.ClientId); // type 1 + MAC without a hostname
                Assert.Equal("*", line.Hostname);
            }
        }
        finally
        {
            foreach (var client in clients) await client.DisposeAsync();
        }
    }
}
