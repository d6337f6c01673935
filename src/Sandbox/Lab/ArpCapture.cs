using System.Diagnostics;
using System.Net.NetworkInformation;
using System.Runtime.CompilerServices;
using Hybrid.Net;
using SharpPcap;
using SharpPcap.LibPcap;

namespace Hybrid.Sandbox.Lab;

/// <summary>
/// Records every ARP packet and IPv6 Neighbour Advertisement crossing one interface of a network
/// namespace, from the moment <see cref="StartAsync"/> returns until disposal, so tests and benchmarks in
/// the root namespace can see what a node's agent announces and when.
/// <para>
/// The libpcap device is opened on a thread that entered the namespace (<see cref="Hybrid.Net.NetworkNamespace"/>):
/// its AF_PACKET socket therefore lives there. Packets arriving after <see cref="StartAsync"/> returns are
/// kept by the kernel ring even before the reader thread handles them, so none are missed. Timestamps are
/// the kernel's (see <see cref="CapturedArp"/>): resolution well below 1 ms.
/// </para>
/// </summary>
internal sealed class ArpCapture(string namespaceName, string interfaceName, LibPcapLiveDevice device) : IAsyncDisposable
{
    /// <summary>ARP, and ICMPv6 type 136 without extension headers (NDP never carries any).</summary>
    private const string Filter = "arp or (icmp6 and ip6[40] == 136)";

    private readonly Lock gate = new();
    private readonly List<CapturedArp> captured = [];
    private readonly List<(Func<CapturedArp, bool> Predicate, TaskCompletionSource<CapturedArp> Completion)> waiters = [];
    private readonly TaskCompletionSource stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly PhysicalAddress mac = device.MacAddress ?? PhysicalAddress.None;
    private volatile bool stopping;
    private Exception? failure;

    public string NamespaceName => namespaceName;

    public string InterfaceName => interfaceName;

    /// <summary>The MAC of the capturing interface itself.</summary>
    public PhysicalAddress Mac => mac;

    public static async Task<ArpCapture> StartAsync(string namespaceName, string interfaceName, CancellationToken cancellationToken)
    {
        var opened = await NetworkNamespace.RunInAsync(namespaceName, () =>
        {
            var d = PcapDeviceOpener.Open(interfaceName, new DeviceConfiguration
            {
                Mode = DeviceModes.Promiscuous,
                Snaplen = 256,
                Immediate = true, // hand each packet over at once (TPACKET_V2), no block batching
                TimestampResolution = TimestampResolution.Nanosecond,
            });
            try
            {
                d.Filter = Filter;
                return d;
            }
            catch
            {
                d.Dispose();
                throw;
            }
        }, cancellationToken);
        var capture = new ArpCapture(namespaceName, interfaceName, opened);
        capture.StartReader();
        return capture;
    }

    /// <summary>Everything captured so far, in arrival order.</summary>
    public IReadOnlyList<CapturedArp> Snapshot()
    {
        lock (gate) return captured.ToArray();
    }

    /// <summary>
    /// The first captured packet (already captured or still to come) matching <paramref name="predicate"/>.
    /// Throws <see cref="TimeoutException"/> naming the predicate and listing what was captured.
    /// </summary>
    public async Task<CapturedArp> WaitForAsync(
        Func<CapturedArp, bool> predicate,
        TimeSpan timeout,
        CancellationToken cancellationToken,
        [CallerArgumentExpression(nameof(predicate))] string description = "")
    {
        ArgumentNullException.ThrowIfNull(predicate);
        var completion = new TaskCompletionSource<CapturedArp>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (gate)
        {
            foreach (var packet in captured)
                if (predicate(packet)) return packet;
            if (failure is not null) throw new IOException($"the capture on {namespaceName}/{interfaceName} failed: {failure.Message}", failure);
            ObjectDisposedException.ThrowIf(stopping, this);
            waiters.Add((predicate, completion));
        }
        try
        {
            return await completion.Task.WaitAsync(timeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            var seen = Snapshot();
            throw new TimeoutException(
                $"no ARP/NA captured on {namespaceName}/{interfaceName} matched `{description}` within {timeout.TotalMilliseconds:0} ms; " +
                $"captured {seen.Count} packet(s){(seen.Count > 30 ? ", the last 30" : "")}:" +
                string.Concat(seen.TakeLast(30).Select(p => "\n  " + p)));
        }
        finally
        {
            lock (gate) waiters.RemoveAll(w => w.Completion == completion);
        }
    }

    public async ValueTask DisposeAsync()
    {
        lock (gate)
        {
            if (stopping) return;
            stopping = true;
        }
        Interop.Pcap.BreakLoop(device);
        await stopped.Task;
        device.Dispose();
        lock (gate)
        {
            foreach (var (_, completion) in waiters)
                completion.TrySetException(new ObjectDisposedException(nameof(ArpCapture), "the capture was stopped while waiting"));
            waiters.Clear();
        }
    }

    private static void Offer(CapturedArp packet, Func<CapturedArp, bool> predicate, TaskCompletionSource<CapturedArp> completion)
    {
        if (completion.Task.IsCompleted) return;
        try
        {
            if (predicate(packet)) completion.TrySetResult(packet);
        }
        catch (Exception e)
        {
            completion.TrySetException(e); // the waiter's bug, reported to the waiter; the capture goes on
        }
    }

    private void StartReader() =>
        new Thread(Read) { IsBackground = true, Name = $"arp capture {namespaceName}/{interfaceName}" }.Start();

    /// <summary>
    /// Reader thread. pcap_next_ex blocks until a packet arrives (libpcap on Linux keeps polling past the
    /// read timeout); <see cref="DisposeAsync"/> wakes it with pcap_breakloop.
    /// </summary>
    /// <summary>A monotonic reading and the real-time clock (ns since the epoch) at the same instant, within 50 µs.</summary>
    private static (long Monotonic, long RealNs) ReadClocks()
    {
        var limit = Stopwatch.Frequency / 20_000;
        for (var attempt = 0; ; attempt++)
        {
            var before = Stopwatch.GetTimestamp();
            var realNs = (DateTime.UtcNow.Ticks - DateTime.UnixEpoch.Ticks) * 100L;
            var after = Stopwatch.GetTimestamp();
            if (after - before <= limit || attempt == 20) return (before + (after - before) / 2, realNs);
        }
    }

    private void Read()
    {
        var nanoseconds = device.TimestampResolution == TimestampResolution.Nanosecond;
        try
        {
            while (!stopping)
            {
                if (Interop.Pcap.NextEx(device, out var header, out var frame) != Interop.Pcap.PacketRead) continue;

                // The packet's age on the real-time clock, taken off a monotonic reading made at the same
                // moment: the real-time read is bracketed by two monotonic reads, again if the thread was
                // preempted between them (on a loaded machine that put captures before their sends).
                var (nowMonotonic, nowRealNs) = ReadClocks();
                var stampNs = header.Seconds * 1_000_000_000L + (nanoseconds ? header.Fraction : header.Fraction * 1_000L);
                var ageTicks = (long)((Int128)(nowRealNs - stampNs) * Stopwatch.Frequency / 1_000_000_000L);
                var at = DateTimeOffset.FromUnixTimeSeconds(header.Seconds).AddTicks((nanoseconds ? header.Fraction / 100 : header.Fraction * 10));

                if (CapturedArp.TryParse(frame, at, nowMonotonic - ageTicks) is not { } packet) continue;
                lock (gate)
                {
                    captured.Add(packet);
                    foreach (var (predicate, completion) in waiters)
                        Offer(packet, predicate, completion);
                }
            }
        }
        catch (Exception e)
        {
            lock (gate)
            {
                failure = e;
                foreach (var (_, completion) in waiters)
                    completion.TrySetException(new IOException($"the capture on {namespaceName}/{interfaceName} failed: {e.Message}", e));
            }
        }
        finally
        {
            stopped.TrySetResult();
        }
    }
}
