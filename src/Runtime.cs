namespace Hybrid;

/// <summary>
/// Composition root of the `hybrid` executable, the one program a node runs: parses the sub-command and hands
/// over to it. Each command owns its own options; this file only dispatches and maps Ctrl-C/SIGTERM to
/// cancellation. The lab's commands (api, sandbox, who-has) are another executable, hybrid-lab.
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

    private static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }

        using var stopping = new CancellationTokenSource();
        using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGINT, ctx => { ctx.Cancel = true; stopping.Cancel(); });
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
            System.Runtime.InteropServices.PosixSignal.SIGTERM, ctx => { ctx.Cancel = true; stopping.Cancel(); });

        var rest = args.Skip(1).ToList();
        switch (args[0])
        {
            case "agent":
                return await AgentCommand.RunAsync(rest, stopping.Token);
            case "manifest":
                return ManifestCommand.Run(rest, Console.Out, Console.Error);
            case "explain":
                return await ExplainCommand.RunAsync(rest, Console.Out, Console.Error, stopping.Token);
            case "api" or "sandbox" or "who-has":
                Console.Error.WriteLine($"hybrid: '{args[0]}' is a lab command: run it with the lab executable (hybrid-lab), or ./hybrid {args[0]} from the repository");
                return 2;
            default:
                Console.Error.WriteLine($"hybrid: unknown command '{args[0]}'\n\n{Usage}");
                return 2;
        }
    }
}
