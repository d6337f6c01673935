using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using System.Security.Cryptography;
using Hybrid.Facade;
using Hybrid.Net;
using Hybrid.Sandbox.Lab;
using k8s;
using k8s.Models;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>Lab tests run one at a time: each builds its own 3-node lab and measures timings on it.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LabCollection
{
    public const string Name = "lab";
}

/// <summary>
/// A 3-node lab with agents running, plus what the agent tests keep asking: the real kubectl, Services and
/// their status, which node carries a VIP, who answers ARP for it, Events. Disposal prints every agent's
/// log into the test output (so a failure shows why) and removes the lab.
/// </summary>
internal sealed class AgentLab : IAsyncDisposable
{
    public const string Prefix = "hya";
    private readonly ITestOutputHelper _output;
    private readonly string _work;

    private AgentLab(HybridLab lab, ITestOutputHelper output, string work)
    {
        Lab = lab;
        _output = output;
        _work = work;
        Kubectl = new Kubectl(lab.KubeconfigPath, work);
    }

    public HybridLab Lab { get; }
    public Kubectl Kubectl { get; }
    public Kubernetes Client => Lab.Client;
    public AgentSupervisor Agents => Lab.Agents!;
    public string ClientNamespace => Lab.ClientHost.Namespace;

    public static async Task<AgentLab> StartAsync(ITestOutputHelper output, IReadOnlyDictionary<string, string>? environment = null,
        int nodes = 3, CancellationToken cancellationToken = default, DnsmasqConfig? dhcp = null)
    {
        Requires.Root();
        Requires.Tool("socat", "socat");
        Requires.Tool("kubectl", "kubectl");
        await NetnsLab.SweepOrphansAsync(Prefix, cancellationToken);
        var name = Prefix + Convert.ToHexString(RandomNumberGenerator.GetBytes(2)).ToLowerInvariant();
        var work = Directory.CreateTempSubdirectory("hybrid-agent-test-").FullName;
        var lab = await HybridLab.StartAsync(new LabOptions
        {
            Spec = new LabSpec(name, nodes),
            Environment = environment ?? new Dictionary<string, string>(),
            Dhcp = dhcp,
        }, cancellationToken);
        var agentLab = new AgentLab(lab, output, work);
        try
        {
            await Eventually.WaitAsync(
                () => lab.Nodes.All(n => agentLab.Log(n.Name).Contains("Caches synced")),
                TimeSpan.FromSeconds(30), "every agent to sync its caches");
            await Eventually.WaitAsync(async () =>
                (await agentLab.RegistrationsAsync(cancellationToken)).Count(l => l.Spec.HolderIdentity is not null) == nodes,
                TimeSpan.FromSeconds(30), "a registration from every agent");
            await agentLab.WaitForSteadyStateAsync();
        }
        catch
        {
            await agentLab.DisposeAsync();
            throw;
        }
        return agentLab;
    }

    /// <summary>
    /// Waits until every joined node's LAN fence holds, so none keeps an API fence: from then on nobody writes
    /// its registration until something changes.
    /// </summary>
    public Task WaitForSteadyStateAsync() =>
        Eventually.WaitAsync(() => Lab.SettledAsync(CancellationToken.None), TimeSpan.FromSeconds(30), "every joined registration to say fence=lan");

    public string Log(string node)
    {
        var path = Agents.LogPath(node);
        if (!File.Exists(path)) return "";
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(stream).ReadToEnd();
    }

    public PhysicalAddress MacOf(string node) => PhysicalAddress.Parse(Lab.Node(node).Mac.Replace(':', '-').ToUpperInvariant());

    public string NodeOfMac(PhysicalAddress mac) =>
        Lab.Nodes.FirstOrDefault(n => MacOf(n.Name).Equals(mac))?.Name ?? mac.ToString();

    public async Task ApplyAsync(string yaml)
    {
        var file = Path.Combine(_work, $"manifest-{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(file, yaml);
        (await Kubectl.RunAsync("apply", "-f", file)).EnsureSuccess();
    }

    /// <summary>The seed's example: test-deploy exposed as http1 (80) and http2 (81) on one IP.</summary>
    public async Task ExposeSeedExampleAsync(string ip)
    {
        await ApplyAsync(Manifests.Deployment("test-deploy", "test", replicas: 3));
        (await Kubectl.RunAsync("expose", "deployment", "test-deploy", "--port=80", "--target-port=80",
            "--type=LoadBalancer", "--name", "http1", $"--load-balancer-ip={ip}")).EnsureSuccess();
        (await Kubectl.RunAsync("expose", "deployment", "test-deploy", "--port=81", "--target-port=80",
            "--type=LoadBalancer", "--name", "http2", $"--load-balancer-ip={ip}")).EnsureSuccess();
    }

    public Task<V1Service> ServiceAsync(string name, string ns = "default") =>
        Client.CoreV1.ReadNamespacedServiceAsync(name, ns);

    /// <summary>Waits until the Service reports the address in its status and names a vipHost; returns the host.</summary>
    public async Task<string> WaitForIngressAsync(string name, string ip, TimeSpan? timeout = null, string ns = "default") =>
        await Eventually.WaitAsync(async () =>
        {
            var svc = await ServiceAsync(name, ns);
            var announced = svc.Status?.LoadBalancer?.Ingress?.Any(i => i.Ip == ip) == true;
            return announced && svc.Metadata.Annotations?.TryGetValue("kube-vip.io/vipHost", out var host) == true ? host : null;
        }, timeout ?? TimeSpan.FromSeconds(15), $"{name} to report {ip} with a vipHost");

    public Task<IReadOnlyList<string>> HoldersAsync(string ip) => Lab.HoldersAsync(IPAddress.Parse(ip), CancellationToken.None);

    /// <summary>For each address, the nodes that answer for it (one fence read per node, not per address).</summary>
    public async Task<IReadOnlyDictionary<string, IReadOnlyList<string>>> PlacementAsync(IEnumerable<string> ips)
    {
        var answered = await Lab.AnsweredAsync(CancellationToken.None);
        return ips.ToDictionary(ip => ip, ip => (IReadOnlyList<string>)answered
            .Where(kv => kv.Value.Contains(IPAddress.Parse(ip))).Select(kv => kv.Key).Order().ToList());
    }

    /// <summary>Waits until every address is answered by exactly one node satisfying <paramref name="allowed"/>; returns address → node.</summary>
    public Task<Dictionary<string, string>> WaitForSingleHoldersAsync(IReadOnlyCollection<string> ips, Func<string, string, bool>? allowed = null,
        TimeSpan? timeout = null) =>
        Eventually.WaitAsync(async () =>
        {
            var placement = await PlacementAsync(ips);
            return placement.Values.All(nodes => nodes.Count == 1) && placement.All(kv => allowed?.Invoke(kv.Key, kv.Value[0]) ?? true)
                ? placement.ToDictionary(kv => kv.Key, kv => kv.Value[0])
                : null;
        }, timeout ?? TimeSpan.FromSeconds(20), $"each of {ips.Count} VIPs to be on exactly one (allowed) node");

    /// <summary>Waits until every named Service reports its address and a vipHost; returns name → vipHost.</summary>
    public Task<Dictionary<string, string>> WaitForIngressesAsync(IReadOnlyDictionary<string, string> ipOfService, TimeSpan? timeout = null) =>
        Eventually.WaitAsync(async () =>
        {
            var services = (await Client.CoreV1.ListNamespacedServiceAsync("default")).Items.ToDictionary(s => s.Metadata.Name);
            var hosts = new Dictionary<string, string>();
            foreach (var (name, ip) in ipOfService)
            {
                if (!services.TryGetValue(name, out var svc) || svc.Status?.LoadBalancer?.Ingress?.Any(i => i.Ip == ip) != true) return null;
                if (svc.Metadata.Annotations?.TryGetValue("kube-vip.io/vipHost", out var host) != true) return null;
                hosts[name] = host!;
            }
            return hosts;
        }, timeout ?? TimeSpan.FromSeconds(30), $"{ipOfService.Count} services to report their address with a vipHost");

    /// <summary>Waits until exactly this set of nodes answers for the VIP.</summary>
    public Task WaitForHoldersAsync(string ip, IReadOnlyCollection<string> nodes, TimeSpan? timeout = null) =>
        Eventually.WaitAsync(async () => (await HoldersAsync(ip)).Order().SequenceEqual(nodes.Order()),
            timeout ?? TimeSpan.FromSeconds(15), $"{ip} to be on [{string.Join(", ", nodes)}] only");

    /// <summary>Every node that answers an ARP request for the address from the client namespace.</summary>
    public async Task<IReadOnlyList<string>> ArpRespondersAsync(string ip, TimeSpan? window = null)
    {
        var answers = await ArpProbe.ResolveAsync(ClientNamespace, Lab.ClientHost.Interface, IPAddress.Parse(ip),
            window ?? TimeSpan.FromMilliseconds(300), CancellationToken.None);
        return answers.Select(a => NodeOfMac(a.Mac)).Distinct().Order().ToList();
    }

    /// <summary>Every node's registration Lease.</summary>
    public async Task<IList<V1Lease>> RegistrationsAsync(CancellationToken cancellationToken = default) =>
        (await Client.CoordinationV1.ListNamespacedLeaseAsync("kube-system", labelSelector: Configuration.RegistrationSelector,
            cancellationToken: cancellationToken)).Items;

    /// <summary>A node's registration Lease.</summary>
    public Task<V1Lease> RegistrationAsync(string node) =>
        Client.CoordinationV1.ReadNamespacedLeaseAsync(Configuration.RegistrationLeaseName(node), "kube-system");

    /// <summary>Each node registration's resourceVersion ("name=version", sorted): equal lists mean nobody wrote one.</summary>
    public async Task<IReadOnlyList<string>> RegistrationVersionsAsync() =>
        (await RegistrationsAsync()).Select(l => $"{l.Metadata.Name}={l.Metadata.ResourceVersion}").Order().ToList();

    /// <summary>
    /// Drops the LAN heartbeats a node receives (<paramref name="inbound"/>) or sends, in an nftables table of
    /// the test's own in the node's namespace; disposing the result removes the table again.
    /// </summary>
    public async Task<IAsyncDisposable> DropHeartbeatsAsync(string node, bool inbound)
    {
        var ns = Lab.Node(node).Namespace;
        var hook = inbound ? "input" : "output";
        var rule = $"udp dport {Hybrid.Domain.ConfigModule.DefaultLanPort} drop"; // heartbeats go to the port both ways
        await Lab.Network.ExecAsync(ns, new ProcessRequest(["nft", "-f", "-"])
        {
            StandardInput = $$"""
                table inet hybrid_test_lan_loss {
                  chain {{hook}} { type filter hook {{hook}} priority 0; policy accept; {{rule}}; }
                }
                """,
        }, CancellationToken.None);
        Report($"dropping {(inbound ? "inbound" : "outbound")} LAN heartbeats on {node}");
        return new Undo(async () => await Lab.Network.ExecAsync(ns,
            new ProcessRequest(["nft", "delete", "table", "inet", "hybrid_test_lan_loss"]) { AllowFailure = true }, CancellationToken.None));
    }

    private sealed class Undo(Func<Task> undo) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync() => await undo();
    }

    public Task<ArpCapture> CaptureAsync() =>
        ArpCapture.StartAsync(ClientNamespace, Lab.ClientHost.Interface, CancellationToken.None);

    public async Task<IReadOnlyList<Eventsv1Event>> EventsAsync(string service, string ns = "default") =>
        (await Client.EventsV1.ListNamespacedEventAsync(ns)).Items.Where(e => e.Regarding?.Name == service).ToList();

    public Task<Eventsv1Event> WaitForEventAsync(string service, string reason, TimeSpan? timeout = null, string ns = "default") =>
        Eventually.WaitAsync(async () => (await EventsAsync(service, ns)).FirstOrDefault(e => e.Reason == reason),
            timeout ?? TimeSpan.FromSeconds(15), $"a {reason} event for {service}");

    public void Report(string line) => _output.WriteLine(line);

    public async ValueTask DisposeAsync()
    {
        try
        {
            foreach (var node in Lab.Nodes)
            {
                var log = Log(node.Name);
                // HYBRID_TEST_LOGS=<folder> keeps every agent's whole log for a closer look.
                if (Environment.GetEnvironmentVariable("HYBRID_TEST_LOGS") is { Length: > 0 } keep)
                {
                    Directory.CreateDirectory(keep);
                    File.WriteAllText(Path.Combine(keep, $"{Path.GetFileName(_work)}-{node.Name}.log"), log);
                }
                _output.WriteLine($"──── agent log {node.Name} ({log.Length} chars, last 80 lines) ────");
                foreach (var line in log.Split('\n').TakeLast(80)) _output.WriteLine(line);
            }
        }
        catch (Exception e)
        {
            _output.WriteLine($"(could not read agent logs: {e.Message})");
        }
        await Lab.DisposeAsync();
        try { Directory.Delete(_work, true); } catch (IOException) { }
    }
}

/// <summary>Manifests the tests apply with the real kubectl.</summary>
internal static class Manifests
{
    public static string Deployment(string name, string app, int replicas) => $"""
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {name}
        spec:
          replicas: {replicas}
          selector:
            matchLabels:
              app: {app}
          template:
            metadata:
              labels:
                app: {app}
            spec:
              containers:
                - name: web
                  image: nginx
                  ports:
                    - containerPort: 80
        """;

    public static string Service(string name, string? ip = null, int port = 80, string app = "test",
        IReadOnlyDictionary<string, string>? annotations = null, string? loadBalancerClass = null, bool local = false)
    {
        var lines = new List<string>
        {
            "apiVersion: v1", "kind: Service", "metadata:", $"  name: {name}",
        };
        if (annotations is { Count: > 0 })
        {
            lines.Add("  annotations:");
            lines.AddRange(annotations.Select(a => $"    {a.Key}: {System.Text.Json.JsonSerializer.Serialize(a.Value)}"));
        }
        lines.Add("spec:");
        lines.Add("  type: LoadBalancer");
        if (ip is not null) lines.Add($"  loadBalancerIP: {ip}");
        if (loadBalancerClass is not null) lines.Add($"  loadBalancerClass: {loadBalancerClass}");
        if (local) lines.Add("  externalTrafficPolicy: Local");
        lines.Add($"  selector: {{app: {app}}}");
        lines.Add($"  ports: [{{port: {port}, targetPort: 80, protocol: TCP}}]");
        return string.Join('\n', lines) + "\n";
    }
}

/// <summary>
/// Records, with monotonic timestamps, every address added to or removed from eth0 in each node namespace
/// (netlink, inside the namespace): the timeline that shows whether two nodes ever had a VIP at once.
/// </summary>
internal sealed class AddressTimeline : IAsyncDisposable
{
    public sealed record Change(string Node, bool Added, IPAddress Address, long Ticks);

    private readonly List<Change> _changes = [];
    private readonly List<(NetlinkMonitor Monitor, Task Reader)> _readers = [];
    private readonly CancellationTokenSource _stop = new();

    public static async Task<AddressTimeline> StartAsync(HybridLab lab)
    {
        var timeline = new AddressTimeline();
        foreach (var node in lab.Nodes)
        {
            var monitor = await NetworkNamespace.RunInAsync(node.Namespace, () => NetlinkMonitor.Open(), CancellationToken.None);
            var name = node.Name;
            var reader = Task.Run(async () =>
            {
                try
                {
                    await foreach (var e in monitor.ReadAllAsync(timeline._stop.Token))
                    {
                        var now = Stopwatch.GetTimestamp();
                        Change? change = e switch
                        {
                            AddressAdded a => new Change(name, true, a.Address.Address, now),
                            AddressRemoved r => new Change(name, false, r.Address.Address, now),
                            _ => null,
                        };
                        if (change is not null) lock (timeline._changes) timeline._changes.Add(change);
                    }
                }
                catch (OperationCanceledException)
                {
                }
            });
            timeline._readers.Add((monitor, reader));
        }
        return timeline;
    }

    public IReadOnlyList<Change> Changes(string ip)
    {
        var address = IPAddress.Parse(ip);
        lock (_changes) return _changes.Where(c => c.Address.Equals(address)).ToList();
    }

    /// <summary>
    /// Replays the timeline: the longest time during which two or more nodes had the address at once
    /// (refreshes are "added" again and change nothing). Nodes that had it before the timeline started
    /// are given as `initial` (or, with `from`, the nodes that had it at that instant: earlier changes are skipped).
    /// </summary>
    public TimeSpan LongestOverlap(string ip, IEnumerable<string> initial, long from = 0)
    {
        var holding = new HashSet<string>(initial);
        var longest = TimeSpan.Zero;
        long? since = holding.Count > 1 ? Stopwatch.GetTimestamp() : null;
        foreach (var c in Changes(ip).Where(c => c.Ticks >= from).OrderBy(c => c.Ticks))
        {
            if (c.Added) holding.Add(c.Node);
            else holding.Remove(c.Node);
            if (holding.Count > 1 && since is null) since = c.Ticks;
            if (holding.Count <= 1 && since is { } start)
            {
                longest = TimeSpan.FromTicks(Math.Max(longest.Ticks, Stopwatch.GetElapsedTime(start, c.Ticks).Ticks));
                since = null;
            }
        }
        return longest;
    }

    /// <summary>
    /// The first change of the address matching <paramref name="match"/>, waiting for it: an address dump
    /// can show a change a moment before this timeline's netlink reader has recorded it.
    /// </summary>
    public Task<Change> FirstAsync(string ip, Func<Change, bool> match, string what) =>
        Eventually.WaitAsync(() => Task.FromResult(Changes(ip).OrderBy(c => c.Ticks).FirstOrDefault(match)),
            TimeSpan.FromSeconds(5), $"the timeline to record {what} of {ip}");

    /// <summary>The address's changes, one per line, relative to <paramref name="origin"/> (for failure messages).</summary>
    public string Describe(string ip, long origin) =>
        string.Join("; ", Changes(ip).OrderBy(c => c.Ticks).Select(c =>
            $"{Stopwatch.GetElapsedTime(origin, c.Ticks).TotalMilliseconds:F0} ms {c.Node} {(c.Added ? "added" : "removed")}"));

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        foreach (var (monitor, reader) in _readers)
        {
            await monitor.DisposeAsync();
            try { await reader; } catch (Exception) { }
        }
        _stop.Dispose();
    }
}
