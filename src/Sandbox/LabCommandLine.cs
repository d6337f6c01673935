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
            case "api":
                return await ApiCommand.RunAsync(rest, stopping.Token);
            case "sandbox":
                return await SandboxCommand.RunAsync(rest, stopping.Token);
            case "who-has":
                return await WhoHasCommand.RunAsync(rest, stopping.Token);
            default:
                Console.Error.WriteLine($"hybrid-lab: unknown command '{args[0]}'\n\n{Usage}");
                return 2;
        }
    }
}
