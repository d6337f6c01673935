using System.Diagnostics;
using System.Globalization;
using System.Net;
using Hybrid.Net;
using Hybrid.Sandbox.Lab;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hybrid.Benchmarks;

/// <summary>
/// Cost of one announcement and how soon another namespace sees it: an Announcer inside a "node"
/// namespace, an ArpCapture in a "client" namespace joined to it by a veth pair. Needs root.
/// Options: --count N (default 1000).
/// </summary>
internal sealed class AnnounceBenchmark : IBenchmark
{
    public string Name => "announce";

    public string Description => "AnnounceAsync cost and call→capture latency in another netns, IPv4 GARP and IPv6 NA (target: well under 1 ms)";

    public async Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var count = args.SkipWhile(a => a != "--count").Skip(1).Select(a => int.Parse(a, CultureInfo.InvariantCulture)).FirstOrDefault(1000);
        var prefix = "hyt-" + Convert.ToHexStringLower(Guid.NewGuid().ToByteArray())[..6];
        var (node, client) = (prefix + "-n1", prefix + "-c");
        var created = new List<string>();
        try
        {
            foreach (var ns in new[] { node, client })
            {
                await IpAsync(cancellationToken, "netns", "add", ns);
                created.Add(ns);
            }
            await IpAsync(cancellationToken, "link", "add", "eth0", "netns", node, "type", "veth", "peer", "name", "eth0", "netns", client);
            await IpAsync(cancellationToken, "-n", node, "link", "set", "eth0", "up");
            await IpAsync(cancellationToken, "-n", client, "link", "set", "eth0", "up");

            await using var capture = await ArpCapture.StartAsync(client, "eth0", cancellationToken);
            await using var announcer = await NetworkNamespace.RunInAsync(node, () => Announcer.Open("eth0", NullLogger<Announcer>.Instance), cancellationToken);

            foreach (var family in new[] { "IPv4", "IPv6" })
            {
                var vips = Enumerable.Range(0, count + 1).Select(i => family == "IPv4"
                    ? new IPAddress([198, 19, (byte)(i >> 8), (byte)i])
                    : IPAddress.Parse($"fd00::1:{i:x}")).ToArray();
                await announcer.AnnounceAsync(vips[0], cancellationToken); // JIT warm-up
                await capture.WaitForAsync(c => c.AnnouncedIp.Equals(vips[0]), TimeSpan.FromSeconds(5), cancellationToken);

                // Sequential: each announcement waits for its capture before the next one.
                var call = new List<double>();
                var wire = new List<double>();
                var seenSoFar = capture.Snapshot().Count;
                foreach (var vip in vips.Skip(1))
                {
                    var before = Stopwatch.GetTimestamp();
                    await announcer.AnnounceAsync(vip, cancellationToken);
                    call.Add(Ms(Stopwatch.GetTimestamp() - before));
                    var seen = await WaitNewAsync(capture, vip, seenSoFar, cancellationToken);
                    wire.Add(Ms(seen.MonotonicTicks - before));
                }
                Console.WriteLine($"{family} sequential x{count}: AnnounceAsync {Stats(call)}; call → first frame captured {Stats(wire)}");

                // Burst: all VIPs back to back, as at a takeover of many services.
                var burstStart = Stopwatch.GetTimestamp();
                seenSoFar = capture.Snapshot().Count;
                foreach (var vip in vips.Skip(1)) await announcer.AnnounceAsync(vip, cancellationToken);
                var sent = Stopwatch.GetTimestamp();
                var last = await WaitNewAsync(capture, vips[^1], seenSoFar, cancellationToken);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{family} burst x{count}: all sent in {Ms(sent - burstStart):0.0} ms ({count / ((sent - burstStart) / (double)Stopwatch.Frequency):0} VIPs/s), last one captured {Ms(last.MonotonicTicks - burstStart):0.0} ms after the first call"));
            }
        }
        finally
        {
            foreach (var ns in Enumerable.Reverse(created)) await IpAsync(CancellationToken.None, "netns", "del", ns);
        }
    }

    private static async Task<CapturedArp> WaitNewAsync(ArpCapture capture, IPAddress vip, int from, CancellationToken ct)
    {
        // Scans only what arrived since 'from', so the wait does not grow with the run.
        var deadline = Stopwatch.GetTimestamp() + 5 * Stopwatch.Frequency;
        while (true)
        {
            var all = capture.Snapshot();
            for (var i = from; i < all.Count; i++)
                if (all[i].AnnouncedIp.Equals(vip)) return all[i];
            if (Stopwatch.GetTimestamp() > deadline) throw new TimeoutException($"{vip} was not captured within 5 s");
            await Task.Yield();
            ct.ThrowIfCancellationRequested();
        }
    }

    private static double Ms(long ticks) => ticks * 1000.0 / Stopwatch.Frequency;

    private static string Stats(List<double> ms) => Percentiles.Of(ms).Format("µs", "0", scale: 1000);

    private static async Task IpAsync(CancellationToken ct, params string[] args)
    {
        var start = new ProcessStartInfo("ip") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start ip (iproute2)");
        var stderr = process.StandardError.ReadToEndAsync(ct);
        await process.StandardOutput.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        if (process.ExitCode != 0) throw new InvalidOperationException($"ip {string.Join(' ', args)}: {(await stderr).Trim()}");
    }
}
