using System.Collections;
using Hybrid.Agent;
using Hybrid.Facade;
using k8s;
using Microsoft.Extensions.Logging;

namespace Hybrid;

/// <summary>
/// `hybrid agent`: reads kube-vip's environment variables, reports every bad one at once (exit 2), and
/// either prints the effective settings (`--print-config`) or runs the agent.
/// </summary>
internal static class AgentCommand
{
    public static async Task<int> RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var printConfig = args.Contains("--print-config");
        var environment = Environment.GetEnvironmentVariables()
            .Cast<DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "", StringComparer.Ordinal);

        // lan_key_file is read here (the domain does no I/O); what it holds is validated with the rest.
        string? keyFileContent = null, keyFileProblem = null;
        if (environment.TryGetValue("lan_key_file", out var keyFile) && keyFile.Length > 0)
        {
            try
            {
                keyFileContent = File.ReadAllText(keyFile);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                keyFileProblem = $"cannot be read: {e.Message}";
            }
        }

        switch (Configuration.Parse(environment, keyFileContent, keyFileProblem))
        {
            case SettingsOutcome.Invalid invalid:
                Console.Error.WriteLine($"hybrid agent: {invalid.Errors.Length} invalid setting(s):");
                foreach (var error in invalid.Errors) Console.Error.WriteLine($"  {error.Message}");
                return 2;
            case SettingsOutcome.Valid valid when printConfig:
                foreach (var row in Configuration.Describe(valid.Settings))
                    Console.WriteLine($"{row[0],-26} {row[1],-30} {row[2]}");
                return 0;
            case SettingsOutcome.Valid valid:
                return await RunAgentAsync(valid.Settings, args, cancellationToken);
            default:
                return 2;
        }
    }

    private static async Task<int> RunAgentAsync(Settings settings, IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var kubeconfig = Option(args, "--kubeconfig") ?? Environment.GetEnvironmentVariable("KUBECONFIG");
        var json = args.Contains("--log-json");
        var level = args.Contains("--verbose") ? LogLevel.Debug : settings.LogLevel switch
        {
            >= 6 => LogLevel.Trace,
            5 => LogLevel.Debug,
            4 => LogLevel.Information,
            3 => LogLevel.Warning,
            2 => LogLevel.Error,
            _ => LogLevel.Critical,
        };
        using var loggers = LoggerFactory.Create(builder =>
        {
            builder.SetMinimumLevel(level);
            builder.AddFilter("System.Net.Http", LogLevel.Warning);
            if (json) builder.AddJsonConsole(o => o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ");
            else builder.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
                o.UseUtcTimestamp = true;
            });
        });
        var logger = loggers.CreateLogger("Hybrid.Agent");
        ApiClient client;
        try
        {
            client = new ApiClient(kubeconfig is not null
                ? KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig)
                : KubernetesClientConfiguration.InClusterConfig());
        }
        catch (Exception e)
        {
            logger.LogCritical("Cannot load the Kubernetes configuration ({Source}): {Error}",
                kubeconfig ?? "in-cluster", e.Message);
            return 1;
        }
        using var _ = client;
        try
        {
            return await new AgentHost(settings, client, loggers).RunAsync(cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogCritical(e, "The agent stopped on an unexpected error");
            return 1;
        }
    }

    private static string? Option(IReadOnlyList<string> args, string name)
    {
        for (var i = 0; i < args.Count - 1; i++)
            if (args[i] == name) return args[i + 1];
        return args.FirstOrDefault(a => a.StartsWith(name + "=", StringComparison.Ordinal))?[(name.Length + 1)..];
    }
}
