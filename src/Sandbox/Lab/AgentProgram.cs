using System.Reflection;

namespace Hybrid.Sandbox.Lab;

/// <summary>
/// The agent executable the lab runs on its nodes and the tests ask (explain, manifest): the native binary
/// that ships to nodes, from where scripts/build-agent puts it (recorded in this assembly at build time), so
/// that every lab test and benchmark proves the shipped program.
/// </summary>
internal static class AgentProgram
{
    /// <summary>bin/agent/hybrid in the repository.</summary>
    public static string Path { get; } = typeof(AgentProgram).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "HybridAgent").Value!;

    /// <summary>The argv that runs `hybrid ARGS...`.</summary>
    /// <exception cref="FileNotFoundException">The agent is not built.</exception>
    public static IReadOnlyList<string> Command(params IEnumerable<string> args) =>
        File.Exists(Path)
            ? [Path, .. args]
            : throw new FileNotFoundException($"the native agent is not built at {Path}: run scripts/build-agent", Path);
}
