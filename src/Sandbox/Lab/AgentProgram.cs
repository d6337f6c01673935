using System.Reflection;

namespace Hybrid.Sandbox.Lab;

/// <summary>
/// The agent executable the lab runs on its nodes and the tests ask (explain, manifest): the program a node
/// would run, from where its own project builds it (recorded in this assembly at build time), as a process of
/// its own.
/// </summary>
internal static class AgentProgram
{
    /// <summary>The built agent (bin/Hybrid/CONFIGURATION/net10.0/hybrid.dll).</summary>
    public static string Path { get; } = typeof(AgentProgram).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "HybridAgent").Value!;

    /// <summary>The argv that runs `hybrid ARGS...`.</summary>
    /// <exception cref="FileNotFoundException">The agent is not built.</exception>
    public static IReadOnlyList<string> Command(params IEnumerable<string> args) =>
        File.Exists(Path)
            ? [DotnetHost(), Path, .. args]
            : throw new FileNotFoundException($"the agent is not built at {Path}: dotnet build src/Hybrid.csproj", Path);

    private static string DotnetHost()
    {
        var host = Environment.ProcessPath;
        if (host is not null && System.IO.Path.GetFileNameWithoutExtension(host) == "dotnet") return host;
        // Started through the apphost (bin/.../hybrid-lab): the runtime it found is under DOTNET_ROOT or on PATH.
        var root = Environment.GetEnvironmentVariable("DOTNET_ROOT");
        if (root is { Length: > 0 } && File.Exists(System.IO.Path.Combine(root, "dotnet"))) return System.IO.Path.Combine(root, "dotnet");
        return ProcessRunner.FindExecutable("dotnet");
    }
}
