using System.Globalization;
using System.Net;
using Hybrid.Sandbox.Api;

namespace Hybrid.Sandbox;

/// <summary>`hybrid api`: runs the in-memory Kubernetes API emulator until SIGINT/SIGTERM.</summary>
internal static class ApiCommand
{
    private const string Usage = """
        usage: hybrid api [--listen 127.0.0.1:PORT] [--kubeconfig-out FILE] [--unix NAME=SOCKET]...
                          [--simulate-workloads] [--history N] [--verbose]
          --listen               TCP address to serve on (default 127.0.0.1:0, a free port)
          --kubeconfig-out       write a kubeconfig (plain http, no auth) for the server to FILE
          --unix NAME=SOCKET     also listen on a Unix socket; its requests count as client NAME
          --simulate-workloads   run Deployments/Pods/EndpointSlices like a controller-manager and kubelets
          --history N            watch history kept per resource (default 10000)
          --verbose              log every request
        test hooks: GET/DELETE /_lab/stats, GET/POST/DELETE /_lab/faults (see src/Sandbox/Api/LabEndpoints.cs)
        """;

    public static async Task<int> RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var options = new ApiEmulatorOptions();
        string? kubeconfig = null;
        var unix = new List<UnixListener>();
        for (var i = 0; i < args.Count; i++)
        {
            string Value() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            try
            {
                switch (args[i])
                {
                    case "--listen":
                        options = options with { Listen = IPEndPoint.Parse(Value()) };
                        break;
                    case "--kubeconfig-out":
                        kubeconfig = Value();
                        break;
                    case "--unix":
                        var spec = Value();
                        var eq = spec.IndexOf('=');
                        if (eq <= 0) throw new ArgumentException("--unix expects NAME=SOCKET");
                        unix.Add(new UnixListener(spec[..eq], spec[(eq + 1)..]));
                        break;
                    case "--simulate-workloads":
                        options = options with { SimulateWorkloads = true };
                        break;
                    case "--history":
                        options = options with { HistoryLimit = int.Parse(Value(), CultureInfo.InvariantCulture) };
                        break;
                    case "--verbose":
                        options = options with { Verbose = true };
                        break;
                    case "-h" or "--help":
                        Console.WriteLine(Usage);
                        return 0;
                    default:
                        throw new ArgumentException($"unknown option '{args[i]}'");
                }
            }
            catch (Exception e) when (e is ArgumentException or FormatException)
            {
                Console.Error.WriteLine($"hybrid api: {e.Message}\n\n{Usage}");
                return 2;
            }
        }
        options = options with { UnixListeners = unix };
        try
        {
            await using var emulator = await ApiEmulator.StartAsync(options, cancellationToken);
            if (kubeconfig is not null) emulator.WriteKubeconfig(kubeconfig);
            Console.WriteLine($"hybrid api: serving on {emulator.BaseAddress}" + (kubeconfig is null ? "" : $" (kubeconfig: {kubeconfig})"));
            try { await Task.Delay(Timeout.Infinite, cancellationToken); }
            catch (OperationCanceledException) { }
            Console.WriteLine("hybrid api: stopping");
            return 0;
        }
        catch (IOException e)
        {
            Console.Error.WriteLine($"hybrid api: cannot listen: {e.Message}");
            return 1;
        }
    }
}
