using System.Diagnostics;

namespace Hybrid.Integration;

/// <summary>
/// Preconditions of tests that need root or an external tool. A missing precondition FAILS the test with a
/// message saying what to install: the test command installs every tool, so nothing is silently skipped.
/// </summary>
internal static class Requires
{
    public static void Root()
    {
        if (!Environment.IsPrivilegedProcess)
            throw new InvalidOperationException("this test needs root (network namespaces, raw sockets): run the test command with sudo");
    }

    public static string Tool(string name, string debianPackage)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Concat(["/usr/sbin", "/sbin", "/usr/bin"]))
        {
            var path = Path.Combine(dir, name);
            if (File.Exists(path)) return path;
        }
        throw new InvalidOperationException($"this test needs '{name}' (Debian package {debianPackage}); the test command installs it");
    }
}
