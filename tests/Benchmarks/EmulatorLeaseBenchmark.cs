using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Hybrid.Sandbox.Api;

namespace Hybrid.Benchmarks;

/// <summary>
/// Lease GET/PUT load on the API emulator, the agent's heartbeat traffic: C clients (own connection each) each
/// read their Lease and write it back with a new renewTime and the read resourceVersion. A paced phase at the
/// target rate reports the achieved rate and p50/p99 latency; an unpaced phase reports the ceiling.
/// Options: --rate 2000 --clients 20 --seconds 10.
/// </summary>
internal sealed class EmulatorLeaseBenchmark : IBenchmark
{
    public string Name => "emulator-leases";

    public string Description => "API emulator under mixed Lease GET/PUT from 20 clients: rate and p50/p99 (target 2000 req/s)";

    public async Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var rate = Option(args, "--rate", 2000);
        var clients = Option(args, "--clients", 20);
        var seconds = Option(args, "--seconds", 10);
        await using var emulator = await ApiEmulator.StartAsync(new ApiEmulatorOptions(), cancellationToken);
        var https = Enumerable.Range(0, clients).Select(_ => new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1 })
        {
            BaseAddress = emulator.BaseAddress,
        }).ToList();
        try
        {
            for (var i = 0; i < clients; i++)
            {
                var body = new JsonObject
                {
                    ["metadata"] = new JsonObject { ["name"] = "hb-" + i.ToString(CultureInfo.InvariantCulture) },
                    ["spec"] = new JsonObject
                    {
                        ["holderIdentity"] = "node-" + i.ToString(CultureInfo.InvariantCulture),
                        ["leaseDurationSeconds"] = 15,
                        ["renewTime"] = Json.MicroTimestamp(DateTimeOffset.UtcNow),
                    },
                }.ToJsonString();
                using var created = await https[i].PostAsync(Path(null), new StringContent(body, Encoding.UTF8, "application/json"), cancellationToken);
                created.EnsureSuccessStatusCode();
            }
            Console.WriteLine($"emulator at {emulator.BaseAddress}, {clients} clients, {Environment.ProcessorCount} cores");
            await Phase("warm-up", https, rate, TimeSpan.FromSeconds(2), cancellationToken, print: false);
            await Phase("paced", https, rate, TimeSpan.FromSeconds(seconds), cancellationToken);
            await Phase("unpaced", https, null, TimeSpan.FromSeconds(Math.Max(3, seconds / 2)), cancellationToken);
            Console.WriteLine($"server-side counts: get={emulator.Stats.Get("get", "leases")} update={emulator.Stats.Get("update", "leases")}");
        }
        finally
        {
            foreach (var h in https) h.Dispose();
        }
    }

    private static string Path(int? i) => "/apis/coordination.k8s.io/v1/namespaces/default/leases" + (i is null ? "" : "/hb-" + i.Value.ToString(CultureInfo.InvariantCulture));

    private static async Task Phase(string name, List<HttpClient> https, int? rate, TimeSpan duration, CancellationToken cancellationToken, bool print = true)
    {
        var latencies = new List<double>[https.Count];
        var conflicts = 0L;
        var errors = 0L;
        var start = Stopwatch.GetTimestamp();
        var perClientInterval = rate is { } r ? TimeSpan.FromSeconds(https.Count / (double)r) : TimeSpan.Zero;
        var tasks = https.Select((http, i) => Task.Run(async () =>
        {
            var mine = latencies[i] = new List<double>(100_000);
            var next = Stopwatch.GetElapsedTime(start);
            var get = true;
            string? lease = null;
            while (Stopwatch.GetElapsedTime(start) < duration && !cancellationToken.IsCancellationRequested)
            {
                if (rate is not null)
                {
                    next += perClientInterval;
                    var wait = next - Stopwatch.GetElapsedTime(start);
                    if (wait > TimeSpan.Zero) await Task.Delay(wait, cancellationToken);
                }
                var t0 = Stopwatch.GetTimestamp();
                HttpStatusCode code;
                if (get || lease is null)
                {
                    using var response = await http.GetAsync(Path(i), cancellationToken);
                    code = response.StatusCode;
                    lease = await response.Content.ReadAsStringAsync(cancellationToken);
                }
                else
                {
                    var node = JsonNode.Parse(lease)!;
                    node["spec"]!["renewTime"] = Json.MicroTimestamp(DateTimeOffset.UtcNow);
                    using var response = await http.PutAsync(Path(i), new StringContent(node.ToJsonString(), Encoding.UTF8, "application/json"), cancellationToken);
                    code = response.StatusCode;
                    lease = code == HttpStatusCode.OK ? await response.Content.ReadAsStringAsync(cancellationToken) : null;
                }
                mine.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                if (code == HttpStatusCode.Conflict) Interlocked.Increment(ref conflicts);
                else if (code != HttpStatusCode.OK) Interlocked.Increment(ref errors);
                get = !get;
            }
        }, cancellationToken)).ToList();
        await Task.WhenAll(tasks);
        var elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
        if (!print) return;
        var all = latencies.SelectMany(l => l).ToList();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{name,-8} target={(rate is null ? "max" : rate + "/s"),-7} achieved={all.Count / elapsed,8:F0} req/s  latency {Percentiles.Of(all).Format("ms", "0.00")}  conflicts={conflicts} errors={errors}"));
    }

    private static int Option(IReadOnlyList<string> args, string name, int fallback)
    {
        for (var i = 0; i + 1 < args.Count; i++)
            if (args[i] == name) return int.Parse(args[i + 1], CultureInfo.InvariantCulture);
        return fallback;
    }
}
