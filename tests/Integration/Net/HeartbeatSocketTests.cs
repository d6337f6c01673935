using System.Net;
using System.Net.Sockets;
using System.Text;
using Hybrid.Agent;
using Hybrid.Net;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Net;

/// <summary>
/// The heartbeat transport between real namespaces: nodes on one bridge hear each other (IPv4, IPv6, and a
/// node without IPv4), never themselves, each heartbeat once; a host behind a router hears nothing.
/// </summary>
public sealed class HeartbeatSocketTests(ITestOutputHelper output)
{
    private const int Port = 7946;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Nodes_on_one_segment_hear_each_other_once_per_heartbeat_and_never_themselves()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await FenceLab.CreateAsync(ct);
        var n1 = await lab.AddHostAsync("n1", "198.18.0.11/24", "fd00::11/64", ct);
        var n2 = await lab.AddHostAsync("n2", "198.18.0.12/24", "fd00::12/64", ct);
        // An IPv6-only node: no IPv4 address, and no IPv4 frame in or out (an interface without an address
        // still takes limited broadcasts, so a missing address alone would not make it IPv6-only).
        var n3 = lab.Ns("n3");
        await lab.AddNamespaceAsync(n3, ct);
        await lab.IpAsync(ct, "link", "add", FenceLab.Interface, "netns", n3, "type", "veth", "peer", "name", "n3", "netns", lab.Lan);
        await lab.IpAsync(ct, "-n", lab.Lan, "link", "set", "n3", "master", "br0", "up");
        await lab.IpAsync(ct, "-n", n3, "link", "set", FenceLab.Interface, "up");
        var noIPv4 = await lab.ExecAsync(n3, ct, "nft",
            "add table netdev no_ipv4; " +
            $"add chain netdev no_ipv4 in {{ type filter hook ingress device \"{FenceLab.Interface}\" priority 0; }}; " +
            $"add chain netdev no_ipv4 out {{ type filter hook egress device \"{FenceLab.Interface}\" priority 0; }}; " +
            "add rule netdev no_ipv4 in meta protocol { ip, arp } drop; add rule netdev no_ipv4 out meta protocol { ip, arp } drop");
        Assert.True(noIPv4.ExitCode == 0, noIPv4.Stderr);
        await using var s1 = await OpenAsync(lab, n1, ct);
        await using var s2 = await OpenAsync(lab, n2, ct);
        await using var s3 = await OpenAsync(lab, n3, ct);
        Assert.Equal(HeartbeatFamilies.IPv4 | HeartbeatFamilies.IPv6, s1.Families);
        // The IPv6-only node needs its link-local address (DAD) before it can send on IPv6.
        await Eventually.WaitAsync(async () => (await lab.IpAsync(ct, "-n", n3, "-6", "addr", "show", "dev", FenceLab.Interface, "scope", "link")).Contains("fe80") &&
                                               !(await lab.IpAsync(ct, "-n", n3, "-6", "addr", "show", "dev", FenceLab.Interface, "tentative")).Contains("fe80"),
            Patience, "n3's link-local address is usable");

        var before = MonotonicClock.NowMs;
        Assert.Equal(HeartbeatFamilies.IPv4 | HeartbeatFamilies.IPv6, await s1.SendAsync(Text("n1 #1"), ct));
        var at2 = await NextFromAsync(s2, "n1 #1", ct);
        var at3 = await NextFromAsync(s3, "n1 #1", ct);
        var after = MonotonicClock.NowMs;
        Assert.InRange(at2.ReceivedAtMs, before, after);
        Assert.True(at2.Source.Address.Equals(IPAddress.Parse("198.18.0.11")) || at2.Source.AddressFamily == AddressFamily.InterNetworkV6, $"n2 heard n1 from {at2.Source}");
        Assert.True(at3.Source.AddressFamily == AddressFamily.InterNetworkV6, $"the IPv6-only node heard n1 from {at3.Source}");
        Assert.Equal(Port, at2.Source.Port);

        // The IPv6-only node is heard by the others.
        var sentBy3 = await s3.SendAsync(Text("n3 #1"), ct);
        Assert.True(sentBy3.HasFlag(HeartbeatFamilies.IPv6), $"the IPv6-only node sent on {sentBy3}");
        var from3 = await NextFromAsync(s1, "n3 #1", ct);
        Assert.True(from3.Source.AddressFamily == AddressFamily.InterNetworkV6, $"n1 heard the IPv6-only node from {from3.Source}");
        output.WriteLine($"n1 → n2: {at2.Source}, read {at2.ReceivedAtMs - before} ms after the send began; n3 sent on {sentBy3}");

        // Own heartbeats: n1 sends, then n2 answers. n1's looped-back broadcast entered n1's socket during the
        // send, before n2's heartbeat could: by the time n2's arrives, n1's own would have been delivered.
        for (var i = 2; i <= 4; i++) await s1.SendAsync(Text($"n1 #{i}"), ct);
        await s2.SendAsync(Text("n2 #1"), ct);
        var heardBy1 = await UntilAsync(s1, "n2 #1", ct);
        Assert.DoesNotContain(heardBy1, d => Encoding.UTF8.GetString(d.Payload).StartsWith("n1", StringComparison.Ordinal));

        // Each heartbeat once (it travels on both families), newest last, none older after a newer one.
        var heardBy2 = await UntilAsync(s2, "n1 #4", ct);
        var fromN1 = new[] { at2 }.Concat(heardBy2).Select(d => Encoding.UTF8.GetString(d.Payload)).Where(p => p.StartsWith("n1", StringComparison.Ordinal)).ToList();
        Assert.Equal(fromN1.Distinct().Count(), fromN1.Count);
        Assert.Equal(fromN1.Order(StringComparer.Ordinal), fromN1);
        Assert.Equal("n1 #4", fromN1[^1]);
        Assert.Equal(0, s2.IgnoredDatagrams);
    }

    [Fact]
    public async Task A_host_behind_a_router_never_receives_heartbeats()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await FenceLab.CreateAsync(ct);
        var node = await lab.AddHostAsync("node", "198.18.0.11/24", "fd00::11/64", ct);
        var router = await lab.AddHostAsync("router", "198.18.0.1/24", "fd00::1/64", ct);
        var far = lab.Ns("far");
        await lab.AddNamespaceAsync(far, ct);
        await lab.IpAsync(ct, "link", "add", "eth1", "netns", router, "type", "veth", "peer", "name", FenceLab.Interface, "netns", far);
        await lab.IpAsync(ct, "-n", router, "addr", "add", "198.19.0.1/24", "dev", "eth1");
        await lab.IpAsync(ct, "-n", router, "addr", "add", "fd01::1/64", "dev", "eth1", "nodad");
        await lab.IpAsync(ct, "-n", router, "link", "set", "eth1", "up");
        await lab.IpAsync(ct, "-n", far, "addr", "add", "198.19.0.10/24", "dev", FenceLab.Interface);
        await lab.IpAsync(ct, "-n", far, "addr", "add", "fd01::10/64", "dev", FenceLab.Interface, "nodad");
        await lab.IpAsync(ct, "-n", far, "link", "set", FenceLab.Interface, "up");
        await lab.IpAsync(ct, "-n", far, "route", "add", "default", "via", "198.19.0.1");
        await lab.IpAsync(ct, "-n", far, "-6", "route", "add", "default", "via", "fd01::1");
        await lab.IpAsync(ct, "-n", node, "route", "add", "198.19.0.0/24", "via", "198.18.0.1");
        await lab.IpAsync(ct, "-n", node, "-6", "route", "add", "fd01::/64", "via", "fd00::1");
        await lab.SysctlAsync(router, "net.ipv4.ip_forward", "1", ct);
        await lab.SysctlAsync(router, "net.ipv6.conf.all.forwarding", "1", ct);
        await using var nodeSocket = await OpenAsync(lab, node, ct);
        await using var routerSocket = await OpenAsync(lab, router, ct);
        await using var farSocket = await OpenAsync(lab, far, ct);

        for (var i = 1; i <= 20; i++) await nodeSocket.SendAsync(Text($"node #{i}"), ct);
        await UntilAsync(routerSocket, "node #20", ct); // they were on the segment the router sits on

        // Then a unicast datagram on the same port to the far host, per family, that the router does forward.
        // Once both have been read, anything forwarded before them would have been read first.
        foreach (var target in new[] { IPAddress.Parse("198.19.0.10"), IPAddress.Parse("fd01::10") })
        {
            using var plain = await NetworkNamespace.RunInAsync(node, () => new Socket(target.AddressFamily, SocketType.Dgram, ProtocolType.Udp), ct);
            await plain.SendToAsync(Encoding.UTF8.GetBytes("routed marker"), new IPEndPoint(target, Port), ct);
        }
        await Eventually.WaitAsync(() => farSocket.IgnoredDatagrams == 2, Patience, "both routed markers reached the far host");
        var leaked = new List<HeartbeatDatagram>();
        while (true)
        {
            using var none = CancellationTokenSource.CreateLinkedTokenSource(ct);
            none.Cancel();
            try
            {
                leaked.Add(await farSocket.ReceiveAsync(none.Token));
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
        Assert.True(leaked.Count == 0, "heartbeats crossed the router: " + string.Join(", ", leaked.Select(d => $"{Encoding.UTF8.GetString(d.Payload)} from {d.Source}")));
    }

    [Fact]
    public async Task Bad_input_is_refused_and_a_disposed_socket_sends_nothing()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await FenceLab.CreateAsync(ct);
        var node = await lab.AddHostAsync("node", "198.18.0.11/24", "fd00::11/64", ct);
        var link = await lab.LinkAsync(node, FenceLab.Interface, ct);
        Assert.Throws<ArgumentOutOfRangeException>(() => HeartbeatSocket.Open(link, 0, () => MonotonicClock.NowMs));
        Assert.Throws<ArgumentException>(() => HeartbeatSocket.Open(link with { Name = "" }, Port, () => MonotonicClock.NowMs));

        var socket = await OpenAsync(lab, node, ct);
        var tooLong = await Assert.ThrowsAsync<ArgumentException>(() => socket.SendAsync(new byte[HeartbeatSocket.MaxPayloadBytes + 1], ct).AsTask());
        Assert.Contains($"{HeartbeatSocket.MaxPayloadBytes}", tooLong.Message);
        Assert.Equal(HeartbeatFamilies.IPv4 | HeartbeatFamilies.IPv6, await socket.SendAsync(new byte[HeartbeatSocket.MaxPayloadBytes], ct));
        await socket.DisposeAsync();
        await socket.DisposeAsync(); // idempotent
        await Assert.ThrowsAsync<ObjectDisposedException>(() => socket.SendAsync(Text("late"), ct).AsTask());
        await foreach (var _ in socket.ReceiveAllAsync(ct)) Assert.Fail("a disposed socket delivered a heartbeat");
    }

    private static async Task<HeartbeatSocket> OpenAsync(FenceLab lab, string ns, CancellationToken ct)
    {
        var link = await lab.LinkAsync(ns, FenceLab.Interface, ct);
        return await NetworkNamespace.RunInAsync(ns, () => HeartbeatSocket.Open(link, Port, () => MonotonicClock.NowMs), ct);
    }

    private static byte[] Text(string text) => Encoding.UTF8.GetBytes(text);

    /// <summary>The first heartbeat carrying <paramref name="payload"/>.</summary>
    private static async Task<HeartbeatDatagram> NextFromAsync(HeartbeatSocket socket, string payload, CancellationToken ct) =>
        (await UntilAsync(socket, payload, ct))[^1];

    /// <summary>Every heartbeat delivered up to and including the one carrying <paramref name="payload"/>.</summary>
    private static async Task<List<HeartbeatDatagram>> UntilAsync(HeartbeatSocket socket, string payload, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(Patience);
        var delivered = new List<HeartbeatDatagram>();
        try
        {
            await foreach (var datagram in socket.ReceiveAllAsync(deadline.Token))
            {
                delivered.Add(datagram);
                if (Encoding.UTF8.GetString(datagram.Payload) == payload) return delivered;
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
        }
        throw new TimeoutException($"no heartbeat '{payload}' on {socket.InterfaceName} within {Patience.TotalSeconds} s; got: " +
                                   string.Join(", ", delivered.Select(d => $"'{Encoding.UTF8.GetString(d.Payload)}' from {d.Source}")));
    }
}
