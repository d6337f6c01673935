using System.Net;
using System.Net.Sockets;
using Hybrid.Net;
using Xunit;

namespace Hybrid.Integration.Net;

/// <summary>NetworkNamespace.RunIn: sockets created inside belong to the namespace and outlive the thread.</summary>
public sealed class NetworkNamespaceTests
{
    [Fact]
    public async Task Netlink_socket_opened_for_a_namespace_sees_only_that_namespace()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await using var inside = LinkTable.Open(ns.Name);
        await using var outside = LinkTable.Open();

        var insideLinks = await inside.DumpAsync(CancellationToken.None);
        Assert.Equal(["lo", "veth0", "veth1"], insideLinks.Select(l => l.Name).Order());
        // veth MACs are random: the root namespace cannot hold the namespace's veth0.
        var veth0 = Assert.Single(insideLinks, l => l.Name == "veth0");
        Assert.DoesNotContain(await outside.DumpAsync(CancellationToken.None), l => l.HardwareAddress.Equals(veth0.HardwareAddress));
    }

    [Fact]
    public async Task Udp_sockets_created_inside_work_after_the_thread_has_ended()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        await ns.IpInAsync("addr", "add", "198.18.17.1/24", "dev", "veth0");
        var address = IPAddress.Parse("198.18.17.1");

        // 198.18.17.1 exists only inside the namespace: binding to it proves where the sockets live.
        var (receiver, sender) = NetworkNamespace.RunIn(ns.Name, () =>
        {
            var r = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            r.Bind(new IPEndPoint(address, 0));
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            s.Bind(new IPEndPoint(address, 0));
            return (r, s);
        });
        using (receiver)
        using (sender)
        {
            await sender.SendToAsync(new byte[] { 42 }, SocketFlags.None, receiver.LocalEndPoint!);
            var buffer = new byte[16];
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            var received = await receiver.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            Assert.Equal(1, received);
            Assert.Equal(42, buffer[0]);
        }

        using var outside = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        var error = Assert.Throws<SocketException>(() => outside.Bind(new IPEndPoint(address, 0)));
        Assert.Equal(SocketError.AddressNotAvailable, error.SocketErrorCode);
    }

    [Fact]
    public async Task The_calling_thread_and_pool_threads_stay_in_their_namespace()
    {
        await using var ns = await NetlinkTestNamespace.CreateAsync();
        var before = NamespaceOfThisThread();

        var inside = NetworkNamespace.RunIn(ns.Name, NamespaceOfThisThread);
        var insideAsync = await NetworkNamespace.RunInAsync(ns.Name, NamespaceOfThisThread, CancellationToken.None);

        Assert.NotEqual(before, inside);
        Assert.Equal(inside, insideAsync);
        Assert.Equal(before, NamespaceOfThisThread());
        Assert.Equal(before, await Task.Run(NamespaceOfThisThread));
    }

    [Fact]
    public void A_missing_namespace_fails_with_ENOENT()
    {
        Requires.Root();
        var error = Assert.Throws<NetworkNamespaceException>(() => NetworkNamespace.RunIn("hyt-nl-does-not-exist", () => 1));
        Assert.Equal(2, error.Errno);
        Assert.Contains("ENOENT", error.Message);
        Assert.Throws<ArgumentException>(() => NetworkNamespace.RunIn("../etc", () => 1));
    }

    private static string NamespaceOfThisThread() => new FileInfo("/proc/thread-self/ns/net").LinkTarget!;
}
