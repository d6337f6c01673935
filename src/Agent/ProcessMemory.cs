using System.Globalization;

namespace Hybrid.Agent;

/// <summary>The agent's own memory as the kernel and the collector count it, for the metrics.</summary>
internal static class ProcessMemory
{
    /// <summary>Resident set size (what a memory limit is measured against), from /proc/self/statm; 0 if unreadable.</summary>
    public static long ResidentBytes()
    {
        try
        {
            // statm: size resident shared text lib data dt, in pages.
            var fields = File.ReadAllText("/proc/self/statm").Split(' ');
            return long.Parse(fields[1], CultureInfo.InvariantCulture) * Environment.SystemPageSize;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return 0;
        }
    }
}
