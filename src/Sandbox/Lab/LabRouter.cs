using System.Net;
using Microsoft.Extensions.Logging;

namespace Hybrid.Sandbox.Lab;

/// <summary>
/// The lab's home router and a piece of the Internet behind it:
/// <list type="bullet">
/// <item>`NAME-router`: eth0 on the LAN bridge at the subnet's .1 (<see cref="LabTopology.Reserved"/>), the LAN's
/// gateway, wan0 <see cref="WanAddress"/>; it forwards. With UPnP it runs miniupnpd (<see cref="MiniUpnpdGateway"/>,
/// secure mode, its own nftables table) on eth0 with wan0 as its external interface (docs/UPNP.md); with DHCP it
/// runs Debian's dnsmasq on eth0 (<see cref="LabDnsmasq"/>, lease file and log in `RUN/router-dnsmasq`, docs/DHCP.md);</item>
/// <item>`NAME-internet`: one host, <see cref="InternetAddress"/>, with the STUN server miniupnpd asks for its
/// public address (with UPnP). It has no route to the LAN: it reaches a Service only through the router's WAN
/// address and a port mapping.</item>
/// </list>
/// Every node's default route points at the router (the .1 that <see cref="NetnsLab"/> already routes through;
/// the router takes it over), so that answers to the Internet go back through it. The
/// lab's teardown removes both namespaces (they are lab namespaces by name) and the daemons with them; disposing
/// this stops dnsmasq, miniupnpd and the STUN server first.
/// </summary>
internal sealed class LabRouter : IAsyncDisposable
{
    public const string WanInterface = "wan0";
    public static readonly IPAddress WanAddress = IPAddress.Parse("198.19.0.2");
    public static readonly IPAddress InternetAddress = IPAddress.Parse("198.19.0.1");

    private StunResponder? _stun;

    private LabRouter(LabHost host, string internet)
    {
        Host = host;
        InternetNamespace = internet;
    }

    /// <summary>The router on the LAN.</summary>
    public LabHost Host { get; }

    public string InternetNamespace { get; }
    /// <summary>miniupnpd; null without UPnP.</summary>
    public MiniUpnpdGateway? Gateway { get; private set; }

    /// <summary>The LAN's DHCP server; null without DHCP.</summary>
    public LabDnsmasq? Dhcp { get; private set; }

    /// <summary>
    /// Wires the router and the internet namespace into <paramref name="network"/>, then starts STUN and
    /// miniupnpd when <paramref name="upnp"/>, and dnsmasq when <paramref name="dhcp"/> is set.
    /// </summary>
    public static async Task<LabRouter> StartAsync(NetnsLab network, bool upnp, DnsmasqConfig? dhcp, ILoggerFactory loggers,
        CancellationToken cancellationToken)
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

        var router = new LabRouter(host, internet);
        try
        {
            if (dhcp is not null)
                router.Dhcp = await LabDnsmasq.StartAsync(host, topology.PrefixLength, Path.Combine(topology.RunDirectory, "router-dnsmasq"), dhcp,
                    cancellationToken);
            if (upnp)
            {
                // STUN first: miniupnpd gives up when nobody answers it.
                router._stun = StunResponder.Start(internet, new IPEndPoint(InternetAddress, StunResponder.DefaultPort), loggers.CreateLogger<StunResponder>());
                router.Gateway = await MiniUpnpdGateway.StartAsync(
                    new MiniUpnpdOptions(host.Namespace, host.Interface, WanInterface, router._stun.Endpoint, Path.Combine(topology.RunDirectory, "miniupnpd")),
                    cancellationToken, loggers.CreateLogger<MiniUpnpdGateway>());
            }
            return router;
        }
        catch
        {
            await router.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Dhcp is not null) await Dhcp.DisposeAsync();
        if (Gateway is not null) await Gateway.DisposeAsync();
        if (_stun is not null) await _stun.DisposeAsync();
    }
}
