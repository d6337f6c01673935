using System.Runtime.InteropServices;

namespace Hybrid.Sandbox.Lab;

/// <summary>
/// Runs the emergency teardown of every live lab when the host process goes away without disposing them.
/// <list type="bullet">
/// <item>AppDomain.ProcessExit (normal exit, Environment.Exit, and SIGTERM that no handler cancelled): every lab.</item>
/// <item>SIGINT, SIGTERM, SIGHUP, SIGQUIT, for labs registered with <c>onSignals</c>: the handler tears those labs
/// down synchronously and never sets <see cref="PosixSignalContext.Cancel"/>, so the caller's own handlers still
/// run afterwards and still decide whether the process exits. .NET calls the most recently registered handler
/// first, and labs register when they are created, so a caller that maps signals to cancellation (like
/// CommandLine.Main in src/Runtime.cs) finds the lab already gone and its own DisposeAsync becomes a no-op.
/// A caller that wants an orderly shutdown on Ctrl-C instead (agents stopped first) creates the lab with
/// onSignals: false and keeps ProcessExit as the safety net.</item>
/// </list>
/// SIGKILL cannot be caught: what it leaves behind is removed by the sweep at the next start of a lab of the same
/// name, or by <see cref="NetnsLab.SweepOrphansAsync"/>.
/// </summary>
internal static class LabExitGuard
{
    private static readonly TimeSpan TeardownDeadline = TimeSpan.FromSeconds(20);
    private static readonly object Gate = new();
    private static readonly List<Entry> Entries = [];
    private static PosixSignalRegistration[]? _signals;
    private static bool _processExitHooked;

    /// <summary>Runs <paramref name="teardown"/> on exit (and on terminating signals) until the result is disposed.</summary>
    public static IDisposable Register(Func<Task> teardown, bool onSignals)
    {
        var entry = new Entry(teardown, onSignals);
        lock (Gate)
        {
            Entries.Add(entry);
            if (!_processExitHooked)
            {
                AppDomain.CurrentDomain.ProcessExit += (_, _) => RunAll(signal: false);
                _processExitHooked = true;
            }
            if (onSignals && _signals is null)
            {
                _signals =
                [
                    PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal),
                    PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal),
                    PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnSignal),
                    PosixSignalRegistration.Create(PosixSignal.SIGQUIT, OnSignal),
                ];
            }
        }
        return entry;
    }

    private static void OnSignal(PosixSignalContext context) => RunAll(signal: true);

    private static void RunAll(bool signal)
    {
        Entry[] entries;
        lock (Gate) entries = Entries.Where(e => !signal || e.OnSignals).ToArray();
        foreach (var entry in entries)
        {
            try
            {
                // Sync over async is deliberate: this thread (the signal thread or the exiting main thread) must
                // not return before the namespaces are gone, and the thread pool is still running.
                entry.Teardown().Wait(TeardownDeadline);
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"hybrid lab: emergency teardown failed: {e.GetBaseException().Message}");
            }
        }
    }

    private static void Remove(Entry entry)
    {
        lock (Gate)
        {
            Entries.Remove(entry);
            if (_signals is not null && !Entries.Any(e => e.OnSignals))
            {
                foreach (var registration in _signals) registration.Dispose();
                _signals = null;
            }
        }
    }

    private sealed class Entry(Func<Task> teardown, bool onSignals) : IDisposable
    {
        public Func<Task> Teardown { get; } = teardown;
        public bool OnSignals { get; } = onSignals;
        public void Dispose() => Remove(this);
    }
}
