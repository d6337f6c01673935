using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hybrid.Sandbox.Lab;

/// <summary>Where and how the lab's UPnP gateway runs.</summary>
/// <param name="Namespace">The router's network namespace.</param>
/// <param name="LanInterface">Where it listens for SSDP and SOAP (the LAN side).</param>
/// <param name="WanInterface">Its external interface.</param>
/// <param name="Stun">The STUN server it asks for its public address (start it first: miniupnpd exits when
/// nobody answers).</param>
/// <param name="RunDirectory">Config, pid file and log go here; created, and removed on dispose.</param>
internal sealed record MiniUpnpdOptions(string Namespace, string LanInterface, string WanInterface, IPEndPoint Stun, string RunDirectory)
{
    /// <summary>miniupnpd's secure_mode: a host may only map ports to itself (what home routers do).</summary>
    public bool SecureMode { get; init; } = true;

    /// <summary>HTTP port for descriptions and SOAP; 0 lets miniupnpd choose (a new one at every start).</summary>
    public int HttpPort { get; init; }
}

/// <summary>
/// Debian's miniupnpd (package miniupnpd-nftables, the daemon alone: no service, nothing in the root
/// namespace) as the lab's Internet gateway, in the router's namespace:
/// <list type="bullet">
/// <item>nftables: miniupnpd 2.3.1 creates no tables or chains, it only adds rules to chains it expects. This
/// class loads its own table <see cref="TableName"/> (inet) with miniupnpd's chain names: a forward filter
/// (policy drop; replies and LAN-to-WAN pass, the rest only through miniupnpd's rules), and nat prerouting /
/// postrouting chains that jump to miniupnpd's. The config points miniupnpd at that table
/// (upnp_table_name, upnp_nat_table_name), so it never touches another table.</item>
/// <item>the WAN address: every lab address is in 198.18.0.0/15, which miniupnpd treats as reserved: without
/// help AddPortMapping answers 501, and ext_ip= with such an address is refused at start (the option that would
/// allow it, ext_allow_private_ipv4, exists only from 2.3.9). ext_perform_stun=yes with the lab's
/// <see cref="StunResponder"/> makes it accept its WAN address as public.</item>
/// <item>the process runs in the foreground (-d) with its own pid file, a minissdpd socket path that does not
/// exist (a unix socket would reach a minissdpd of the root namespace), IPv6 and NAT-PMP off.</item>
/// </list>
/// Dispose stops it (SIGTERM, then SIGKILL), deletes the table and the run directory; the lab's exit guard does
/// the same on exit and on SIGINT/SIGTERM.
/// </summary>
internal sealed partial class MiniUpnpdGateway : IAsyncDisposable
{
    /// <summary>The nftables table (family inet) this gateway owns in the router's namespace.</summary>
    public const string TableName = "hybrid_upnp_gateway";

    private static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan StopDeadline = TimeSpan.FromSeconds(5);

    private readonly MiniUpnpdOptions options;
    private readonly Process process;
    private readonly StringBuilder output = new();
    private readonly ILogger logger;
    private readonly IDisposable exitRegistration;
    private Task? teardown;
    private bool stopped;

    private MiniUpnpdGateway(MiniUpnpdOptions options, Process process, ILogger logger)
    {
        this.options = options;
        this.process = process;
        this.logger = logger;
        exitRegistration = LabExitGuard.Register(() => TeardownOnceAsync(), onSignals: true);
    }

    /// <summary>The HTTP port it serves descriptions and SOAP on.</summary>
    public int HttpPort { get; private set; }

    /// <summary>What miniupnpd logged so far (it logs to stderr in the foreground).</summary>
    public string Output
    {
        get { lock (output) return output.ToString(); }
    }

    /// <summary>True once miniupnpd has exited (also after dispose).</summary>
    public bool HasExited => Volatile.Read(ref stopped) || process.HasExited;

    /// <summary>
    /// Loads the nftables skeleton, starts miniupnpd and waits until it serves HTTP.
    /// </summary>
    /// <exception cref="InvalidOperationException">miniupnpd exited or did not serve HTTP in time; the message
    /// carries its log. Whatever was set up is removed.</exception>
    public static async Task<MiniUpnpdGateway> StartAsync(MiniUpnpdOptions options, CancellationToken cancellationToken, ILogger? logger = null)
    {
        if (!OperatingSystem.IsLinux()) throw new PlatformNotSupportedException("miniupnpd runs in a Linux network namespace");
        logger ??= NullLogger.Instance;
        Directory.CreateDirectory(options.RunDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var config = Path.Combine(options.RunDirectory, "miniupnpd.conf");
        await File.WriteAllTextAsync(config, Config(options), cancellationToken);
        await ProcessRunner.Default.RunAsync(new ProcessRequest(["nft", "-f", "-"])
        {
            Namespace = options.Namespace,
            StandardInput = Skeleton(options),
        }, cancellationToken);

        Process process;
        try
        {
            process = Start(options, config);
        }
        catch
        {
            await DeleteTableAsync(options);
            throw;
        }
        var gateway = new MiniUpnpdGateway(options, process, logger);
        try
        {
            gateway.HttpPort = await gateway.WaitUntilServingAsync(cancellationToken);
            gateway.LogStarted(options.Namespace, gateway.HttpPort, process.Id);
            return gateway;
        }
        catch
        {
            await gateway.DisposeAsync();
            throw;
        }
    }

    private static Process Start(MiniUpnpdOptions options, string config)
    {
        var argv = ProcessRunner.InNamespace(options.Namespace,
            [ProcessRunner.FindExecutable("miniupnpd"), "-f", config, "-d", "-P", Path.Combine(options.RunDirectory, "miniupnpd.pid")]);
        var info = new ProcessStartInfo(argv[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in argv.Skip(1)) info.ArgumentList.Add(a);
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {ProcessRunner.Format(argv)}");
        process.StandardInput.Close();
        return process;
    }

    private async Task<int> WaitUntilServingAsync(CancellationToken cancellationToken)
    {
        var serving = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnLine(object? sender, DataReceivedEventArgs e)
        {
            if (e.Data is null) return;
            lock (output) output.AppendLine(e.Data);
            if (ListeningLine().Match(e.Data) is { Success: true } m)
                serving.TrySetResult(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture));
        }
        process.OutputDataReceived += OnLine;
        process.ErrorDataReceived += OnLine;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(StartDeadline);
        var exited = process.WaitForExitAsync(deadline.Token);
        var first = await Task.WhenAny(serving.Task, exited);
        if (first == serving.Task) return await serving.Task;
        cancellationToken.ThrowIfCancellationRequested();
        var why = process.HasExited ? $"exited with {process.ExitCode}" : $"did not serve HTTP within {StartDeadline.TotalSeconds:0} s";
        throw new InvalidOperationException($"miniupnpd in {options.Namespace} {why}; its log:\n{Output}");
    }

    /// <summary>miniupnpd's configuration (miniupnpd.conf(5) keys of version 2.3.1).</summary>
    internal static string Config(MiniUpnpdOptions options) => string.Join('\n',
        $"ext_ifname={options.WanInterface}",
        $"listening_ip={options.LanInterface}",
        $"http_port={options.HttpPort}",
        "ext_perform_stun=yes",
        $"ext_stun_host={options.Stun.Address}",
        $"ext_stun_port={options.Stun.Port}",
        $"upnp_table_name={TableName}",
        $"upnp_nat_table_name={TableName}",
        $"secure_mode={(options.SecureMode ? "yes" : "no")}",
        "enable_natpmp=no",
        "enable_upnp=yes",
        "ipv6_disable=yes",
        "system_uptime=no",
        "notify_interval=60",
        "clean_ruleset_interval=600",
        $"minissdpdsocket={Path.Combine(options.RunDirectory, "no-minissdpd.sock")}",
        $"uuid={Guid.NewGuid()}",
        "");

    /// <summary>The table miniupnpd expects: its three chains, hooked in from chains this table owns.</summary>
    internal static string Skeleton(MiniUpnpdOptions options) => $$"""
        table inet {{TableName}} {
            chain forward {
                type filter hook forward priority filter; policy drop;
                ct state established,related accept
                iifname "{{options.LanInterface}}" accept
                jump miniupnpd
            }
            chain miniupnpd {
            }
            chain prerouting {
                type nat hook prerouting priority dstnat; policy accept;
                jump prerouting_miniupnpd
            }
            chain postrouting {
                type nat hook postrouting priority srcnat; policy accept;
                jump postrouting_miniupnpd
            }
            chain prerouting_miniupnpd {
            }
            chain postrouting_miniupnpd {
            }
        }

        """;

    private static Task DeleteTableAsync(MiniUpnpdOptions options) =>
        ProcessRunner.Default.RunAsync(new ProcessRequest(["nft", "delete", "table", "inet", TableName])
        {
            Namespace = options.Namespace,
            AllowFailure = true, // the namespace may be gone already, and the table with it
            Timeout = StopDeadline,
        }, CancellationToken.None);

    private Task TeardownOnceAsync()
    {
        lock (process) return teardown ??= TeardownAsync();
    }

    private async Task TeardownAsync()
    {
        if (!process.HasExited)
        {
            await ProcessSignals.TerminateAsync([process.Id], CancellationToken.None);
            using var deadline = new CancellationTokenSource(StopDeadline);
            try
            {
                await process.WaitForExitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync(CancellationToken.None);
            }
        }
        Volatile.Write(ref stopped, true);
        if (NetnsLab.NamespaceExists(options.Namespace)) await DeleteTableAsync(options);
        try
        {
            Directory.Delete(options.RunDirectory, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
        LogStopped(options.Namespace);
    }

    public async ValueTask DisposeAsync()
    {
        await TeardownOnceAsync();
        exitRegistration.Dispose();
        process.Dispose();
    }

    [GeneratedRegex(@"HTTP listening on port (\d+)")]
    private static partial Regex ListeningLine();

    [LoggerMessage(Level = LogLevel.Information, Message = "miniupnpd in {Namespace} serves HTTP on port {Port} (pid {Pid})")]
    private partial void LogStarted(string @namespace, int port, int pid);

    [LoggerMessage(Level = LogLevel.Information, Message = "miniupnpd in {Namespace} stopped; its table is removed")]
    private partial void LogStopped(string @namespace);
}
