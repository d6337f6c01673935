using System.Threading.Channels;
using Hybrid.Net;
using Hybrid.Sandbox.Lab;
using Microsoft.Extensions.Logging;

namespace Hybrid.Sandbox.DataPlane;

/// <summary>
/// Makes every pod address reachable from every node, as a routed CNI on one L2 segment does (flannel's
/// host-gw): each node forwards IPv4 and has a route to every other node's pod CIDR via that node's LAN
/// address. A node whose eth0 is down (or whose cable is pulled) takes its pods off the network with it. The
/// kernel deletes a node's routes when its eth0 goes down; like flannel's route check, this class puts them
/// back as soon as eth0 is up again (it watches the node's links over rtnetlink).
/// Nodes send no ICMP redirects: they forward between hosts of one segment (a client's packet DNAT-ed to a
/// pod on another node leaves by the interface it came in on), and a redirect would steer the client away
/// from the node that holds its connection's NAT state.
/// </summary>
internal sealed class PodNetwork : IAsyncDisposable
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(200);

    private readonly LabTopology _topology;
    private readonly ProcessRunner _runner;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<(NetlinkMonitor Monitor, Task Keeper)> _keepers = [];

    private PodNetwork(LabTopology topology, ProcessRunner runner, ILogger logger)
    {
        _topology = topology;
        _runner = runner;
        _logger = logger;
    }

    public static async Task<PodNetwork> StartAsync(LabTopology topology, ProcessRunner runner, ILoggerFactory loggers, CancellationToken cancellationToken)
    {
        var network = new PodNetwork(topology, runner, loggers.CreateLogger<PodNetwork>());
        try
        {
            foreach (var node in topology.Nodes)
            {
                await runner.RunAsync(new ProcessRequest(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                    "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0",
                    $"net.ipv4.conf.{node.Interface}.send_redirects=0"])
                {
                    Namespace = node.Namespace,
                }, cancellationToken);
                // Subscribe first, so that a link change between the routes and the subscription is not missed.
                var monitor = await NetworkNamespace.RunInAsync(node.Namespace, () => NetlinkMonitor.Open(), cancellationToken);
                var signal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
                network._keepers.Add((monitor, Task.Run(() => network.KeepRoutesAsync(node, monitor, signal), CancellationToken.None)));
                await network.AddRoutesAsync(node, cancellationToken);
            }
        }
        catch
        {
            await network.DisposeAsync();
            throw;
        }
        return network;
    }

    private async Task AddRoutesAsync(LabHost node, CancellationToken cancellationToken)
    {
        var routes = _topology.Nodes.Where(other => other != node)
            .Select(other => $"route replace {_topology.PodCidr(other)} via {other.Ipv4} dev {node.Interface}")
            .ToList();
        if (routes.Count > 0)
            await _runner.RunAsync(new ProcessRequest(["ip", "-n", node.Namespace, "-batch", "-"]) { StandardInput = string.Join('\n', routes) + "\n" },
                cancellationToken);
    }

    private async Task KeepRoutesAsync(LabHost node, NetlinkMonitor monitor, Channel<bool> signal)
    {
        var token = _stopping.Token;
        var writer = Task.Run(async () =>
        {
            try
            {
                while (await signal.Reader.WaitToReadAsync(token))
                {
                    signal.Reader.TryRead(out _);
                    try
                    {
                        var up = await _runner.RunAsync(new ProcessRequest(["ip", "-n", node.Namespace, "link", "show", "dev", node.Interface, "up"])
                        {
                            AllowFailure = true,
                        }, token);
                        if (up.Succeeded && up.StandardOutput.Length > 0) await AddRoutesAsync(node, token);
                    }
                    catch (ProcessFailedException e)
                    {
                        // eth0 went down again meanwhile, or its own route is not back yet: try again shortly.
                        _logger.LogDebug("Pod routes of {Node} not restored yet: {Error}", node.Name, e.Message);
                        await Task.Delay(RetryDelay, token);
                        signal.Writer.TryWrite(true);
                    }
                }
            }
            catch (OperationCanceledException) { }
        }, CancellationToken.None);
        try
        {
            await foreach (var change in monitor.ReadAllAsync(token))
                if (change is LinkChanged { Link.AdministrativelyUp: true } link && link.Link.Name == node.Interface || change is Overrun)
                    signal.Writer.TryWrite(true);
        }
        catch (OperationCanceledException) { }
        catch (Exception e) { _logger.LogWarning("Watching the links of {Node} failed: {Error}", node.Name, e.Message); }
        await writer;
    }

    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested) return;
        await _stopping.CancelAsync();
        foreach (var (monitor, keeper) in _keepers)
        {
            await monitor.DisposeAsync();
            await keeper;
        }
        _stopping.Dispose();
    }
}
