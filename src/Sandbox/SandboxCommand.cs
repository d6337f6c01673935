using Hybrid.Sandbox.Lab;
using Microsoft.Extensions.Logging;

namespace Hybrid.Sandbox;

/// <summary>
/// `hybrid sandbox`: builds the lab (API emulator, bridge, node namespaces each running an agent, a client
/// namespace, the Service data plane: pods and kube-proxy; the LAN's router at .1 running dnsmasq for DHCP
/// Services (`0.0.0.0`), with enable_upnp also miniupnpd and an internet namespace behind it), prints
/// `sandbox ready kubeconfig=FILE` once all of
/// it is up, and keeps it up until SIGINT/SIGTERM; then stops the agents gracefully and removes every
/// namespace, process, nftables table and temporary file.
/// </summary>
internal static class SandboxCommand
{
    private const string Usage = """
        usage: sudo ./hybrid sandbox [--nodes 3] [--name hybrid] [--subnet 198.18.0.0/24] [--kubeconfig FILE]
                                     [--env KEY=VALUE]... [--no-ipv6] [--verbose]
          --nodes N          node namespaces, each running one agent (1-50)
          --name NAME        prefix of the namespaces (NAME-lan, NAME-node-1.., NAME-client)
          --subnet CIDR      IPv4 LAN inside 198.18.0.0/15; VIPs should come from its top 55 addresses, the 50
                             below them are the router's DHCP range (loadBalancerIP 0.0.0.0)
          --kubeconfig FILE  where to write the kubeconfig for kubectl (default: in the lab's run directory)
          --env KEY=VALUE    kube-vip setting for every agent (repeatable), e.g. --env svc_election=true;
                             --env enable_upnp=true also builds a router (miniupnpd) and an internet namespace
        """;

    public static async Task<int> RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var spec = new LabSpec();
        string? kubeconfig = null;
        var environment = new Dictionary<string, string>();
        var verbose = false;
        var errors = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            string? Value() => i + 1 < args.Count ? args[++i] : null;
            switch (args[i])
            {
                case "--nodes" when int.TryParse(Value(), out var n):
                    spec = spec with { Nodes = n };
                    break;
                case "--name" when Value() is { } name:
                    spec = spec with { Name = name };
                    break;
                case "--subnet" when Value() is { } subnet:
                    spec = spec with { Subnet = subnet };
                    break;
                case "--kubeconfig" when Value() is { } path:
                    kubeconfig = Path.GetFullPath(path);
                    break;
                case "--env" when Value() is { } pair && pair.IndexOf('=') > 0:
                    environment[pair[..pair.IndexOf('=')]] = pair[(pair.IndexOf('=') + 1)..];
                    break;
                case "--no-ipv6":
                    spec = spec with { Ipv6 = false };
                    break;
                case "--verbose":
                    verbose = true;
                    break;
                case "-h" or "--help":
                    Console.WriteLine(Usage);
                    return 0;
                default:
                    errors.Add($"unexpected or incomplete argument '{args[i]}'");
                    break;
            }
        }
        errors.AddRange(LabTopology.Validate(spec));
        if (Environment.UserName != "root") errors.Add("the sandbox builds network namespaces: run it as root (sudo)");
        if (errors.Count > 0)
        {
            foreach (var e in errors) Console.Error.WriteLine($"hybrid sandbox: {e}");
            Console.Error.WriteLine(Usage);
            return 2;
        }

        using var loggers = LoggerFactory.Create(b => b
            .SetMinimumLevel(verbose ? LogLevel.Debug : LogLevel.Information)
            .AddFilter("Microsoft", LogLevel.Warning)
            .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; }));
        HybridLab lab;
        try
        {
            lab = await HybridLab.StartAsync(new LabOptions
            {
                Spec = spec,
                Environment = environment,
                KubeconfigPath = kubeconfig,
                Dhcp = DhcpRange(spec),
                TeardownOnSignal = false,
            }, cancellationToken, loggers);
        }
        catch (OperationCanceledException)
        {
            return 130;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"hybrid sandbox: {e.Message}");
            return 1;
        }

        await using (lab)
        {
            foreach (var node in lab.Nodes)
                Console.WriteLine($"  {node.Name}: namespace {node.Namespace}, {node.Interface} {node.Ipv4} ({node.Mac}), pods {lab.Topology.PodCidr(node)}, agent log {node.LogPath}");
            Console.WriteLine($"  pods: namespaces {lab.Topology.Name}-pK, addresses from {lab.Topology.PodNetwork}; kube-proxy: nftables table " +
                              $"{DataPlane.KubeProxyRuleset.Family} {DataPlane.KubeProxyRuleset.Table} in each node");
            Console.WriteLine($"  client: namespace {lab.ClientHost.Namespace}, {lab.ClientHost.Interface} {lab.ClientHost.Ipv4} " +
                              $"(try: sudo ip netns exec {lab.ClientHost.Namespace} curl http://VIP/hostname)");
            if (lab.Router?.Dhcp is { } dhcp)
                Console.WriteLine($"  router: namespace {dhcp.Host.Namespace}, {dhcp.Host.Interface} {dhcp.Host.Ipv4}, the LAN's gateway; dnsmasq leases " +
                                  $"{dhcp.Config.First}-{dhcp.Config.Last} for {dhcp.Config.LeaseSeconds} s (lease file {dhcp.LeaseFile}, log {dhcp.LogFile})");
            if (lab.Router is { Gateway: not null } router)
                Console.WriteLine($"  router: namespace {router.Host.Namespace}, {router.Host.Interface} {router.Host.Ipv4}, {LabRouter.WanInterface} {LabRouter.WanAddress} " +
                                  $"(miniupnpd, nftables table inet {MiniUpnpdGateway.TableName}); internet: namespace {router.InternetNamespace}, " +
                                  $"{LabRouter.InternetAddress} (try: sudo ip netns exec {router.InternetNamespace} curl http://{LabRouter.WanAddress}:PORT/hostname)");
            Console.WriteLine($"  VIPs: use {lab.Topology.VipFirst}-{lab.Topology.VipLast}; API {lab.Api.BaseAddress}");
            Console.WriteLine($"sandbox ready kubeconfig={lab.KubeconfigPath}");
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
            catch (OperationCanceledException)
            {
            }
            Console.WriteLine("sandbox stopping: agents withdraw, namespaces are removed");
        }
        if (kubeconfig is not null) File.Delete(kubeconfig);
        return 0;
    }

    /// <summary>dnsmasq's shortest lease on the topology's DHCP range; null when the subnet has no room for one.</summary>
    private static DnsmasqConfig? DhcpRange(LabSpec spec) =>
        LabTopology.Create(spec) is { DhcpFirst: { } first, DhcpLast: { } last } ? new DnsmasqConfig(first, last) : null;
}
