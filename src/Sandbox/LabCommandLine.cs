namespace Hybrid.Sandbox;

/// <summary>
/// Entry point of `hybrid-lab`, the lab's executable (never shipped to a node): the API emulator, the
/// network-namespace sandbox and who-has. The agent is another executable that the lab starts per node.
/// </summary>
internal static class LabCommandLine
{
    private const string Usage = """
        hybrid-lab - the Hybrid lab: an emulated API server and network namespaces on one machine

        usage:
          hybrid api --listen 127.0.0.1:PORT --kubeconfig-out FILE
              run the in-memory Kubernetes API emulator (for the lab and tests)
          hybrid sandbox [--nodes 3] [--name hybrid] [--subnet 198.18.0.0/24] [--kubeconfig FILE] [--env KEY=VALUE]...
              build a network-namespace lab with an emulated API server and one agent per node (needs root)
          hybrid who-has IPV4 [--name hybrid]
              ask a running sandbox's LAN who answers ARP for an address (exit 0 when exactly one node does)
        """;

    private static Task<int> Main(string[] args) =>
        CommandDispatch.RunAsync("hybrid-lab", Usage, args, (command, rest, stopping) => command switch
        {
            "api" => ApiCommand.RunAsync(rest, stopping),
            "sandbox" => SandboxCommand.RunAsync(rest, stopping),
            "who-has" => WhoHasCommand.RunAsync(rest, stopping),
            _ => null,
        });
}
