using System.Net;
using System.Net.NetworkInformation;
using Hybrid.Integration.Net.Dhcp;
using Hybrid.Sandbox.Lab;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>
/// The agents with a real dnsmasq on the LAN, in the lab's router (its gateway, .1): the seed's nginx-dhcp, loadBalancerIP 0.0.0.0, gets an address from the range, one node holds
/// and answers it on its macvlan, with the macvlan's MAC, and deleting the Service releases the lease and removes the macvlan.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class DhcpAgentTests(ITestOutputHelper output)
{
    private static readonly IPAddress First = IPAddress.Parse("198.18.0.200");
    private static readonly IPAddress Last = IPAddress.Parse("198.18.0.219");
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private static readonly Dictionary<string, string> Election = new() { ["svc_election"] = "true" };

    private static bool InRange(string ip)
    {
        var octets = IPAddress.Parse(ip).GetAddressBytes();
        return octets[0] == 198 && octets[1] == 18 && octets[2] == 0 && octets[3] is >= 200 and <= 219;
    }

    /// <summary>Waits for nginx-dhcp's status to carry an address and a vipHost other than <paramref name="notHolder"/>.</summary>
    private static async Task<(string Address, string Holder)> LeasedAsync(AgentLab lab, string notHolder = "")
    {
        var found = await Eventually.WaitAsync(async () =>
        {
            var service = await lab.ServiceAsync("nginx-dhcp");
            var ip = service.Status?.LoadBalancer?.Ingress?.FirstOrDefault()?.Ip;
            var host = service.Metadata.Annotations?.TryGetValue("kube-vip.io/vipHost", out var h) == true ? h : null;
            return ip is not null && host is not null && host != notHolder ? Tuple.Create(ip, host) : null;
        }, Patience, "nginx-dhcp to report a leased address with a vipHost" + (notHolder == "" ? "" : $" other than {notHolder}"));
        return (found.Item1, found.Item2);
    }

    /// <summary>
    /// Waits until <paramref name="address"/> is on <paramref name="macvlan"/> of <paramref name="holder"/> and on no
    /// other interface of any node but <paramref name="except"/> (a killed node keeps its addresses, fenced), then
    /// asks for it by ARP from a LAN host: exactly one reply, from <paramref name="mac"/> (the parent's is dropped).
    /// </summary>
    private static async Task AssertOnTheMacvlanAsync(AgentLab lab, string address, string holder, string macvlan, string mac, string except = "")
    {
        var ip = IPAddress.Parse(address);
        await Eventually.WaitAsync(async Task<bool> () =>
        {
            foreach (var node in lab.Lab.Nodes.Where(n => n.Name != except))
            {
                var carriers = (await lab.Lab.CarriedAsync(node, CancellationToken.None)).Where(kv => kv.Value.Contains(ip)).Select(kv => kv.Key);
                if (!carriers.SequenceEqual(node.Name == holder ? [macvlan] : Array.Empty<string>())) return false;
            }
            return true;
        }, Patience, $"{address} on {macvlan} of {holder} and nowhere else");
        var answers = await ArpProbe.ResolveAsync(lab.ClientNamespace, lab.Lab.ClientHost.Interface, ip, TimeSpan.FromMilliseconds(300), CancellationToken.None);
        lab.Report($"ARP for {address}: {string.Join(", ", answers.Select(a => a.Mac))}");
        var answer = Assert.Single(answers);
        Assert.Equal(PhysicalAddress.Parse(mac), answer.Mac);
    }

    private static async Task ApplyNginxDhcpAsync(AgentLab lab)
    {
        await lab.ApplyAsync(Manifests.Deployment("nginx-dhcp", "nginx", replicas: 3));
        await lab.ApplyAsync(Manifests.Service("nginx-dhcp", "0.0.0.0", app: "nginx",
            annotations: new Dictionary<string, string> { ["kube-vip.io/loadbalancerHostname"] = "mydhcp-test" }));
    }

    [Fact]
    public async Task The_lease_is_renewed_and_when_its_holder_dies_the_next_holder_keeps_the_same_address_under_one_lease()
    {
        Requires.Tool("dnsmasq", "dnsmasq-base");
        await using var lab = await AgentLab.StartAsync(output, Election, dhcp: DnsmasqServer.Fast(First, Last));
        await using var dnsmasq = DnsmasqServer.Of(lab.Lab, output);
        await ApplyNginxDhcpAsync(lab);
        var (address, holder) = await LeasedAsync(lab);
        var mac = (await lab.ServiceAsync("nginx-dhcp")).Metadata.Annotations["kube-vip.io/hwaddr"];
        var macvlan = "vip-" + (await lab.ServiceAsync("nginx-dhcp")).Metadata.Uid[..8];
        await AssertOnTheMacvlanAsync(lab, address, holder, macvlan, mac);

        // T1 is 3 s (DnsmasqConfig): two renewals (unicast, answered to the macvlan) within a few T1.
        int Acks() => dnsmasq.LogOf(mac).Count(l => l.Contains("DHCPACK", StringComparison.Ordinal));
        var acks = Acks();
        await Eventually.WaitAsync(() => Acks() >= acks + 2, Patience, $"two renewals of {address} (DHCPACK to {mac})");
        Assert.Equal(address, (await LeasedAsync(lab)).Address);

        await lab.Agents.KillAsync(holder, restart: false);
        var (after, next) = await LeasedAsync(lab, notHolder: holder);
        lab.Report($"{address} moved from {holder} to {next}");
        Assert.Equal(address, after);
        await lab.WaitForHoldersAsync(address, [next]);
        await AssertOnTheMacvlanAsync(lab, address, next, macvlan, mac, except: holder);
        var lease = Assert.Single(dnsmasq.Leases());
        Assert.Equal(address, lease.Address.ToString());
        Assert.Equal(mac, lease.Mac, ignoreCase: true);
        Assert.Equal(mac, (await lab.ServiceAsync("nginx-dhcp")).Metadata.Annotations["kube-vip.io/hwaddr"]);
    }

    [Fact]
    public async Task A_new_hostname_releases_the_lease_and_the_next_one_comes_at_once_with_that_hostname()
    {
        Requires.Tool("dnsmasq", "dnsmasq-base");
        await using var lab = await AgentLab.StartAsync(output, Election, dhcp: DnsmasqServer.Fast(First, Last));
        await using var dnsmasq = DnsmasqServer.Of(lab.Lab, output);
        await lab.ApplyAsync(Manifests.Deployment("nginx-dhcp", "nginx", replicas: 3));
        await lab.ApplyAsync(Manifests.Service("nginx-dhcp", "0.0.0.0", app: "nginx"));
        var (address, _) = await LeasedAsync(lab);
        var mac = (await lab.ServiceAsync("nginx-dhcp")).Metadata.Annotations["kube-vip.io/hwaddr"];

        // Another identity: the old lease is released and the new client asks anew at once (confirming the released
        // address would wait for a server that no longer knows it, 10 s and more, with a DhcpNoLease Warning).
        (await lab.Kubectl.RunAsync("annotate", "service", "nginx-dhcp", "kube-vip.io/loadbalancerHostname=mydhcp-test")).EnsureSuccess();
        var lease = await Eventually.WaitAsync(
            () => Task.FromResult(dnsmasq.Leases().SingleOrDefault(l => l.Hostname == "mydhcp-test")), TimeSpan.FromSeconds(5),
            "a lease for mydhcp-test");
        Assert.Equal(mac, lease.Mac, ignoreCase: true);
        Assert.Contains(dnsmasq.LogOf(mac), l => l.Contains("DHCPRELEASE", StringComparison.Ordinal) && l.Contains(address, StringComparison.Ordinal));
        await Eventually.WaitAsync(async Task<bool> () => (await LeasedAsync(lab)).Address == lease.Address.ToString(), Patience,
            $"nginx-dhcp to report {lease.Address}");
        Assert.Single(dnsmasq.Leases());
        Assert.DoesNotContain(await lab.EventsAsync("nginx-dhcp"), e => e.Reason == "DhcpNoLease");
    }

    [Fact]
    public async Task A_Service_the_server_has_no_address_for_gets_a_DhcpNoLease_Warning_and_no_address()
    {
        Requires.Tool("dnsmasq", "dnsmasq-base");
        // A range of one address, taken by the first Service.
        await using var lab = await AgentLab.StartAsync(output, Election, dhcp: DnsmasqServer.Fast(First, First));
        await using var dnsmasq = DnsmasqServer.Of(lab.Lab, output);
        await ApplyNginxDhcpAsync(lab);
        var (address, _) = await LeasedAsync(lab);
        Assert.Equal(First.ToString(), address);

        await lab.ApplyAsync(Manifests.Service("nginx-dhcp-2", "0.0.0.0", app: "nginx"));
        var warning = await lab.WaitForEventAsync("nginx-dhcp-2", "DhcpNoLease", TimeSpan.FromSeconds(30));
        lab.Report($"nginx-dhcp-2: {warning.Note}");
        var second = await lab.ServiceAsync("nginx-dhcp-2");
        Assert.Empty(second.Status?.LoadBalancer?.Ingress ?? []);
        Assert.False(second.Metadata.Annotations?.ContainsKey("kube-vip.io/requestedIP") ?? false);
        Assert.Contains(dnsmasq.Log(), l => l.Contains("no address available", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Twenty_DHCP_Services_get_twenty_distinct_addresses_each_held_by_one_node()
    {
        Requires.Tool("dnsmasq", "dnsmasq-base");
        await using var lab = await AgentLab.StartAsync(output, Election, dhcp: DnsmasqServer.Fast(First, Last));
        await using var dnsmasq = DnsmasqServer.Of(lab.Lab, output);
        await lab.ApplyAsync(Manifests.Deployment("nginx", "nginx", replicas: 3));
        var names = Enumerable.Range(0, 20).Select(i => $"dhcp-{i:D2}").ToArray();
        await lab.ApplyAsync(string.Join("---\n", names.Select(n => Manifests.Service(n, "0.0.0.0", app: "nginx"))));
        var addresses = await Eventually.WaitAsync(async () =>
        {
            var all = new Dictionary<string, string>();
            foreach (var name in names)
            {
                var ip = (await lab.ServiceAsync(name)).Status?.LoadBalancer?.Ingress?.FirstOrDefault()?.Ip;
                if (ip is null) return null;
                all[name] = ip;
            }
            return all;
        }, TimeSpan.FromSeconds(90), "twenty Services with a leased address");
        Assert.Equal(20, addresses.Values.Distinct().Count());
        Assert.All(addresses.Values, ip => Assert.True(InRange(ip), $"{ip} is not from the range"));
        Assert.Equal(20, dnsmasq.Leases().Count);
        await lab.WaitForSingleHoldersAsync(addresses.Values.ToArray());
    }

    [Fact]
    public async Task The_seeds_nginx_dhcp_gets_an_address_from_the_range_one_node_answers_it_and_deleting_the_Service_releases_the_lease_and_the_macvlan()
    {
        Requires.Tool("dnsmasq", "dnsmasq-base");
        await using var lab = await AgentLab.StartAsync(output, Election, dhcp: DnsmasqServer.Fast(First, Last));
        await using var dnsmasq = DnsmasqServer.Of(lab.Lab, output);

        await lab.ApplyAsync(Manifests.Deployment("nginx-dhcp", "nginx", replicas: 2));
        await lab.ApplyAsync(Manifests.Service("nginx-dhcp", "0.0.0.0", app: "nginx",
            annotations: new Dictionary<string, string> { ["kube-vip.io/loadbalancerHostname"] = "mydhcp-test" }));
        var (address, holder) = await Eventually.WaitAsync(async () =>
        {
            var service = await lab.ServiceAsync("nginx-dhcp");
            var ip = service.Status?.LoadBalancer?.Ingress?.FirstOrDefault()?.Ip;
            var host = service.Metadata.Annotations?.TryGetValue("kube-vip.io/vipHost", out var h) == true ? h : null;
            return ip is not null && host is not null ? Tuple.Create(ip, host) : null;
        }, Patience, "nginx-dhcp to report a leased address with a vipHost");
        lab.Report($"nginx-dhcp leased {address} on {holder}");
        Assert.True(InRange(address), $"{address} is not from dnsmasq's range {First}-{Last}");

        var service = await lab.ServiceAsync("nginx-dhcp");
        Assert.Equal("0.0.0.0", service.Spec.LoadBalancerIP);
        Assert.Equal(address, service.Metadata.Annotations["kube-vip.io/requestedIP"]);
        var mac = service.Metadata.Annotations["kube-vip.io/hwaddr"];
        var kubectl = (await lab.Kubectl.RunAsync("get", "svc", "nginx-dhcp", "--no-headers")).EnsureSuccess().Stdout;
        Assert.Contains(address, kubectl);

        var lease = Assert.Single(dnsmasq.Leases());
        Assert.Equal(address, lease.Address.ToString());
        Assert.Equal("mydhcp-test", lease.Hostname);
        Assert.Equal(mac, lease.Mac, ignoreCase: true);
        Assert.Equal([holder], await lab.HoldersAsync(address));
        Assert.Single(await lab.ArpRespondersAsync(address));

        (await lab.Kubectl.RunAsync("delete", "svc", "nginx-dhcp")).EnsureSuccess();
        await Eventually.WaitAsync(() => dnsmasq.LogOf(mac).Any(l => l.Contains("DHCPRELEASE", StringComparison.Ordinal)),
            Patience, $"dnsmasq to log DHCPRELEASE from {mac}");
        var macvlan = "vip-" + service.Metadata.Uid[..8];
        await Eventually.WaitAsync(async Task<bool> () =>
        {
            var links = (await lab.Lab.Network.ExecAsync(lab.Lab.Node(holder).Namespace, ["ip", "-o", "link", "show"], CancellationToken.None)).StandardOutput;
            return !links.Contains(macvlan, StringComparison.Ordinal);
        }, Patience, $"{holder} to delete {macvlan}");
    }
}
