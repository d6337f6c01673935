using System.Diagnostics;
using System.Net;
using Hybrid.Sandbox.Lab;

namespace Hybrid.Integration.Agent;

/// <summary>
/// Asks the LAN "who has the VIP?" (for one or more VIPs) from the client every 20 ms while a test breaks things, and records every
/// answer with kernel timestamps. It shows what the safety rule is about: whether two nodes ever answered
/// one request, whether any request went unanswered, and the order in which nodes took over.
/// <para>
/// The requests and answers are both read from one capture on the client's interface, so they share a clock.
/// An answer belongs to the last request sent before it (a veth answer takes well under 1 ms, a probe
/// interval is 20 ms). The last request is left out: its window was cut short.
/// </para>
/// </summary>
internal sealed class ResponderWatch : IAsyncDisposable
{
    public static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(20);

    /// <summary>One request and the nodes that answered it.</summary>
    public sealed record Probe(long SentTicks, IReadOnlyList<string> Responders);

    private readonly AgentLab _lab;
    private readonly IReadOnlyList<IPAddress> _vips;
    private readonly ArpCapture _capture;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task<int> _sender;
    private Dictionary<IPAddress, IReadOnlyList<Probe>>? _probes;

    private ResponderWatch(AgentLab lab, IReadOnlyList<IPAddress> vips, ArpCapture capture)
    {
        _lab = lab;
        _vips = vips;
        _capture = capture;
        _sender = ArpProbe.RepeatAsync(lab.ClientNamespace, lab.Lab.ClientHost.Interface, vips, Interval, _stop.Token);
    }

    public static async Task<ResponderWatch> StartAsync(AgentLab lab, params IReadOnlyList<string> vips)
    {
        var capture = await lab.CaptureAsync();
        var watch = new ResponderWatch(lab, vips.Select(IPAddress.Parse).ToList(), capture);
        // The watch counts from each VIP's first answer, so a test never starts it blind.
        foreach (var vip in watch._vips)
            await capture.WaitForAsync(p => p.Operation == ArpOp.Reply && p.SenderIp.Equals(vip), TimeSpan.FromSeconds(5), CancellationToken.None);
        return watch;
    }

    /// <summary>Stops probing and returns every complete probe of <paramref name="vip"/> (default: the only one) in order.</summary>
    public async Task<IReadOnlyList<Probe>> StopAsync(string? vip = null)
    {
        _probes ??= await CollectAsync();
        return _probes[vip is null ? _vips.Single() : IPAddress.Parse(vip)];
    }

    private async Task<Dictionary<IPAddress, IReadOnlyList<Probe>>> CollectAsync()
    {
        await _stop.CancelAsync();
        var rounds = await _sender;
        // The capture reads the kernel ring in order: once it holds the last request, it holds every answer
        // to the ones before.
        var clientMac = _capture.Mac;
        bool IsRequest(CapturedArp p) => p.Operation == ArpOp.Request && p.SenderMac.Equals(clientMac) && _vips.Contains(p.TargetIp);
        await Eventually.WaitAsync(() => Task.FromResult(_capture.Snapshot().Count(IsRequest) >= rounds * _vips.Count),
            TimeSpan.FromSeconds(5), $"the capture to record all {rounds * _vips.Count} ARP requests");
        var probes = _vips.ToDictionary(v => v, _ => new List<(long Ticks, IPAddress Asker, List<string> Responders)>());
        foreach (var p in _capture.Snapshot().OrderBy(p => p.MonotonicTicks))
        {
            if (IsRequest(p))
                probes[p.TargetIp].Add((p.MonotonicTicks, p.SenderIp, []));
            else if (p.Operation == ArpOp.Reply && probes.TryGetValue(p.SenderIp, out var of) && of.Count > 0 && p.TargetIp.Equals(of[^1].Asker))
                of[^1].Responders.Add(_lab.NodeOfMac(p.SenderMac));
        }
        return probes.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<Probe>)kv.Value.SkipLast(1)
            .Select(p => new Probe(p.Ticks, p.Responders.Distinct().Order().ToList())).ToList());
    }

    /// <summary>Probes sent after <paramref name="since"/> that two or more nodes answered.</summary>
    public static IReadOnlyList<Probe> DoubleAnswered(IEnumerable<Probe> probes, long since = 0) =>
        probes.Where(p => p.SentTicks >= since && p.Responders.Count > 1).ToList();

    /// <summary>Probes sent after <paramref name="since"/> that nobody answered.</summary>
    public static IReadOnlyList<Probe> Unanswered(IEnumerable<Probe> probes, long since = 0) =>
        probes.Where(p => p.SentTicks >= since && p.Responders.Count == 0).ToList();

    /// <summary>
    /// The answering nodes in the order they took over, one entry per run of probes answered by the same
    /// node (unanswered probes do not break a run): [A, B] is one clean hand-over, [A, B, A] a flap.
    /// </summary>
    public static IReadOnlyList<string> Succession(IEnumerable<Probe> probes)
    {
        var order = new List<string>();
        foreach (var p in probes)
            foreach (var node in p.Responders)
                if (order.Count == 0 || order[^1] != node) order.Add(node);
        return order;
    }

    /// <summary>The longest stretch between two answered probes, in milliseconds: how long the VIP was dark.</summary>
    public static double LongestSilenceMs(IEnumerable<Probe> probes)
    {
        var answered = probes.Where(p => p.Responders.Count > 0).Select(p => p.SentTicks).ToList();
        return answered.Zip(answered.Skip(1), (a, b) => Stopwatch.GetElapsedTime(a, b).TotalMilliseconds).DefaultIfEmpty(0).Max();
    }

    /// <summary>A compact trace for failure messages: each run of equal answers with its start time.</summary>
    public static string Describe(IEnumerable<Probe> probes, long origin)
    {
        var runs = new List<string>();
        string? last = null;
        foreach (var p in probes)
        {
            var who = p.Responders.Count == 0 ? "-" : string.Join("+", p.Responders);
            if (who == last) continue;
            runs.Add($"{Stopwatch.GetElapsedTime(origin, p.SentTicks).TotalMilliseconds:F0} ms {who}");
            last = who;
        }
        return string.Join("; ", runs);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try { await _sender; } catch (Exception) { }
        await _capture.DisposeAsync();
        _stop.Dispose();
    }
}
