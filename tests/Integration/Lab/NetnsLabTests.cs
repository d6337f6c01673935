using System.Diagnostics;
using System.Text.Json;
using Hybrid.Sandbox.Lab;
using Xunit;

namespace Hybrid.Integration.Lab;

/// <summary>The network-namespace lab: reachability over the bridge, root untouched, sweep, link faults.</summary>
public sealed class NetnsLabTests
{
    [Fact]
    public async Task Three_node_lab_connects_every_host_and_leaves_the_root_namespace_alone()
    {
        Requires.Root();
        Requires.Tool("socat", "socat");
        var ct = await LabTestSupport.StartAsync();
        var topology = LabTopology.Create(new LabSpec(Name: LabTestSupport.UniqueName(), Nodes: 3));
        var rootBefore = await RootLinksAsync(ct);

        var lab = await NetnsLab.CreateAsync(topology, ct);
        try
        {
            foreach (var ns in topology.Namespaces) Assert.True(NetnsLab.NamespaceExists(ns), $"namespace {ns} missing");
            foreach (var host in topology.Hosts)
            {
                var addresses = await lab.AddressesAsync(host.Namespace, "eth0", ct);
                Assert.Contains(topology.Ipv4Cidr(host), addresses);
                Assert.Contains(LabTopology.Ipv6Cidr(host)!, addresses);
                var link = await lab.ExecAsync(host.Namespace, ["ip", "link", "show", "dev", "eth0"], ct);
                Assert.Contains($"link/ether {host.Mac} ", link.StandardOutput);
                Assert.Contains("state UP", link.StandardOutput);
            }

            foreach (var from in topology.Hosts)
                foreach (var to in topology.Hosts.Where(h => h != from))
                    await LabTestSupport.AssertReachableAsync(lab, from, to, ct);

            // IPv6 neighbour discovery crosses the bridge as well (multicast snooping off).
            await LabTestSupport.AssertReachableAsync(lab, topology.Client, topology.Node(3), ct, ipv6: true);

            var rootDuring = await RootLinksAsync(ct);
            Assert.Equal(rootBefore, rootDuring);
            Assert.DoesNotContain(rootDuring, l => l.Mac.StartsWith("02:48:59:", StringComparison.Ordinal));
        }
        finally
        {
            await lab.DisposeAsync();
        }

        foreach (var ns in topology.Namespaces) Assert.False(NetnsLab.NamespaceExists(ns), $"namespace {ns} left behind");
        Assert.False(Directory.Exists(topology.RunDirectory));
        Assert.Equal(rootBefore, await RootLinksAsync(ct));
        await lab.DisposeAsync(); // idempotent
    }

    [Fact]
    public async Task Create_after_a_crash_sweeps_the_leftovers_first_and_never_a_neighbouring_lab()
    {
        Requires.Root();
        Requires.Tool("socat", "socat");
        var ct = await LabTestSupport.StartAsync();
        var name = LabTestSupport.UniqueName();
        var topology = LabTopology.Create(new LabSpec(Name: name, Nodes: 2));
        var neighbour = $"{name}-b-lan"; // a namespace of lab "NAME-b": not ours to sweep
        var strayNamespace = $"{name}-node-7";
        Process? strayInNode = null, strayInExtra = null;
        NetnsLab? crashed = null, second = null;
        try
        {
            await ProcessRunner.Default.RunAsync(["ip", "netns", "add", neighbour], ct);
            crashed = await NetnsLab.CreateAsync(topology, ct);

            // A live lab of the same name is refused: it is not a leftover.
            var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => NetnsLab.CreateAsync(topology, ct));
            Assert.Contains("is in use by process", refused.Message);

            // Simulate a crash: the owner is gone, processes still run inside, and an older run left a namespace.
            await ProcessRunner.Default.RunAsync(["ip", "netns", "add", strayNamespace], ct);
            strayInNode = LabTestSupport.StartInNamespace(topology.Node(2).Namespace, "sleep", "300");
            strayInExtra = LabTestSupport.StartInNamespace(strayNamespace, "sleep", "300");
            await LabTestSupport.WaitUntilAsync(async () => (await NetnsLab.PidsAsync(strayNamespace, ct)).Count == 1, "stray process inside", ct);
            var owner = File.ReadAllText(topology.OwnerFile).Split(' ');
            File.WriteAllText(topology.OwnerFile, $"{owner[0]} 0 crashed-run\n");

            second = await NetnsLab.CreateAsync(topology, ct);

            await LabTestSupport.WaitUntilAsync(() => Task.FromResult(strayInNode.HasExited && strayInExtra.HasExited), "stray processes killed", ct);
            Assert.False(NetnsLab.NamespaceExists(strayNamespace));
            Assert.True(NetnsLab.NamespaceExists(neighbour), "the sweep removed another lab's namespace");
            await LabTestSupport.AssertReachableAsync(second, topology.Node(1), topology.Node(2), ct);

            // The stale instance's dispose must not delete what the new run owns now.
            await crashed.DisposeAsync();
            foreach (var ns in topology.Namespaces) Assert.True(NetnsLab.NamespaceExists(ns), $"stale dispose deleted {ns}");
            await LabTestSupport.AssertReachableAsync(second, topology.Client, topology.Node(1), ct);

            await second.DisposeAsync();
            foreach (var ns in topology.Namespaces) Assert.False(NetnsLab.NamespaceExists(ns), $"namespace {ns} left behind");
        }
        finally
        {
            if (second is not null) await second.DisposeAsync();
            if (crashed is not null) await crashed.DisposeAsync();
            LabTestSupport.Kill(strayInNode);
            LabTestSupport.Kill(strayInExtra);
            await NetnsLab.SweepAsync(name, CancellationToken.None);
            await ProcessRunner.Default.RunAsync(new ProcessRequest(["ip", "netns", "del", neighbour]) { AllowFailure = true }, CancellationToken.None);
        }
    }

    [Fact]
    public async Task Orphan_sweep_removes_labs_whose_owner_died_and_keeps_live_ones()
    {
        Requires.Root();
        var ct = await LabTestSupport.StartAsync();
        var orphan = LabTopology.Create(new LabSpec(Name: LabTestSupport.UniqueName(), Nodes: 1, Ipv6: false));
        var live = LabTopology.Create(new LabSpec(Name: LabTestSupport.UniqueName(), Nodes: 1, Ipv6: false));
        var orphanLab = await NetnsLab.CreateAsync(orphan, ct);
        var liveLab = await NetnsLab.CreateAsync(live, ct);
        try
        {
            // The owner of the orphan "died": same pid, but not the process that started at that time.
            var owner = File.ReadAllText(orphan.OwnerFile).Split(' ');
            File.WriteAllText(orphan.OwnerFile, $"{owner[0]} 1 {owner[2]}");

            var swept = await NetnsLab.SweepOrphansAsync("hyt", ct);

            Assert.Contains(orphan.Name, swept);
            Assert.DoesNotContain(live.Name, swept);
            foreach (var ns in orphan.Namespaces) Assert.False(NetnsLab.NamespaceExists(ns), $"orphan namespace {ns} left");
            Assert.False(Directory.Exists(orphan.RunDirectory));
            foreach (var ns in live.Namespaces) Assert.True(NetnsLab.NamespaceExists(ns), $"live namespace {ns} swept");
        }
        finally
        {
            await orphanLab.DisposeAsync();
            await liveLab.DisposeAsync();
        }
        foreach (var ns in live.Namespaces) Assert.False(NetnsLab.NamespaceExists(ns));
    }

    [Fact]
    public async Task Link_down_and_carrier_loss_are_visible_inside_the_node()
    {
        Requires.Root();
        Requires.Tool("socat", "socat");
        var ct = await LabTestSupport.StartAsync();
        var topology = LabTopology.Create(new LabSpec(Name: LabTestSupport.UniqueName(), Nodes: 1, Ipv6: false));
        await using var lab = await NetnsLab.CreateAsync(topology, ct);
        var node = topology.Node(1);

        async Task<string> ShowAsync() => (await lab.ExecAsync(node.Namespace, ["ip", "link", "show", "dev", "eth0"], ct)).StandardOutput;

        await lab.SetLinkAsync("node-1", up: false, ct);
        var down = await ShowAsync();
        Assert.Contains("state DOWN", down);
        Assert.DoesNotContain(",UP", down);

        await lab.SetLinkAsync("node-1", up: true, ct);
        await LabTestSupport.WaitUntilAsync(async () => (await ShowAsync()).Contains("state UP"), "eth0 up again", ct);

        await lab.SetCarrierAsync("node-1", up: false, ct);
        var noCarrier = await ShowAsync();
        Assert.Contains("NO-CARRIER", noCarrier);
        Assert.Contains(",UP", noCarrier); // still administratively up: only the cable is gone
        Assert.DoesNotContain("state UP", noCarrier);

        await lab.SetCarrierAsync("node-1", up: true, ct);
        await LabTestSupport.WaitUntilAsync(async () => (await ShowAsync()).Contains("LOWER_UP"), "carrier back", ct);
        await LabTestSupport.AssertReachableAsync(lab, topology.Client, node, ct);
        Assert.Empty(NetnsLabIpv6(await lab.AddressesAsync(node.Namespace, "eth0", ct)));
    }

    [Fact]
    public async Task Extra_hosts_join_the_bridge_and_leave_with_the_lab()
    {
        Requires.Root();
        Requires.Tool("socat", "socat");
        var ct = await LabTestSupport.StartAsync();
        var topology = LabTopology.Create(new LabSpec(Name: LabTestSupport.UniqueName(), Nodes: 1));
        var lab = await NetnsLab.CreateAsync(topology, ct);
        var dhcp = topology.ExtraHost("dhcp", 1);
        try
        {
            await lab.AddHostAsync(dhcp, ct);
            Assert.Contains(dhcp.Namespace, lab.Namespaces);
            await LabTestSupport.AssertReachableAsync(lab, dhcp, topology.Node(1), ct);
            await Assert.ThrowsAsync<ArgumentException>(() => lab.AddHostAsync(dhcp, ct));
        }
        finally
        {
            await lab.DisposeAsync();
        }
        Assert.False(NetnsLab.NamespaceExists(dhcp.Namespace));
    }

    private static IEnumerable<string> NetnsLabIpv6(IReadOnlyList<string> addresses) => addresses.Where(a => a.Contains(':'));

    private sealed record RootLink(string Name, string Mac);

    private static async Task<IReadOnlyList<RootLink>> RootLinksAsync(CancellationToken ct)
    {
        var result = await ProcessRunner.Default.RunAsync(["ip", "-j", "link", "show"], ct);
        using var json = JsonDocument.Parse(result.StandardOutput);
        return json.RootElement.EnumerateArray()
            .Select(l => new RootLink(l.GetProperty("ifname").GetString()!, l.TryGetProperty("address", out var a) ? a.GetString()! : ""))
            .OrderBy(l => l.Name, StringComparer.Ordinal)
            .ToArray();
    }
}

/// <summary>Shared by the lab tests: unique names, orphan sweep, polling with a deadline, reachability.</summary>
internal static class LabTestSupport
{
    private static readonly TimeSpan DefaultDeadline = TimeSpan.FromSeconds(10);

    /// <summary>A lab name no other test uses: `hyt` and four random characters.</summary>
    public static string UniqueName() =>
        "hyt" + string.Concat(Enumerable.Range(0, 4).Select(_ => "abcdefghijklmnopqrstuvwxyz0123456789"[Random.Shared.Next(36)]));

    /// <summary>Sweeps labs of killed test runs (owner process dead) and returns a token bounding the test.</summary>
    public static async Task<CancellationToken> StartAsync()
    {
        var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await NetnsLab.SweepOrphansAsync("hyt", cts.Token);
        return cts.Token;
    }

    public static async Task WaitUntilAsync(Func<Task<bool>> condition, string what, CancellationToken ct, TimeSpan? deadline = null)
    {
        var until = DateTime.UtcNow + (deadline ?? DefaultDeadline);
        while (!await condition())
        {
            if (DateTime.UtcNow > until) throw new TimeoutException($"timed out waiting for: {what}");
            await Task.Delay(25, ct);
        }
    }

    public static void WaitUntil(Func<bool> condition, string what, TimeSpan? deadline = null)
    {
        var until = DateTime.UtcNow + (deadline ?? DefaultDeadline);
        while (!condition())
        {
            if (DateTime.UtcNow > until) throw new TimeoutException($"timed out waiting for: {what}");
            Thread.Sleep(25);
        }
    }

    /// <summary>
    /// <paramref name="from"/> reaches <paramref name="to"/> over the bridge: a TCP connect to a closed port is
    /// answered with a reset ("Connection refused", not a timeout), and <paramref name="from"/>'s neighbour
    /// table then holds <paramref name="to"/>'s MAC. (No ping needed: iputils is not a lab dependency.)
    /// </summary>
    public static async Task AssertReachableAsync(NetnsLab lab, LabHost from, LabHost to, CancellationToken ct, bool ipv6 = false)
    {
        var address = ipv6 ? $"[{to.Ipv6}]" : to.Ipv4.ToString();
        var target = ipv6 ? $"TCP6:{address}:9,connect-timeout=3" : $"TCP4:{address}:9,connect-timeout=3";
        var result = await lab.ExecAsync(from.Namespace, new ProcessRequest(["socat", "-u", "/dev/null", target]) { AllowFailure = true }, ct);
        Assert.True(result.StandardError.Contains("Connection refused"),
            $"{from.Name} -> {to.Name} ({address}): expected a refused connection, got exit {result.ExitCode}: {result.StandardError}");
        var neigh = await lab.ExecAsync(from.Namespace, ["ip", "neigh", "show", (ipv6 ? to.Ipv6! : to.Ipv4).ToString()], ct);
        Assert.Contains($"lladdr {to.Mac}", neigh.StandardOutput);
    }

    /// <summary>A long-running child inside a namespace that the lab does not know about.</summary>
    public static Process StartInNamespace(string namespaceName, params string[] argv)
    {
        var info = new ProcessStartInfo("ip") { RedirectStandardInput = true };
        foreach (var arg in new[] { "netns", "exec", namespaceName }.Concat(argv)) info.ArgumentList.Add(arg);
        return Process.Start(info) ?? throw new InvalidOperationException("could not start " + string.Join(' ', argv));
    }

    public static void Kill(Process? process)
    {
        if (process is null) return;
        try { process.Kill(entireProcessTree: true); }
        catch (InvalidOperationException) { }
        process.Dispose();
    }
}
