using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Hybrid.Agent;
using Hybrid.Net;

namespace Hybrid.Benchmarks;

/// <summary>
/// How precisely the kernel ends a fence, and what writing it costs, in two throw-away namespaces joined by
/// a veth pair (needs root):
/// <list type="bullet">
/// <item>expiry precision: the fence element is written with timeout T; around the deadline the peer sends
/// datagrams to the held VIP every 25 µs and the node notes the last one through. The fence stopped matching
/// between the send times of the last datagram through and the next one; reported is (that next send time −
/// the clock reading the timeout was computed from − T);</item>
/// <item>the cost of one Extend (one add;delete;add netlink batch), with 1 and with 1,000
/// VIPs held, and of holding / releasing 1,000 VIPs in one call.</item>
/// </list>
/// Options: --samples N (expiry samples, default 50), --timeout-ms T (default 300), --rounds N (Extend calls, default 1000).
/// </summary>
internal sealed class KernelFenceBenchmark : IBenchmark
{
    public string Name => "kernel-fence";

    public string Description =>
        "expiry precision of the fence element (stop − write − T, T = 300 ms) and the cost of Extend and of holding 1,000 VIPs";

    private static readonly IPAddress Vip = IPAddress.Parse("198.18.0.220");
    private const int ProbePort = 9999;

    public async Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var samples = Option(args, "--samples", 50);
        var timeoutMs = Option(args, "--timeout-ms", 300);
        var rounds = Option(args, "--rounds", 1000);
        var run = $"hyt-kfb-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..4]}";
        var (node, peer) = ($"{run}-node", $"{run}-peer");
        try
        {
            await IpAsync("netns", "add", node);
            await IpAsync("netns", "add", peer);
            await IpAsync("link", "add", "eth0", "netns", node, "type", "veth", "peer", "name", "eth0", "netns", peer);
            await IpAsync("-n", node, "addr", "add", "198.18.0.11/24", "dev", "eth0");
            await IpAsync("-n", node, "addr", "add", $"{Vip}/32", "dev", "eth0");
            await IpAsync("-n", peer, "addr", "add", "198.18.0.100/24", "dev", "eth0");
            await IpAsync("-n", node, "link", "set", "eth0", "up");
            await IpAsync("-n", peer, "link", "set", "eth0", "up");
            await using var links = LinkTable.Open(node);
            var link = (await links.GetAsync("eth0", cancellationToken))!;
            var nodeMac = link.HardwareAddress.GetAddressBytes();
            await IpAsync("-n", peer, "neigh", "replace", Vip.ToString(), "lladdr", string.Join(':', nodeMac.Select(b => b.ToString("x2"))), "dev", "eth0", "nud", "permanent");

            // The clock the fence reads also keeps the exact tick of each reading, for the precision measurement:
            // Extend reads it once right before the transaction (again if the kernel asks for a retry) and once after.
            var clockReads = new List<long>();
            long Clock()
            {
                var tick = Stopwatch.GetTimestamp();
                lock (clockReads) clockReads.Add(tick);
                return tick * 1000 / Stopwatch.Frequency;
            }
            using var fence = NetworkNamespace.RunIn(node, () => KernelFence.Open(Clock));
            fence.Install(link, [Vip], [Vip], cancellationToken);
            Console.WriteLine($"kernel {Environment.OSVersion.Version}, {Environment.ProcessorCount} CPUs, namespaces {node} / {peer}");

            long TimeoutComputedAt()
            {
                lock (clockReads)
                {
                    var tick = clockReads[^2];
                    clockReads.Clear();
                    return tick;
                }
            }
            await PrecisionAsync(fence, node, peer, samples, timeoutMs, TimeoutComputedAt, cancellationToken);
            Cost(fence, rounds, cancellationToken);
        }
        finally
        {
            await IpAsync("netns", "del", node).ContinueWith(_ => { }, CancellationToken.None);
            await IpAsync("netns", "del", peer).ContinueWith(_ => { }, CancellationToken.None);
        }
    }

    /// <summary>
    /// One sample: Extend, then datagrams from the peer to the VIP every 1 ms until 15 ms before the deadline
    /// and every 25 µs until 15 ms after it, then a marker to the node's own address (never fenced). When the
    /// node has read the marker it has read everything sent before it. Samples whose bracket (the time
    /// between the last datagram through and the first one dropped) is over 0.5 ms (the sender was
    /// descheduled) are discarded and counted.
    /// </summary>
    private static async Task PrecisionAsync(KernelFence fence, string node, string peer, int samples, int timeoutMs,
        Func<long> timeoutComputedAt, CancellationToken ct)
    {
        using var receiver = NetworkNamespace.RunIn(node, () =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            s.SetRawSocketOption(1 /* SOL_SOCKET */, 33 /* SO_RCVBUFFORCE */, BitConverter.GetBytes(16 << 20));
            s.Bind(new IPEndPoint(IPAddress.Any, ProbePort));
            return s;
        });
        using var sender = NetworkNamespace.RunIn(peer, () => new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp));
        var latest = new int[samples * 20 + 2]; // per sample (discarded ones included): the highest sequence number through
        var flushed = new SemaphoreSlim(0);
        var receiving = Task.Factory.StartNew(() =>
        {
            var buffer = new byte[64];
            try
            {
                while (true)
                {
                    receiver.Receive(buffer);
                    var (sample, seq) = (BitConverter.ToInt32(buffer), BitConverter.ToInt32(buffer, 4));
                    if (seq < 0) flushed.Release();
                    else if (seq > latest[sample]) latest[sample] = seq;
                }
            }
            catch (SocketException)
            {
                // closed at the end
            }
        }, TaskCreationOptions.LongRunning);

        var afterCompletion = new List<double>();
        var transaction = new List<double>();
        var (late, brackets, discarded) = await Task.Factory.StartNew(() =>
        {
            var late = new List<double>();
            var brackets = new List<double>();
            var discarded = 0;
            var vip = new IPEndPoint(Vip, ProbePort);
            var marker = new IPEndPoint(IPAddress.Parse("198.18.0.11"), ProbePort);
            var datagram = new byte[8];
            var sendTicks = new long[timeoutMs + 40_000];
            var (sparse, dense) = (Stopwatch.Frequency / 1_000, Stopwatch.Frequency / 40_000);
            for (var sample = 0; late.Count < samples && sample < latest.Length; sample++)
            {
                ct.ThrowIfCancellationRequested();
                latest[sample] = -1;
                var write = fence.Extend(MonotonicClock.NowMs + timeoutMs, ct);
                var completedAt = Stopwatch.GetTimestamp();
                var writtenAt = timeoutComputedAt();
                if (write.Kind != FenceWriteKind.Extended) throw new InvalidOperationException($"Extend did not write: {write}");
                // The kernel stops between the write's deadline and the same after the transaction completed.
                var period = timeoutMs * Stopwatch.Frequency / 1_000;
                var margin = 15 * Stopwatch.Frequency / 1_000;
                var (denseFrom, denseUntil) = (writtenAt + period - margin, completedAt + period + margin);
                var seq = 0;
                for (var next = Stopwatch.GetTimestamp(); next < denseUntil && seq < sendTicks.Length; seq++)
                {
                    while (Stopwatch.GetTimestamp() < next) Thread.SpinWait(10);
                    BitConverter.TryWriteBytes(datagram, sample);
                    BitConverter.TryWriteBytes(datagram.AsSpan(4), seq);
                    sendTicks[seq] = Stopwatch.GetTimestamp();
                    sender.SendTo(datagram, vip);
                    next += next < denseFrom ? sparse : dense;
                }
                BitConverter.TryWriteBytes(datagram.AsSpan(4), -1);
                sender.SendTo(datagram, marker);
                if (!flushed.Wait(TimeSpan.FromSeconds(5), ct)) throw new InvalidOperationException("the marker never reached the node");
                var through = latest[sample];
                if (through < 0) throw new InvalidOperationException("no datagram got through a live fence: the probe is broken");
                if (through + 1 >= seq) throw new InvalidOperationException("datagrams got through until the end: the fence did not stop");
                if (sample == 0) continue; // warm-up (JIT, nft cache)
                var bracket = Ms(sendTicks[through + 1] - sendTicks[through]);
                if (bracket > 0.5)
                {
                    discarded++;
                    continue;
                }
                late.Add(Ms(sendTicks[through + 1] - writtenAt) - timeoutMs);
                afterCompletion.Add(Ms(sendTicks[through + 1] - completedAt) - timeoutMs);
                transaction.Add(Ms(completedAt - writtenAt));
                brackets.Add(bracket * 1000);
            }
            return (late, brackets, discarded);
        }, ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        receiver.Close();
        await receiving;
        Console.WriteLine($"fence element, timeout {timeoutMs} ms: stop − write − T {Percentiles.Of(late).Format("ms", "0.00")}");
        Console.WriteLine($"  write = the clock reading the timeout was computed from; the transaction after it took {Percentiles.Of(transaction).Format("ms", "0.00")}");
        Console.WriteLine($"  stop − (transaction completed + T), which FenceWrite.AnsweringEndsByMs bounds by +1 ms: {Percentiles.Of(afterCompletion).Format("ms", "0.00")}");
        Console.WriteLine($"  stop = send time of the first datagram dropped, {Percentiles.Of(brackets).Format("µs", "0")} after the last one through; " +
                          $"{discarded} sample(s) discarded (bracket over 0.5 ms: the sender was descheduled)");
    }

    private static void Cost(KernelFence fence, int rounds, CancellationToken ct)
    {
        Console.WriteLine($"Extend, 1 VIP held: {Time(rounds, () => fence.Extend(MonotonicClock.NowMs + 300, ct)).Format("ms", "0.000")}");
        var thousand = Enumerable.Range(0, 1000).Select(i => IPAddress.Parse($"198.18.{100 + i / 250}.{i % 250 + 1}")).ToList();
        var hold = new List<double>();
        var release = new List<double>();
        for (var i = 0; i <= 20; i++)
        {
            var start = Stopwatch.GetTimestamp();
            fence.Hold(thousand, ct);
            var held = Stopwatch.GetTimestamp();
            fence.Release(thousand, ct);
            if (i == 0) continue; // warm-up
            hold.Add(Ms(held - start));
            release.Add(Ms(Stopwatch.GetTimestamp() - held));
        }
        Console.WriteLine($"Hold 1,000 VIPs (one call): {Percentiles.Of(hold).Format("ms", "0.00")}");
        Console.WriteLine($"Release 1,000 VIPs (one call): {Percentiles.Of(release).Format("ms", "0.00")}");
        fence.Hold(thousand, ct);
        Console.WriteLine($"Extend, 1,001 VIPs held: {Time(rounds, () => fence.Extend(MonotonicClock.NowMs + 300, ct)).Format("ms", "0.000")}");
        fence.Expire(ct);
    }

    private static Percentiles Time(int rounds, Action action)
    {
        action(); // warm-up
        var times = new List<double>(rounds);
        for (var i = 0; i < rounds; i++)
        {
            var start = Stopwatch.GetTimestamp();
            action();
            times.Add(Ms(Stopwatch.GetTimestamp() - start));
        }
        return Percentiles.Of(times);
    }

    private static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    private static int Option(IReadOnlyList<string> args, string name, int fallback)
    {
        var at = args.ToList().IndexOf(name);
        return at >= 0 && at + 1 < args.Count && int.TryParse(args[at + 1], out var value) ? value : fallback;
    }

    private static async Task IpAsync(params string[] args)
    {
        var start = new ProcessStartInfo("ip") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0) throw new InvalidOperationException($"ip {string.Join(' ', args)}: {(await stderr).Trim()}");
    }
}
