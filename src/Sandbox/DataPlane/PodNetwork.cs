using Hybrid.Sandbox.Lab;

namespace Hybrid.Sandbox.DataPlane;

/// <summary>
/// Makes every pod address reachable from every node, as a routed CNI on one L2 segment does (flannel's
/// host-gw): each node forwards IPv4 and has a route to every other node's pod CIDR via that node's LAN
/// address. A node whose eth0 is down (or whose cable is pulled) takes its pods off the network with it.
/// Nodes send no ICMP redirects: they forward between hosts of one segment (a client's packet DNAT-ed to a
/// pod on another node leaves by the interface it came in on), and a redirect would steer the client away
/// from the node that holds its connection's NAT state.
/// </summary>
internal static class PodNetwork
{
    public static async Task ConfigureNodesAsync(LabTopology topology, ProcessRunner runner, CancellationToken cancellationToken)
    {
        foreach (var node in topology.Nodes)
        {
            await runner.RunAsync(new ProcessRequest(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0",
                $"net.ipv4.conf.{node.Interface}.send_redirects=0"])
            {
                Namespace = node.Namespace,
            }, cancellationToken);
            var routes = topology.Nodes.Where(other => other != node)
                .Select(other => $"route replace {topology.PodCidr(other)} via {other.Ipv4} dev {node.Interface}")
                .ToList();
            if (routes.Count > 0)
                await runner.RunAsync(new ProcessRequest(["ip", "-n", node.Namespace, "-batch", "-"]) { StandardInput = string.Join('\n', routes) + "\n" },
                    cancellationToken);
        }
    }
}
