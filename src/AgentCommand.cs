using System.Collections;
using Hybrid.Facade;

namespace Hybrid;

/// <summary>
/// `hybrid agent`: reads kube-vip's environment variables, reports every bad one at once (exit 2), and
/// either prints the effective settings (`--print-config`) or runs the agent.
/// </summary>
internal static class AgentCommand
{
    public static Task<int> RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var printConfig = args.Contains("--print-config");
        var environment = Environment.GetEnvironmentVariables()
            .Cast<DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "", StringComparer.Ordinal);

        switch (Decide.ParseSettings(environment))
        {
            case SettingsOutcome.Invalid invalid:
                Console.Error.WriteLine($"hybrid agent: {invalid.Errors.Length} invalid setting(s):");
                foreach (var error in invalid.Errors) Console.Error.WriteLine($"  {error.Message}");
                return Task.FromResult(2);
            case SettingsOutcome.Valid valid when printConfig:
                foreach (var row in Decide.DescribeSettings(valid.Settings))
                    Console.WriteLine($"{row[0],-26} {row[1],-30} {row[2]}");
                return Task.FromResult(0);
            default:
                Console.Error.WriteLine("hybrid agent: the agent loop is not implemented yet");
                return Task.FromResult(1);
        }
    }
}
