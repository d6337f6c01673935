using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Hybrid.Sandbox.Lab;

/// <summary>
/// How the lab's dnsmasq serves DHCP. dnsmasq raises any lease under 120 s to 120 s ("leases of a minute or
/// less confuse some clients", option.c); shorter renewals come from options 58/59 instead: dnsmasq honours a
/// configured T1/T2 when 2 s &lt; T &lt; lease and T1 &lt; T2 (rfc2131.c, do_options).
/// </summary>
internal sealed record DnsmasqConfig(IPAddress First, IPAddress Last, int LeaseSeconds = DnsmasqConfig.ShortestLeaseSeconds)
{
    /// <summary>dnsmasq's shortest lease.</summary>
    public const int ShortestLeaseSeconds = 120;

    /// <summary>Option 58 in seconds (null: dnsmasq's default, half the lease).</summary>
    public int? RenewSeconds { get; init; }

    /// <summary>Option 59 in seconds (null: 7/8 of the lease).</summary>
    public int? RebindSeconds { get; init; }

    /// <summary>dhcp-authoritative: NAK requests for addresses it does not know instead of staying silent.</summary>
    public bool Authoritative { get; init; }
}

/// <summary>One line of dnsmasq's lease file: expiry (Unix s), MAC, address, hostname, client id ("*" = none).</summary>
internal sealed record DnsmasqLease(long Expires, string Mac, IPAddress Address, string Hostname, string ClientId);

/// <summary>
/// Debian's dnsmasq as the DHCP server of one lab host (the router, or a test's extra host): DNS off, lease
/// file and log in <see cref="Directory"/>, readable while it runs. Disposing kills the process this started;
/// the lab's teardown kills whatever still runs in its namespaces (also after a crash of this process).
/// </summary>
internal sealed class LabDnsmasq : IAsyncDisposable
{
    private static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(10);
    private readonly int _prefixLength;
    private Process? _process;

    private LabDnsmasq(LabHost host, int prefixLength, string directory, DnsmasqConfig config)
    {
        Host = host;
        _prefixLength = prefixLength;
        Directory = directory;
        Config = config;
    }

    public LabHost Host { get; }

    /// <summary>Where the lease file, the log and the pid file are.</summary>
    public string Directory { get; }

    public DnsmasqConfig Config { get; private set; }

    public string LeaseFile => Path.Combine(Directory, "leases");

    public string LogFile => Path.Combine(Directory, "dnsmasq.log");

    /// <summary>Starts dnsmasq on <paramref name="host"/>'s interface; returns once it serves its range.</summary>
    public static async Task<LabDnsmasq> StartAsync(LabHost host, int prefixLength, string directory, DnsmasqConfig config, CancellationToken ct)
    {
        System.IO.Directory.CreateDirectory(directory);
        var server = new LabDnsmasq(host, prefixLength, directory, config);
        try
        {
            await server.RunAsync(ct);
        }
        catch
        {
            await server.StopAsync();
            throw;
        }
        return server;
    }

    /// <summary>Stops dnsmasq and starts it again with <paramref name="config"/>; <paramref name="forgetLeases"/> empties the lease file first.</summary>
    public async Task RestartAsync(DnsmasqConfig config, bool forgetLeases, CancellationToken ct)
    {
        await StopAsync();
        if (forgetLeases) File.Delete(LeaseFile);
        Config = config;
        await RunAsync(ct);
    }

    private async Task RunAsync(CancellationToken ct)
    {
        var config = Config;
        var mask = new IPAddress(BitConverter.GetBytes(IPAddress.HostToNetworkOrder(_prefixLength == 0 ? 0 : -1 << (32 - _prefixLength))));
        string[] argv =
        [
            ProcessRunner.FindExecutable("ip"), "netns", "exec", Host.Namespace, ProcessRunner.FindExecutable("dnsmasq"),
            "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--user=root", "--group=root",
            $"--interface={Host.Interface}", "--bind-interfaces",
            $"--dhcp-range={config.First},{config.Last},{mask},{config.LeaseSeconds.ToString(CultureInfo.InvariantCulture)}",
            $"--dhcp-leasefile={LeaseFile}", $"--pid-file={Path.Combine(Directory, "pid")}",
            $"--log-facility={LogFile}", "--log-dhcp", "--no-ping",
            .. config.RenewSeconds is { } t1 ? [$"--dhcp-option=option:T1,{t1}"] : Array.Empty<string>(),
            .. config.RebindSeconds is { } t2 ? [$"--dhcp-option=option:T2,{t2}"] : Array.Empty<string>(),
            .. config.Authoritative ? ["--dhcp-authoritative"] : Array.Empty<string>(),
        ];
        var start = new ProcessStartInfo(argv[0]) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in argv[1..]) start.ArgumentList.Add(a);
        var linesBefore = Log().Count;
        _process = Process.Start(start) ?? throw new InvalidOperationException("cannot start dnsmasq");
        // Ready once it has logged its DHCP range (after binding the socket).
        var deadline = Stopwatch.StartNew();
        while (!Log().Skip(linesBefore).Any(l => l.Contains("DHCP, IP range", StringComparison.Ordinal)))
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"dnsmasq exited with {_process.ExitCode}: {await _process.StandardError.ReadToEndAsync(ct)}");
            if (deadline.Elapsed > StartDeadline) throw new TimeoutException($"dnsmasq did not log its DHCP range within {StartDeadline.TotalSeconds} s");
            await Task.Delay(20, ct);
        }
    }

    /// <summary>dnsmasq's log so far, one entry per line.</summary>
    public IReadOnlyList<string> Log()
    {
        if (!File.Exists(LogFile)) return [];
        using var stream = new FileStream(LogFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>The log lines about one MAC (dnsmasq writes MACs in lower case).</summary>
    public IReadOnlyList<string> LogOf(string mac) => Log().Where(l => l.Contains(mac, StringComparison.OrdinalIgnoreCase)).ToArray();

    /// <summary>The lease file as it is now (dnsmasq rewrites it on every change).</summary>
    public IReadOnlyList<DnsmasqLease> Leases()
    {
        if (!File.Exists(LeaseFile)) return [];
        using var stream = new FileStream(LeaseFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split(' '))
            .Where(f => f.Length >= 5 && IPAddress.TryParse(f[2], out var a) && a.AddressFamily == AddressFamily.InterNetwork)
            .Select(f => new DnsmasqLease(long.Parse(f[0], CultureInfo.InvariantCulture), f[1], IPAddress.Parse(f[2]), f[3], f[4]))
            .ToArray();
    }

    public async Task StopAsync()
    {
        if (_process is not { } process) return;
        _process = null;
        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
        }
        process.Dispose();
    }

    public async ValueTask DisposeAsync() => await StopAsync();
}
