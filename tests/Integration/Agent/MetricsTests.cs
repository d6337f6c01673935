using System.Globalization;
using System.Text;
using Hybrid.Integration.DataPlane;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>
/// <c>/metrics</c> on port 2112 of every node (prometheus_server's default), scraped with curl from the LAN's
/// client as Prometheus would: the seed's example is announced by one node only, the nodes hear each other, and
/// after the holder dies its successor counts a takeover and the VIP.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class MetricsTests(ITestOutputHelper output)
{
    private const string Vip = "198.18.0.220";
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Metrics_show_the_holder_the_peers_and_a_takeover_after_the_holder_dies()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http1", Vip);
        await lab.WaitForHoldersAsync(Vip, [holder]);
        var nodes = lab.Lab.Nodes.Select(n => n.Name).ToArray();

        var before = new Dictionary<string, Exposition>();
        foreach (var node in nodes)
        {
            var peers = nodes.Where(n => n != node).ToArray();
            var holds = node == holder;
            // Counters lag the status by at most a loop turn; the heartbeats of peers by one interval.
            before[node] = await ScrapeUntilAsync(lab, node, m =>
                m.Value("hybrid_vips_held") == (holds ? 1 : 0)
                && (holds ? m.Value("kube_vip_active_services") >= 1 : m.Value("kube_vip_active_services") == 0)
                && m.Value("kube_vip_is_leader") == (holds ? 1 : 0)
                && m.Sum("hybrid_lease_writes_total", ("result", "ok")) > 0
                // A joined member in force has a fence (LAN or API), holder or not.
                && m.Value("hybrid_fence", ("kind", "none")) == 0
                && peers.All(p => m.Value("hybrid_heartbeat_frames_received_total", ("peer", p)) > 0),
                $"{node}'s metrics to show it {(holds ? "holds" : "does not hold")} {Vip} and hears {string.Join(", ", peers)}");
            var m = before[node];
            lab.Report($"{node}: vips_held {m.Value("hybrid_vips_held")}, active_services {m.Value("kube_vip_active_services")}, " +
                       $"lease writes ok {m.Sum("hybrid_lease_writes_total", ("result", "ok"))}, takeovers {m.Value("hybrid_takeovers_total")}");
            Assert.Equal(1, m.Value("kube_vip_build_info", ("version", m.LabelOf("kube_vip_build_info", "version"))));
            Assert.Equal(1, m.Sum("hybrid_fence"));
            Assert.InRange(m.Value("hybrid_fence_margin_seconds"), double.Epsilon, 10);
            Assert.Equal(0, m.Sum("hybrid_heartbeat_frames_dropped_total", ("reason", "bad_signature")));
            Assert.Equal(0, m.Value("kube_vip_service_reconcile_errors_total"));
            // The agent's own memory: what the kernel counts (read here from /proc too) and the collector's share of it.
            var resident = AgentResidentBytes(lab, node);
            Assert.InRange(m.Value("process_resident_memory_bytes"), resident * 0.8, resident * 1.25);
            Assert.InRange(m.Value("hybrid_gc_heap_size_bytes"), 1, m.Value("hybrid_gc_committed_bytes"));
            if (holds) Assert.True(m.Value("hybrid_announcements_total") > 0, "the holder announced the VIP");
            else Assert.Equal(0, m.Value("hybrid_announcements_total"));
        }

        await lab.Agents.KillAsync(holder, restart: false);
        await lab.Lab.Network.SetLinkAsync(holder, up: false, CancellationToken.None);
        var survivors = nodes.Where(n => n != holder).ToArray();
        var successor = await Eventually.WaitAsync(async () =>
        {
            foreach (var node in survivors)
            {
                var m = Exposition.Parse((await Curl.GetAsync(lab.ClientNamespace, Url(lab, node))).Body);
                if (m.Value("hybrid_vips_held") == 1 && m.Value("hybrid_takeovers_total") > before[node].Value("hybrid_takeovers_total"))
                    return node;
            }
            return null;
        }, Within, $"a survivor of {holder} to count a takeover and hold {Vip}");

        Assert.Equal([successor], await lab.HoldersAsync(Vip));
        var after = Exposition.Parse((await Curl.GetAsync(lab.ClientNamespace, Url(lab, successor))).Body);
        lab.Report($"{successor} took over: takeovers {after.Value("hybrid_takeovers_total")}, silence of {holder} " +
                   $"{after.Value("hybrid_takeover_silence_seconds_sum") - before[successor].Value("hybrid_takeover_silence_seconds_sum"):F3} s");
        Assert.Equal(1, after.Value("kube_vip_is_leader"));
        Assert.True(after.Value("kube_vip_active_services") >= 1);
        Assert.Equal(before[successor].Value("hybrid_takeover_silence_seconds_count") + 1, after.Value("hybrid_takeover_silence_seconds_count"));
        var other = survivors.Single(n => n != successor);
        Assert.Equal(0, Exposition.Parse((await Curl.GetAsync(lab.ClientNamespace, Url(lab, other))).Body).Value("hybrid_vips_held"));
    }

    /// <summary>The agent process's resident set as the kernel reports it (VmRSS of /proc/PID/status).</summary>
    private static double AgentResidentBytes(AgentLab lab, string node)
    {
        var pid = lab.Agents.Pid(node) ?? throw new InvalidOperationException($"{node}'s agent is not running");
        var line = File.ReadLines($"/proc/{pid}/status").Single(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
    }

    private static string Url(AgentLab lab, string node) => $"http://{lab.Lab.Node(node).Ipv4}:2112/metrics";

    private static async Task<Exposition> ScrapeUntilAsync(AgentLab lab, string node, Func<Exposition, bool> condition, string what)
    {
        Exposition? last = null;
        try
        {
            return await Eventually.WaitAsync(async () =>
            {
                var answer = await Curl.GetAsync(lab.ClientNamespace, Url(lab, node));
                if (!answer.Answered) return null;
                last = Exposition.Parse(answer.Body);
                return condition(last) ? last : null;
            }, Within, what);
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message}; last scrape:\n{last}", e);
        }
    }
}

/// <summary>
/// Prometheus' text format as a scraper reads it: every sample belongs to a family announced by a TYPE line
/// (with a HELP line) before it, label values unescaped. Anything else is a parse error, which fails the test.
/// </summary>
internal sealed class Exposition
{
    private readonly List<(string Name, Dictionary<string, string> Labels, double Value)> _samples = [];
    private readonly string _text;

    private Exposition(string text) => _text = text;

    public static Exposition Parse(string text)
    {
        var exposition = new Exposition(text);
        var types = new Dictionary<string, string>();
        var helps = new HashSet<string>();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0) continue;
            if (line.StartsWith("# HELP ", StringComparison.Ordinal))
            {
                helps.Add(line[7..].Split(' ', 2)[0]);
                continue;
            }
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                var parts = line[7..].Split(' ');
                Assert.True(parts.Length == 2 && parts[1] is "counter" or "gauge" or "summary" or "histogram" or "untyped", $"bad TYPE line: {line}");
                Assert.True(types.TryAdd(parts[0], parts[1]), $"family {parts[0]} announced twice");
                Assert.Contains(parts[0], helps);
                continue;
            }
            Assert.False(line.StartsWith('#'), $"unexpected comment: {line}");
            var (name, labels, value) = ParseSample(line);
            var family = types.ContainsKey(name) ? name
                : name.EndsWith("_sum", StringComparison.Ordinal) ? name[..^4]
                : name.EndsWith("_count", StringComparison.Ordinal) ? name[..^6]
                : name;
            Assert.True(types.ContainsKey(family), $"sample {name} has no TYPE line before it");
            exposition._samples.Add((name, labels, value));
        }
        return exposition;
    }

    private static (string, Dictionary<string, string>, double) ParseSample(string line)
    {
        var i = 0;
        while (i < line.Length && (char.IsAsciiLetterOrDigit(line[i]) || line[i] is '_' or ':')) i++;
        var name = line[..i];
        Assert.False(name.Length == 0, $"no metric name: {line}");
        var labels = new Dictionary<string, string>();
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (line[i] != '}')
            {
                var eq = line.IndexOf('=', i);
                var label = line[i..eq];
                Assert.Equal('"', line[eq + 1]);
                var value = new StringBuilder();
                var j = eq + 2;
                for (; line[j] != '"'; j++)
                {
                    if (line[j] != '\\') { value.Append(line[j]); continue; }
                    j++;
                    value.Append(line[j] switch { 'n' => '\n', '\\' => '\\', '"' => '"', var c => throw new FormatException($"bad escape \\{c} in {line}") });
                }
                Assert.True(labels.TryAdd(label, value.ToString()), $"label {label} twice in {line}");
                i = j + 1;
                if (line[i] == ',') i++;
            }
            i++;
        }
        Assert.Equal(' ', line[i]);
        var text = line[(i + 1)..];
        var number = text switch
        {
            "+Inf" => double.PositiveInfinity,
            "-Inf" => double.NegativeInfinity,
            "NaN" => double.NaN,
            _ => double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture),
        };
        return (name, labels, number);
    }

    /// <summary>The one sample of <paramref name="name"/> with exactly these labels (NaN when there is none, which
    /// no comparison accepts).</summary>
    public double Value(string name, params (string Name, string Value)[] labels)
    {
        var matching = _samples.Where(s => s.Name == name && s.Labels.Count == labels.Length && labels.All(l => s.Labels.GetValueOrDefault(l.Name) == l.Value)).ToList();
        Assert.True(matching.Count <= 1, $"{matching.Count} samples of {name} with {string.Join(",", labels)}");
        return matching.Count == 0 ? double.NaN : matching[0].Value;
    }

    /// <summary>The sum of every sample of <paramref name="name"/> that has these labels (and any others).</summary>
    public double Sum(string name, params (string Name, string Value)[] labels) =>
        _samples.Where(s => s.Name == name && labels.All(l => s.Labels.GetValueOrDefault(l.Name) == l.Value)).Sum(s => s.Value);

    public string LabelOf(string name, string label) => _samples.First(s => s.Name == name).Labels[label];

    public override string ToString() => _text;
}
