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
        new(IPAddress.Parse($"198.18.0.{first}"), IPAddress.Parse($"198.18.0.{last}"));

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
}
