using System.Net;
using Hybrid.Sandbox.DataPlane;
using Xunit;

namespace Hybrid.Integration.DataPlane;

/// <summary>Which endpoints a node's kube-proxy sends a Service port's traffic to (kube-proxy's rules, no root needed).</summary>
public sealed class EndpointSelectionTests
{
    private static ProxiedPort Port(TrafficPolicy external = TrafficPolicy.Cluster, TrafficPolicy @internal = TrafficPolicy.Cluster, bool loadBalancer = true) =>
        new("default", "web", "", "tcp", 80, IPAddress.Parse("10.96.0.10"), 0,
            loadBalancer ? [IPAddress.Parse("198.18.0.220")] : [], [], external, @internal);

    private static ProxiedEndpoint Endpoint(int host, string node, bool ready = true, bool serving = true, bool terminating = false) =>
        new(IPAddress.Parse($"198.18.65.{host}"), 80, node, ready, serving, terminating);

    private static IEnumerable<int> Hosts(IEnumerable<ProxiedEndpoint> endpoints) => endpoints.Select(e => (int)e.Address.GetAddressBytes()[3]).Order();

    [Fact]
    public void Cluster_traffic_goes_to_every_ready_endpoint_wherever_it_runs()
    {
        var selection = EndpointSelection.For(new ProxiedService(Port(),
            [Endpoint(2, "node-1"), Endpoint(3, "node-2"), Endpoint(4, "node-3", ready: false, serving: false)]), "node-1");

        Assert.Equal([2, 3], Hosts(selection.Cluster));
        Assert.Empty(selection.Local);
        Assert.True(selection.AnyUsable);
    }

    [Fact]
    public void Endpoints_still_serving_while_terminating_are_used_only_when_none_is_ready()
    {
        var terminating = Endpoint(3, "node-2", ready: false, serving: true, terminating: true);
        var withReady = EndpointSelection.For(new ProxiedService(Port(), [Endpoint(2, "node-1"), terminating]), "node-1");
        var withoutReady = EndpointSelection.For(new ProxiedService(Port(), [terminating, Endpoint(4, "node-3", ready: false, serving: false, terminating: true)]), "node-1");

        Assert.Equal([2], Hosts(withReady.Cluster));
        Assert.Equal([3], Hosts(withoutReady.Cluster));
        Assert.True(withoutReady.AnyUsable);
    }

    [Fact]
    public void Local_external_traffic_goes_to_this_nodes_endpoints_and_cluster_endpoints_stay_for_pods_and_the_node()
    {
        var port = Port(external: TrafficPolicy.Local);
        var endpoints = new[] { Endpoint(2, "node-1"), Endpoint(3, "node-2"), Endpoint(4, "node-1", ready: false, serving: false) };

        var onNode1 = EndpointSelection.For(new ProxiedService(port, endpoints), "node-1");
        var onNode3 = EndpointSelection.For(new ProxiedService(port, endpoints), "node-3");

        Assert.Equal([2], Hosts(onNode1.Local));
        Assert.Equal([2, 3], Hosts(onNode1.Cluster));
        Assert.Empty(onNode3.Local);
        Assert.True(onNode3.AnyUsable);
        Assert.Equal([2, 3], Hosts(onNode3.Reachable));
    }

    [Fact]
    public void Internal_traffic_policy_Local_without_external_access_uses_no_cluster_endpoints()
    {
        var selection = EndpointSelection.For(new ProxiedService(Port(@internal: TrafficPolicy.Local, loadBalancer: false),
            [Endpoint(2, "node-1"), Endpoint(3, "node-2")]), "node-2");

        Assert.Empty(selection.Cluster);
        Assert.Equal([3], Hosts(selection.Local));
    }

    [Fact]
    public void A_port_whose_endpoints_all_stopped_serving_has_none_usable()
    {
        var selection = EndpointSelection.For(new ProxiedService(Port(),
            [Endpoint(2, "node-1", ready: false, serving: false), Endpoint(3, "node-2", ready: false, serving: false, terminating: true)]), "node-1");

        Assert.False(selection.AnyUsable);
        Assert.Empty(selection.Reachable);
    }
}
