using System.Diagnostics;
using System.Globalization;
using System.Net;
using Hybrid.Sandbox.Lab;

namespace Hybrid.Integration.Net.Dhcp;

/// <summary>
/// How the test's dnsmasq serves DHCP. dnsmasq raises any lease under 120 s to 120 s ("leases of a minute or
/// less confuse some clients", option.c), so short renewals come from options 58/59 instead: dnsmasq honours a
/// configured T1/T2 when 2 s &lt; T &lt; lease and T1 &lt; T2 (rfc2131.c, do_options).
/// </summary>
internal sealed record DnsmasqConfig(IPAddress First, IPAddress Last, int LeaseSeconds = 120)
{
    /// <summary>Option 58 in seconds (null: dnsmasq's default, half the lease).</summary>
    public int? RenewSeconds { get; init; } = 3;

    /// <summary>Option 59 in seconds (null: 7/8 of the lease).</summary>
    public int? RebindSeconds { get; init; } = 5;

    /// <summary>dhcp-authoritative: NAK requests for addresses it does not know instead of staying silent.</summary>
    public bool Authoritative { get; init; }
}

/// <summary>One line of dnsmasq's lease file: expiry (Unix s), MAC, address, hostname, client id ("*" = none).</summary>
internal sealed record DnsmasqLease(long Expires, string Mac, IPAddress Address, string Hostname, string ClientId);

/// <summary>
/// The real DHCP server of a test: Debian's dnsmasq in the lab's extra host "dhcp" (its eth0 on the lab's
/// bridge), DNS off, lease file and log in the lab's run directory. Stopping kills the process this class
/// started; the lab's teardown kills whatever runs in its namespaces anyway (also after a crash).
/// </summary>
internal sealed class DnsmasqServer : IAsyncDisposable
{
    private static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(10);
    private readonly string _directory;
    private Process? _process;

    private DnsmasqServer(LabHost host, string directory)
    {
        Host = host;
        _directory = directory;
    }

    public LabHost Host { get; }

    public string LeaseFile => Path.Combine(_directory, "leases");

    public string LogFile => Path.Combine(_directory, "dnsmasq.log");

    /// <summary>Wires the "dhcp" host to the lab and starts dnsmasq on it.</summary>
    public static async Task<DnsmasqServer> StartAsync(NetnsLab lab, DnsmasqConfig config, Xunit.Abstractions.ITestOutputHelper output, CancellationToken ct)
    {
        var dnsmasq = Requires.Tool("dnsmasq", "dnsmasq-base");
        var host = await lab.AddHostAsync(lab.Topology.ExtraHost("dhcp", 1), ct);
        var directory = Path.Combine(lab.RunDirectory, "dnsmasq");
        Directory.CreateDirectory(directory);
        var server = new DnsmasqServer(host, directory) { Output = output };
        await server.RunAsync(dnsmasq, lab.Topology.PrefixLength, config, ct);
        return server;
    }

    /// <summary>Stops dnsmasq and starts it again with <paramref name="config"/>; <paramref name="forgetLeases"/> empties the lease file first.</summary>
    public async Task RestartAsync(int prefixLength, DnsmasqConfig config, bool forgetLeases, CancellationToken ct)
    {
        await StopAsync();
        if (forgetLeases) File.Delete(LeaseFile);
        await RunAsync(Requires.Tool("dnsmasq", "dnsmasq-base"), prefixLength, config, ct);
    }

    private async Task RunAsync(string dnsmasq, int prefixLength, DnsmasqConfig config, CancellationToken ct)
    {
        var mask = new IPAddress(BitConverter.GetBytes(IPAddress.HostToNetworkOrder(prefixLength == 0 ? 0 : -1 << (32 - prefixLength))));
        string[] argv =
        [
            "ip", "netns", "exec", Host.Namespace, dnsmasq,
            "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--user=root", "--group=root",
            $"--interface={Host.Interface}", "--bind-interfaces",
            $"--dhcp-range={config.First},{config.Last},{mask},{config.LeaseSeconds.ToString(CultureInfo.InvariantCulture)}",
            $"--dhcp-leasefile={LeaseFile}", $"--pid-file={Path.Combine(_directory, "pid")}",
            $"--log-facility={LogFile}", "--log-dhcp", "--no-ping",
            .. config.RenewSeconds is { } t1 ? [$"--dhcp-option=option:T1,{t1}"] : Array.Empty<string>(),
            .. config.RebindSeconds is { } t2 ? [$"--dhcp-option=option:T2,{t2}"] : Array.Empty<string>(),
            .. config.Authoritative ? ["--dhcp-authoritative"] : Array.Empty<string>(),
        ];
        var start = new ProcessStartInfo(argv[0]) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in argv[1..]) start.ArgumentList.Add(a);
        var linesBefore = File.Exists(LogFile) ? File.ReadAllLines(LogFile).Length : 0;
        _process = Process.Start(start) ?? throw new InvalidOperationException("cannot start dnsmasq");
        // Ready once it has logged its DHCP range (after binding the socket).
        var deadline = Stopwatch.StartNew();
        while (!Log().Skip(linesBefore).Any(l => l.Contains("DHCP, IP range", StringComparison.Ordinal)))
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"dnsmasq exited with {_process.ExitCode}: {await _process.StandardError.ReadToEndAsync(ct)}");
            if (deadline.Elapsed > StartDeadline) throw new TimeoutException("dnsmasq did not log its DHCP range within 10 s");
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
            .Where(f => f.Length >= 5 && IPAddress.TryParse(f[2], out var a) && a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
            .Select(f => new DnsmasqLease(long.Parse(f[0], CultureInfo.InvariantCulture), f[1], IPAddress.Parse(f[2]), f[3], f[4]))
            .ToArray();
    }

    public async Task StopAsync()
    {
        if (_process is not { } process) return;
        _process = null;
        if (!process.HasExited)
        {
            process.Kill();
            await process.WaitForExitAsync();
        }
        process.Dispose();
    }

    /// <summary>Stops dnsmasq; its log goes to <paramref name="output"/> (shown when a test fails).</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        if (Output is { } output)
        {
            try
            {
                foreach (var line in Log()) output.WriteLine("dnsmasq: " + line);
            }
            catch (InvalidOperationException)
            {
                // the test has finished
            }
        }
    }

    /// <summary>Where the log goes when the server is disposed.</summary>
    public Xunit.Abstractions.ITestOutputHelper? Output { get; init; }
}
