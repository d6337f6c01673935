using System.Net;
using System.Text.Json.Nodes;
using Hybrid.Net;
using Hybrid.Sandbox.Api;
using Hybrid.Sandbox.DataPlane;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hybrid.Sandbox.Lab;

/// <summary>What to build: the layout, the agents' environment, and where to put the user's kubeconfig.</summary>
internal sealed record LabOptions
{
    public LabSpec Spec { get; init; } = new();

    /// <summary>kube-vip environment for every agent (vip_interface and vip_nodename are set per node).</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();

    /// <summary>Where to write the kubeconfig for the user's shell; default: in the lab's run directory.</summary>
    public string? KubeconfigPath { get; init; }

    public bool StartAgents { get; init; } = true;

    /// <summary>Run the Service data plane: pods in namespaces with HTTP servers, kube-proxy in nftables.</summary>
    public bool DataPlane { get; init; } = true;

    /// <summary>
    /// A home router (<see cref="LabRouter"/>): null: whenever the agents run with enable_upnp (or enableUPNP)
    /// true or <see cref="Dhcp"/> is set.
    /// </summary>
    public bool? Router { get; init; }

    /// <summary>The router's DHCP server (dnsmasq on the LAN); null: none.</summary>
    public DnsmasqConfig? Dhcp { get; init; }

    public TimeSpan AgentRestartDelay { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Whether the agents forward with UPnP, so that the router runs miniupnpd.</summary>
    public bool WantsUpnp =>
        new[] { "enable_upnp", "enableUPNP" }.Any(k => Environment.TryGetValue(k, out var v) && Hybrid.Domain.ConfigModule.parseBool(v) is { } b && b.Value);

    /// <summary>Whether the lab gets its router: as asked, else whenever it runs miniupnpd or dnsmasq.</summary>
    public bool WantsRouter => Router ?? (WantsUpnp || Dhcp is not null);

    /// <summary>Tear the namespaces down from signal handlers (tests); `hybrid sandbox` handles signals itself.</summary>
    public bool TeardownOnSignal { get; init; } = true;
}

/// <summary>
/// The whole lab, as `hybrid sandbox` and the integration tests use it: the Kubernetes API emulator (with
/// simulated workloads), the network namespaces (a bridge, N nodes, a client), one API bridge per node,
/// a Node object per node (with its pod CIDR), the Service data plane (pods and kube-proxy, see
/// <see cref="ServiceDataPlane"/>), and one agent process per node. Disposing it stops the agents gracefully,
/// then the data plane, and removes every namespace, process and temporary file.
/// </summary>
internal sealed class HybridLab : IAsyncDisposable
{
    /// <summary>Settings every lab agent gets unless the caller overrides them.</summary>
    public static readonly IReadOnlyDictionary<string, string> DefaultEnvironment = new Dictionary<string, string>
    {
        ["svc_enable"] = "true",
        ["vip_arp"] = "true",
    };

    private readonly List<ApiBridge> _bridges = [];
    private readonly ILogger _logger;
    private bool _disposed;

    private HybridLab(LabTopology topology, NetnsLab network, ApiEmulator api, Kubernetes client, string kubeconfig, ILogger logger)
    {
        Topology = topology;
        Network = network;
        Api = api;
        Client = client;
        KubeconfigPath = kubeconfig;
        _logger = logger;
    }

    public LabTopology Topology { get; }
    public NetnsLab Network { get; }
    public ApiEmulator Api { get; }

    /// <summary>A client for the test or the user (root namespace, TCP), not attributed to any node.</summary>
    public Kubernetes Client { get; }

    public string KubeconfigPath { get; }
    public AgentSupervisor? Agents { get; private set; }

    /// <summary>The router (miniupnpd, dnsmasq) and the internet namespace; null without UPnP or DHCP.</summary>
    public LabRouter? Router { get; private set; }

    /// <summary>Pods and kube-proxy; null when the lab was started without them.</summary>
    public ServiceDataPlane? DataPlane { get; private set; }
    public IReadOnlyList<LabHost> Nodes => Topology.Nodes;
    public LabHost ClientHost => Topology.Client;

    public static async Task<HybridLab> StartAsync(LabOptions options, CancellationToken cancellationToken, ILoggerFactory? loggers = null)
    {
        loggers ??= NullLoggerFactory.Instance;
        var logger = loggers.CreateLogger<HybridLab>();
        var topology = LabTopology.Create(options.Spec);
        var network = await NetnsLab.CreateAsync(topology, cancellationToken, loggers, options.TeardownOnSignal);
        ApiEmulator? api = null;
        HybridLab? lab = null;
        try
        {
            api = await ApiEmulator.StartAsync(new ApiEmulatorOptions
            {
                UnixListeners = topology.Nodes.Select(n => new UnixListener(n.Name, n.ApiSocketPath)).ToList(),
                SimulateWorkloads = true,
                PodNetwork = topology.PodNetwork,
                PodReadinessGates = options.DataPlane ? [Kubelets.ServingGate] : [],
            }, cancellationToken);
            var kubeconfig = options.KubeconfigPath ?? Path.Combine(topology.RunDirectory, "kubeconfig");
            api.WriteKubeconfig(kubeconfig);
            var client = new Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig));
            lab = new HybridLab(topology, network, api, client, kubeconfig, logger);

            foreach (var node in topology.Nodes)
            {
                ApiBridge.WriteNodeKubeconfig(node.KubeconfigPath);
                lab._bridges.Add(await ApiBridge.StartAsync(node.Namespace, node.ApiSocketPath, cancellationToken,
                    logger: loggers.CreateLogger<ApiBridge>()));
                await lab.CreateNodeObjectAsync(node, cancellationToken);
            }
            if (options.DataPlane)
                lab.DataPlane = await ServiceDataPlane.StartAsync(topology, client, loggers, cancellationToken);
            if (options.WantsRouter)
                lab.Router = await LabRouter.StartAsync(network, options.WantsUpnp, options.Dhcp, loggers, cancellationToken);

            if (options.StartAgents)
            {
                var environment = new Dictionary<string, string>(DefaultEnvironment)
                {
                    // One cluster key per lab, as an operator's Secret would hold it (the caller may override it).
                    ["lan_key"] = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)),
                };
                foreach (var (key, value) in options.Environment) environment[key] = value;
                lab.Agents = AgentSupervisor.ForTopology(topology, new AgentSupervisorOptions
                {
                    Environment = environment,
                    RestartDelay = options.AgentRestartDelay,
                }, loggers.CreateLogger<AgentSupervisor>());
                await lab.Agents.StartAllAsync(cancellationToken);
            }
            logger.LogInformation("Lab {Lab} ready: {Nodes} nodes, API {Api}, kubeconfig {Kubeconfig}",
                topology.Name, topology.NodeCount, api.BaseAddress, kubeconfig);
            return lab;
        }
        catch
        {
            if (lab is not null) await lab.DisposeAsync();
            else
            {
                if (api is not null) await api.DisposeAsync();
                await network.DisposeAsync();
            }
            throw;
        }
    }

    private async Task CreateNodeObjectAsync(LabHost node, CancellationToken cancellationToken)
    {
        var addresses = new List<V1NodeAddress>
        {
            new() { Type = "InternalIP", Address = node.Ipv4.ToString() },
            new() { Type = "Hostname", Address = node.Name },
        };
        if (node.Ipv6 is { } v6) addresses.Add(new V1NodeAddress { Type = "InternalIP", Address = v6.ToString() });
        var podCidr = Topology.PodCidr(node).ToString();
        await Client.CoreV1.CreateNodeAsync(new V1Node
        {
            Metadata = new V1ObjectMeta
            {
                Name = node.Name,
                Labels = new Dictionary<string, string> { ["kubernetes.io/hostname"] = node.Name, ["kubernetes.io/os"] = "linux" },
            },
            Spec = new V1NodeSpec { PodCIDR = podCidr, PodCIDRs = [podCidr] },
            Status = new V1NodeStatus
            {
                Addresses = addresses,
                Conditions = [new V1NodeCondition { Type = "Ready", Status = "True", Reason = "KubeletReady" }],
            },
        }, cancellationToken: cancellationToken);
    }

    /// <summary>The node's namespace, by node name (node-1...).</summary>
    public LabHost Node(string name) => Topology.Host(name);

    /// <summary>Cuts a node off the API server (it stays on the LAN): its connections drop, new ones are refused.</summary>
    public void Partition(string node, TimeSpan? duration = null)
    {
        var fault = new JsonObject { ["kind"] = "partition", ["client"] = node };
        if (duration is { } d) fault["durationMs"] = (long)d.TotalMilliseconds;
        Api.InjectFault(fault);
        _logger.LogInformation("Partitioned {Node} from the API", node);
    }

    /// <summary>Applies a fault (see src/Sandbox/Api/LabEndpoints.cs for the format).</summary>
    public JsonObject InjectFault(JsonObject fault) => Api.InjectFault(fault);

    /// <summary>Removes every fault rule and ends every partition at once.</summary>
    public void ClearFaults()
    {
        Api.Faults.Clear();
        _logger.LogInformation("Cleared every API fault");
    }

    /// <summary>
    /// Whether no joined node keeps an API fence (every joined registration says fence=lan): from then on nobody
    /// writes its registration until something changes, and a failed node is deposed D_L after it fell silent
    /// (one killed while its startup API fence runs is deposed only once that fence has run out, R_A).
    /// </summary>
    public async Task<bool> SettledAsync(CancellationToken cancellationToken) =>
        (await Client.CoordinationV1.ListNamespacedLeaseAsync("kube-system", labelSelector: Hybrid.Facade.Configuration.RegistrationSelector,
            cancellationToken: cancellationToken)).Items
        .Where(l => l.Metadata.Annotations?.TryGetValue("hybrid.kube-vip.io/state", out var state) == true && state == "joined")
        .All(l => l.Metadata.Annotations.TryGetValue("hybrid.kube-vip.io/fence", out var fence) && fence == "lan");

    /// <summary>The nodes whose kernel answers for <paramref name="address"/> now (see <see cref="AnsweredAsync"/>).</summary>
    public async Task<IReadOnlyList<string>> HoldersAsync(IPAddress address, CancellationToken cancellationToken) =>
        (await AnsweredAsync(cancellationToken)).Where(kv => kv.Value.Contains(address)).Select(kv => kv.Key).ToList();

    /// <summary>
    /// For each node, the addresses its kernel answers for now: on eth0 or one of its macvlans (DHCP leases), held by the agent's fence, and the
    /// fence element alive. An address left behind by a crashed or fenced agent is on the interface but not
    /// answered, so it does not count.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, IReadOnlySet<IPAddress>>> AnsweredAsync(CancellationToken cancellationToken)
    {
        var answered = new Dictionary<string, IReadOnlySet<IPAddress>>();
        foreach (var node in Nodes)
        {
            var onLink = (await CarriedAsync(node, cancellationToken)).Values.SelectMany(a => a).ToHashSet();
            var fence = await NetworkNamespace.RunInAsync(node.Namespace, () =>
            {
                using var reader = KernelFence.Open(() => 0);
                return reader.Read(cancellationToken);
            }, cancellationToken);
            answered[node.Name] = fence is { FenceRemainingMs: > 0 } ? onLink.Where(fence.Held.Contains).ToHashSet() : new HashSet<IPAddress>();
        }
        return answered;
    }

    /// <summary>The addresses on a node's VIP interface and on each macvlan of it (a DHCP Service's), by interface name.</summary>
    public async Task<IReadOnlyDictionary<string, IReadOnlyList<IPAddress>>> CarriedAsync(LabHost node, CancellationToken cancellationToken)
    {
        var result = await Network.ExecAsync(node.Namespace, ["ip", "-j", "addr", "show"], cancellationToken);
        var carried = new Dictionary<string, IReadOnlyList<IPAddress>>();
        foreach (var link in JsonNode.Parse(result.StandardOutput)!.AsArray())
        {
            var name = (string?)link?["ifname"];
            if (name is null || (name != node.Interface && (string?)link!["link"] != node.Interface)) continue;
            carried[name] = (link!["addr_info"]?.AsArray() ?? [])
                .Select(a => (string?)a?["local"]).OfType<string>().Select(IPAddress.Parse).ToList();
        }
        return carried;
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        // Agents first, while the API still answers, so that they withdraw and release cleanly.
        if (Agents is not null)
        {
            try { await Agents.DisposeAsync(); }
            catch (Exception e) { _logger.LogWarning("Stopping the agents: {Error}", e.Message); }
        }
        if (Router is not null)
        {
            try { await Router.DisposeAsync(); }
            catch (Exception e) { _logger.LogWarning("Stopping the router: {Error}", e.Message); }
        }
        if (DataPlane is not null)
        {
            try { await DataPlane.DisposeAsync(); }
            catch (Exception e) { _logger.LogWarning("Stopping the data plane: {Error}", e.Message); }
        }
        foreach (var bridge in _bridges)
        {
            try { await bridge.DisposeAsync(); }
            catch (Exception e) { _logger.LogWarning("Stopping an API bridge: {Error}", e.Message); }
        }
        Client.Dispose();
        await Api.DisposeAsync();
        await Network.DisposeAsync();
    }
}
