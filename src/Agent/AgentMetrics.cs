using System.Collections.Concurrent;
using Hybrid.Facade;

namespace Hybrid.Agent;

/// <summary>A monotonically growing count, safe to add to from any thread.</summary>
internal sealed class Counter
{
    private long _value;

    public void Add(long amount = 1) => Interlocked.Add(ref _value, amount);

    public long Value => Interlocked.Read(ref _value);
}

/// <summary>
/// What the agent counted and last decided, for the metrics endpoint: the protocol loop, the Lease writer, the
/// watches and the heartbeat receiver record here from their own threads; the endpoint reads at any time.
/// Counters only grow; gauges come from the latest state the loop published (an immutable
/// <see cref="NodeReading"/>), so a scrape never touches the node itself.
/// </summary>
internal sealed class AgentMetrics
{
    /// <summary>Lease kinds and outcomes, listed from the start so that every series exists at 0.</summary>
    public static readonly string[] LeaseResults = ["ok", "conflict", "notfound", "failed"];

    private readonly ConcurrentDictionary<(string Kind, string Result), Counter> _leaseWrites = new();
    private readonly ConcurrentDictionary<(string Resource, string Reason), Counter> _watchRestarts = new();
    private readonly ConcurrentDictionary<string, Counter> _framesReceived = new();
    private NodeReading? _reading;

    public AgentMetrics()
    {
        foreach (var kind in new[] { Configuration.RegistrationLeaseKind, Configuration.GroupLeaseKind })
            foreach (var result in LeaseResults)
                _leaseWrites[(kind, result)] = new Counter();
    }

    public Counter Announcements { get; } = new();
    public Counter ReconcileErrors { get; } = new();
    public Counter Takeovers { get; } = new();
    public Counter Handovers { get; } = new();
    public Counter TakeoverSilenceCount { get; } = new();
    public Counter TakeoverSilenceMs { get; } = new();

    /// <summary>The node's state after its last decision (null before the first).</summary>
    public NodeReading? Reading => Volatile.Read(ref _reading);

    public void Publish(NodeReading reading) => Volatile.Write(ref _reading, reading);

    /// <summary>The VIPs the last decision began or stopped answering for.</summary>
    public void Record(HoldChangeOutput[] changes)
    {
        foreach (var change in changes)
        {
            switch (change.Kind)
            {
                case HoldChangeKind.TookOver:
                    Takeovers.Add();
                    if (change.SilenceMs >= 0)
                    {
                        TakeoverSilenceCount.Add();
                        TakeoverSilenceMs.Add(change.SilenceMs);
                    }
                    break;
                case HoldChangeKind.HandedOver:
                    Handovers.Add();
                    break;
            }
        }
    }

    public void LeaseWritten(string kind, WriteResult result) =>
        _leaseWrites.GetOrAdd((kind, result switch
        {
            WriteResult.Done => "ok",
            WriteResult.Conflict => "conflict",
            WriteResult.NotFound => "notfound",
            _ => "failed",
        }), _ => new Counter()).Add();

    /// <summary>The counter of one watch's restarts for one reason (the watch holds on to it).</summary>
    public Counter WatchRestarts(string resource, string reason) => _watchRestarts.GetOrAdd((resource, reason), _ => new Counter());

    /// <summary>An authentic heartbeat frame from <paramref name="node"/> (null: not authentic, counted by the domain).</summary>
    public void FrameReceived(string? node)
    {
        if (node is not null) _framesReceived.GetOrAdd(node, _ => new Counter()).Add();
    }

    public IEnumerable<(string Kind, string Result, long Value)> LeaseWrites =>
        _leaseWrites.Select(e => (e.Key.Kind, e.Key.Result, e.Value.Value));

    public IEnumerable<(string Resource, string Reason, long Value)> WatchRestartCounts =>
        _watchRestarts.Select(e => (e.Key.Resource, e.Key.Reason, e.Value.Value));

    public IEnumerable<(string Node, long Value)> FramesReceived => _framesReceived.Select(e => (e.Key, e.Value.Value));
}
