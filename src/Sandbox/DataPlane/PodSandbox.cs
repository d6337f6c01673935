using System.Net;
using Hybrid.Sandbox.Lab;

namespace Hybrid.Sandbox.DataPlane;

/// <summary>
/// One pod's network, wired as a point-to-point CNI plugin wires it: namespace `NAME-pK`, `eth0` with the pod's
/// address as a /32 and a default route via its node's pod gateway (.1 of the node's pod CIDR); on the node,
/// the veth peer `podK` carries the gateway address and a /32 route to the pod. Everything the pod sends goes
/// through the node's routing and nftables, as in a routed CNI, so that Services work between pods of one node
/// too. The pod's IPv6 is off.
/// </summary>
/// <param name="Number">K, unique within the lab run.</param>
internal sealed record PodSandbox(int Number, string Namespace, LabHost Node, IPAddress Address, IPAddress Gateway)
{
    /// <summary>The pod's interface inside its namespace.</summary>
    public const string Interface = "eth0";

    /// <summary>The node's end of the pod's veth, in the node's namespace.</summary>
    public string NodeInterface => $"pod{Number}";

    public static async Task<PodSandbox> CreateAsync(LabTopology topology, int number, LabHost node, IPAddress address,
        ProcessRunner runner, CancellationToken cancellationToken)
    {
        var sandbox = new PodSandbox(number, topology.PodNamespace(number), node, address, topology.PodGateway(node));
        try
        {
            await sandbox.WireAsync(runner, cancellationToken);
        }
        catch
        {
            await sandbox.RemoveAsync(runner, CancellationToken.None);
            throw;
        }
        return sandbox;
    }

    private async Task WireAsync(ProcessRunner runner, CancellationToken cancellationToken)
    {
        await runner.RunAsync(["ip", "netns", "add", Namespace], cancellationToken);
        if (Directory.Exists("/proc/sys/net/ipv6"))
            await runner.RunAsync(new ProcessRequest(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            {
                Namespace = Namespace,
            }, cancellationToken);
        await BatchAsync(runner, Node.Namespace,
        [
            $"link add {NodeInterface} type veth peer name {Interface} netns {Namespace}",
            $"addr add {Gateway}/32 dev {NodeInterface}",
            $"link set dev {NodeInterface} up",
            // Replace: a pod deleted a moment ago may have had this address, and its route may linger.
            $"route replace {Address}/32 dev {NodeInterface} scope link src {Gateway}",
        ], cancellationToken);
        await BatchAsync(runner, Namespace,
        [
            "link set dev lo up",
            $"addr add {Address}/32 dev {Interface}",
            $"link set dev {Interface} up",
            $"route add {Gateway}/32 dev {Interface} scope link",
            $"route add default via {Gateway} dev {Interface}",
        ], cancellationToken);
    }

    /// <summary>Deletes the node's veth end (with it the pod's and the route) and the namespace; idempotent.</summary>
    public async Task RemoveAsync(ProcessRunner runner, CancellationToken cancellationToken)
    {
        if (NetnsLab.NamespaceExists(Node.Namespace))
            await runner.RunAsync(new ProcessRequest(["ip", "-n", Node.Namespace, "link", "del", "dev", NodeInterface]) { AllowFailure = true },
                cancellationToken);
        if (NetnsLab.NamespaceExists(Namespace))
            await runner.RunAsync(new ProcessRequest(["ip", "netns", "del", Namespace]) { AllowFailure = true }, cancellationToken);
    }

    private static Task<ProcessResult> BatchAsync(ProcessRunner runner, string namespaceName, IReadOnlyList<string> lines, CancellationToken cancellationToken) =>
        runner.RunAsync(new ProcessRequest(["ip", "-n", namespaceName, "-batch", "-"]) { StandardInput = string.Join('\n', lines) + "\n" },
            cancellationToken);
}
