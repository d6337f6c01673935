using System.Security.Cryptography;
using Hybrid.Facade;
using System.Text.Json.Nodes;

namespace Hybrid;

/// <summary>
/// `hybrid manifest daemonset|rbac|secret [flags]`: kube-vip's manifest flags for services mode in, YAML on
/// stdout. The domain (src/Domain/Manifest.fs) decides every object; this class supplies the Secret's random
/// key and prints the objects as YAML documents. Bad flags are all reported on stderr (exit 2).
/// </summary>
internal static class ManifestCommand
{
    private const string Usage = """
        usage: hybrid manifest daemonset|rbac|secret [flags]

        Prints Hybrid's manifests as YAML, for `kubectl apply -f -`. kube-vip's `manifest` flags for
        services mode work unchanged; flags of kube-vip's other modes are refused with the reason.
          hybrid manifest rbac | kubectl apply -f -            namespace, ServiceAccount, roles, bindings
          hybrid manifest secret | kubectl create -f -         the LAN heartbeat key (fresh random key; create it once)
          hybrid manifest daemonset --services --arp --inCluster [--interface eth0] [--servicesElection] | kubectl apply -f -

        `hybrid manifest KIND --help` lists the flags of one kind.
        """;

    public static int Run(IReadOnlyList<string> args, TextWriter output, TextWriter errors)
    {
        if (args.Count == 0 || args[0] is "-h" or "--help" or "help")
        {
            (args.Count == 0 ? errors : output).WriteLine(Usage);
            return args.Count == 0 ? 2 : 0;
        }
        var rest = args.Skip(1).ToArray();
        if (rest.Any(a => a is "-h" or "--help"))
            return PrintFlags(args[0], output, errors);

        switch (Manifests.Generate(args[0], rest, RandomNumberGenerator.GetBytes(32)))
        {
            case ManifestOutcome.Rejected rejected:
                errors.WriteLine($"hybrid manifest: {rejected.Errors.Length} problem(s):");
                foreach (var error in rejected.Errors) errors.WriteLine($"  {error}");
                return 2;
            case ManifestOutcome.Generated generated:
                foreach (var json in generated.Objects)
                {
                    output.Write("---\n" + YamlWriter.Write(JsonNode.Parse(json)));
                }
                return 0;
            default:
                return 2;
        }
    }

    private static int PrintFlags(string kind, TextWriter output, TextWriter errors)
    {
        var rows = Manifests.Usage(kind);
        if (rows.Length == 0)
        {
            errors.WriteLine($"hybrid manifest: unknown manifest '{kind}' (daemonset, rbac or secret)");
            return 2;
        }
        output.WriteLine($"usage: hybrid manifest {kind} [flags]\n\nflags:");
        var width = rows.Max(r => r[0].Length);
        foreach (var row in rows) output.WriteLine($"  {row[0].PadRight(width)}  {row[1]}");
        return 0;
    }
}
