using System.Globalization;
using Hybrid.Agent;
using Hybrid.Facade;
using k8s;
using k8s.Exceptions;

namespace Hybrid;

/// <summary>
/// `hybrid explain [-n NAMESPACE] SERVICE | --all`: reads what the agents read (Services, EndpointSlices, the
/// Leases of the Lease namespace, Nodes, the pool ConfigMap) and prints what the domain decides about each
/// Service and why (src/Domain/Protocol/Explain.fs), then the Service's latest Events. This class only reads
/// the cluster and prints.
/// </summary>
internal static class ExplainCommand
{
    private const string Usage = """
        usage: hybrid explain [-n NAMESPACE] SERVICE [options]
               hybrid explain --all [options]

        Prints what Hybrid's agents decide about a Service and why: admitted or skipped (in the words of its
        Warning Events), its group and addresses, who holds the group and why each other node does not, and
        the Service's latest Events. Liveness is as the nodes' registrations record it: the API server cannot
        see the LAN.

        options:
          -n, --namespace NAMESPACE   the Service's namespace (default: default)
          --all                       every Service of every namespace
          --kubeconfig FILE           default: $KUBECONFIG, else ~/.kube/config
          --env NAME=VALUE            an agent setting, as in the DaemonSet's env (repeatable): svc_election,
                                      svc_leasename, cp_namespace, svc_namespace, lb_class_name, lb_class_only, …
                                      Without svc_election, the mode is read from the agents' group Leases.
          --events N                  how many of the latest Events to show per Service (default 5)
        """;

    private sealed record Options(string? Service, string Namespace, bool All, string Kubeconfig, Dictionary<string, string> Variables, int Events);

    public static async Task<int> RunAsync(IReadOnlyList<string> args, TextWriter output, TextWriter errors, CancellationToken cancellationToken)
    {
        if (args.Any(a => a is "-h" or "--help"))
        {
            output.WriteLine(Usage);
            return 0;
        }
        var (options, problems) = Parse(args);
        if (options is null)
        {
            foreach (var problem in problems) errors.WriteLine($"hybrid explain: {problem}");
            errors.WriteLine(Usage);
            return 2;
        }

        switch (Explainer.Settings(options.Variables))
        {
            case ExplainSettingsOutcome.Unreadable unreadable:
                errors.WriteLine($"hybrid explain: {unreadable.Errors.Length} invalid setting(s):");
                foreach (var error in unreadable.Errors) errors.WriteLine($"  {error.Message}");
                return 2;
            case ExplainSettingsOutcome.Readable readable:
                try
                {
                    return await ExplainAsync(options, readable.LeaseNamespace, output, errors, cancellationToken);
                }
                catch (Exception e) when (e is ApiException or HttpRequestException or KubeConfigException or IOException or System.Text.Json.JsonException)
                {
                    errors.WriteLine($"hybrid explain: cannot read the cluster ({options.Kubeconfig}): {Describe(e)}");
                    return 1;
                }
            default:
                return 2;
        }
    }

    private static async Task<int> ExplainAsync(Options options, string leaseNamespace, TextWriter output, TextWriter errors,
        CancellationToken cancellationToken)
    {
        using var client = new ApiClient(KubernetesClientConfiguration.BuildConfigFromConfigFile(options.Kubeconfig));
        var json = ApiJson.Default;
        var services = (await client.GetAsync(ApiPaths.Services(null), json.ObjectListServiceObject, cancellationToken)).Items;
        var slices = (await client.GetAsync(ApiPaths.EndpointSlices(null), json.ObjectListEndpointSliceObject, cancellationToken)).Items;
        var leases = (await client.GetAsync(ApiPaths.AgentLeases(leaseNamespace), json.ObjectListLeaseObject, cancellationToken)).Items;
        var nodes = (await client.GetAsync(ApiPaths.Nodes, json.ObjectListNodeObject, cancellationToken)).Items;
        var pools = (await client.GetAsync(ApiPaths.PoolConfigMap, json.ObjectListConfigMapObject, cancellationToken)).Items.FirstOrDefault();

        var outcome = Explainer.Explain(options.Variables,
            services.Select(KubeObjects.ToInput).ToArray(),
            slices.Select(KubeObjects.ToInput).OfType<SliceInput>().ToArray(),
            leases.Select(KubeObjects.ToInput).ToArray(),
            nodes.Select(KubeObjects.ToInput).ToArray(),
            pools is null ? null : KubeObjects.PoolData(pools));
        if (outcome is not ExplainOutcome.Explained explained)
        {
            foreach (var error in ((ExplainOutcome.NotExplained)outcome).Errors) errors.WriteLine($"hybrid explain: {error.Message}");
            return 2;
        }

        var chosen = explained.Explanation.Services
            .Where(s => options.All || (s.Namespace == options.Namespace && s.Name == options.Service))
            .ToList();
        if (chosen.Count == 0 && !options.All)
        {
            errors.WriteLine($"hybrid explain: service {options.Namespace}/{options.Service} not found");
            return 1;
        }

        foreach (var line in explained.Explanation.Header) output.WriteLine(line);
        foreach (var service in chosen)
        {
            output.WriteLine();
            foreach (var line in service.Lines) output.WriteLine(line);
            await PrintEventsAsync(client, service, options.Events, output, cancellationToken);
        }
        return 0;
    }

    private static async Task PrintEventsAsync(ApiClient client, ServiceExplanationOutput service, int count, TextWriter output,
        CancellationToken cancellationToken)
    {
        if (count <= 0) return;
        var events = (await client.GetAsync(ApiPaths.CoreEventsAbout(service.Namespace, service.Name),
                ApiJson.Default.ObjectListCoreEventObject, cancellationToken)).Items
            .Where(e => e.InvolvedObject?.Kind == "Service" && e.InvolvedObject.Name == service.Name)
            .OrderBy(When)
            .TakeLast(count)
            .ToList();
        if (events.Count == 0)
        {
            output.WriteLine("  Events: none");
            return;
        }
        output.WriteLine($"  Events (latest {events.Count}):");
        foreach (var e in events)
            output.WriteLine($"    {When(e).UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)}Z  {e.Type,-7}  {e.Reason}: {e.Message}");
    }

    /// <summary>When an Event last happened, whichever of its times the poster filled in.</summary>
    private static DateTimeOffset When(CoreEventObject e) =>
        e.LastTimestamp ?? e.EventTime ?? e.FirstTimestamp ?? e.Metadata.CreationTimestamp ?? DateTimeOffset.MinValue;

    private static (Options? Options, IReadOnlyList<string> Problems) Parse(IReadOnlyList<string> args)
    {
        var problems = new List<string>();
        var variables = new Dictionary<string, string>(StringComparer.Ordinal);
        string? service = null, kubeconfig = null;
        var ns = "default";
        var all = false;
        var events = 5;
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            string? Value()
            {
                var eq = arg.IndexOf('=');
                if (arg.StartsWith("--", StringComparison.Ordinal) && eq > 0) return arg[(eq + 1)..];
                if (i + 1 < args.Count) return args[++i];
                problems.Add($"{arg} needs a value");
                return null;
            }
            var name = arg.StartsWith("--", StringComparison.Ordinal) && arg.Contains('=') ? arg[..arg.IndexOf('=')] : arg;
            switch (name)
            {
                case "-n" or "--namespace":
                    ns = Value() ?? ns;
                    break;
                case "--all" or "-A" or "--all-namespaces":
                    all = true;
                    break;
                case "--kubeconfig":
                    kubeconfig = Value();
                    break;
                case "--events":
                    var text = Value();
                    if (text is not null && (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out events) || events > 1000))
                        problems.Add($"--events {text}: not a count from 0 to 1000");
                    break;
                case "--env":
                    var pair = Value();
                    if (pair is null) break;
                    var at = pair.IndexOf('=');
                    if (at <= 0) problems.Add($"--env {pair}: expected NAME=VALUE");
                    else variables[pair[..at]] = pair[(at + 1)..];
                    break;
                default:
                    if (arg.StartsWith('-')) problems.Add($"unknown option {arg}");
                    else if (service is null) service = arg;
                    else problems.Add($"unexpected argument {arg} (one Service at a time, or --all)");
                    break;
            }
        }
        if (service is null && !all) problems.Add("name a Service, or --all");
        if (service is not null && all) problems.Add("a Service name and --all exclude each other");
        kubeconfig ??= DefaultKubeconfig();
        return problems.Count > 0
            ? (null, problems)
            : (new Options(service, ns, all, kubeconfig, variables, events), problems);
    }

    /// <summary>Where kubectl looks: the first file of $KUBECONFIG, else ~/.kube/config.</summary>
    private static string DefaultKubeconfig() =>
        Environment.GetEnvironmentVariable("KUBECONFIG")?.Split(':', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".kube", "config");

    private static string Describe(Exception e) => e switch
    {
        ApiException a => a.Message,
        _ => e.Message,
    };
}
