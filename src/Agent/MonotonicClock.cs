using System.Diagnostics;

namespace Hybrid.Agent;

/// <summary>
/// The node's monotonic clock in milliseconds: the only clock the ownership protocol uses (never wall
/// time, never compared across nodes).
/// </summary>
internal static class MonotonicClock
{
    public static long NowMs => Stopwatch.GetTimestamp() * 1000 / Stopwatch.Frequency;
}
