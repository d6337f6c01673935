using Hybrid.Sandbox;

namespace Hybrid;

/// <summary>
/// Composition root of the `hybrid` executable: parses the sub-command and hands over to it. Each command
/// owns its own options; this file only dispatches and maps Ctrl-C/SIGTERM to cancellation.
/// </summary>
internal static class CommandLine
{
    private const string Usage = """
        hybrid - Kubernetes Service load-balancer agent for bare metal (kube-vip services-mode compatible)

        usage:
          hybrid agent [--kubeconfig FILE] [--print-config]
              run the node agent; configuration comes from kube-vip's environment variables
          hybrid api --listen 127.0.0.1:PORT --kubeconfig-out FILE
              run the in-memory Kubernetes API emulator (for the lab and tests)
          hybrid sandbox [--nodes 3] [--name hybrid] [--subnet 198.18.0.0/24] [--kubeconfig FILE] [--env KEY=VALUE]...
              build a network-namespace lab with an emulated API server and one agent per node (needs root)
          hybrid manifest daemonset|rbac|secret [flags]
              print the agent's manifests as YAML; kube-vip's `manifest` flags for services mode work unchanged
          hybrid explain [-n NAMESPACE] SERVICE | --all [--kubeconfig FILE] [--env KEY=VALUE]...
              ask the cluster what the agents decide about a Service and why (holder, and why not each other node)
          hybrid who-has IPV4 [--name hybrid]
              ask a running sandbox's LAN who answers ARP for an address (exit 0 when exactly one node does)
          hybrid --help
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
            case "api":
                return await ApiCommand.RunAsync(rest, stopping.Token);
            case "sandbox":
                return await SandboxCommand.RunAsync(rest, stopping.Token);
            case "manifest":
                return ManifestCommand.Run(rest, Console.Out, Console.Error);
            case "explain":
                return await ExplainCommand.RunAsync(rest, Console.Out, Console.Error, stopping.Token);
            case "who-has":
                return await WhoHasCommand.RunAsync(rest, stopping.Token);
            default:
                Console.Error.WriteLine($"hybrid: unknown command '{args[0]}'\n\n{Usage}");
                return 2;
        }
    }
}
