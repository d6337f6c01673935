using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using Hybrid.Sandbox.Lab;
using k8s;
using k8s.Models;

namespace Hybrid.Benchmarks;

/// <summary>
/// A lab for measurements: the same HybridLab as `hybrid sandbox` and the integration tests, with helpers
/// to create workloads and Services through the API and to find who holds or announces a VIP.
/// </summary>
internal sealed class BenchLab(HybridLab lab) : IAsyncDisposable
{
    public HybridLab Lab { get; } = lab;
    public Kubernetes Client => Lab.Client;
    public AgentSupervisor Agents => Lab.Agents!;

    public static async Task<BenchLab> StartAsync(string name, int nodes, IReadOnlyDictionary<string, string>? environment,
        CancellationToken cancellationToken, string subnet = "198.18.0.0/24", DnsmasqConfig? dhcp = null)
    {
        if (Environment.UserName != "root") throw new InvalidOperationException("lab benchmarks need root (network namespaces)");
        var lab = await HybridLab.StartAsync(new LabOptions
        {
            Spec = new LabSpec(name, nodes, subnet),
            Environment = environment ?? new Dictionary<string, string>(),
            Dhcp = dhcp,
        }, cancellationToken);
        var bench = new BenchLab(lab);
        await bench.WaitUntilAsync(() => lab.Nodes.All(n => bench.Log(n.Name).Contains("Caches synced")),
            TimeSpan.FromSeconds(60), "agents to sync", cancellationToken);
        await bench.WaitForHeartbeatsAsync(nodes, cancellationToken);
        await bench.Client.AppsV1.CreateNamespacedDeploymentAsync(Deployment("web", nodes), "default", cancellationToken: cancellationToken);
        return bench;
    }

    public string Log(string node)
    {
        var path = Agents.LogPath(node);
        if (!File.Exists(path)) return "";
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(stream).ReadToEnd();
    }

    public async Task WaitForHeartbeatsAsync(int live, CancellationToken cancellationToken) =>
        await WaitUntilAsync(async () =>
            (await Client.CoordinationV1.ListNamespacedLeaseAsync("kube-system", cancellationToken: cancellationToken)).Items
            .Count(l => l.Metadata.Name.StartsWith("hybrid-node-", StringComparison.Ordinal) && l.Spec.HolderIdentity is not null) == live,
            TimeSpan.FromSeconds(60), $"{live} live heartbeats", cancellationToken);

    /// <summary>
    /// Waits until no node keeps an API fence (<see cref="HybridLab.SettledAsync"/>): a failover measured earlier
    /// is the protocol waiting out a startup fence (R_A, 3 s), not the failover a settled cluster sees.
    /// </summary>
    public Task WaitForSteadyStateAsync(CancellationToken cancellationToken) =>
        WaitUntilAsync(() => Lab.SettledAsync(cancellationToken), TimeSpan.FromSeconds(30), "every joined registration to say fence=lan", cancellationToken);

    public static V1Deployment Deployment(string app, int replicas) => new()
    {
        Metadata = new V1ObjectMeta { Name = app },
        Spec = new V1DeploymentSpec
        {
            Replicas = replicas,
            Selector = new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["app"] = app } },
            Template = new V1PodTemplateSpec
            {
                Metadata = new V1ObjectMeta { Labels = new Dictionary<string, string> { ["app"] = app } },
                Spec = new V1PodSpec { Containers = [new V1Container { Name = "web", Image = "nginx" }] },
            },
        },
    };

    public static V1Service Service(string name, string ip, string app = "web", int port = 80) => new()
    {
        Metadata = new V1ObjectMeta
        {
            Name = name,
            Annotations = new Dictionary<string, string> { ["kube-vip.io/loadbalancerIPs"] = ip },
        },
        Spec = new V1ServiceSpec
        {
            Type = "LoadBalancer",
            Selector = new Dictionary<string, string> { ["app"] = app },
            Ports = [new V1ServicePort { Port = port, TargetPort = 80, Protocol = "TCP" }],
        },
    };

    public Task<V1Service> CreateServiceAsync(string name, string ip, CancellationToken cancellationToken) =>
        Client.CoreV1.CreateNamespacedServiceAsync(Service(name, ip), "default", cancellationToken: cancellationToken);

    public PhysicalAddress MacOf(string node) => PhysicalAddress.Parse(Lab.Node(node).Mac.Replace(':', '-').ToUpperInvariant());

    public string NodeOfMac(PhysicalAddress mac) => Lab.Nodes.FirstOrDefault(n => MacOf(n.Name).Equals(mac))?.Name ?? mac.ToString();

    public async Task<string?> HolderAsync(string ip, CancellationToken cancellationToken) =>
        (await Lab.HoldersAsync(IPAddress.Parse(ip), cancellationToken)) is [var only] ? only : null;

    public Task<ArpCapture> CaptureAsync(CancellationToken cancellationToken) =>
        ArpCapture.StartAsync(Lab.ClientHost.Namespace, Lab.ClientHost.Interface, cancellationToken);

    /// <summary>Brings a stopped or killed node back: link up, agent started, heartbeat live again.</summary>
    public async Task RestoreAsync(string node, int nodes, CancellationToken cancellationToken)
    {
        await Lab.Network.SetLinkAsync(node, up: true, cancellationToken);
        var logLength = Log(node).Length;
        await Agents.StartAsync(node, cancellationToken);
        await WaitUntilAsync(() => Log(node)[Math.Min(logLength, Log(node).Length)..].Contains("Caches synced"),
            TimeSpan.FromSeconds(60), $"{node} to sync", cancellationToken);
        await WaitForHeartbeatsAsync(nodes, cancellationToken);
    }

    public async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (!await condition())
        {
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException($"timed out waiting for {what}");
            await Task.Delay(10, cancellationToken);
        }
    }

    public Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, string what, CancellationToken cancellationToken) =>
        WaitUntilAsync(() => Task.FromResult(condition()), timeout, what, cancellationToken);

    public static double Ms(long fromTicks, long toTicks) => (toTicks - fromTicks) * 1000.0 / Stopwatch.Frequency;

    public static string Int(IReadOnlyList<string> args, string name, int fallback, out int value)
    {
        var i = args.ToList().IndexOf(name);
        value = i >= 0 && i + 1 < args.Count && int.TryParse(args[i + 1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : fallback;
        return $"{name} {value}";
    }

    public ValueTask DisposeAsync() => Lab.DisposeAsync();
}
