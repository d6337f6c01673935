using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Hybrid.Net;

namespace Hybrid.Benchmarks;

/// <summary>
/// What the VIP lifetime costs and how long the kernel takes to drop a VIP nobody refreshes any more, measured
/// in a throw-away network namespace with a veth pair (needs root):
/// <list type="bullet">
/// <item>refresh cost of 1,000 /32 VIPs: batched (AddOrRefreshManyAsync), batched with a monitor subscribed, and
/// one request at a time;</item>
/// <item>expiry delay = time from the acknowledged last refresh of a 1 s lifetime to the kernel's RTM_DELADDR
/// notification, for one IPv4 VIP, one IPv6 VIP, and 1,000 VIPs at once ("agent crashed");</item>
/// <item>the same with one unrelated address added in the namespace just before the lifetime ends (the kernel's
/// lifetime check then runs early, finds the VIP 20 ms too young and reschedules itself ≥ 1 s later).</item>
/// </list>
/// Options: --samples N (expiry samples of the single-VIP scenarios, default 50), --rounds N (refresh rounds, default 100).
/// </summary>
internal sealed class AddressLifetimeBenchmark : IBenchmark
{
    public string Name => "address-lifetime";

    public string Description =>
        "VIP refresh cost for 1,000 addresses and kernel expiry delay (p50/p99) of 1 s lifetimes; feeds the failover safety inequality";

    private static readonly TimeSpan OneSecond = TimeSpan.FromSeconds(1);

    public async Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var samples = Option(args, "--samples", 50);
        var rounds = Option(args, "--rounds", 100);
        var ns = $"hyt-nlb-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}";
        await IpAsync("netns", "add", ns);
        try
        {
            await IpAsync("-n", ns, "link", "set", "lo", "up");
            await IpAsync("-n", ns, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1");
            await IpAsync("-n", ns, "link", "set", "veth0", "up");
            await IpAsync("-n", ns, "link", "set", "veth1", "up");
            await using var links = LinkTable.Open(ns);
            var ifIndex = (await links.GetAsync("veth0", cancellationToken))!.Index;
            await using var table = AddressTable.Open(ns);

            Console.WriteLine($"kernel {Environment.OSVersion.Version}, {Environment.ProcessorCount} CPUs, namespace {ns}");
            await RefreshCostAsync(table, ns, ifIndex, rounds, cancellationToken);

            await using var removals = new RemovalRecorder(NetlinkMonitor.Open(ns));
            await ExpiryAsync("IPv4 /32, quiet", table, removals, ifIndex, samples,
                i => IPAddress.Parse($"198.18.200.{i % 250 + 1}"), 32, trigger: null, cancellationToken);
            await ExpiryAsync("IPv6 /128, quiet", table, removals, ifIndex, samples,
                i => IPAddress.Parse($"2001:db8:48::{i + 1:x}"), 128, trigger: null, cancellationToken);
            await CrashAsync(table, removals, ifIndex, Math.Max(3, samples / 6), cancellationToken);
            await ExpiryAsync("IPv4 /32, unrelated address added 950 ms after the last refresh", table, removals, ifIndex,
                Math.Max(3, samples / 3), i => IPAddress.Parse($"198.18.201.{i % 250 + 1}"), 32,
                trigger: (i, ct) => table.AddOrRefreshAsync(ifIndex, IPAddress.Parse($"198.18.202.{i % 250 + 1}"), 32, null, ct),
                cancellationToken);
        }
        finally
        {
            await IpAsync("netns", "del", ns);
        }
    }

    private static async Task RefreshCostAsync(AddressTable table, string ns, int ifIndex, int rounds, CancellationToken ct)
    {
        var vips = Enumerable.Range(0, 1000)
            .Select(i => new AddressAssignment(ifIndex, IPAddress.Parse($"198.18.{100 + i / 250}.{i % 250 + 1}"), 32, TimeSpan.FromSeconds(30)))
            .ToList();
        var clock = Stopwatch.StartNew();
        Check(await table.AddOrRefreshManyAsync(vips, ct));
        Console.WriteLine($"add 1,000 new VIPs (batched): {clock.Elapsed.TotalMilliseconds:0.0} ms");

        var batched = await TimeRoundsAsync(rounds, async () => Check(await table.AddOrRefreshManyAsync(vips, ct)));
        Report($"refresh 1,000 VIPs, batched ({NetlinkSocket.MaxMessagesPerSend}/send, 1 ack/send)", batched, "ms");

        await using (var monitored = new RemovalRecorder(NetlinkMonitor.Open(ns)))
        {
            var withMonitor = await TimeRoundsAsync(rounds, async () => Check(await table.AddOrRefreshManyAsync(vips, ct)));
            Report("refresh 1,000 VIPs, batched, with a monitor subscribed", withMonitor, "ms");
            var drained = Stopwatch.StartNew();
            while (monitored.AddedCount + monitored.Overruns < rounds * vips.Count && drained.Elapsed < TimeSpan.FromSeconds(10))
                await Task.Delay(20, ct);
            Console.WriteLine($"  monitor received {monitored.AddedCount} of {rounds * vips.Count} RTM_NEWADDR notifications, overruns: {monitored.Overruns}");
        }

        var single = await TimeRoundsAsync(Math.Max(3, rounds / 20), async () =>
        {
            foreach (var v in vips) await table.AddOrRefreshAsync(v.InterfaceIndex, v.Address, v.PrefixLength, v.Lifetime, ct);
        });
        Report("refresh 1,000 VIPs, one request and ack each", single, "ms");

        clock.Restart();
        Check(await table.RemoveManyAsync(vips, ct));
        Console.WriteLine($"remove 1,000 VIPs (batched): {clock.Elapsed.TotalMilliseconds:0.0} ms");
    }

    private static async Task ExpiryAsync(string scenario, AddressTable table, RemovalRecorder removals, int ifIndex, int samples,
        Func<int, IPAddress> addressOf, int prefixLength, Func<int, CancellationToken, Task>? trigger, CancellationToken ct)
    {
        var delays = new List<double>();
        for (var i = 0; i < samples; i++)
        {
            var vip = addressOf(i);
            removals.Forget(vip);
            await table.AddOrRefreshAsync(ifIndex, vip, prefixLength, OneSecond, ct);
            var acknowledged = Stopwatch.GetTimestamp();
            if (trigger is not null)
            {
                await Task.Delay(900, ct);
                while (Stopwatch.GetElapsedTime(acknowledged) < TimeSpan.FromMilliseconds(950)) Thread.SpinWait(100);
                await trigger(i, ct);
            }
            var removedAt = await removals.WaitAsync(vip, TimeSpan.FromSeconds(10), ct);
            delays.Add(Stopwatch.GetElapsedTime(acknowledged, removedAt).TotalMilliseconds);
        }
        Report($"expiry delay after last refresh, 1 s lifetime, {scenario}", delays, "ms");
    }

    private static async Task CrashAsync(AddressTable table, RemovalRecorder removals, int ifIndex, int samples, CancellationToken ct)
    {
        var vips = Enumerable.Range(0, 1000)
            .Select(i => new AddressAssignment(ifIndex, IPAddress.Parse($"198.18.{110 + i / 250}.{i % 250 + 1}"), 32, OneSecond))
            .ToList();
        var first = new List<double>();
        var last = new List<double>();
        for (var s = 0; s < samples; s++)
        {
            foreach (var v in vips) removals.Forget(v.Address);
            // Steady state: a few refresh rounds 300 ms apart, then the "agent" stops.
            for (var r = 0; r < 3; r++)
            {
                Check(await table.AddOrRefreshManyAsync(vips, ct));
                await Task.Delay(300, ct);
            }
            Check(await table.AddOrRefreshManyAsync(vips, ct));
            var acknowledged = Stopwatch.GetTimestamp();
            var times = new List<double>();
            foreach (var v in vips)
                times.Add(Stopwatch.GetElapsedTime(acknowledged, await removals.WaitAsync(v.Address, TimeSpan.FromSeconds(10), ct)).TotalMilliseconds);
            first.Add(times.Min());
            last.Add(times.Max());
        }
        Report("1,000 VIPs refreshed every 300 ms then abandoned: first gone", first, "ms");
        Report("1,000 VIPs refreshed every 300 ms then abandoned: last gone", last, "ms");
    }

    private static async Task<List<double>> TimeRoundsAsync(int rounds, Func<Task> round)
    {
        var times = new List<double>();
        for (var i = 0; i < rounds; i++)
        {
            var clock = Stopwatch.StartNew();
            await round();
            times.Add(clock.Elapsed.TotalMilliseconds);
        }
        return times;
    }

    private static void Report(string what, List<double> values, string unit) =>
        Console.WriteLine($"{what}: {Percentiles.Of(values).Format(unit)}");

    private static void Check(IReadOnlyList<AddressFailure> failures)
    {
        if (failures.Count > 0) throw failures[0].Error;
    }

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

    /// <summary>Timestamps every RTM_DELADDR the moment it is received.</summary>
    private sealed class RemovalRecorder : IAsyncDisposable
    {
        private readonly NetlinkMonitor _monitor;
        private readonly ConcurrentDictionary<IPAddress, TaskCompletionSource<long>> _removed = new();
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _reader;
        private int _added;
        private int _overruns;

        public RemovalRecorder(NetlinkMonitor monitor)
        {
            _monitor = monitor;
            _reader = Task.Run(ReadAsync);
        }

        public int AddedCount => Volatile.Read(ref _added);
        public int Overruns => Volatile.Read(ref _overruns);

        private async Task ReadAsync()
        {
            try
            {
                await foreach (var e in _monitor.ReadAllAsync(_stop.Token))
                {
                    var now = Stopwatch.GetTimestamp();
                    switch (e)
                    {
                        case AddressRemoved r:
                            Slot(r.Address.Address).TrySetResult(now);
                            break;
                        case AddressAdded:
                            Interlocked.Increment(ref _added);
                            break;
                        case Overrun:
                            Interlocked.Increment(ref _overruns);
                            Console.WriteLine("  (monitor overrun: some removal times lost)");
                            break;
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        }

        private TaskCompletionSource<long> Slot(IPAddress address) =>
            _removed.GetOrAdd(address, _ => new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously));

        public void Forget(IPAddress address) => _removed.TryRemove(address, out _);

        public async Task<long> WaitAsync(IPAddress address, TimeSpan deadline, CancellationToken ct) =>
            await Slot(address).Task.WaitAsync(deadline, ct);

        public async ValueTask DisposeAsync()
        {
            _stop.Cancel();
            await _monitor.DisposeAsync();
            await _reader;
            _stop.Dispose();
        }
    }
}
