using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;
using Hybrid.Net;

namespace Hybrid.Integration.Net;

/// <summary>
/// A throw-away network namespace "hyt-nl-PID-RANDOM" holding a veth pair veth0/veth1 (both up) for the netlink
/// tests. Removed on dispose, at process exit, and by the next run if this process died before either
/// (namespaces whose PID is no longer alive are swept on creation). Deleting the namespace deletes everything
/// inside it (links, addresses, routes).
/// </summary>
internal sealed class NetlinkTestNamespace : IAsyncDisposable
{
    private const string Prefix = "hyt-nl-";

    private NetlinkTestNamespace(string name) => Name = name;

    public string Name { get; }
    public int Veth0 { get; private set; }
    public int Veth1 { get; private set; }

    public static async Task<NetlinkTestNamespace> CreateAsync()
    {
        Requires.Root();
        Requires.Tool("ip", "iproute2");
        await SweepLeftoversAsync();
        var ns = new NetlinkTestNamespace($"{Prefix}{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}");
        AppDomain.CurrentDomain.ProcessExit += ns.OnProcessExit;
        try
        {
            await IpAsync("netns", "add", ns.Name);
            await ns.IpInAsync("link", "set", "lo", "up");
            await ns.IpInAsync("link", "add", "veth0", "type", "veth", "peer", "name", "veth1");
            await ns.IpInAsync("link", "set", "veth0", "up");
            await ns.IpInAsync("link", "set", "veth1", "up");
            ns.Veth0 = await ns.IndexOfAsync("veth0");
            ns.Veth1 = await ns.IndexOfAsync("veth1");
            return ns;
        }
        catch
        {
            await ns.DisposeAsync();
            throw;
        }
    }

    /// <summary>`ip -n NAME ARGS…`; returns stdout, throws with stderr on failure.</summary>
    public Task<string> IpInAsync(params string[] args) => IpAsync(["-n", Name, .. args]);

    public async Task<int> IndexOfAsync(string link)
    {
        using var json = JsonDocument.Parse(await IpInAsync("-j", "link", "show", "dev", link));
        return json.RootElement[0].GetProperty("ifindex").GetInt32();
    }

    public static async Task<string> IpAsync(params string[] args)
    {
        var start = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"ip {string.Join(' ', args)} failed ({process.ExitCode}): {(await stderr).Trim()}");
        return await stdout;
    }

    private static async Task SweepLeftoversAsync()
    {
        foreach (var line in (await IpAsync("netns", "list")).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var name = line.Split(' ')[0];
            if (!name.StartsWith(Prefix, StringComparison.Ordinal)) continue;
            var pidText = name[Prefix.Length..].Split('-')[0];
            if (int.TryParse(pidText, out var pid) && pid != Environment.ProcessId && !Directory.Exists($"/proc/{pid}"))
            {
                try { await IpAsync("netns", "del", name); } catch (InvalidOperationException) { /* raced with another sweeper */ }
            }
        }
    }

    private void OnProcessExit(object? sender, EventArgs e) => DeleteNow();

    private void DeleteNow()
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo("ip", ["netns", "del", Name]) { RedirectStandardError = true });
            process?.WaitForExit(5000);
        }
        catch (Exception)
        {
            // best effort: the next run sweeps it
        }
    }

    public ValueTask DisposeAsync()
    {
        AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
        if (NetworkNamespace.Exists(Name)) DeleteNow();
        return ValueTask.CompletedTask;
    }
}

/// <summary>Polls a condition until it holds or a deadline passes (no sleep-and-hope).</summary>
internal static class NetlinkPoll
{
    public static async Task<T> UntilAsync<T>(Func<Task<T?>> probe, TimeSpan deadline, string what) where T : class
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (await probe() is { } value) return value;
            if (clock.Elapsed > deadline) throw new TimeoutException($"{what}: not true within {deadline.TotalSeconds:0.##} s");
            await Task.Delay(10);
        }
    }

    public static async Task<TimeSpan> UntilTrueAsync(Func<Task<bool>> probe, TimeSpan deadline, string what)
    {
        var clock = Stopwatch.StartNew();
        await UntilAsync(async () => await probe() ? "" : null, deadline, what);
        return clock.Elapsed;
    }
}

/// <summary>Reads a <see cref="NetlinkMonitor"/> in the background and lets a test wait for a matching event.</summary>
internal sealed class NetlinkEventRecorder : IAsyncDisposable
{
    private readonly NetlinkMonitor _monitor;
    private readonly Channel<(NetlinkEvent Event, long Timestamp)> _events = Channel.CreateUnbounded<(NetlinkEvent, long)>();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _reader;

    public NetlinkEventRecorder(NetlinkMonitor monitor, bool startReading = true)
    {
        _monitor = monitor;
        _reader = startReading ? Task.Run(ReadAsync) : Task.CompletedTask;
    }

    private async Task ReadAsync()
    {
        try
        {
            await foreach (var e in _monitor.ReadAllAsync(_stop.Token))
                _events.Writer.TryWrite((e, Stopwatch.GetTimestamp()));
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            _events.Writer.TryComplete();
        }
    }

    /// <summary>The first event (after those already consumed) matching; its arrival time.</summary>
    public async Task<(T Event, long Timestamp)> WaitForAsync<T>(Func<T, bool> match, TimeSpan deadline, string what) where T : NetlinkEvent
    {
        using var timeout = new CancellationTokenSource(deadline);
        try
        {
            while (true)
            {
                var (e, timestamp) = await _events.Reader.ReadAsync(timeout.Token);
                if (e is T typed && match(typed)) return (typed, timestamp);
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no netlink event '{what}' within {deadline.TotalSeconds:0.##} s");
        }
    }

    /// <summary>Events received so far and not yet consumed.</summary>
    public List<NetlinkEvent> Drain()
    {
        var list = new List<NetlinkEvent>();
        while (_events.Reader.TryRead(out var item)) list.Add(item.Event);
        return list;
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        await _monitor.DisposeAsync();
        await _reader;
        _stop.Dispose();
    }
}
