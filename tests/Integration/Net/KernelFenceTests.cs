using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Hybrid.Agent;
using Hybrid.Net;
using Hybrid.Sandbox.Lab;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Net;

/// <summary>
/// The kernel fence against real namespaces: a node whose eth0 carries VIPs and a peer on the same bridge
/// that asks for them (arping, neighbour discovery, TCP through a kube-proxy-like DNAT table in the node)
/// and captures what the node sends.
/// </summary>
public sealed partial class KernelFenceTests(ITestOutputHelper output)
{
    private static readonly IPAddress NodeIp = IPAddress.Parse("198.18.0.11");
    private static readonly IPAddress PeerIp = IPAddress.Parse("198.18.0.100");
    private static readonly IPAddress Vip = IPAddress.Parse("198.18.0.220");
    private static readonly IPAddress OtherVip = IPAddress.Parse("198.18.0.221");
    private static readonly IPAddress Vip6 = IPAddress.Parse("fd00::220");
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task A_held_VIP_is_answered_only_while_the_fence_element_lives_and_a_managed_one_never()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var ct = cts.Token;
        await using var lab = await NodeAndPeerAsync(ct);
        var node = lab.Ns("node");
        await AddVipAsync(lab, node, Vip, ct);
        await AddVipAsync(lab, node, OtherVip, ct);
        await KubeProxyDnatAsync(lab, node, Vip, ct);
        using var listener = await ListenAsync(node, 8080, ct);
        var link = await lab.LinkAsync(node, FenceLab.Interface, ct);
        using var fence = await OpenFenceAsync(node, ct);

        // Installed with both VIPs managed, none held: neither is answered.
        fence.Install(link, [Vip, OtherVip], [], ct);
        Assert.False(await ArpingAsync(lab, Vip, ct), "a managed VIP that is not held was answered");

        // Held but no fence element yet: still silent, and kube-proxy's DNAT never sees the SYN.
        fence.Hold([Vip], ct);
        Assert.False(await ArpingAsync(lab, Vip, ct), "a held VIP was answered with no fence element");
        Assert.False(await ConnectsAsync(lab.Ns("peer"), new IPEndPoint(Vip, 80), ct), "a held VIP accepted TCP with no fence element");
        Assert.Equal(0, await DnatPacketsAsync(lab, node, ct));

        // A live fence: the held VIP is answered (ARP and TCP through the DNAT), the managed one still not.
        var write = fence.Extend(MonotonicClock.NowMs + 60_000, ct);
        Assert.Equal(FenceWriteKind.Extended, write.Kind);
        Assert.InRange(write.TimeoutMs, 59_000, 60_000);
        output.WriteLine($"Extend(now + 60 s): {write}, the transaction took {write.CompletedMs - write.ClockMs} ms");
        Assert.True(await ArpingAsync(lab, Vip, ct), "a held VIP was not answered while its fence lives");
        Assert.True(await ConnectsAsync(lab.Ns("peer"), new IPEndPoint(Vip, 80), ct), "TCP to a held VIP failed while its fence lives");
        Assert.True(await DnatPacketsAsync(lab, node, ct) > 0, "the DNAT table saw nothing of an answered connection");
        Assert.False(await ArpingAsync(lab, OtherVip, ct), "a managed VIP that is not held was answered while the fence lives");

        // Expire: silent at once.
        Assert.Equal(FenceWriteKind.Removed, fence.Expire(ct).Kind);
        Assert.False(await ArpingAsync(lab, Vip, ct), "answered after Expire");
        var dnatBefore = await DnatPacketsAsync(lab, node, ct);
        Assert.False(await ConnectsAsync(lab.Ns("peer"), new IPEndPoint(Vip, 80), ct), "TCP accepted after Expire");
        Assert.Equal(dnatBefore, await DnatPacketsAsync(lab, node, ct));

        // A deadline in the past removes the element at once, even after a live one.
        fence.Extend(MonotonicClock.NowMs + 60_000, ct);
        Assert.True(await ArpingAsync(lab, Vip, ct));
        var past = fence.Extend(MonotonicClock.NowMs - 1, ct);
        Assert.Equal(FenceWriteKind.Removed, past.Kind);
        Assert.Equal(0, past.TimeoutMs);
        Assert.False(await ArpingAsync(lab, Vip, ct), "answered after Extend with a past deadline");
        Assert.Null(fence.Read(ct)!.FenceRemainingMs);
    }

    [Fact]
    public async Task A_fence_extended_300_ms_ahead_is_answered_at_once_and_not_after_its_deadline()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var ct = cts.Token;
        await using var lab = await NodeAndPeerAsync(ct);
        var (node, peer) = (lab.Ns("node"), lab.Ns("peer"));
        await AddVipAsync(lab, node, Vip, ct);
        using var fence = await OpenFenceAsync(node, ct);
        fence.Install(await lab.LinkAsync(node, FenceLab.Interface, ct), [Vip], [Vip], ct);
        await using var capture = await ArpCapture.StartAsync(peer, FenceLab.Interface, ct);

        FenceWrite write = default;
        for (var attempt = 1; ; attempt++)
        {
            write = fence.Extend(MonotonicClock.NowMs + 300, ct);
            var answers = await ArpProbe.ResolveAsync(peer, FenceLab.Interface, Vip, TimeSpan.FromMilliseconds(30), ct);
            if (answers.Count > 0) break;
            // Unanswered: a failure unless the request left the peer too late to judge (a loaded machine).
            var asked = capture.Snapshot().Last(c => c.Operation == ArpOp.Request && c.TargetIp.Equals(Vip) && c.SenderIp.Equals(PeerIp));
            var askedAfterMs = Ms(asked.MonotonicTicks) - write.ClockMs;
            Assert.True(askedAfterMs > 250 && attempt < 5, $"not answered although asked {askedAfterMs} ms into a 300 ms fence (attempt {attempt})");
        }

        // Nobody writes again: the kernel alone ends the fence.
        await Eventually.WaitAsync(async () => (await ArpProbe.ResolveAsync(peer, FenceLab.Interface, Vip, TimeSpan.FromMilliseconds(30), ct)).Count == 0,
            TimeSpan.FromSeconds(3), "the VIP is no longer answered after its fence deadline");
        var replies = capture.Snapshot().Where(c => c.Operation == ArpOp.Reply && c.SenderIp.Equals(Vip)).ToList();
        Assert.NotEmpty(replies);
        var lastReplyMs = Ms(replies.Max(c => c.MonotonicTicks));
        output.WriteLine($"fence written at {write.ClockMs} with timeout {write.TimeoutMs} ms ({write.CompletedMs - write.ClockMs} ms transaction); " +
                         $"last reply {lastReplyMs - write.ClockMs:0.0} ms after the write; answering ended by {write.AnsweringEndsByMs - write.ClockMs} ms");
        // 2 ms for the reply to reach the peer's capture and the clock conversion.
        Assert.True(lastReplyMs <= write.AnsweringEndsByMs + 2, $"answered {lastReplyMs - write.ClockMs:0.0} ms after a 300 ms fence was written");
    }

    [Fact]
    public async Task Extend_renews_an_existing_element_where_a_plain_add_keeps_its_old_expiry()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var ct = cts.Token;
        await using var lab = await NodeAndPeerAsync(ct);
        var node = lab.Ns("node");
        await AddVipAsync(lab, node, Vip, ct);
        var link = await lab.LinkAsync(node, FenceLab.Interface, ct);
        using var fence = await OpenFenceAsync(node, ct);
        fence.Install(link, [Vip], [Vip], ct);

        // Two seconds, of which 800 ms pass before the renewal: the renewed element outlives the first deadline by
        // that much, room for arping to start in a namespace on a busy machine.
        var first = fence.Extend(MonotonicClock.NowMs + 2000, ct);
        await Task.Delay(800, ct); // let a good part of the element's life pass

        // The pitfall: writing the element again with the same timeout leaves its expiry where it was.
        var plain = await lab.ExecAsync(node, ct, "nft", $"add element netdev {fence.TableName} fence {{ {link.Index} timeout {first.TimeoutMs}ms }}");
        Assert.True(plain.ExitCode == 0, plain.Stderr);
        var afterPlainAdd = fence.Read(ct)!.FenceRemainingMs;
        Assert.NotNull(afterPlainAdd);
        Assert.True(afterPlainAdd <= first.TimeoutMs - 790, $"a plain add renewed the element ({afterPlainAdd} ms left): the kernel changed, revisit KernelFenceRuleset.Extend");

        // Extend with the very same timeout renews it.
        var renewed = fence.Extend(MonotonicClock.NowMs + first.TimeoutMs, ct);
        var afterExtend = fence.Read(ct)!.FenceRemainingMs;
        Assert.Equal(first.TimeoutMs, renewed.TimeoutMs);
        Assert.True(afterExtend >= renewed.TimeoutMs - 50, $"Extend left {afterExtend} ms of a {renewed.TimeoutMs} ms fence");

        // And the renewal is real: past the first deadline the VIP is still answered.
        while (MonotonicClock.NowMs < first.AnsweringEndsByMs + 50) await Task.Delay(10, ct);
        Assert.True(await ArpingAsync(lab, Vip, ct), "the VIP went silent at the first deadline although the fence was renewed");
        output.WriteLine($"left after a plain add: {afterPlainAdd} ms; after Extend: {afterExtend} ms of {renewed.TimeoutMs} ms");
    }

    [Fact]
    public async Task Announcements_of_a_fenced_VIP_from_a_packet_socket_never_reach_the_wire()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var ct = cts.Token;
        await using var lab = await NodeAndPeerAsync(ct);
        var (node, peer) = (lab.Ns("node"), lab.Ns("peer"));
        await AddVipAsync(lab, node, Vip, ct);
        await AddVipAsync(lab, node, OtherVip, ct);
        await AddVipAsync(lab, node, Vip6, ct);
        using var fence = await OpenFenceAsync(node, ct);
        fence.Install(await lab.LinkAsync(node, FenceLab.Interface, ct), [Vip, OtherVip, Vip6], [Vip, Vip6], ct);
        await using var capture = await ArpCapture.StartAsync(peer, FenceLab.Interface, ct);
        await using var announcer = await NetworkNamespace.RunInAsync(node, () => Announcer.Open(FenceLab.Interface, NullLogger<Announcer>.Instance), ct);

        // Held without a fence element, and managed without being held: the egress chain drops them all.
        Assert.Equal(AnnounceOutcome.Fenced, await announcer.AnnounceAsync(Vip, ct));
        Assert.Equal(AnnounceOutcome.Fenced, await announcer.AnnounceAsync(Vip6, ct));
        Assert.Equal(AnnounceOutcome.Fenced, await announcer.AnnounceAsync(OtherVip, ct));
        // Any sender on a packet socket, not only ours: arping's gratuitous ARP is refused at sendto.
        var arping = await lab.ExecAsync(node, ct, "arping", "-U", "-c", "1", "-I", FenceLab.Interface, Vip.ToString());
        Assert.Contains("Sent 0 probes", arping.Stdout);

        // Frames leave the node in order: once a later announcement of an unguarded address has arrived,
        // anything sent before it would have arrived first.
        var markers = (IPAddress.Parse("198.18.0.230"), IPAddress.Parse("fd00::230"));
        Assert.Equal(AnnounceOutcome.Sent, await announcer.AnnounceAsync(markers.Item1, ct));
        Assert.Equal(AnnounceOutcome.Sent, await announcer.AnnounceAsync(markers.Item2, ct));
        await capture.WaitForAsync(c => c.Operation == ArpOp.Reply && c.SenderIp.Equals(markers.Item1), Patience, ct);
        await capture.WaitForAsync(c => c.Operation == ArpOp.NeighborAdvertisement && c.TargetIp.Equals(markers.Item2), Patience, ct);
        var leaked = capture.Snapshot().Where(c => new[] { Vip, OtherVip, Vip6 }.Contains(c.AnnouncedIp)).ToList();
        Assert.True(leaked.Count == 0, "fenced announcements reached the wire:\n" + string.Join("\n", leaked));

        // With a live fence the held VIPs are announced, the managed one still not.
        fence.Extend(MonotonicClock.NowMs + 60_000, ct);
        Assert.Equal(AnnounceOutcome.Sent, await announcer.AnnounceAsync(Vip, ct));
        Assert.Equal(AnnounceOutcome.Sent, await announcer.AnnounceAsync(Vip6, ct));
        Assert.Equal(AnnounceOutcome.Fenced, await announcer.AnnounceAsync(OtherVip, ct));
        await capture.WaitForAsync(c => c.Operation == ArpOp.Reply && c.IsGratuitous && c.SenderIp.Equals(Vip), Patience, ct);
        await capture.WaitForAsync(c => c.Operation == ArpOp.NeighborAdvertisement && c.TargetIp.Equals(Vip6), Patience, ct);
    }

    [Fact]
    public async Task IPv6_a_fenced_VIP_gets_no_neighbour_advertisement_and_no_traffic_and_a_held_one_with_a_live_fence_does()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var ct = cts.Token;
        await using var lab = await NodeAndPeerAsync(ct);
        var (node, peer) = (lab.Ns("node"), lab.Ns("peer"));
        var managedOnly = IPAddress.Parse("fd00::221");
        await AddVipAsync(lab, node, Vip6, ct);
        await AddVipAsync(lab, node, managedOnly, ct);
        // The peer's kernel gives up after 3 solicitations 100 ms apart: FAILED is its verdict "nobody answered".
        await lab.SysctlAsync(peer, $"net.ipv6.neigh.{FenceLab.Interface}.retrans_time_ms", "100", ct);
        using var listener = await ListenAsync(node, 8080, ct);
        var nodeMac = await lab.MacAsync(node, ct);
        using var fence = await OpenFenceAsync(node, ct);
        fence.Install(await lab.LinkAsync(node, FenceLab.Interface, ct), [Vip6, managedOnly], [Vip6], ct);

        Assert.Equal("FAILED", await ResolveNeighbourAsync(lab, Vip6, ct));

        fence.Extend(MonotonicClock.NowMs + 60_000, ct);
        Assert.Equal("REACHABLE", await ResolveNeighbourAsync(lab, Vip6, ct));
        Assert.Equal(nodeMac, (await lab.NeighbourAsync(peer, Vip6, ct))!.Value.Mac);
        Assert.True(await ConnectsAsync(peer, new IPEndPoint(Vip6, 8080), ct), "TCP to a held IPv6 VIP failed while its fence lives");
        Assert.Equal("FAILED", await ResolveNeighbourAsync(lab, managedOnly, ct));

        // The peer still knows the MAC: only the address rules stand between it and the VIP now.
        fence.Expire(ct);
        Assert.False(await ConnectsAsync(peer, new IPEndPoint(Vip6, 8080), ct), "TCP to an IPv6 VIP succeeded after Expire");
    }

    [Fact]
    public async Task Reinstalling_lets_nothing_through_and_nothing_outside_the_table_changes()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var ct = cts.Token;
        await using var lab = await NodeAndPeerAsync(ct);
        var (node, peer) = (lab.Ns("node"), lab.Ns("peer"));
        await AddVipAsync(lab, node, Vip, ct);
        // Other nftables users of the namespace: kube-proxy's DNAT, another netdev table on the same device,
        // and an inet table that counts every datagram reaching the VIP's probe port (the witness).
        await KubeProxyDnatAsync(lab, node, Vip, ct);
        await NftAsync(lab, node, ct,
            "add table netdev bystander_netdev",
            $"add chain netdev bystander_netdev ingress {{ type filter hook ingress device \"{FenceLab.Interface}\" priority 0; policy accept; }}",
            "add rule netdev bystander_netdev ingress ether type vlan drop",
            "add table inet witness",
            "add set inet witness ports { type inet_service; elements = { 9999 } }",
            "add chain inet witness input { type filter hook input priority 0; policy accept; }",
            $"add rule inet witness input ip daddr {Vip} udp dport @ports counter");
        async Task<string> OthersAsync() => string.Join("\n",
            (await lab.ExecAsync(node, ct, "nft", "list", "tables")).Stdout.Split('\n').Where(t => !t.Contains(KernelFence.DefaultTableName)),
            (await lab.ExecAsync(node, ct, "nft", "-s", "list", "table", "ip", "kube_proxy_lab")).Stdout,
            (await lab.ExecAsync(node, ct, "nft", "-s", "list", "table", "netdev", "bystander_netdev")).Stdout,
            (await lab.ExecAsync(node, ct, "nft", "-s", "list", "table", "inet", "witness")).Stdout);
        var others = await OthersAsync();
        var link = await lab.LinkAsync(node, FenceLab.Interface, ct);
        using var fence = await OpenFenceAsync(node, ct);
        fence.Install(link, [Vip], [], ct);

        // The peer floods the VIP (its MAC pinned, so ARP plays no part) while the node reinstalls its fence
        // over and over (a restarting agent does). The VIP is managed and never held: a single datagram
        // through means a moment without the fence. (Declaring the chains again let one through about once
        // in 1,500 installs, so a thousand rule out that path.)
        var nodeMac = await lab.MacAsync(node, ct);
        await lab.IpAsync(ct, "-n", peer, "neigh", "replace", Vip.ToString(), "lladdr", CapturedArp.Format(nodeMac), "dev", FenceLab.Interface, "nud", "permanent");
        await using (var flood = await UdpFlood.StartAsync(peer, new IPEndPoint(Vip, 9999), ct))
        {
            for (var i = 0; i < 1_000; i++) fence.Install(link, [Vip], [], ct);
            Assert.True(flood.Sent > 10_000, $"the flood sent only {flood.Sent} datagrams: too few to judge");
            Assert.Equal(0, await WitnessPacketsAsync(lab, node, ct));

            // Removing and creating the table in two transactions has a gap, and the flood finds it: so the
            // flood would have found one above.
            for (var i = 0; i < 100; i++)
            {
                fence.Uninstall(ct);
                fence.Install(link, [Vip], [], ct);
            }
            var leaked = await WitnessPacketsAsync(lab, node, ct);
            Assert.True(leaked > 0, "two transactions let nothing through either: the flood cannot tell an atomic replacement");
            output.WriteLine($"flood: {flood.Sent} datagrams; 1,000 reinstalls let 0 through, 100 uninstall-then-install {leaked}");
        }
        Assert.Equal(others, await OthersAsync());

        // A chain edited by hand is declared again by the next install, even though the comment matches.
        await NftAsync(lab, node, ct, $"add rule netdev {fence.TableName} ip_in accept");
        async Task<int> IpInRulesAsync() => (await lab.ExecAsync(node, ct, "nft", "list", "chain", "netdev", fence.TableName, "ip_in")).Stdout
            .Split('\n').Count(line => line.TrimEnd().EndsWith("drop", StringComparison.Ordinal) || line.TrimEnd().EndsWith("accept", StringComparison.Ordinal));
        Assert.Equal(3, await IpInRulesAsync());
        fence.Install(link, [Vip], [], ct);
        Assert.Equal(2, await IpInRulesAsync());

        // Every operation of the fence's life, then its removal: the other tables are exactly as they were.
        fence.Manage([OtherVip, Vip6], ct);
        fence.Hold([Vip, Vip6], ct);
        fence.Extend(MonotonicClock.NowMs + 60_000, ct);
        fence.Release([Vip6], ct);
        fence.Unmanage([OtherVip], ct);
        fence.Expire(ct);
        fence.Install(link, [Vip], [Vip], ct);
        Assert.Equal(others, await OthersAsync());
        fence.Uninstall(ct);
        fence.Uninstall(ct); // idempotent
        Assert.Null(fence.Read(ct));
        Assert.Equal(others, await OthersAsync());
    }

    [Fact]
    public async Task Read_returns_what_an_agent_needs_to_adopt_the_table_and_a_recreated_device_needs_a_new_install()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var ct = cts.Token;
        await using var lab = await NodeAndPeerAsync(ct);
        var node = lab.Ns("node");
        await AddVipAsync(lab, node, Vip, ct);
        var link = await lab.LinkAsync(node, FenceLab.Interface, ct);
        using var fence = await OpenFenceAsync(node, ct);
        Assert.Null(fence.Read(ct));

        // "::1:0:0:5" is small enough for nft to print it as a JSON number, not as hex.
        var small6 = IPAddress.Parse("::1:0:0:5");
        fence.Install(link, [Vip, OtherVip, Vip6, small6], [Vip, Vip6], ct);
        var installed = fence.Read(ct)!;
        Assert.Equal((FenceLab.Interface, link.Index), (installed.Device, installed.InterfaceIndex));
        Assert.Equal(new[] { Vip, OtherVip, Vip6, small6 }.ToHashSet(), installed.Managed);
        Assert.Equal(new[] { Vip, Vip6 }.ToHashSet(), installed.Held);
        Assert.Null(installed.FenceRemainingMs);

        var write = fence.Extend(MonotonicClock.NowMs + 5_000, ct);
        Assert.InRange(fence.Read(ct)!.FenceRemainingMs!.Value, write.TimeoutMs - 1_000, write.TimeoutMs);
        fence.Release([Vip6], ct);
        fence.Unmanage([OtherVip, small6], ct);
        fence.Hold([IPAddress.Parse("::ffff:198.18.0.222")], ct); // IPv4-mapped: held as the IPv4 address
        var changed = fence.Read(ct)!;
        Assert.Equal(new[] { Vip, Vip6, IPAddress.Parse("198.18.0.222") }.ToHashSet(), changed.Managed);
        Assert.Equal(new[] { Vip, IPAddress.Parse("198.18.0.222") }.ToHashSet(), changed.Held);
        Assert.True(await ArpingAsync(lab, Vip, ct));

        // Installed on another device, the table moves there whole.
        await lab.IpAsync(ct, "-n", node, "link", "add", "eth1", "type", "veth", "peer", "name", "eth2");
        var other = await lab.LinkAsync(node, "eth1", ct);
        fence.Install(other, changed.Managed, changed.Held, ct);
        Assert.Equal(("eth1", other.Index), (fence.Read(ct)!.Device, fence.Read(ct)!.InterfaceIndex));
        fence.Install(link, changed.Managed, changed.Held, ct);
        Assert.Equal((FenceLab.Interface, link.Index), (fence.Read(ct)!.Device, fence.Read(ct)!.InterfaceIndex));

        // A damaged table (a chain gone, as a kernel that deletes base chains with their device leaves it) is
        // replaced by the next Install.
        Assert.Equal(0, (await lab.ExecAsync(node, ct, "nft", $"flush chain netdev {fence.TableName} ingress; delete chain netdev {fence.TableName} arp_in")).ExitCode);
        fence.Install(link, changed.Managed, changed.Held, ct);
        Assert.Equal(0, (await lab.ExecAsync(node, ct, "nft", "list", "chain", "netdev", fence.TableName, "arp_in")).ExitCode);
        Assert.False(await ArpingAsync(lab, Vip, ct), "answered after Install, before any Extend");
        fence.Extend(MonotonicClock.NowMs + 60_000, ct);
        Assert.True(await ArpingAsync(lab, Vip, ct));

        // The device goes away and comes back with a new index (and the agent puts the VIP back). The old
        // table's element is keyed by the old index: the VIP stays fenced however often it is extended ...
        await lab.IpAsync(ct, "-n", node, "link", "del", FenceLab.Interface);
        await lab.IpAsync(ct, "link", "add", FenceLab.Interface, "netns", node, "type", "veth", "peer", "name", "node", "netns", lab.Lan);
        await lab.IpAsync(ct, "-n", lab.Lan, "link", "set", "node", "master", "br0", "up");
        await lab.IpAsync(ct, "-n", node, "addr", "add", $"{NodeIp}/24", "dev", FenceLab.Interface);
        await lab.IpAsync(ct, "-n", node, "link", "set", FenceLab.Interface, "up");
        await AddVipAsync(lab, node, Vip, ct);
        var recreated = await lab.LinkAsync(node, FenceLab.Interface, ct);
        Assert.NotEqual(link.Index, recreated.Index);
        var stale = fence.Read(ct)!;
        Assert.Equal(link.Index, stale.InterfaceIndex); // how an agent tells the table is stale
        fence.Extend(MonotonicClock.NowMs + 60_000, ct);
        Assert.False(await ArpingAsync(lab, Vip, ct), "a fence installed for the old device answered on the new one");

        // ... until it is installed for the new device, carrying the sets over.
        fence.Install(recreated, stale.Managed, stale.Held, ct);
        Assert.False(await ArpingAsync(lab, Vip, ct), "answered after Install, before any Extend");
        fence.Extend(MonotonicClock.NowMs + 60_000, ct);
        Assert.True(await ArpingAsync(lab, Vip, ct), "not answered after Install and Extend on the new device");
        Assert.Equal(recreated.Index, fence.Read(ct)!.InterfaceIndex);
    }

    [Fact]
    public async Task Bad_input_is_refused_with_a_clear_error_and_changes_nothing()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await NodeAndPeerAsync(ct);
        var node = lab.Ns("node");
        var link = await lab.LinkAsync(node, FenceLab.Interface, ct);

        Assert.Contains("table name", Assert.Throws<ArgumentException>(() => KernelFence.Open(() => MonotonicClock.NowMs, "bad name; flush ruleset")).Message);
        using var fence = await OpenFenceAsync(node, ct);
        Assert.Contains("Install first", Assert.Throws<InvalidOperationException>(() => fence.Extend(MonotonicClock.NowMs + 300, ct)).Message);
        Assert.Throws<ArgumentException>(() => fence.Install(link with { Name = "eth0\" priority 0; }" }, [], [], ct));
        Assert.Null(fence.Read(ct));

        fence.Install(link, [Vip], [Vip], ct);
        var write = fence.Extend(MonotonicClock.NowMs + 60_000, ct);
        var before = fence.Read(ct)!;
        foreach (var bad in new[] { "224.0.0.18", "255.255.255.255", "0.0.0.0", "ff02::1", "::" })
        {
            var refused = Assert.Throws<ArgumentException>(() => fence.Hold([OtherVip, IPAddress.Parse(bad)], ct));
            Assert.Contains(bad, refused.Message);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => fence.Extend(MonotonicClock.NowMs + KernelFence.MaximumTimeoutMs + 1_000, ct));
        Assert.Throws<OperationCanceledException>(() => fence.Hold([OtherVip], new CancellationToken(canceled: true)));
        var after = fence.Read(ct)!;
        Assert.Equal(before.Managed, after.Managed);
        Assert.Equal(before.Held, after.Held);
        Assert.InRange(after.FenceRemainingMs!.Value, 50_000, write.TimeoutMs);

        // The table deleted behind the fence's back: the kernel's refusal, typed, naming what was attempted.
        Assert.Equal(0, (await lab.ExecAsync(node, ct, "nft", "delete", "table", "netdev", fence.TableName)).ExitCode);
        var missing = Assert.Throws<NetlinkException>(() => fence.Hold([OtherVip], ct));
        Assert.Equal("ENOENT", missing.ErrnoName);
        Assert.Contains(OtherVip.ToString(), missing.Operation);
        Assert.Contains(fence.TableName, missing.Operation);
    }

    private static async Task<FenceLab> NodeAndPeerAsync(CancellationToken ct)
    {
        Requires.Tool("arping", "iputils-arping");
        Requires.Tool("nft", "nftables");
        var lab = await FenceLab.CreateAsync(ct);
        try
        {
            await lab.AddHostAsync("node", $"{NodeIp}/24", "fd00::11/64", ct);
            await lab.AddHostAsync("peer", $"{PeerIp}/24", "fd00::100/64", ct);
            return lab;
        }
        catch
        {
            await lab.DisposeAsync();
            throw;
        }
    }

    private static Task AddVipAsync(FenceLab lab, string ns, IPAddress vip, CancellationToken ct) =>
        lab.IpAsync(ct, ["-n", ns, "addr", "add", $"{vip}/{(vip.AddressFamily == AddressFamily.InterNetwork ? 32 : 128)}", "dev", FenceLab.Interface,
            .. vip.AddressFamily == AddressFamily.InterNetworkV6 ? new[] { "nodad" } : []]);

    /// <summary>Opens the fence the way the agent does: from inside the node's namespace, on the node's monotonic clock.</summary>
    private static Task<KernelFence> OpenFenceAsync(string ns, CancellationToken ct) =>
        NetworkNamespace.RunInAsync(ns, () => KernelFence.Open(() => MonotonicClock.NowMs), ct);

    /// <summary>arping from the peer: true when the VIP answered (2 requests, 1 s at most).</summary>
    private static async Task<bool> ArpingAsync(FenceLab lab, IPAddress vip, CancellationToken ct) =>
        (await lab.ExecAsync(lab.Ns("peer"), ct, "arping", "-f", "-c", "2", "-w", "1", "-I", FenceLab.Interface, vip.ToString())).ExitCode == 0;

    /// <summary>What kube-proxy does for a LoadBalancer VIP: DNAT at prerouting in its own table, with a counter.</summary>
    private static async Task KubeProxyDnatAsync(FenceLab lab, string ns, IPAddress vip, CancellationToken ct)
    {
        var result = await lab.ExecAsync(ns, ct, "nft",
            "add table ip kube_proxy_lab; " +
            "add chain ip kube_proxy_lab prerouting { type nat hook prerouting priority dstnat; policy accept; }; " +
            $"add rule ip kube_proxy_lab prerouting ip daddr {vip} tcp dport 80 counter dnat to {NodeIp}:8080");
        Assert.True(result.ExitCode == 0, result.Stderr);
    }

    private static async Task NftAsync(FenceLab lab, string ns, CancellationToken ct, params string[] commands)
    {
        var result = await lab.ExecAsync(ns, ct, "nft", string.Join("; ", commands));
        Assert.True(result.ExitCode == 0, result.Stderr);
    }

    private static async Task<long> WitnessPacketsAsync(FenceLab lab, string ns, CancellationToken ct)
    {
        var listing = await lab.ExecAsync(ns, ct, "nft", "list", "chain", "inet", "witness", "input");
        return long.Parse(CounterPattern().Match(listing.Stdout).Groups[1].Value);
    }

    private static async Task<long> DnatPacketsAsync(FenceLab lab, string ns, CancellationToken ct)
    {
        var listing = await lab.ExecAsync(ns, ct, "nft", "list", "chain", "ip", "kube_proxy_lab", "prerouting");
        return long.Parse(CounterPattern().Match(listing.Stdout).Groups[1].Value);
    }

    /// <summary>
    /// Forgets the peer's neighbour entry for <paramref name="vip"/>, sends it one datagram (the kernel solicits)
    /// and returns the entry's state once it has settled: REACHABLE (answered) or FAILED (3 solicitations unanswered).
    /// </summary>
    private static async Task<string> ResolveNeighbourAsync(FenceLab lab, IPAddress vip, CancellationToken ct)
    {
        var peer = lab.Ns("peer");
        await lab.ExecAsync(peer, ct, "ip", "neigh", "del", vip.ToString(), "dev", FenceLab.Interface);
        using (var socket = await NetworkNamespace.RunInAsync(peer, () => new Socket(vip.AddressFamily, SocketType.Dgram, ProtocolType.Udp), ct))
            await socket.SendToAsync(new byte[] { 1 }, new IPEndPoint(vip, 9), ct);
        string? state = null;
        await Eventually.WaitAsync(async () => (state = (await lab.NeighbourAsync(peer, vip, ct))?.State) is "REACHABLE" or "STALE" or "FAILED",
            Patience, $"the peer's neighbour entry for {vip} settles");
        return state == "STALE" ? "REACHABLE" : state!;
    }

    private static double Ms(long stopwatchTicks) => stopwatchTicks * 1000.0 / Stopwatch.Frequency;

    [GeneratedRegex(@"counter packets (\d+)")]
    private static partial Regex CounterPattern();

    /// <summary>Sends datagrams to a target from inside a namespace as fast as one thread can, until disposed.</summary>
    private sealed class UdpFlood : IAsyncDisposable
    {
        private readonly CancellationTokenSource stop = new();
        private Task sender = Task.CompletedTask;
        private long sent;

        public long Sent => Interlocked.Read(ref sent);

        public static async Task<UdpFlood> StartAsync(string ns, IPEndPoint target, CancellationToken ct)
        {
            var socket = await NetworkNamespace.RunInAsync(ns, () => new Socket(target.AddressFamily, SocketType.Dgram, ProtocolType.Udp), ct);
            var flood = new UdpFlood();
            flood.sender = Task.Factory.StartNew(() =>
            {
                using (socket)
                {
                    var payload = new byte[16];
                    while (!flood.stop.IsCancellationRequested)
                    {
                        socket.SendTo(payload, target);
                        Interlocked.Increment(ref flood.sent);
                    }
                }
            }, TaskCreationOptions.LongRunning);
            while (flood.Sent == 0) await Task.Delay(1, ct);
            return flood;
        }

        public async ValueTask DisposeAsync()
        {
            stop.Cancel();
            await sender;
            stop.Dispose();
        }
    }

    /// <summary>A TCP listener created inside the namespace that accepts and closes every connection.</summary>
    private static async Task<IDisposable> ListenAsync(string ns, int port, CancellationToken ct)
    {
        var socket = await NetworkNamespace.RunInAsync(ns, () =>
        {
            var s = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { DualMode = true };
            s.Bind(new IPEndPoint(IPAddress.IPv6Any, port));
            s.Listen(64);
            return s;
        }, ct);
        _ = Task.Run(async () =>
        {
            try
            {
                while (true) (await socket.AcceptAsync()).Dispose();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // closed by the test
            }
        }, CancellationToken.None);
        return socket;
    }

    /// <summary>Whether a TCP connection from <paramref name="ns"/> is established within 1 s.</summary>
    private static async Task<bool> ConnectsAsync(string ns, IPEndPoint target, CancellationToken ct)
    {
        using var socket = await NetworkNamespace.RunInAsync(ns, () => new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp), ct);
        using var attempt = CancellationTokenSource.CreateLinkedTokenSource(ct);
        attempt.CancelAfter(TimeSpan.FromSeconds(1));
        try
        {
            await socket.ConnectAsync(target, attempt.Token);
            return true;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return false;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
