using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Hybrid.Facade;
using Hybrid.Net;
using Microsoft.Extensions.Logging;
using StopBudget = Hybrid.Domain.StopBudget;

namespace Hybrid.Agent;

/// <summary>
/// Composes the agent on one node and runs it: the watches, the heartbeat receiver and the link watcher feed
/// the inbox; the protocol loop decides (through the domain) and acts; status and Events are written in the
/// background. On stop it asks the domain to stop — every VIP withdrawn, the fence expired, the registration
/// written Left — and gives that the domain's StopBudget.Sequence; others take the groups over as soon as the
/// node says on the LAN that it answers for nothing.
/// </summary>
internal sealed class AgentHost(Settings settings, ApiClient client, ILoggerFactory loggers)
{
    private static readonly TimeSpan StopSequence = TimeSpan.FromMilliseconds(StopBudget.Sequence);
    private readonly ILogger _logger = loggers.CreateLogger<AgentHost>();

    public async Task<int> RunAsync(CancellationToken stopping)
    {
        // Subscribe before reading the link, so no change falls between the read and the first event.
        using var monitor = NetlinkMonitor.Open();
        using var links = LinkTable.Open();
        using var addresses = AddressTable.Open();

        var interfaceName = settings.VipInterface ?? await links.DefaultRouteInterfaceAsync(stopping);
        if (interfaceName is null)
        {
            _logger.LogCritical("No VIP interface: vip_interface is not set and there is no default route");
            return 1;
        }
        var link = await links.GetAsync(interfaceName, stopping);
        if (link is null)
        {
            _logger.LogCritical("VIP interface {Interface} does not exist", interfaceName);
            return 1;
        }
        // An interface deleted and created again (a new index and MAC: a reloaded driver, a re-created bond or
        // VLAN) ends the session as a stop would, and a new one starts on it, as a restarted agent would.
        while (true)
        {
            var (code, replacement) = await RunSessionAsync(monitor, links, addresses, interfaceName, link, stopping);
            if (replacement is null || stopping.IsCancellationRequested) return code;
            _logger.LogWarning("VIP interface {Interface} was created again (index {OldIndex} → {NewIndex}, MAC {OldMac} → {NewMac}): starting over on it",
                interfaceName, link.Index, replacement.Index, link.HardwareAddress, replacement.HardwareAddress);
            link = replacement;
        }
    }

    /// <summary>
    /// One agent session on one incarnation of the VIP interface: until <paramref name="stopping"/> fires, or
    /// the interface is replaced by another of the same name (then returned, once this session has stopped).
    /// </summary>
    private async Task<(int Code, LinkInfo? Replacement)> RunSessionAsync(NetlinkMonitor monitor, LinkTable links, AddressTable addresses,
        string interfaceName, LinkInfo link, CancellationToken stopping)
    {
        using var session = CancellationTokenSource.CreateLinkedTokenSource(stopping);

        // The heartbeat port is bound exclusively: a second agent on this node refuses to start (the
        // protocol's safety assumes one agent process per node).
        HeartbeatSocket heartbeat;
        try
        {
            heartbeat = HeartbeatSocket.Open(link, settings.LanPort, () => MonotonicClock.NowMs);
        }
        catch (SocketException e)
        {
            _logger.LogCritical("Cannot open the LAN heartbeat port {Port} on {Interface} ({Error}): is another agent running on this node?",
                settings.LanPort, interfaceName, e.Message);
            return (1, null);
        }
        await using var _ = heartbeat;
        using var fence = KernelFence.Open(() => MonotonicClock.NowMs);
        await using var announcer = settings.Arp ? Announcer.Open(interfaceName, loggers.CreateLogger<Announcer>()) : null;
        announcer?.WarmUp();
        var existing = (await addresses.DumpAsync(link.Index, stopping))
            .Where(a => a.IsHybrid)
            .Select(a => new ExistingVip { Address = a.Address.GetAddressBytes(), Prefix = a.PrefixLength })
            .ToArray();
        _logger.LogInformation("Hybrid agent on node {Node}: VIP interface {Interface} ({Mac}), svc_election={Election}, Leases in {Namespace}, fingerprint {Fingerprint}",
            settings.NodeName, interfaceName, link.HardwareAddress, settings.Election, settings.LeaseNamespace, settings.Fingerprint);

        var inbox = new ProtocolInbox();
        var metrics = new AgentMetrics();
        var node = new ProtocolNode(settings);
        var services = new ServiceRecords();
        var leases = new LeaseWriter(client, settings.LeaseNamespace, inbox, metrics, loggers.CreateLogger<LeaseWriter>());
        await using var status = new StatusWriter(client, services, metrics, loggers.CreateLogger<StatusWriter>());
        await using var events = new EventRecorder(client, settings, services, loggers.CreateLogger<EventRecorder>());
        await using var assigner = new AddressAssigner(client, events, loggers.CreateLogger<AddressAssigner>());
        await using var macvlans = MacvlanTable.Open();
        var kernel = new KernelExecutor(fence, link, addresses, macvlans, announcer, loggers.CreateLogger<KernelExecutor>());
        using var gatewayHttp = settings.Upnp ? new GatewayHttp(SocketFactories.Current) : null;
        var forwarder = gatewayHttp is null ? null : Forwarder(interfaceName, gatewayHttp, inbox);
        await using var dhcpLeases = new DhcpLeaseRecorder(client, loggers.CreateLogger<DhcpLeaseRecorder>());
        await using var dhcp = new DhcpSupervisor(link.Index, inbox, loggers);
        var loop = new ProtocolLoop(node, inbox, heartbeat, kernel, leases, status, events, assigner, dhcp, dhcpLeases, forwarder, metrics,
            loggers.CreateLogger<ProtocolLoop>());
        var facts = new InterfaceFactsReader(addresses, links, link.Index, inbox, loggers.CreateLogger<InterfaceFactsReader>());
        var linkWatcher = new LinkWatcher(monitor, links, link, facts, inbox, session.Cancel, loggers.CreateLogger<LinkWatcher>());
        var linkUp = await linkWatcher.ReadAsync(stopping);

        var incarnation = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));
        var started = MonotonicClock.NowMs;
        inbox.Post(n => n.Start(incarnation, existing, linkUp, started));
        await facts.ReportAsync(stopping);

        using var run = new CancellationTokenSource();
        status.Start(run.Token);
        events.Start(run.Token);
        assigner.Start(run.Token);
        dhcpLeases.Start(run.Token);
        var watching = Task.Run(() => linkWatcher.RunAsync(run.Token));
        var background = new List<Task>
        {
            watching,
            Task.Run(() => ReceiveHeartbeatsAsync(heartbeat, inbox, metrics, run.Token)),
            Task.Run(() => new HeapTrimmer(loggers.CreateLogger<HeapTrimmer>()).RunAsync(run.Token)),
        };
        background.AddRange(Watches(inbox, services, status, metrics).Select(w => Task.Run(() => w(run.Token))));
        background.AddRange(HttpServers(loop, metrics).Select(server => Task.Run(() => server.RunAsync(run.Token))));
        if (forwarder is not null) background.Add(Task.Run(() => forwarder.RunAsync(run.Token)));

        var loopTask = loop.RunAsync(run.Token);
        await Task.WhenAny(loopTask, Task.Delay(Timeout.Infinite, session.Token).ContinueWith(_ => { }, TaskScheduler.Default));
        if (!loopTask.IsCompleted)
        {
            // Graceful stop: the domain withdraws everything, expires the fence and writes Left.
            var requested = MonotonicClock.NowMs;
            inbox.Post(n => n.StopRequested(requested));
            if (await Task.WhenAny(loopTask, Task.Delay(StopSequence, CancellationToken.None)) != loopTask)
                _logger.LogWarning("Stopping took longer than {Budget} ms; leaving the rest to the fence", StopBudget.Sequence);
        }
        await run.CancelAsync();
        try { await loopTask; } catch (OperationCanceledException) { }
        using (var flush = new CancellationTokenSource(TimeSpan.FromMilliseconds(StopBudget.EventFlush)))
            await events.FlushAsync(flush.Token);
        await Task.WhenAny(Task.WhenAll(background), Task.Delay(TimeSpan.FromMilliseconds(StopBudget.Background)));
        // The netlink monitor serves one reader at a time: a session that follows a replaced interface needs it.
        if (linkWatcher.Replacement is not null) await watching;
        _logger.LogInformation("Stopped");
        return (0, linkWatcher.Replacement);
    }

    /// <summary>
    /// The health probes on health_check_port (all addresses) and the metrics on prometheus_server; one server
    /// for both when they name the same port (on all addresses, as the probes need). Port 0 serves none.
    /// </summary>
    private IEnumerable<HttpServer> HttpServers(ProtocolLoop loop, AgentMetrics metrics)
    {
        var health = settings.HealthPort > 0 ? new HealthEndpoint(loop).Routes : null;
        var metricsRoutes = new MetricsEndpoint(metrics, settings.Upnp).Routes;
        var listen = MetricsListen();
        if (listen is { Port: var port } && port == settings.HealthPort && health is not null)
        {
            if (!listen.Value.Address.Equals(IPAddress.IPv6Any))
                _logger.LogWarning("prometheus_server {Listen} names the health port: /metrics is served with the probes, on every address",
                    settings.PrometheusServer);
            yield return Server(IPAddress.IPv6Any, port, health.Concat(metricsRoutes).ToDictionary());
            yield break;
        }
        if (health is not null) yield return Server(IPAddress.IPv6Any, settings.HealthPort, health);
        if (listen is { } l) yield return Server(l.Address, l.Port, metricsRoutes);
    }

    private HttpServer Server(IPAddress address, int port, IReadOnlyDictionary<string, Func<HttpAnswer>> routes) =>
        new(address, port, routes, loggers.CreateLogger<HttpServer>());

    /// <summary>
    /// prometheus_server as an address to listen on: <c>:port</c> every address, <c>host:port</c> with an IP
    /// address (IPv6 in brackets) or <c>localhost</c>. Port 0 serves no metrics. The port was validated with
    /// the settings; a host name other than localhost is refused here with the reason.
    /// </summary>
    private (IPAddress Address, int Port)? MetricsListen()
    {
        var listen = settings.PrometheusServer;
        var colon = listen.LastIndexOf(':');
        var port = int.Parse(listen.AsSpan(colon + 1), System.Globalization.CultureInfo.InvariantCulture);
        if (port == 0) return null;
        var host = listen[..colon].Trim('[', ']');
        if (host.Length == 0) return (IPAddress.IPv6Any, port);
        if (host == "localhost") return (IPAddress.Loopback, port);
        if (IPAddress.TryParse(host, out var address)) return (address, port);
        _logger.LogError("prometheus_server {Listen}: {Host} is not an IP address or localhost; serving no metrics", listen, host);
        return null;
    }

    /// <summary>
    /// enable_upnp: the UPnP forwarder searches for gateways on the VIP interface and maps the ports of the
    /// Services whose group this node holds; what it reports goes back to the protocol (status, Events).
    /// </summary>
    private UpnpForwarder Forwarder(string interfaceName, GatewayHttp http, ProtocolInbox inbox) =>
        new(new GatewayDiscovery(new SsdpSearch(interfaceName, SocketFactories.Current, loggers.CreateLogger<SsdpSearch>()), http,
                loggers.CreateLogger<GatewayDiscovery>()),
            new IgdClient(http, loggers.CreateLogger<IgdClient>()),
            TimeProvider.System,
            report =>
            {
                var now = MonotonicClock.NowMs;
                inbox.Post(n => n.ForwardingReported(report, now));
            },
            loggers.CreateLogger<UpnpForwarder>());

    private static async Task ReceiveHeartbeatsAsync(HeartbeatSocket heartbeat, ProtocolInbox inbox, AgentMetrics metrics, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var datagram in heartbeat.ReceiveAllAsync(cancellationToken))
            {
                var payload = datagram.Payload;
                var at = datagram.ReceivedAtMs;
                inbox.Post(n => metrics.FrameReceived(n.DatagramReceived(payload, at)));
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private IEnumerable<Func<CancellationToken, Task>> Watches(ProtocolInbox inbox, ServiceRecords services, StatusWriter status, AgentMetrics metrics)
    {
        var ns = settings.ServiceNamespace;
        var json = ApiJson.Default;
        var serviceWatch = new ResourceWatch<ServiceObject>("services",
            new(client, ApiPaths.Services(ns), json.ServiceObject, json.ObjectListServiceObject),
            all =>
            {
                var listed = all.Select(KubeObjects.ToInput).ToArray();
                services.ReplaceAll(listed);
                inbox.Post(n => n.ServicesListed(listed, MonotonicClock.NowMs));
            },
            s =>
            {
                var input = KubeObjects.ToInput(s);
                services.Observe(input);
                inbox.Post(n => n.ServiceUpserted(input, MonotonicClock.NowMs));
            },
            s =>
            {
                var key = KubeObjects.Key(s.Metadata.Namespace, s.Metadata.Name);
                services.Forget(key);
                status.Forget(key);
                inbox.Post(n => n.ServiceDeleted(s.Metadata.Namespace ?? "default", s.Metadata.Name, MonotonicClock.NowMs));
            },
            metrics, loggers.CreateLogger("Hybrid.Agent.Watch.Services"));
        var sliceWatch = new ResourceWatch<EndpointSliceObject>("endpointslices",
            new(client, ApiPaths.EndpointSlices(ns), json.EndpointSliceObject, json.ObjectListEndpointSliceObject),
            all =>
            {
                var listed = all.Select(KubeObjects.ToInput).OfType<SliceInput>().ToArray();
                inbox.Post(n => n.SlicesListed(listed, MonotonicClock.NowMs));
            },
            s =>
            {
                if (KubeObjects.ToInput(s) is { } input) inbox.Post(n => n.SliceUpserted(input, MonotonicClock.NowMs));
                else
                {
                    var name = KubeObjects.Key(s.Metadata.Namespace, s.Metadata.Name);
                    inbox.Post(n => n.SliceDeleted(name, MonotonicClock.NowMs));
                }
            },
            s =>
            {
                var name = KubeObjects.Key(s.Metadata.Namespace, s.Metadata.Name);
                inbox.Post(n => n.SliceDeleted(name, MonotonicClock.NowMs));
            },
            metrics, loggers.CreateLogger("Hybrid.Agent.Watch.EndpointSlices"));
        var leaseWatch = new ResourceWatch<LeaseObject>("leases",
            new(client, ApiPaths.AgentLeases(settings.LeaseNamespace),
                json.LeaseObject, json.ObjectListLeaseObject),
            all =>
            {
                var listed = all.Select(KubeObjects.ToInput).ToArray();
                inbox.Post(n => n.LeasesListed(listed, MonotonicClock.NowMs));
            },
            l =>
            {
                var input = KubeObjects.ToInput(l);
                inbox.Post(n => n.LeaseUpserted(input, MonotonicClock.NowMs));
            },
            l =>
            {
                var name = l.Metadata.Name;
                inbox.Post(n => n.LeaseDeleted(name, MonotonicClock.NowMs));
            },
            metrics, loggers.CreateLogger("Hybrid.Agent.Watch.Leases"));
        var nodeWatch = new ResourceWatch<NodeObject>("nodes",
            new(client, ApiPaths.Nodes, json.NodeObject, json.ObjectListNodeObject),
            all =>
            {
                var listed = all.Select(KubeObjects.ToInput).ToArray();
                inbox.Post(n => n.NodesListed(listed, MonotonicClock.NowMs));
            },
            o =>
            {
                var input = KubeObjects.ToInput(o);
                inbox.Post(n => n.NodeUpserted(input, MonotonicClock.NowMs));
            },
            o =>
            {
                var name = o.Metadata.Name;
                inbox.Post(n => n.NodeDeleted(name, MonotonicClock.NowMs));
            },
            metrics, loggers.CreateLogger("Hybrid.Agent.Watch.Nodes"));
        // Only the pool ConfigMap: a field selector on its name, so other ConfigMaps never reach the agent.
        var poolWatch = new ResourceWatch<ConfigMapObject>("configmaps",
            new(client, ApiPaths.PoolConfigMap,
                json.ConfigMapObject, json.ObjectListConfigMapObject),
            all =>
            {
                var data = all.Select(KubeObjects.PoolData).FirstOrDefault();
                inbox.Post(n => n.PoolConfigObserved(data, MonotonicClock.NowMs));
            },
            m =>
            {
                var data = KubeObjects.PoolData(m);
                inbox.Post(n => n.PoolConfigObserved(data, MonotonicClock.NowMs));
            },
            _ => inbox.Post(n => n.PoolConfigObserved(null, MonotonicClock.NowMs)),
            metrics, loggers.CreateLogger("Hybrid.Agent.Watch.PoolConfigMap"));
        return [serviceWatch.RunAsync, sliceWatch.RunAsync, leaseWatch.RunAsync, nodeWatch.RunAsync, poolWatch.RunAsync];
    }
}
