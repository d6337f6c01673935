using System.Net;
using Hybrid.Sandbox.Lab;
using Xunit;

namespace Hybrid.Integration.Lab;

/// <summary>The lab's layout is pure data: validation reports every problem, a valid spec gives fixed names.</summary>
public sealed class LabTopologyTests
{
    [Fact]
    public void Invalid_spec_reports_every_problem_at_once()
    {
        var errors = LabTopology.Validate(new LabSpec(Name: "Bad_Name_Far_Too_Long", Nodes: 0, Subnet: "10.0.0.0/8"));

        Assert.Contains(errors, e => e.StartsWith("name", StringComparison.Ordinal) && e.Contains("a-z, 0-9"));
        Assert.Contains(errors, e => e.StartsWith("name", StringComparison.Ordinal) && e.Contains("at most 10 characters"));
        Assert.Contains(errors, e => e.StartsWith("nodes", StringComparison.Ordinal) && e.Contains("1..50"));
        Assert.Contains(errors, e => e.StartsWith("subnet", StringComparison.Ordinal) && e.Contains("198.18.0.0/15"));
        Assert.Equal(4, errors.Count);
        var thrown = Assert.Throws<ArgumentException>(() => LabTopology.Create(new LabSpec(Name: "-x", Nodes: 51)));
        Assert.Contains("name '-x'", thrown.Message);
        Assert.Contains("nodes: must be 1..50, got 51", thrown.Message);
    }

    [Theory]
    [InlineData("198.18.0.5/24", "host bits are set; the network is 198.18.0.0/24")]
    [InlineData("198.18.0.0/29", "prefix length must be at most /28")]
    [InlineData("198.20.0.0/24", "inside 198.18.0.0/15")]
    [InlineData("198.18.0.0/14", "inside 198.18.0.0/15")]
    [InlineData("fd00::/64", "must be IPv4")]
    [InlineData("198.18.0.0", "expected an IPv4 network")]
    [InlineData("198.18.0.0/33", "prefix length must be 0..32")]
    public void Bad_subnets_are_explained(string subnet, string expected)
    {
        var errors = LabTopology.Validate(new LabSpec(Name: "hyt", Nodes: 3, Subnet: subnet));

        Assert.Contains(errors, e => e.Contains(expected));
    }

    [Fact]
    public void Small_subnet_holds_only_the_nodes_that_fit_below_a_vip()
    {
        Assert.Empty(LabTopology.Validate(new LabSpec(Name: "hyt", Nodes: 3, Subnet: "198.19.255.240/28")));
        var errors = LabTopology.Validate(new LabSpec(Name: "hyt", Nodes: 4, Subnet: "198.19.255.240/28"));
        Assert.Contains(errors, e => e.Contains("holds at most 3 nodes"));

        var topology = LabTopology.Create(new LabSpec(Name: "hyt", Nodes: 3, Subnet: "198.19.255.240/28"));
        Assert.Equal(IPAddress.Parse("198.19.255.253"), topology.Node(3).Ipv4);
        Assert.Equal(IPAddress.Parse("198.19.255.254"), topology.VipFirst);
        Assert.Equal(IPAddress.Parse("198.19.255.254"), topology.VipLast);
        Assert.Null(topology.DhcpFirst);
        Assert.Null(topology.DhcpLast);
    }

    [Fact]
    public void Valid_spec_gives_the_documented_names_macs_and_addresses()
    {
        var topology = LabTopology.Create(new LabSpec(Name: "hyb", Nodes: 12, Subnet: "198.18.0.0/24", TempRoot: "/tmp"));

        Assert.Equal("hyb-lan", topology.LanNamespace);
        Assert.Equal(["hyb-lan", "hyb-client", "hyb-node-1"], topology.Namespaces.Take(3));
        Assert.Equal(14, topology.Namespaces.Count);
        var node2 = topology.Host("node-2");
        Assert.Equal(new LabHost(
            Name: "node-2", Index: 2, Namespace: "hyb-node-2", Interface: "eth0", BridgePort: "node-2",
            Mac: "02:48:59:02:00:00", BridgePortMac: "02:48:59:02:00:01",
            Ipv4: IPAddress.Parse("198.18.0.12"), Ipv6: IPAddress.Parse("fd48:5942::12"),
            ApiSocketPath: "/tmp/hybrid-lab-hyb/api-node-2.sock",
            KubeconfigPath: "/tmp/hybrid-lab-hyb/kubeconfig-node-2.yaml",
            LogPath: "/tmp/hybrid-lab-hyb/node-2.log"), node2);
        Assert.Equal("198.18.0.12/24", topology.Ipv4Cidr(node2));
        Assert.Equal("fd48:5942::12/64", LabTopology.Ipv6Cidr(node2));
        Assert.Equal("02:48:59:12:00:00", topology.Node(12).Mac);
        Assert.Equal(IPAddress.Parse("198.18.0.22"), topology.Node(12).Ipv4);
        Assert.Equal("02:48:59:c1:00:00", topology.Client.Mac);
        Assert.Equal(IPAddress.Parse("198.18.0.2"), topology.Client.Ipv4);
        Assert.Equal(IPAddress.Parse("198.18.0.1"), topology.Reserved);
        Assert.Equal(IPAddress.Parse("198.18.0.200"), topology.VipFirst);
        Assert.Equal(IPAddress.Parse("198.18.0.254"), topology.VipLast);
        Assert.Equal(IPAddress.Parse("fd48:5942::200"), topology.Ipv6VipFirst);
        Assert.Equal(IPAddress.Parse("198.18.0.150"), topology.DhcpFirst);
        Assert.Equal(IPAddress.Parse("198.18.0.199"), topology.DhcpLast);
        Assert.Same(topology.Node(2), topology.Host("hyb-node-2"));
        Assert.Throws<ArgumentException>(() => topology.Host("node-13"));

        var dhcp = topology.ExtraHost("dhcp", 1);
        Assert.Equal(("hyb-dhcp", "02:48:59:e1:00:00", IPAddress.Parse("198.18.0.3")), (dhcp.Namespace, dhcp.Mac, dhcp.Ipv4));
        Assert.Throws<ArgumentException>(() => topology.ExtraHost("node", 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => topology.ExtraHost("upnp", 9));

        // Every address is distinct and outside the VIP range.
        var addresses = topology.Hosts.Select(h => h.Ipv4).Append(topology.Reserved).ToArray();
        Assert.Equal(addresses.Length, addresses.Distinct().Count());
        Assert.Equal(topology.Hosts.Count, topology.Hosts.Select(h => h.Mac).Distinct().Count());
    }

    [Fact]
    public void Larger_subnets_keep_vips_at_the_top_and_ipv6_can_be_off()
    {
        var topology = LabTopology.Create(new LabSpec(Name: "big", Nodes: 50, Subnet: "198.18.0.0/23", Ipv6: false));

        Assert.Equal(IPAddress.Parse("198.18.0.60"), topology.Node(50).Ipv4);
        Assert.Equal("02:48:59:50:00:00", topology.Node(50).Mac);
        Assert.Equal(IPAddress.Parse("198.18.1.200"), topology.VipFirst);
        Assert.Equal(IPAddress.Parse("198.18.1.254"), topology.VipLast);
        Assert.Equal(IPAddress.Parse("198.18.1.150"), topology.DhcpFirst);
        Assert.Null(topology.Node(1).Ipv6);
        Assert.Null(topology.Ipv6Subnet);
    }

    [Theory]
    [InlineData("a", "a-lan", true)]
    [InlineData("a", "a-client", true)]
    [InlineData("a", "a-node-17", true)]
    [InlineData("a", "a-dhcp", true)]
    [InlineData("a", "a-b-lan", false)]
    [InlineData("a", "a-b-node-1", false)]
    [InlineData("a", "ab-lan", false)]
    [InlineData("a", "a-node-", false)]
    [InlineData("a-b", "a-b-node-1", true)]
    [InlineData("a", "a-p12", true)]
    [InlineData("a", "a-b-p12", false)]
    public void Sweep_matches_only_the_namespaces_of_that_lab(string lab, string namespaceName, bool expected) =>
        Assert.Equal(expected, LabTopology.IsLabNamespace(lab, namespaceName));

    [Fact]
    public void Pods_get_a_slash_24_per_node_beside_the_default_lan_and_their_namespaces_carry_the_lab_prefix()
    {
        var topology = LabTopology.Create(new LabSpec(Name: "hyb", Nodes: 3));

        Assert.Equal(IPNetwork.Parse("198.18.64.0/18"), topology.PodNetwork);
        Assert.Equal(IPNetwork.Parse("198.18.65.0/24"), topology.PodCidr(topology.Node(1)));
        Assert.Equal(IPNetwork.Parse("198.18.67.0/24"), topology.PodCidr(topology.Node(3)));
        Assert.Equal(IPAddress.Parse("198.18.66.1"), topology.PodGateway(topology.Node(2)));
        Assert.Equal("hyb-p7", topology.PodNamespace(7));
        Assert.True(LabTopology.IsLabNamespace("hyb", topology.PodNamespace(7)));
        Assert.Throws<ArgumentException>(() => topology.PodCidr(topology.Client));
    }

    [Theory]
    [InlineData("198.18.0.0/24", 50)]
    [InlineData("198.18.64.0/24", 50)]
    [InlineData("198.18.0.0/17", 50)]
    [InlineData("198.18.0.0/16", 50)]
    [InlineData("198.19.128.0/17", 50)]
    [InlineData("198.19.255.240/28", 3)]
    public void Pod_addresses_never_overlap_the_lan_or_the_internet_range(string subnet, int nodes)
    {
        var topology = LabTopology.Create(new LabSpec(Name: "hyb", Nodes: nodes, Subnet: subnet, Ipv6: false));

        var cidrs = topology.Nodes.Select(topology.PodCidr).ToList();
        Assert.Equal(cidrs.Count, cidrs.Distinct().Count());
        Assert.All(cidrs, c =>
        {
            Assert.True(topology.PodNetwork.Contains(c.BaseAddress), $"{c} outside {topology.PodNetwork}");
            Assert.False(topology.Subnet.Contains(c.BaseAddress) || c.Contains(topology.Subnet.BaseAddress), $"{c} overlaps the LAN {topology.Subnet}");
            Assert.False(LabTopology.InternetRange.Contains(c.BaseAddress) || c.Contains(LabTopology.InternetRange.BaseAddress), $"{c} overlaps {LabTopology.InternetRange}");
            Assert.True(IPNetwork.Parse("198.18.0.0/15").Contains(c.BaseAddress));
        });
        Assert.DoesNotContain(topology.Hosts, h => topology.PodNetwork.Contains(h.Ipv4));
    }

    [Theory]
    [InlineData("198.19.0.0/24", "kept for the lab's internet namespace")]
    [InlineData("198.19.0.128/25", "kept for the lab's internet namespace")]
    [InlineData("198.18.0.0/15", "kept for the lab's internet namespace")]
    public void A_lan_over_the_internet_range_is_refused(string subnet, string expected) =>
        Assert.Contains(LabTopology.Validate(new LabSpec(Name: "hyt", Subnet: subnet)), e => e.Contains(expected));

    [Fact]
    public void Socket_paths_that_do_not_fit_sockaddr_un_are_rejected()
    {
        var errors = LabTopology.Validate(new LabSpec(Name: "hyt", TempRoot: "/tmp/" + new string('x', 100)));

        Assert.Contains(errors, e => e.Contains("exceed 107 bytes"));
    }
}
