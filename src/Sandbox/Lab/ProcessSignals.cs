using System.Diagnostics;

namespace Hybrid.Sandbox.Lab;

/// <summary>
/// Sends signals to processes by pid and tells whether a pid is still a live process. SIGTERM goes through
/// procps' `kill` until an Interop.Sys.Kill exists (.NET's Process.Kill only sends SIGKILL).
/// </summary>
internal static class ProcessSignals
{
    /// <summary>SIGTERM to every pid; pids that are already gone are ignored.</summary>
    public static async Task TerminateAsync(IReadOnlyCollection<int> pids, CancellationToken cancellationToken)
    {
        if (pids.Count == 0) return;
        await ProcessRunner.Default.RunAsync(TermRequest(pids), cancellationToken);
    }

    /// <summary>SIGKILL to every pid; pids that are already gone are ignored.</summary>
    public static void Kill(IEnumerable<int> pids)
    {
        foreach (var pid in pids)
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                process.Kill();
            }
            catch (ArgumentException) { /* no such process */ }
            catch (InvalidOperationException) { /* exited meanwhile */ }
        }
    }

    /// <summary>True while the pid names a process that has not exited (a zombie counts as exited).</summary>
    public static bool IsAlive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var afterName = stat.LastIndexOf(')');
            return afterName > 0 && afterName + 2 < stat.Length && stat[afterName + 2] is not ('Z' or 'X');
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return true; }
    }

    /// <summary>The kernel's start time of a process (clock ticks since boot), to tell a pid from a reused one.</summary>
    public static long? StartTime(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            // Field 22 of stat(5) is starttime; after "pid (comm)" the list starts at field 3.
            return long.Parse(fields[22 - 3], System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (IOException) { return null; }
    }

    private static ProcessRequest TermRequest(IReadOnlyCollection<int> pids) =>
        // kill(1) exits non-zero when one pid has already gone; that is the expected race, not an error.
        new(["kill", "-s", "TERM", "--", .. pids.Select(p => p.ToString(System.Globalization.CultureInfo.InvariantCulture))])
        {
            AllowFailure = true,
            Timeout = TimeSpan.FromSeconds(5),
        };
}
