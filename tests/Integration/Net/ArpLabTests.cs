using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using Hybrid.Sandbox.Lab;
using Xunit;

namespace Hybrid.Integration.Net;

/// <summary>
/// The lab tools themselves: ArpCapture and ArpProbe really work inside the namespace they are given
/// (not in the root namespace, whose interfaces share names like eth0 with the lab's), and their failures
/// say what happened.
/// </summary>
public sealed class ArpLabTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Capture_and_probe_run_inside_the_namespace_even_for_an_interface_root_does_not_have()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await ArpLab.CreateEmptyAsync(ct);
        // Interface names that exist nowhere else: if either tool opened its device in the root namespace,
        // the lookup would fail; if it found a same-named root interface, it would see none of this traffic.
        var (x, y) = (lab.Prefix + "-x", lab.Prefix + "-y");
        var (xIf, yIf) = (lab.Prefix + "x", lab.Prefix + "y");
        await lab.AddNamespaceAsync(x, ct);
        await lab.AddNamespaceAsync(y, ct);
        await lab.IpAsync(ct, "link", "add", xIf, "netns", x, "type", "veth", "peer", "name", yIf, "netns", y);
        await lab.IpAsync(ct, "-n", x, "addr", "add", "198.18.0.1/24", "dev", xIf);
        await lab.IpAsync(ct, "-n", y, "addr", "add", "198.18.0.2/24", "dev", yIf);
        await lab.IpAsync(ct, "-n", x, "link", "set", xIf, "up");
        await lab.IpAsync(ct, "-n", y, "link", "set", yIf, "up");
        var (xMac, yMac) = (await lab.MacAsync(x, xIf, ct), await lab.MacAsync(y, yIf, ct));

        await using var capture = await ArpCapture.StartAsync(y, yIf, ct);
        Assert.Equal(yMac, capture.Mac);

        var before = Stopwatch.GetTimestamp();
        var answers = await ArpProbe.ResolveAsync(x, xIf, IPAddress.Parse("198.18.0.2"), TimeSpan.FromMilliseconds(300), ct);
        var after = Stopwatch.GetTimestamp();

        var answer = Assert.Single(answers);
        Assert.Equal(yMac, answer.Mac);
        Assert.Equal(IPAddress.Parse("198.18.0.2"), answer.SenderIp);

        var request = await capture.WaitForAsync(
            c => c.Operation == ArpOp.Request && c.SenderMac.Equals(xMac) && c.TargetIp.Equals(IPAddress.Parse("198.18.0.2")), Patience, ct);
        var reply = await capture.WaitForAsync(
            c => c.Operation == ArpOp.Reply && c.SenderMac.Equals(yMac) && c.TargetMac.Equals(xMac), Patience, ct);
        Assert.Equal(IPAddress.Parse("198.18.0.1"), request.SenderIp);
        Assert.False(request.IsGratuitous);
        Assert.False(reply.IsGratuitous);
        // The kernel timestamps, moved to the Stopwatch clock, fall inside the probe call and in order.
        Assert.InRange(request.MonotonicTicks, before, after);
        Assert.InRange(reply.MonotonicTicks, request.MonotonicTicks, after);
        Assert.InRange(answer.At, request.At, DateTimeOffset.UtcNow);
    }

    [Fact]
    public async Task A_wait_that_times_out_names_the_predicate_and_lists_what_was_captured()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await ArpLab.CreateAsync(nodes: 1, ct);
        await using var capture = await ArpCapture.StartAsync(lab.Client, ArpLab.Interface, ct);
        await ArpProbe.ResolveAsync(lab.Client, ArpLab.Interface, ArpLab.NodeIp(1), TimeSpan.FromMilliseconds(200), ct);
        await capture.WaitForAsync(c => c.Operation == ArpOp.Reply, Patience, ct);

        var timeout = await Assert.ThrowsAsync<TimeoutException>(() =>
            capture.WaitForAsync(c => c.SenderIp.Equals(IPAddress.Parse("198.18.9.9")), TimeSpan.FromMilliseconds(200), ct));

        Assert.Contains("c.SenderIp.Equals(IPAddress.Parse(\"198.18.9.9\"))", timeout.Message);
        Assert.Contains($"{lab.Client}/{ArpLab.Interface}", timeout.Message);
        Assert.Contains($"ARP reply {ArpLab.NodeIp(1)} is-at", timeout.Message);
    }

    [Fact]
    public async Task Opening_a_missing_interface_or_namespace_fails_with_what_the_namespace_has()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await ArpLab.CreateEmptyAsync(ct);
        var ns = lab.Prefix + "-x";
        await lab.AddNamespaceAsync(ns, ct);
        await lab.IpAsync(ct, "-n", ns, "link", "add", lab.Prefix + "d", "type", "veth", "peer", "name", lab.Prefix + "e");

        var missingInterface = await Assert.ThrowsAsync<InvalidOperationException>(() => ArpCapture.StartAsync(ns, "eth0", ct));
        Assert.Contains("'eth0' does not exist", missingInterface.Message);
        Assert.Contains(lab.Prefix + "d", missingInterface.Message); // the namespace's own interface, listed

        var missingNamespace = await Assert.ThrowsAsync<Hybrid.Net.NetworkNamespaceException>(() => ArpCapture.StartAsync(lab.Prefix + "-none", "eth0", ct));
        Assert.Contains($"'{lab.Prefix}-none'", missingNamespace.Message);
    }
}

/// <summary>
/// Namespaces for the L2 tests, all named after one random prefix and deleted on disposal. The standard
/// topology (<see cref="CreateAsync"/>) mirrors the sandbox lab: a `-lan` namespace with bridge br0, and
/// node and client namespaces each with an eth0 veth plugged into it.
/// </summary>
internal sealed class ArpLab(string ip, string prefix) : IAsyncDisposable
{
    public const string Interface = "eth0";

    private readonly List<string> namespaces = [];

    public string Prefix => prefix;

    public string Lan => $"{prefix}-lan";

    public string Client => $"{prefix}-c";

    public string Node(int i) => $"{prefix}-n{i}";

    public static IPAddress ClientIp => IPAddress.Parse("198.18.0.100");

    public static IPAddress NodeIp(int i) => IPAddress.Parse($"198.18.0.{10 + i}");

    public static Task<ArpLab> CreateEmptyAsync(CancellationToken ct)
    {
        Requires.Root();
        var ip = Requires.Tool("ip", "iproute2");
        return Task.FromResult(new ArpLab(ip, "hyt-" + Convert.ToHexStringLower(Guid.NewGuid().ToByteArray())[..6]));
    }

    public static async Task<ArpLab> CreateAsync(int nodes, CancellationToken ct)
    {
        var lab = await CreateEmptyAsync(ct);
        try
        {
            await lab.AddNamespaceAsync(lab.Lan, ct);
            await lab.IpAsync(ct, "-n", lab.Lan, "link", "add", "br0", "type", "bridge");
            await lab.IpAsync(ct, "-n", lab.Lan, "link", "set", "br0", "up");
            await lab.PlugAsync(lab.Client, "c", $"{ClientIp}/24", "fd00::100/64", ct);
            for (var i = 1; i <= nodes; i++)
                await lab.PlugAsync(lab.Node(i), $"n{i}", $"{NodeIp(i)}/24", $"fd00::{10 + i}/64", ct);
            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    public async Task AddNamespaceAsync(string name, CancellationToken ct)
    {
        await IpAsync(ct, "netns", "add", name);
        namespaces.Add(name);
    }

    public async Task<string> IpAsync(CancellationToken ct, params string[] args)
    {
        var start = new ProcessStartInfo(ip) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {ip}");
        var stdout = process.StandardOutput.ReadToEndAsync(ct);
        var stderr = process.StandardError.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"ip {string.Join(' ', args)} exited with {process.ExitCode}: {(await stderr).Trim()}");
        return await stdout;
    }

    public async Task<PhysicalAddress> MacAsync(string ns, string interfaceName, CancellationToken ct)
    {
        // "eth0@if7  UP  d6:f3:f1:b7:4a:41 <BROADCAST,...>"
        var fields = (await IpAsync(ct, "-n", ns, "-br", "link", "show", "dev", interfaceName)).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return PhysicalAddress.Parse(fields[2]);
    }

    /// <summary>The MAC in <paramref name="ns"/>'s neighbour table for <paramref name="address"/>, or null.</summary>
    public async Task<PhysicalAddress?> NeighbourAsync(string ns, IPAddress address, CancellationToken ct)
    {
        // "198.18.0.220 lladdr d6:f3:f1:b7:4a:41 STALE"
        var fields = (await IpAsync(ct, "-n", ns, "neigh", "show", address.ToString(), "dev", Interface)).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var at = Array.IndexOf(fields, "lladdr");
        return at >= 0 && at + 1 < fields.Length ? PhysicalAddress.Parse(fields[at + 1]) : null;
    }

    /// <summary>Polls <paramref name="condition"/> until it holds; fails with <paramref name="what"/> at the deadline.</summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what, CancellationToken ct)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (!await condition())
        {
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException($"{what}: not true within {timeout.TotalSeconds:0.#} s");
            await Task.Delay(10, ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        var failures = new List<string>();
        foreach (var name in Enumerable.Reverse(namespaces))
        {
            try
            {
                await IpAsync(CancellationToken.None, "netns", "del", name);
            }
            catch (InvalidOperationException e)
            {
                failures.Add(e.Message);
            }
        }
        namespaces.Clear();
        if (failures.Count > 0) throw new InvalidOperationException("lab cleanup failed: " + string.Join("; ", failures));
    }

    private async Task PlugAsync(string ns, string port, string ipv4, string ipv6, CancellationToken ct)
    {
        await AddNamespaceAsync(ns, ct);
        await IpAsync(ct, "link", "add", Interface, "netns", ns, "type", "veth", "peer", "name", port, "netns", Lan);
        await IpAsync(ct, "-n", Lan, "link", "set", port, "master", "br0", "up");
        await IpAsync(ct, "-n", ns, "addr", "add", ipv4, "dev", Interface);
        await IpAsync(ct, "-n", ns, "addr", "add", ipv6, "dev", Interface, "nodad");
        await IpAsync(ct, "-n", ns, "link", "set", Interface, "up");
    }
}
