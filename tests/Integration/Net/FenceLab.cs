using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using Hybrid.Net;

namespace Hybrid.Integration.Net;

/// <summary>
/// Throw-away network namespaces "hyt-fn-PID-RANDOM-ROLE" for the kernel fence and heartbeat tests: a LAN
/// namespace holding bridge br0, and hosts whose eth0 is a veth plugged into it. Removed (with every table,
/// link, socket and address inside) on dispose, at process exit (SIGTERM and Ctrl-C end the test host
/// through it), and by the next run when this process died before either: namespaces of dead PIDs are swept.
/// </summary>
internal sealed class FenceLab : IAsyncDisposable
{
    public const string Interface = "eth0";
    private const string Prefix = "hyt-fn-";

    private readonly List<string> namespaces = [];
    private readonly Lock gate = new();

    private FenceLab(string prefix) => Name = prefix;

    /// <summary>The run prefix every namespace name starts with.</summary>
    public string Name { get; }

    public string Lan => $"{Name}-lan";

    public string Ns(string role) => $"{Name}-{role}";

    public static async Task<FenceLab> CreateAsync(CancellationToken ct)
    {
        Requires.Root();
        Requires.Tool("ip", "iproute2");
        await SweepLeftoversAsync(ct);
        var lab = new FenceLab($"{Prefix}{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..4]}");
        AppDomain.CurrentDomain.ProcessExit += lab.OnProcessExit;
        try
        {
            await lab.AddNamespaceAsync(lab.Lan, ct);
            await lab.IpAsync(ct, "-n", lab.Lan, "link", "add", "br0", "type", "bridge");
            await lab.IpAsync(ct, "-n", lab.Lan, "link", "set", "br0", "up");
            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    /// <summary>Adds namespace ROLE whose eth0 sits on the LAN bridge with the given addresses (IPv6 without DAD).</summary>
    public async Task<string> AddHostAsync(string role, string ipv4Cidr, string? ipv6Cidr, CancellationToken ct)
    {
        var ns = Ns(role);
        await AddNamespaceAsync(ns, ct);
        await IpAsync(ct, "link", "add", Interface, "netns", ns, "type", "veth", "peer", "name", role, "netns", Lan);
        await IpAsync(ct, "-n", Lan, "link", "set", role, "master", "br0", "up");
        await IpAsync(ct, "-n", ns, "addr", "add", ipv4Cidr, "dev", Interface);
        if (ipv6Cidr is not null) await IpAsync(ct, "-n", ns, "addr", "add", ipv6Cidr, "dev", Interface, "nodad");
        await IpAsync(ct, "-n", ns, "link", "set", Interface, "up");
        await IpAsync(ct, "-n", ns, "link", "set", "lo", "up");
        return ns;
    }

    public async Task AddNamespaceAsync(string ns, CancellationToken ct)
    {
        await IpAsync(ct, "netns", "add", ns);
        lock (gate) namespaces.Add(ns);
    }

    /// <summary>The interface as the agent would see it (index and name) from inside <paramref name="ns"/>.</summary>
    public async Task<LinkInfo> LinkAsync(string ns, string name, CancellationToken ct)
    {
        await using var links = LinkTable.Open(ns);
        return await links.GetAsync(name, ct) ?? throw new InvalidOperationException($"{ns} has no interface {name}");
    }

    public async Task<PhysicalAddress> MacAsync(string ns, CancellationToken ct) => (await LinkAsync(ns, Interface, ct)).HardwareAddress;

    /// <summary>`ip ARGS…`; returns stdout, throws with stderr on failure.</summary>
    public async Task<string> IpAsync(CancellationToken ct, params string[] args)
    {
        var result = await RunAsync("ip", args, ct);
        return result.ExitCode == 0 ? result.Stdout : throw new InvalidOperationException($"ip {string.Join(' ', args)} failed ({result.ExitCode}): {result.Stderr.Trim()}");
    }

    /// <summary>Runs a tool inside <paramref name="ns"/> (`ip netns exec`) to its end; never throws for a non-zero exit.</summary>
    public Task<ProcessResult> ExecAsync(string ns, CancellationToken ct, params string[] command) =>
        RunAsync("ip", ["netns", "exec", ns, .. command], ct);

    /// <summary>Sets a sysctl inside <paramref name="ns"/>.</summary>
    public async Task SysctlAsync(string ns, string key, string value, CancellationToken ct)
    {
        var result = await ExecAsync(ns, ct, "sysctl", "-qw", $"{key}={value}");
        if (result.ExitCode != 0) throw new InvalidOperationException($"sysctl {key}={value} in {ns}: {result.Stderr.Trim()}");
    }

    /// <summary>The MAC in <paramref name="ns"/>'s neighbour table for <paramref name="address"/> and the entry's state, or null.</summary>
    public async Task<(PhysicalAddress? Mac, string State)?> NeighbourAsync(string ns, IPAddress address, CancellationToken ct)
    {
        // "fd00::220 lladdr 6e:ab:67:ba:f9:34 REACHABLE" or "fd00::220 FAILED"
        var fields = (await IpAsync(ct, "-n", ns, "neigh", "show", address.ToString(), "dev", Interface)).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (fields.Length == 0) return null;
        var at = Array.IndexOf(fields, "lladdr");
        return (at >= 0 && at + 1 < fields.Length ? PhysicalAddress.Parse(fields[at + 1]) : null, fields[^1]);
    }

    public static async Task<ProcessResult> RunAsync(string tool, IReadOnlyList<string> args, CancellationToken ct)
    {
        var start = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {tool}");
        try
        {
            var stdout = process.StandardOutput.ReadToEndAsync(ct);
            var stderr = process.StandardError.ReadToEndAsync(ct);
            await process.WaitForExitAsync(ct);
            return new ProcessResult(process.ExitCode, await stdout, await stderr);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
    }

    private static async Task SweepLeftoversAsync(CancellationToken ct)
    {
        foreach (var line in (await RunAsync("ip", ["netns", "list"], ct)).Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var name = line.Split(' ')[0];
            if (!name.StartsWith(Prefix, StringComparison.Ordinal)) continue;
            if (int.TryParse(name[Prefix.Length..].Split('-')[0], out var pid) && pid != Environment.ProcessId && !Directory.Exists($"/proc/{pid}"))
                await RunAsync("ip", ["netns", "del", name], ct); // a failure means another sweeper won
        }
    }

    private void OnProcessExit(object? sender, EventArgs e) => DeleteAll();

    private void DeleteAll()
    {
        string[] names;
        lock (gate)
        {
            names = [.. Enumerable.Reverse(namespaces)];
            namespaces.Clear();
        }
        foreach (var ns in names)
        {
            try
            {
                using var process = Process.Start(new ProcessStartInfo("ip", ["netns", "del", ns]) { RedirectStandardError = true });
                process?.WaitForExit(5000);
            }
            catch (Exception)
            {
                // best effort: the next run sweeps it
            }
        }
    }

    public ValueTask DisposeAsync()
    {
        AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
        DeleteAll();
        return ValueTask.CompletedTask;
    }
}

internal sealed record ProcessResult(int ExitCode, string Stdout, string Stderr);
