using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using Hybrid.Net;
using Hybrid.Sandbox.Lab;
using Microsoft.Extensions.Logging;
using PacketDotNet;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Net;

/// <summary>
/// The Announcer as the agent uses it: created inside a node's network namespace, announcing VIPs that a
/// client namespace on the same bridge observes, both on the wire (ArpCapture) and in its kernel's
/// neighbour table (the frames are not just well-formed: a real receiver acts on them).
/// </summary>
public sealed class AnnouncerTests(ITestOutputHelper output)
{
    private static readonly IPAddress Vip4 = IPAddress.Parse("198.18.0.220");
    private static readonly IPAddress Vip6 = IPAddress.Parse("fd00::220");
    private static readonly PhysicalAddress Stale = PhysicalAddress.Parse("02:00:00:00:00:99");
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task IPv4_announcement_is_a_gratuitous_request_and_reply_with_the_node_mac_that_the_client_adopts()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await ArpLab.CreateAsync(nodes: 1, ct);
        var macA = await lab.MacAsync(lab.Node(1), ArpLab.Interface, ct);
        // The client believes someone else owns the VIP; a gratuitous ARP must override that at once.
        await lab.IpAsync(ct, "-n", lab.Client, "neigh", "add", Vip4.ToString(), "lladdr", CapturedArp.Format(Stale), "dev", ArpLab.Interface, "nud", "stale");
        await using var capture = await ArpCapture.StartAsync(lab.Client, ArpLab.Interface, ct);
        await using var announcer = await OpenInAsync(lab.Node(1), new ListLogger<Announcer>(), ct);
        Assert.Equal(macA, announcer.Mac);
        Assert.Equal(ArpLab.Interface, announcer.InterfaceName);

        var before = Stopwatch.GetTimestamp();
        await announcer.AnnounceAsync(Vip4, ct);

        var request = await capture.WaitForAsync(c => c.Operation == ArpOp.Request && c.SenderIp.Equals(Vip4), Patience, ct);
        var reply = await capture.WaitForAsync(c => c.Operation == ArpOp.Reply && c.SenderIp.Equals(Vip4), Patience, ct);
        foreach (var garp in new[] { request, reply })
        {
            Assert.True(garp.IsGratuitous);
            Assert.Equal(macA, garp.SenderMac);
            Assert.Equal(macA, garp.EthernetSource);
            Assert.Equal(PhysicalAddress.Parse("ff:ff:ff:ff:ff:ff"), garp.EthernetDestination);
            Assert.Equal(Vip4, garp.TargetIp);
            Assert.Equal((Vip4, macA), (garp.AnnouncedIp, garp.AnnouncedMac));
            // The capture pairs the kernel's real-time stamp with the monotonic clock to within tens of microseconds; a
            // wrong conversion is off by far more than the millisecond allowed here.
            Assert.True(garp.MonotonicTicks >= before - Stopwatch.Frequency / 1000, "captured before it was sent: the clock conversion is wrong");
        }
        Assert.Equal(PhysicalAddress.Parse("00:00:00:00:00:00"), request.TargetMac);
        Assert.Equal(macA, reply.TargetMac);
        output.WriteLine($"AnnounceAsync → request captured in the client namespace: {Ms(request.MonotonicTicks - before):0.000} ms, reply {Ms(reply.MonotonicTicks - before):0.000} ms");

        await ArpLab.WaitUntilAsync(async () => macA.Equals(await lab.NeighbourAsync(lab.Client, Vip4, ct)), Patience,
            $"the client's ARP cache maps {Vip4} to the announcer's MAC", ct);
    }

    [Fact]
    public async Task IPv6_announcement_is_an_unsolicited_override_advertisement_that_the_client_kernel_accepts()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await ArpLab.CreateAsync(nodes: 1, ct);
        var macA = await lab.MacAsync(lab.Node(1), ArpLab.Interface, ct);
        await lab.IpAsync(ct, "-n", lab.Client, "neigh", "add", Vip6.ToString(), "lladdr", CapturedArp.Format(Stale), "dev", ArpLab.Interface, "nud", "stale");
        await using var capture = await ArpCapture.StartAsync(lab.Client, ArpLab.Interface, ct);
        await using var announcer = await OpenInAsync(lab.Node(1), new ListLogger<Announcer>(), ct);

        var before = Stopwatch.GetTimestamp();
        await announcer.AnnounceAsync(Vip6, ct);

        var na = await capture.WaitForAsync(c => c.Operation == ArpOp.NeighborAdvertisement && c.TargetIp.Equals(Vip6), Patience, ct);
        Assert.Equal(NdpFlags.Override, na.Flags); // Override set, Solicited and Router clear
        Assert.True(na.IsGratuitous);
        Assert.Equal(macA, na.TargetMac); // Target Link-Layer Address option
        Assert.Equal(macA, na.EthernetSource);
        Assert.Equal(PhysicalAddress.Parse("33:33:00:00:00:01"), na.EthernetDestination);
        Assert.Equal(Vip6, na.SenderIp);
        Assert.Equal((Vip6, macA), (na.AnnouncedIp, na.AnnouncedMac));
        var ipv6 = Packet.ParsePacket(LinkLayers.Ethernet, na.Frame).Extract<IPv6Packet>();
        Assert.Equal(IPAddress.Parse("ff02::1"), ipv6.DestinationAddress);
        Assert.Equal(255, ipv6.HopLimit);
        Assert.True(ipv6.Extract<IcmpV6Packet>().ValidIcmpChecksum);
        output.WriteLine($"AnnounceAsync → NA captured in the client namespace: {Ms(na.MonotonicTicks - before):0.000} ms");

        // Linux drops an NA with a bad checksum, a hop limit other than 255 or a malformed option.
        await ArpLab.WaitUntilAsync(async () => macA.Equals(await lab.NeighbourAsync(lab.Client, Vip6, ct)), Patience,
            $"the client's neighbour cache maps {Vip6} to the announcer's MAC", ct);
    }

    [Fact]
    public async Task Concurrent_callers_all_get_their_VIPs_announced()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await ArpLab.CreateAsync(nodes: 1, ct);
        await using var capture = await ArpCapture.StartAsync(lab.Client, ArpLab.Interface, ct);
        await using var announcer = await OpenInAsync(lab.Node(1), new ListLogger<Announcer>(), ct);
        var vips = Enumerable.Range(0, 4).Select(caller => Enumerable.Range(1, 50).Select(i => IPAddress.Parse($"198.18.{1 + caller}.{i}")).ToArray()).ToArray();

        await Task.WhenAll(vips.Select(mine => Task.Run(async () =>
        {
            foreach (var vip in mine) await announcer.AnnounceAsync(vip, ct);
        }, ct)));

        var expected = vips.SelectMany(v => v).SelectMany(v => new[] { (v, ArpOp.Request), (v, ArpOp.Reply) }).ToHashSet();
        await ArpLab.WaitUntilAsync(() => Task.FromResult(expected.IsSubsetOf(capture.Snapshot().Select(c => (c.SenderIp, c.Operation)))),
            Patience, $"all {expected.Count} gratuitous ARPs of 4 concurrent callers were captured", ct);
        Assert.All(capture.Snapshot().Where(c => expected.Contains((c.SenderIp, c.Operation))), c => Assert.True(c.IsGratuitous));
    }

    [Fact]
    public async Task A_send_on_a_downed_link_throws_and_logs_clearly_and_works_again_once_the_link_is_up()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await ArpLab.CreateAsync(nodes: 1, ct);
        var logger = new ListLogger<Announcer>();
        await using var announcer = await OpenInAsync(lab.Node(1), logger, ct);
        await lab.IpAsync(ct, "-n", lab.Node(1), "link", "set", ArpLab.Interface, "down");

        var failure = await Assert.ThrowsAsync<IOException>(() => announcer.AnnounceAsync(Vip4, ct).AsTask());
        Assert.Contains(Vip4.ToString(), failure.Message);
        Assert.Contains($"'{ArpLab.Interface}'", failure.Message);
        var logged = Assert.Single(logger.Entries, e => e.Level == LogLevel.Error);
        Assert.Contains(Vip4.ToString(), logged.Message);

        await lab.IpAsync(ct, "-n", lab.Node(1), "link", "set", ArpLab.Interface, "up");
        await using var capture = await ArpCapture.StartAsync(lab.Client, ArpLab.Interface, ct);
        await announcer.AnnounceAsync(Vip4, ct);
        await capture.WaitForAsync(c => c.Operation == ArpOp.Request && c.SenderIp.Equals(Vip4), Patience, ct);
    }

    [Fact]
    public async Task Addresses_that_cannot_be_VIPs_are_refused_and_a_disposed_announcer_refuses_everything()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await ArpLab.CreateAsync(nodes: 1, ct);
        await using var announcer = await OpenInAsync(lab.Node(1), new ListLogger<Announcer>(), ct);

        foreach (var bad in new[] { "0.0.0.0", "255.255.255.255", "224.0.0.18", "::", "ff02::1" })
            await Assert.ThrowsAsync<ArgumentException>(() => announcer.AnnounceAsync(IPAddress.Parse(bad), ct).AsTask());
        await Assert.ThrowsAsync<TaskCanceledException>(() => announcer.AnnounceAsync(Vip4, new CancellationToken(canceled: true)).AsTask());

        await announcer.DisposeAsync();
        await announcer.DisposeAsync(); // idempotent (and `await using` disposes a third time)
        await Assert.ThrowsAsync<ObjectDisposedException>(() => announcer.AnnounceAsync(Vip4, ct).AsTask());
    }

    [Fact]
    public async Task Announcement_latency_into_another_namespace_is_measured()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await ArpLab.CreateAsync(nodes: 1, ct);
        await using var capture = await ArpCapture.StartAsync(lab.Client, ArpLab.Interface, ct);
        await using var announcer = await OpenInAsync(lab.Node(1), new ListLogger<Announcer>(), ct);
        await announcer.AnnounceAsync(IPAddress.Parse("198.18.3.0"), ct); // warm-up (JIT)
        await capture.WaitForAsync(c => c.SenderIp.Equals(IPAddress.Parse("198.18.3.0")), Patience, ct);

        var call = new List<double>();
        var wire = new List<double>();
        for (var i = 1; i <= 200; i++)
        {
            var vip = IPAddress.Parse($"198.18.{3 + i / 250}.{i % 250}");
            var before = Stopwatch.GetTimestamp();
            await announcer.AnnounceAsync(vip, ct);
            var returned = Stopwatch.GetTimestamp();
            var seen = await capture.WaitForAsync(c => c.Operation == ArpOp.Request && c.SenderIp.Equals(vip), Patience, ct);
            Assert.True(seen.MonotonicTicks >= before - Stopwatch.Frequency / 1000, $"{vip} captured before it was sent: the clock conversion is wrong");
            call.Add(Ms(returned - before));
            wire.Add(Ms(seen.MonotonicTicks - before));
        }

        output.WriteLine($"AnnounceAsync call (2 frames): p50 {P(call, 0.50):0.000} ms, p99 {P(call, 0.99):0.000} ms, max {call.Max():0.000} ms");
        output.WriteLine($"call → capture in client ns: p50 {P(wire, 0.50):0.000} ms, p99 {P(wire, 0.99):0.000} ms, max {wire.Max():0.000} ms");
    }

    /// <summary>Opens the Announcer the way the agent does, from inside the node's network namespace.</summary>
    private static Task<Announcer> OpenInAsync(string ns, ILogger<Announcer> logger, CancellationToken ct) =>
        NetworkNamespace.RunInAsync(ns, () => Announcer.Open(ArpLab.Interface, logger), ct);

    private static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    private static double P(List<double> values, double quantile)
    {
        var sorted = values.Order().ToArray();
        return sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(quantile * sorted.Length) - 1)];
    }

    private sealed class ListLogger<T> : ILogger<T>
    {
        private readonly Lock gate = new();
        private readonly List<(LogLevel Level, string Message)> entries = [];

        public IReadOnlyList<(LogLevel Level, string Message)> Entries
        {
            get
            {
                lock (gate) return entries.ToArray();
            }
        }

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (gate) entries.Add((logLevel, formatter(state, exception)));
        }
    }
}
