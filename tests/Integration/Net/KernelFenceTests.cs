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

    private static async Task<long> DnatPacketsAsync(FenceLab lab, string ns, CancellationToken ct)
    {
        var listing = await lab.ExecAsync(ns, ct, "nft", "list", "chain", "ip", "kube_proxy_lab", "prerouting");
        return long.Parse(CounterPattern().Match(listing.Stdout).Groups[1].Value);
    }

    [GeneratedRegex(@"counter packets (\d+)")]
    private static partial Regex CounterPattern();

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
