using System.Diagnostics;
using System.Net;
using Hybrid.Integration.Net.Dhcp;
using Hybrid.Sandbox.Lab;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>
/// The renewal test waits more than two of dnsmasq's shortest leases (4 min) on a one-node lab that is mostly
/// idle: its own collection, so that it runs beside the lab collection instead of after it.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class DhcpRenewalCollection
{
    public const string Name = "dhcp-renewal";
}

/// <summary>A DHCP Service's lease outlives two lease times by renewals alone, with dnsmasq's own T1 and T2.</summary>
[Collection(DhcpRenewalCollection.Name)]
public sealed class DhcpRenewalTests(ITestOutputHelper output)
{
    private static readonly IPAddress First = IPAddress.Parse("198.18.0.200");
    private static readonly IPAddress Last = IPAddress.Parse("198.18.0.219");
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(DnsmasqConfig.ShortestLeaseSeconds);

    private static async Task<string?> AddressAsync(AgentLab lab) =>
        (await lab.ServiceAsync("renewed")).Status?.LoadBalancer?.Ingress?.FirstOrDefault()?.Ip;

    [Fact]
    public async Task A_lease_is_renewed_across_more_than_two_lease_times_keeping_its_address_and_one_lease_with_the_same_MAC()
    {
        Requires.Tool("dnsmasq", "dnsmasq-base");
        // dnsmasq's default T1 and T2 (half and 7/8 of the lease, less a little random fuzz).
        await using var lab = await AgentLab.StartAsync(output, new Dictionary<string, string> { ["svc_election"] = "true" }, nodes: 1,
            dhcp: new DnsmasqConfig(First, Last));
        await using var dnsmasq = DnsmasqServer.Of(lab.Lab, output);
        await lab.ApplyAsync(Manifests.Deployment("renewed", "renewed", replicas: 1));
        await lab.ApplyAsync(Manifests.Service("renewed", "0.0.0.0", app: "renewed"));
        var address = await Eventually.WaitAsync(() => AddressAsync(lab), TimeSpan.FromSeconds(30), "the Service to report a leased address");
        var bound = Stopwatch.StartNew();
        var mac = (await lab.ServiceAsync("renewed")).Metadata.Annotations["kube-vip.io/hwaddr"];
        var first = Assert.Single(dnsmasq.Leases());
        lab.Report($"leased {address} to {mac}, expiring at {first.Expires}");

        // Throughout two lease times and a little more: the same address in status, one lease, the same MAC.
        var span = 2 * Lease + TimeSpan.FromSeconds(5);
        while (bound.Elapsed < span)
        {
            Assert.Equal(address, await AddressAsync(lab));
            var lease = Assert.Single(dnsmasq.Leases());
            Assert.Equal(address, lease.Address.ToString());
            Assert.Equal(mac, lease.Mac, ignoreCase: true);
            await Task.Delay(TimeSpan.FromSeconds(2));
        }

        // The lease lives on by renewals: another one after two lease times, and expires two lease times later than at first.
        int Acks() => dnsmasq.LogOf(mac).Count(l => l.Contains("DHCPACK", StringComparison.Ordinal));
        var acks = Acks();
        await Eventually.WaitAsync(() => Acks() > acks, Lease / 2 + TimeSpan.FromSeconds(15), $"a renewal of {address} after two lease times");
        var last = Assert.Single(dnsmasq.Leases());
        Assert.Equal(address, last.Address.ToString());
        Assert.Equal(mac, last.Mac, ignoreCase: true);
        Assert.True(last.Expires >= first.Expires + 2 * (long)Lease.TotalSeconds - 2,
            $"the lease expires at {last.Expires}, not two lease times after {first.Expires}");
        var requests = dnsmasq.LogOf(mac).Count(l => l.Contains("DHCPREQUEST", StringComparison.Ordinal));
        Assert.True(requests >= 5 && Acks() >= 5, $"{requests} DHCPREQUEST and {Acks()} DHCPACK in {bound.Elapsed.TotalSeconds:F0} s: fewer than a binding and four renewals");
        Assert.Equal(address, await AddressAsync(lab));
        lab.Report($"{address} renewed: {requests} DHCPREQUEST, {Acks()} DHCPACK in {bound.Elapsed.TotalSeconds:F0} s");
    }
}
