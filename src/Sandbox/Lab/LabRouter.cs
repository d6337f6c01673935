using System.Net;
using Microsoft.Extensions.Logging;

namespace Hybrid.Sandbox.Lab;

/// <summary>
/// The lab's home router and a piece of the Internet behind it, for UPnP port forwarding (docs/UPNP.md):
/// <list type="bullet">
/// <item>`NAME-router`: eth0 on the LAN bridge at the subnet's .1 (<see cref="LabTopology.Reserved"/>), wan0
/// <see cref="WanAddress"/>; it forwards, and runs miniupnpd (<see cref="MiniUpnpdGateway"/>, secure mode, its
/// own nftables table) on eth0 with wan0 as its external interface;</item>
/// <item>`NAME-internet`: one host, <see cref="InternetAddress"/>, with the STUN server miniupnpd asks for its
/// public address. It has no route to the LAN: it reaches a Service only through the router's WAN address and
/// a port mapping.</item>
/// </list>
/// Every node's default route points at the router (the .1 that <see cref="NetnsLab"/> already routes through;
/// the router takes it over), so that answers to the Internet go back through it. The
/// lab's teardown removes both namespaces (they are lab namespaces by name) and miniupnpd with them; disposing
/// this stops miniupnpd and the STUN server first.
/// </summary>
internal sealed class LabRouter : IAsyncDisposable
{
    public const string WanInterface = "wan0";
    public static readonly IPAddress WanAddress = IPAddress.Parse("198.19.0.2");
    public static readonly IPAddress InternetAddress = IPAddress.Parse("198.19.0.1");

    private readonly StunResponder _stun;

    private LabRouter(LabHost host, string internet, StunResponder stun, MiniUpnpdGateway gateway)
    {
        Host = host;
        InternetNamespace = internet;
        _stun = stun;
        Gateway = gateway;
    }

    /// <summary>The router on the LAN.</summary>
    public LabHost Host { get; }

    public string InternetNamespace { get; }
    public MiniUpnpdGateway Gateway { get; }

    /// <summary>Wires the router and the internet namespace into <paramref name="network"/>, then starts STUN and miniupnpd.</summary>
    public static async Task<LabRouter> StartAsync(NetnsLab network, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        var topology = network.Topology;
        var host = await network.AddHostAsync(topology.RouterHost(), cancellationToken);
        var internet = topology.InternetNamespace;
        var runner = ProcessRunner.Default;
        await runner.RunAsync(["ip", "netns", "add", internet], cancellationToken);
        var prefix = LabTopology.InternetRange.PrefixLength;
        await runner.RunAsync(["ip", "-n", host.Namespace, "link", "add", WanInterface, "type", "veth", "peer", "name", "eth0", "netns", internet],
            cancellationToken);
        foreach (var (ns, link, address) in new[] { (host.Namespace, WanInterface, WanAddress), (internet, "eth0", InternetAddress) })
        {
            await runner.RunAsync(new ProcessRequest(["ip", "-batch", "-"])
            {
                Namespace = ns,
                StandardInput = $"link set dev lo up\naddr add {address}/{prefix} dev {link}\nlink set dev {link} up\n",
            }, cancellationToken);
        }
        await runner.RunAsync(new ProcessRequest(["sysctl", "-qw", "net.ipv4.ip_forward=1"]) { Namespace = host.Namespace }, cancellationToken);
        foreach (var node in topology.Nodes)
            await network.ExecAsync(node.Namespace, ["ip", "route", "replace", "default", "via", host.Ipv4.ToString(), "dev", node.Interface], cancellationToken);

        // STUN first: miniupnpd gives up when nobody answers it.
        var stun = StunResponder.Start(internet, new IPEndPoint(InternetAddress, StunResponder.DefaultPort), loggers.CreateLogger<StunResponder>());
        try
        {
            var gateway = await MiniUpnpdGateway.StartAsync(
                new MiniUpnpdOptions(host.Namespace, host.Interface, WanInterface, stun.Endpoint, Path.Combine(topology.RunDirectory, "miniupnpd")),
                cancellationToken, loggers.CreateLogger<MiniUpnpdGateway>());
            return new LabRouter(host, internet, stun, gateway);
        }
        catch
        {
            await stun.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await _stun.DisposeAsync();
    }
}
