namespace Hybrid;

/// <summary>
/// Composition root of the `hybrid` executable, the one program a node runs: parses the sub-command and hands
/// over to it. Each command owns its own options; this file only names them (CommandDispatch
/// runs them). The lab's commands (api, sandbox, who-has) are another executable, hybrid-lab.
/// </summary>
internal static class CommandLine
{
    private const string Usage = """
        hybrid - Kubernetes Service load-balancer agent for bare metal (kube-vip services-mode compatible)

        usage:
          hybrid agent [--kubeconfig FILE] [--print-config]
              run the node agent; configuration comes from kube-vip's environment variables
          hybrid manifest daemonset|rbac|secret [flags]
              print the agent's manifests as YAML; kube-vip's `manifest` flags for services mode work unchanged
          hybrid explain [-n NAMESPACE] SERVICE | --all [--kubeconfig FILE] [--env KEY=VALUE]...
              ask the cluster what the agents decide about a Service and why (holder, and why not each other node)
          hybrid --help

        The lab's commands (api, sandbox, who-has) are the executable hybrid-lab; ./hybrid in the repository runs either.
        """;

    private static Task<int> Main(string[] args) =>
        CommandDispatch.RunAsync("hybrid", Usage, args, (command, rest, stopping) => command switch
        {
            "agent" => AgentCommand.RunAsync(rest, stopping),
            "manifest" => Task.FromResult(ManifestCommand.Run(rest, Console.Out, Console.Error)),
            "explain" => ExplainCommand.RunAsync(rest, Console.Out, Console.Error, stopping),
            "api" or "sandbox" or "who-has" => LabCommand(command),
            _ => null,
        });

    private static Task<int> LabCommand(string command)
    {
        Console.Error.WriteLine($"hybrid: '{command}' is a lab command: run it with the lab executable (hybrid-lab), or ./hybrid {command} from the repository");
        return Task.FromResult(2);
    }
}
