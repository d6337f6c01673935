using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hybrid.Sandbox.Lab;

/// <summary>
/// The lab's network: namespace `NAME-lan` holding bridge `br0`, and one namespace per host (`NAME-client`,
/// `NAME-node-K`, extra hosts) whose `eth0` is a veth whose peer is a port of `br0`. Every link is created
/// inside the lab's namespaces (`ip -n LAN link add PORT type veth peer name eth0 netns HOST`), so the root
/// namespace never sees an interface of the lab, and nothing is routed anywhere: the hosts have the on-link
/// subnet route, and the nodes a default route via the subnet's .1 (<see cref="LabTopology.Reserved"/>, which
/// nobody answers unless a <see cref="LabRouter"/> takes that address) so that their VIP interface has a default
/// gateway, as on a real LAN (the address policy refuses it to Services).
/// <para>Settings, chosen to behave like a plain LAN and to be reproducible whatever the root namespace has:</para>
/// <list type="bullet">
/// <item>br0: STP off, forward delay 0 (ports forward at once), multicast snooping off (ARP and NDP flood to
/// every port), bridge netfilter hooks off, a fixed MAC. IPv6 is disabled in the LAN namespace so the bridge
/// and its ports send nothing of their own.</item>
/// <item>each host: net.ipv4.conf.{all,eth0}.arp_ignore=0, arp_announce=0, arp_accept=0 (Linux defaults, set
/// explicitly because a new namespace copies the root namespace's IPv4 settings); with IPv6,
/// net.ipv6.conf.{all,default,eth0}.accept_dad=0 and addresses added with `nodad` so they are usable at once;
/// without IPv6, net.ipv6.conf.eth0.disable_ipv6=1. The neighbour `locktime` stays at its default (1 s).</item>
/// </list>
/// Creation first sweeps what an earlier run of the same name left behind. Dispose kills every process in the
/// lab's namespaces (pods' namespaces, `NAME-pK`, included), deletes them (which deletes the veths) and removes
/// the run directory; it is idempotent,
/// and <see cref="LabExitGuard"/> runs the same teardown on exit and on SIGINT/SIGTERM/SIGHUP/SIGQUIT.
/// </summary>
internal sealed class NetnsLab : IAsyncDisposable
{
    private const string NetnsRunDirectory = "/run/netns";
    private static readonly TimeSpan KillDeadline = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan SignalGrace = TimeSpan.FromSeconds(2);

    /// <summary>Run ids of the labs of this process that are not torn down yet.</summary>
    private static readonly HashSet<string> LiveRunIds = [];

    private readonly ProcessRunner _runner;
    private readonly ILogger<NetnsLab> _logger;
    private readonly string _runId;
    private readonly List<LabHost> _extraHosts = [];
    private readonly IDisposable _exitRegistration;
    private Task? _teardown;

    private NetnsLab(LabTopology topology, string runId, ILoggerFactory loggerFactory, bool teardownOnSignal)
    {
        Topology = topology;
        _runId = runId;
        _runner = new ProcessRunner(loggerFactory.CreateLogger<ProcessRunner>());
        _logger = loggerFactory.CreateLogger<NetnsLab>();
        lock (LiveRunIds) LiveRunIds.Add(runId);
        _exitRegistration = LabExitGuard.Register(() => TeardownOnceAsync(graceful: true), teardownOnSignal);
    }

    public LabTopology Topology { get; }

    /// <summary>Sockets, kubeconfigs and logs of this run; removed on dispose.</summary>
    public string RunDirectory => Topology.RunDirectory;

    /// <summary>Every namespace of the lab: the LAN, the client, the nodes, and extra hosts added so far.</summary>
    public IReadOnlyList<string> Namespaces
    {
        get
        {
            lock (_extraHosts) return [.. Topology.Namespaces, .. _extraHosts.Select(h => h.Namespace)];
        }
    }

    /// <summary>True once dispose (or the exit guard) has started tearing the lab down.</summary>
    public bool IsDisposed => Volatile.Read(ref _teardown) is not null;

    /// <summary>
    /// Sweeps leftovers of an earlier run of the same name, then builds the LAN, the client and the nodes.
    /// </summary>
    /// <param name="teardownOnSignal">See <see cref="LabExitGuard"/>: false when the caller maps SIGINT/SIGTERM to an
    /// orderly shutdown of its own and disposes the lab itself.</param>
    /// <exception cref="InvalidOperationException">A live process (another `hybrid sandbox`, or a live lab of this
    /// process) owns a lab of this name; or the kernel has IPv6 disabled while the topology asks for it.</exception>
    /// <exception cref="ProcessFailedException">An `ip`/`sysctl` command failed; whatever was built is removed.</exception>
    public static async Task<NetnsLab> CreateAsync(
        LabTopology topology, CancellationToken cancellationToken, ILoggerFactory? loggerFactory = null, bool teardownOnSignal = true)
    {
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("the lab needs Linux network namespaces");
        loggerFactory ??= NullLoggerFactory.Instance;
        var logger = loggerFactory.CreateLogger<NetnsLab>();
        if (topology.Ipv6Enabled && !Directory.Exists("/proc/sys/net/ipv6"))
            throw new InvalidOperationException("the kernel has IPv6 disabled; create the lab with LabSpec.Ipv6 = false");
        if (ReadOwner(topology.OwnerFile) is { } owner && owner.IsAlive && !OwnedByDisposedLab(owner))
            throw new InvalidOperationException(
                $"lab '{topology.Name}' is in use by process {owner.Pid} (see {topology.OwnerFile}); stop it first or choose another name");

        var swept = await SweepAsync(topology.Name, cancellationToken, topology.RunDirectory, loggerFactory);
        if (swept.Count > 0)
            logger.LogInformation("Lab {Lab}: swept leftovers of an earlier run: {Namespaces}", topology.Name, string.Join(", ", swept));

        var runId = Guid.NewGuid().ToString("N");
        Directory.CreateDirectory(topology.RunDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        // The owner file comes before any namespace, so that a namespace of the lab never exists without it.
        File.WriteAllText(topology.OwnerFile, Owner.Current(runId).ToString());

        var lab = new NetnsLab(topology, runId, loggerFactory, teardownOnSignal);
        try
        {
            await lab.BuildLanAsync(cancellationToken);
            await lab.WireHostsAsync(topology.Hosts, cancellationToken);
            logger.LogInformation("Lab {Lab}: {Nodes} nodes and a client on {Subnet} (bridge {Bridge} in {Lan})",
                topology.Name, topology.NodeCount, topology.Subnet, LabTopology.Bridge, topology.LanNamespace);
            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Wires an extra host (see <see cref="LabTopology.ExtraHost"/>) to the bridge, like a node. Disposing the
    /// lab removes it.
    /// </summary>
    public async Task<LabHost> AddHostAsync(LabHost host, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        lock (_extraHosts)
        {
            if (Topology.Hosts.Concat(_extraHosts).Any(h => h.Namespace == host.Namespace || h.Mac == host.Mac || h.Ipv4.Equals(host.Ipv4)))
                throw new ArgumentException($"host '{host.Name}' clashes with a host of lab '{Topology.Name}' (namespace, MAC or address)", nameof(host));
            _extraHosts.Add(host);
        }
        await WireHostsAsync([host], cancellationToken);
        return host;
    }

    /// <summary>Administrative state of a host's `eth0` (`ip link set eth0 up|down` inside its namespace).</summary>
    public Task SetLinkAsync(string host, bool up, CancellationToken cancellationToken)
    {
        var h = FindHost(host);
        return _runner.RunAsync(["ip", "-n", h.Namespace, "link", "set", "dev", h.Interface, up ? "up" : "down"], cancellationToken);
    }

    /// <summary>
    /// Carrier of a host's `eth0`: taking the bridge-side peer down makes `eth0` show NO-CARRIER (operstate
    /// LOWERLAYERDOWN) while it stays administratively up, like a pulled cable.
    /// </summary>
    public Task SetCarrierAsync(string host, bool up, CancellationToken cancellationToken)
    {
        var h = FindHost(host);
        return _runner.RunAsync(["ip", "-n", Topology.LanNamespace, "link", "set", "dev", h.BridgePort, up ? "up" : "down"], cancellationToken);
    }

    /// <summary>
    /// Deletes a host's `eth0` (its bridge port goes with it) and creates it again with the MAC `newMac`: a new
    /// interface index, as after a driver reload or a re-created bond. Its addresses and default route are set
    /// again as at creation; anything else on the old interface (an agent's VIPs, routes to pods) is gone.
    /// </summary>
    public async Task RecreateLinkAsync(string host, string newMac, CancellationToken cancellationToken)
    {
        var h = FindHost(host);
        await BatchAsync(h.Namespace, [$"link del dev {h.Interface}"], cancellationToken);
        await BatchAsync(Topology.LanNamespace,
        [
            $"link add {h.BridgePort} address {h.BridgePortMac} type veth peer name {h.Interface} address {newMac} netns {h.Namespace}",
            $"link set dev {h.BridgePort} master {LabTopology.Bridge} up",
        ], cancellationToken);
        await ConfigureHostAsync(h, cancellationToken);
    }

    /// <summary>Addresses on an interface as `address/prefix`, IPv4 and IPv6 (link-local included), in kernel order.</summary>
    public Task<IReadOnlyList<string>> AddressesAsync(string namespaceName, string iface, CancellationToken cancellationToken) =>
        AddressesAsync(_runner, namespaceName, iface, cancellationToken);

    /// <summary>Runs a command inside one of the namespaces; throws <see cref="ProcessFailedException"/> on a non-zero exit.</summary>
    public Task<ProcessResult> ExecAsync(string namespaceName, IReadOnlyList<string> argv, CancellationToken cancellationToken) =>
        _runner.RunAsync(new ProcessRequest(argv) { Namespace = namespaceName }, cancellationToken);

    /// <summary>Runs a request (stdin, timeout, allowed failure) inside one of the namespaces.</summary>
    public Task<ProcessResult> ExecAsync(string namespaceName, ProcessRequest request, CancellationToken cancellationToken) =>
        _runner.RunAsync(request with { Namespace = namespaceName }, cancellationToken);

    /// <summary>Kills every process in the lab's namespaces, deletes them and the run directory. Idempotent.</summary>
    public async ValueTask DisposeAsync()
    {
        await TeardownOnceAsync(graceful: false);
        _exitRegistration.Dispose();
    }

    /// <summary>
    /// Removes every namespace of the lab called <paramref name="name"/> (see <see cref="LabTopology.IsLabNamespace"/>)
    /// after killing the processes inside, and its run directory. Unlike <see cref="CreateAsync"/> it does not ask
    /// whether the lab is still in use. Returns the namespaces it deleted.
    /// </summary>
    public static async Task<IReadOnlyList<string>> SweepAsync(
        string name, CancellationToken cancellationToken, string? runDirectory = null, ILoggerFactory? loggerFactory = null)
    {
        var runner = new ProcessRunner((loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<ProcessRunner>());
        var namespaces = (await ListNamespacesAsync(cancellationToken)).Where(ns => LabTopology.IsLabNamespace(name, ns)).ToArray();
        await RemoveNamespacesAsync(runner, namespaces, graceful: false, cancellationToken);
        DeleteDirectory(runDirectory ?? LabTopology.RunDirectoryFor(name));
        return namespaces;
    }

    /// <summary>
    /// Sweeps every lab whose name starts with <paramref name="namePrefix"/> whose owner process is dead (killed
    /// test runs, `kill -9` of a sandbox). A lab without an owner file is left alone: it is not provably ours.
    /// Returns the names of the labs swept.
    /// </summary>
    public static async Task<IReadOnlyList<string>> SweepOrphansAsync(string namePrefix, CancellationToken cancellationToken)
    {
        var swept = new List<string>();
        var names = (await ListNamespacesAsync(cancellationToken))
            .Where(ns => ns.StartsWith(namePrefix, StringComparison.Ordinal) && ns.EndsWith("-lan", StringComparison.Ordinal))
            .Select(ns => ns[..^"-lan".Length])
            .Distinct();
        foreach (var name in names)
        {
            if (LabTopology.Validate(new LabSpec(name)).Count > 0) continue;
            if (ReadOwner(Path.Combine(LabTopology.RunDirectoryFor(name), "owner")) is not { IsAlive: false }) continue;
            await SweepAsync(name, cancellationToken);
            swept.Add(name);
        }
        return swept;
    }

    /// <summary>Names of all named network namespaces (`ip netns list`).</summary>
    public static async Task<IReadOnlyList<string>> ListNamespacesAsync(CancellationToken cancellationToken)
    {
        var result = await ProcessRunner.Default.RunAsync(["ip", "netns", "list"], cancellationToken);
        return result.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split(' ')[0])
            .ToArray();
    }

    /// <summary>Pids of the processes inside a namespace (`ip netns pids`); empty when it does not exist.</summary>
    public static async Task<IReadOnlyList<int>> PidsAsync(string namespaceName, CancellationToken cancellationToken)
    {
        if (!NamespaceExists(namespaceName)) return [];
        var result = await ProcessRunner.Default.RunAsync(new ProcessRequest(["ip", "netns", "pids", namespaceName]) { AllowFailure = true }, cancellationToken);
        return result.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(p => int.Parse(p, CultureInfo.InvariantCulture))
            .Where(p => p != Environment.ProcessId)
            .ToArray();
    }

    /// <summary>True while `ip netns` knows a namespace of this name.</summary>
    public static bool NamespaceExists(string namespaceName) => File.Exists(Path.Combine(NetnsRunDirectory, namespaceName));

    /// <summary>Addresses on an interface as `address/prefix`, for callers without a lab instance.</summary>
    public static async Task<IReadOnlyList<string>> AddressesAsync(
        ProcessRunner runner, string namespaceName, string iface, CancellationToken cancellationToken)
    {
        var result = await runner.RunAsync(["ip", "-j", "-n", namespaceName, "addr", "show", "dev", iface], cancellationToken);
        using var json = JsonDocument.Parse(result.StandardOutput);
        var addresses = new List<string>();
        foreach (var link in json.RootElement.EnumerateArray())
        {
            if (!link.TryGetProperty("addr_info", out var infos)) continue;
            foreach (var info in infos.EnumerateArray())
            {
                if (info.TryGetProperty("local", out var local) && info.TryGetProperty("prefixlen", out var prefix))
                    addresses.Add($"{local.GetString()}/{prefix.GetInt32()}");
            }
        }
        return addresses;
    }

    private async Task BuildLanAsync(CancellationToken cancellationToken)
    {
        var lan = Topology.LanNamespace;
        await _runner.RunAsync(["ip", "netns", "add", lan], cancellationToken);
        if (Directory.Exists("/proc/sys/net/ipv6"))
        {
            await _runner.RunAsync(new ProcessRequest(
                ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]) { Namespace = lan },
                cancellationToken);
        }
        await BatchAsync(lan,
        [
            "link set dev lo up",
            $"link add {LabTopology.Bridge} address {LabTopology.BridgeMac} type bridge stp_state 0 forward_delay 0 mcast_snooping 0 nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0",
            $"link set dev {LabTopology.Bridge} up",
        ], cancellationToken);
    }

    private async Task WireHostsAsync(IReadOnlyList<LabHost> hosts, CancellationToken cancellationToken)
    {
        await BatchAsync(null, hosts.Select(h => $"netns add {h.Namespace}").ToArray(), cancellationToken);
        await BatchAsync(Topology.LanNamespace, hosts.SelectMany(h => new[]
        {
            $"link add {h.BridgePort} address {h.BridgePortMac} type veth peer name {h.Interface} address {h.Mac} netns {h.Namespace}",
            $"link set dev {h.BridgePort} master {LabTopology.Bridge} up",
        }).ToArray(), cancellationToken);
        // Two cores: a few hosts at a time is as fast as all at once and keeps the process count low.
        await Parallel.ForEachAsync(hosts, new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = cancellationToken },
            async (host, ct) => await ConfigureHostAsync(host, ct));
    }

    private async Task ConfigureHostAsync(LabHost host, CancellationToken cancellationToken)
    {
        var i = host.Interface;
        List<string> sysctls =
        [
            "net.ipv4.conf.all.arp_ignore=0", $"net.ipv4.conf.{i}.arp_ignore=0",
            "net.ipv4.conf.all.arp_announce=0", $"net.ipv4.conf.{i}.arp_announce=0",
            "net.ipv4.conf.all.arp_accept=0", $"net.ipv4.conf.{i}.arp_accept=0",
        ];
        if (Topology.Ipv6Enabled)
            sysctls.AddRange(["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0", $"net.ipv6.conf.{i}.accept_dad=0"]);
        else if (Directory.Exists("/proc/sys/net/ipv6"))
            sysctls.Add($"net.ipv6.conf.{i}.disable_ipv6=1");
        await _runner.RunAsync(new ProcessRequest(["sysctl", "-q", "-w", .. sysctls]) { Namespace = host.Namespace }, cancellationToken);

        List<string> commands = ["link set dev lo up", $"addr add {Topology.Ipv4Cidr(host)} broadcast + dev {i}"];
        if (LabTopology.Ipv6Cidr(host) is { } v6) commands.Add($"addr add {v6} dev {i} nodad");
        commands.Add($"link set dev {i} up");
        if (host.Index >= 1) commands.Add($"route add default via {Topology.Reserved} dev {i}");
        await BatchAsync(host.Namespace, commands, cancellationToken);
    }

    /// <summary>`ip [-n NS] -batch -`: many changes in one process; the first failing line aborts with its number.</summary>
    private Task<ProcessResult> BatchAsync(string? namespaceName, IReadOnlyList<string> lines, CancellationToken cancellationToken)
    {
        string[] argv = namespaceName is null ? ["ip", "-batch", "-"] : ["ip", "-n", namespaceName, "-batch", "-"];
        return _runner.RunAsync(new ProcessRequest(argv) { StandardInput = string.Join('\n', lines) + "\n" }, cancellationToken);
    }

    private LabHost FindHost(string name)
    {
        lock (_extraHosts)
            return _extraHosts.FirstOrDefault(h => h.Name == name || h.Namespace == name) ?? Topology.Host(name);
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(IsDisposed, this);

    /// <summary>The first caller (dispose or the exit guard) starts the teardown; every caller awaits that one.</summary>
    private Task TeardownOnceAsync(bool graceful)
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var existing = Interlocked.CompareExchange(ref _teardown, started.Task, null);
        if (existing is not null) return existing;
        _ = CompleteAsync();
        return started.Task;

        async Task CompleteAsync()
        {
            try
            {
                await TeardownAsync(graceful);
                started.SetResult();
            }
            catch (Exception e)
            {
                started.SetException(e);
            }
            finally
            {
                lock (LiveRunIds) LiveRunIds.Remove(_runId);
            }
        }
    }

    private async Task TeardownAsync(bool graceful)
    {
        // A newer lab of the same name swept this one and owns the names now: deleting them would break it.
        if (ReadOwner(Topology.OwnerFile) is { } owner && owner.RunId != _runId)
        {
            _logger.LogWarning("Lab {Lab}: not removing namespaces, a newer run owns the name now", Topology.Name);
            return;
        }
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        // Pods' namespaces come and go with the data plane; whatever of them is left goes with the lab.
        var pods = (await ListNamespacesAsync(deadline.Token))
            .Where(ns => LabTopology.IsLabNamespace(Topology.Name, ns) && !Namespaces.Contains(ns)).ToArray();
        IReadOnlyList<string> namespaces = [.. Namespaces, .. pods];
        await RemoveNamespacesAsync(_runner, namespaces, graceful, deadline.Token);
        DeleteDirectory(RunDirectory);
        _logger.LogInformation("Lab {Lab}: removed namespaces {Namespaces}", Topology.Name, string.Join(", ", namespaces));
    }

    /// <summary>
    /// Kills what runs in the namespaces (SIGTERM and a short grace first when <paramref name="graceful"/>),
    /// waits until they are empty, then deletes them; deleting a namespace deletes its veth ends.
    /// </summary>
    private static async Task RemoveNamespacesAsync(
        ProcessRunner runner, IReadOnlyList<string> namespaces, bool graceful, CancellationToken cancellationToken)
    {
        var existing = namespaces.Where(NamespaceExists).ToArray();
        if (existing.Length == 0) return;

        if (graceful)
        {
            var pids = await AllPidsAsync(existing, cancellationToken);
            await ProcessSignals.TerminateAsync(pids, cancellationToken);
            await WaitUntilEmptyAsync(existing, SignalGrace, cancellationToken);
        }
        var deadline = DateTime.UtcNow + KillDeadline;
        while (true)
        {
            var pids = await AllPidsAsync(existing, cancellationToken);
            if (pids.Count == 0 || DateTime.UtcNow > deadline) break;
            ProcessSignals.Kill(pids);
            await Task.Delay(20, cancellationToken);
        }

        await runner.RunAsync(new ProcessRequest(["ip", "-force", "-batch", "-"])
        {
            StandardInput = string.Concat(existing.Select(ns => $"netns del {ns}\n")),
            AllowFailure = true,
        }, cancellationToken);
        var left = existing.Where(NamespaceExists).ToArray();
        if (left.Length > 0)
            throw new InvalidOperationException($"could not delete network namespaces: {string.Join(", ", left)}");
    }

    private static async Task WaitUntilEmptyAsync(IReadOnlyList<string> namespaces, TimeSpan grace, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + grace;
        while (DateTime.UtcNow < deadline && (await AllPidsAsync(namespaces, cancellationToken)).Count > 0)
            await Task.Delay(50, cancellationToken);
    }

    private static async Task<IReadOnlyList<int>> AllPidsAsync(IReadOnlyList<string> namespaces, CancellationToken cancellationToken)
    {
        var lists = await Task.WhenAll(namespaces.Select(ns => PidsAsync(ns, cancellationToken)));
        return lists.SelectMany(p => p).Distinct().Where(ProcessSignals.IsAlive).ToArray();
    }

    private static void DeleteDirectory(string path)
    {
        try { Directory.Delete(path, recursive: true); }
        catch (DirectoryNotFoundException) { }
    }

    private static bool OwnedByDisposedLab(Owner owner) =>
        // This process owned it through an instance that is gone without disposing (a test simulating a crash,
        // or a lab whose teardown failed): a leftover like any other.
        owner.Pid == Environment.ProcessId && !IsLive(owner.RunId);

    private static bool IsLive(string runId)
    {
        lock (LiveRunIds) return LiveRunIds.Contains(runId);
    }

    private static Owner? ReadOwner(string path)
    {
        try
        {
            var parts = File.ReadAllText(path).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            return parts.Length == 3
                && int.TryParse(parts[0], CultureInfo.InvariantCulture, out var pid)
                && long.TryParse(parts[1], CultureInfo.InvariantCulture, out var start)
                ? new Owner(pid, start, parts[2])
                : null;
        }
        catch (IOException) { return null; }
    }

    /// <summary>Content of the owner file: who created the lab (pid and kernel start time) and which run it is.</summary>
    private sealed record Owner(int Pid, long StartTime, string RunId)
    {
        public static Owner Current(string runId) =>
            new(Environment.ProcessId, ProcessSignals.StartTime(Environment.ProcessId) ?? 0, runId);

        public bool IsAlive => ProcessSignals.IsAlive(Pid) && ProcessSignals.StartTime(Pid) == StartTime;

        public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Pid} {StartTime} {RunId}\n");
    }
}
