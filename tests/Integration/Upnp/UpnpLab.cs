using System.Net;
using System.Net.Sockets;
using System.Text;
using Hybrid.Domain;
using Hybrid.Net;
using Hybrid.Sandbox.Lab;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.FSharp.Collections;

namespace Hybrid.Integration.Upnp;

/// <summary>
/// A home network and a piece of the Internet, in three namespaces named after one random prefix (which carries
/// this process's pid, so a later run sweeps what a killed run left):
/// <list type="bullet">
/// <item>`-node`: the Kubernetes node, eth0 198.18.0.10/24 plus the VIP 198.18.0.200/32, default route via the router;</item>
/// <item>`-gw`: the router, lan0 198.18.0.1/24 and wan0 198.19.0.2/24, forwarding, with miniupnpd (secure mode);</item>
/// <item>`-inet`: an Internet host 198.19.0.1/24 with the STUN server miniupnpd asks. It has no route to the LAN:
/// it reaches the node only through the router's WAN address and a port mapping.</item>
/// </list>
/// Links are created inside the namespaces; nothing touches the root namespace. Disposal stops miniupnpd
/// (its table goes with it) and the STUN server, and deletes the namespaces.
/// </summary>
internal sealed class UpnpLab : IAsyncDisposable
{
    private const string PrefixStart = "hyt-up";
    public static readonly IPAddress NodeIp = IPAddress.Parse("198.18.0.10");
    public static readonly IPAddress Vip = IPAddress.Parse("198.18.0.200");
    public static readonly IPAddress RouterLan = IPAddress.Parse("198.18.0.1");
    public static readonly IPAddress RouterWan = IPAddress.Parse("198.19.0.2");
    public static readonly IPAddress InternetHost = IPAddress.Parse("198.19.0.1");

    private readonly List<string> namespaces = [];
    private readonly IDisposable exitRegistration;
    private StunResponder? stun;

    private UpnpLab(string prefix)
    {
        Node = prefix + "-node";
        Router = prefix + "-gw";
        Internet = prefix + "-inet";
        RunDirectory = Path.Combine(Path.GetTempPath(), prefix);
        // A test run stopped by a signal or an exit still removes the namespaces (SIGKILL: the next run's sweep).
        exitRegistration = LabExitGuard.Register(DeleteNamespacesAsync, onSignals: true);
    }

    public string Node { get; }
    public string Router { get; }
    public string Internet { get; }
    public string RunDirectory { get; }
    public MiniUpnpdGateway? Gateway { get; private set; }

    public static Ip VipIp => IpModule.tryParse(Vip.ToString())!.Value;

    /// <summary>Builds the namespaces and the STUN server; the gateway only when <paramref name="startGateway"/>.</summary>
    public static async Task<UpnpLab> CreateAsync(CancellationToken ct, bool startGateway = true)
    {
        Requires.Root();
        Requires.Tool("ip", "iproute2");
        Requires.Tool("nft", "nftables");
        Requires.Tool("miniupnpd", "miniupnpd-nftables");
        await SweepAsync(ct);
        var lab = new UpnpLab($"{PrefixStart}{Environment.ProcessId}-{Convert.ToHexStringLower(Guid.NewGuid().ToByteArray())[..4]}");
        try
        {
            await lab.BuildAsync(ct);
            if (startGateway) await lab.StartGatewayAsync(ct);
            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    private async Task BuildAsync(CancellationToken ct)
    {
        foreach (var ns in new[] { Node, Router, Internet })
        {
            await Ip(ct, "netns", "add", ns);
            lock (namespaces) namespaces.Add(ns);
            await Ip(ct, "-n", ns, "link", "set", "lo", "up");
        }
        await Ip(ct, "link", "add", "eth0", "netns", Node, "type", "veth", "peer", "name", "lan0", "netns", Router);
        await Ip(ct, "link", "add", "eth0", "netns", Internet, "type", "veth", "peer", "name", "wan0", "netns", Router);
        await Ip(ct, "-n", Node, "addr", "add", $"{NodeIp}/24", "dev", "eth0");
        await Ip(ct, "-n", Node, "addr", "add", $"{Vip}/32", "dev", "eth0");
        await Ip(ct, "-n", Router, "addr", "add", $"{RouterLan}/24", "dev", "lan0");
        await Ip(ct, "-n", Router, "addr", "add", $"{RouterWan}/24", "dev", "wan0");
        await Ip(ct, "-n", Internet, "addr", "add", $"{InternetHost}/24", "dev", "eth0");
        foreach (var (ns, link) in new[] { (Node, "eth0"), (Router, "lan0"), (Router, "wan0"), (Internet, "eth0") })
            await Ip(ct, "-n", ns, "link", "set", link, "up");
        await Ip(ct, "-n", Node, "route", "add", "default", "via", RouterLan.ToString());
        await ProcessRunner.Default.RunAsync(new ProcessRequest(["sysctl", "-qw", "net.ipv4.ip_forward=1"]) { Namespace = Router }, ct);
        stun = StunResponder.Start(Internet, new IPEndPoint(InternetHost, StunResponder.DefaultPort));
    }

    /// <summary>Starts miniupnpd in the router (again, after <see cref="StopGatewayAsync"/>).</summary>
    public async Task StartGatewayAsync(CancellationToken ct, bool secureMode = true)
    {
        if (Gateway is not null) throw new InvalidOperationException("the gateway is running");
        Gateway = await MiniUpnpdGateway.StartAsync(
            new MiniUpnpdOptions(Router, "lan0", "wan0", stun!.Endpoint, Path.Combine(RunDirectory, "miniupnpd")) { SecureMode = secureMode }, ct);
    }

    public async Task StopGatewayAsync()
    {
        if (Gateway is { } g) await g.DisposeAsync();
        Gateway = null;
    }

    /// <summary>The client the agent would have, with its sockets in the node's namespace.</summary>
    public NodeClient CreateNodeClient()
    {
        var sockets = SocketFactories.InNamespace(Node);
        var http = new GatewayHttp(sockets);
        return new NodeClient(
            http,
            new IgdClient(http, NullLogger<IgdClient>.Instance),
            new GatewayDiscovery(new SsdpSearch("eth0", sockets, NullLogger<SsdpSearch>.Instance), http, NullLogger<GatewayDiscovery>.Instance));
    }

    /// <summary>Listens on VIP:port in the node's namespace and answers every connection with <paramref name="token"/>.</summary>
    public VipListener ListenOnVip(int port, string token) => new(SocketFactories.InNamespace(Node), new IPEndPoint(Vip, port), token);

    /// <summary>Connects from the Internet host to the router's WAN address; the first line received, or why it failed.</summary>
    public async Task<(string? Answer, string? Failure)> ConnectFromInternetAsync(int port, CancellationToken ct)
    {
        using var socket = SocketFactories.InNamespace(Internet)(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(TimeSpan.FromSeconds(2));
        try
        {
            await socket.ConnectAsync(new IPEndPoint(RouterWan, port), deadline.Token);
            var buffer = new byte[256];
            var n = await socket.ReceiveAsync(buffer, SocketFlags.None, deadline.Token);
            return (Encoding.ASCII.GetString(buffer, 0, n).Trim(), null);
        }
        catch (SocketException e)
        {
            return (null, e.SocketErrorCode.ToString());
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return (null, "timeout");
        }
    }

    /// <summary>`upnpc` (miniupnpc) in the node's namespace, as an independent client: -i accepts this IGD
    /// although it reports a private external address.</summary>
    public Task<ProcessResult> UpnpcAsync(CancellationToken ct, params string[] args) =>
        ProcessRunner.Default.RunAsync(new ProcessRequest(["upnpc", "-i", "-m", "eth0", .. args]) { Namespace = Node, AllowFailure = true, Timeout = TimeSpan.FromSeconds(20) }, ct);

    /// <summary>The rules miniupnpd put in its chains.</summary>
    public async Task<string> GatewayRulesAsync(CancellationToken ct) =>
        (await ProcessRunner.Default.RunAsync(new ProcessRequest(["nft", "list", "table", "inet", MiniUpnpdGateway.TableName]) { Namespace = Router }, ct)).StandardOutput;

    public static Wants Forward(string name, int port, MappingLease lease, bool heldHere = true, string ns = "default") =>
        Forwards((name, port, lease, heldHere, ns));

    public static Wants Forwards(params (string Name, int Port, MappingLease Lease, bool HeldHere, string Namespace)[] services) =>
        new(true,
            ListModule.OfSeq(services.Select(s =>
            {
                var key = new ServiceKey(s.Namespace, s.Name);
                return new ServiceForward(key, VipIp, ListModule.OfSeq([Tuple.Create(MappingProtocol.Tcp, s.Port)]), s.Lease, Hybrid.Domain.Upnp.description(key), s.HeldHere);
            })),
            FSharpList<Tuple<ServiceKey, ForwardProblem>>.Empty);

    public static MappingLease Lease(int seconds) => MappingLease.NewLasting(LeaseSecondsModule.tryCreate(seconds)!.Value);

    private static Task<ProcessResult> Ip(CancellationToken ct, params string[] args) => ProcessRunner.Default.RunAsync(["ip", .. args], ct);

    private static async Task SweepAsync(CancellationToken ct)
    {
        foreach (var ns in await NetnsLab.ListNamespacesAsync(ct))
        {
            if (!ns.StartsWith(PrefixStart, StringComparison.Ordinal)) continue;
            var pidText = new string(ns[PrefixStart.Length..].TakeWhile(char.IsAsciiDigit).ToArray());
            if (int.TryParse(pidText, out var pid) && pid != Environment.ProcessId && !ProcessSignals.IsAlive(pid))
            {
                foreach (var p in await NetnsLab.PidsAsync(ns, ct)) ProcessSignals.Kill([p]);
                await ProcessRunner.Default.RunAsync(new ProcessRequest(["ip", "netns", "del", ns]) { AllowFailure = true }, ct);
            }
        }
    }

    private async Task DeleteNamespacesAsync()
    {
        string[] doomed;
        lock (namespaces)
        {
            doomed = [.. Enumerable.Reverse(namespaces)];
            namespaces.Clear();
        }
        foreach (var ns in doomed)
            await ProcessRunner.Default.RunAsync(new ProcessRequest(["ip", "netns", "del", ns]) { AllowFailure = true }, CancellationToken.None);
        if (Directory.Exists(RunDirectory)) Directory.Delete(RunDirectory, recursive: true);
    }

    public async ValueTask DisposeAsync()
    {
        await StopGatewayAsync();
        if (stun is not null) await stun.DisposeAsync();
        await DeleteNamespacesAsync();
        exitRegistration.Dispose();
    }
}

/// <summary>The UPnP client parts as the agent wires them.</summary>
internal sealed record NodeClient(GatewayHttp Http, IgdClient Igd, GatewayDiscovery Discovery) : IDisposable
{
    public void Dispose() => Http.Dispose();
}

/// <summary>A TCP server on the VIP in the node's namespace that writes a token to every connection.</summary>
internal sealed class VipListener : IAsyncDisposable
{
    private readonly Socket socket;
    private readonly CancellationTokenSource stop = new();
    private readonly Task loop;
    private int accepted;

    public VipListener(SocketFactory sockets, IPEndPoint endpoint, string token)
    {
        socket = sockets(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        socket.Bind(endpoint);
        socket.Listen(16);
        loop = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var connection = await socket.AcceptAsync(stop.Token);
                    Interlocked.Increment(ref accepted);
                    await connection.SendAsync(Encoding.ASCII.GetBytes(token + "\n"), SocketFlags.None, stop.Token);
                    connection.Shutdown(SocketShutdown.Both);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                catch (SocketException)
                {
                    // a client that went away; keep serving
                }
            }
        });
    }

    /// <summary>Connections accepted so far.</summary>
    public int Accepted => Volatile.Read(ref accepted);

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync();
        socket.Dispose();
        await loop;
        stop.Dispose();
    }
}
