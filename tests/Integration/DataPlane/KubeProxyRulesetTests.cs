using System.Net;
using System.Security.Cryptography;
using Hybrid.Sandbox.DataPlane;
using Hybrid.Sandbox.Lab;
using Xunit;

namespace Hybrid.Integration.DataPlane;

/// <summary>
/// The kube-proxy ruleset is always one transaction the kernel accepts, whatever mix of policies, address
/// kinds and endpoint states it is given; and it replaces only its own table.
/// </summary>
public sealed class KubeProxyRulesetTests
{
    private static readonly IPNetwork PodNetwork = IPNetwork.Parse("198.18.64.0/18");

    private static readonly Dictionary<string, ProxiedEndpoint[]> EndpointSets = new()
    {
        ["none"] = [],
        ["local ready"] = [new(IPAddress.Parse("198.18.65.2"), 80, "node-1", true, true, false)],
        ["remote ready"] = [new(IPAddress.Parse("198.18.66.2"), 8080, "node-2", true, true, false)],
        ["both ready"] = [new(IPAddress.Parse("198.18.65.3"), 80, "node-1", true, true, false), new(IPAddress.Parse("198.18.66.3"), 80, "node-2", true, true, false)],
        ["terminating only"] = [new(IPAddress.Parse("198.18.66.4"), 80, "node-2", false, true, true)],
        ["not serving"] = [new(IPAddress.Parse("198.18.65.5"), 80, "node-1", false, false, false)],
    };

    /// <summary>Every combination of policies, address kinds and endpoint sets, one Service port each.</summary>
    private static List<ProxiedService> AllCombinations()
    {
        var services = new List<ProxiedService>();
        var n = 0;
        foreach (var external in Enum.GetValues<TrafficPolicy>())
            foreach (var @internal in Enum.GetValues<TrafficPolicy>())
                foreach (var (hasLb, hasNodePort, hasExternalIp) in new[] { (false, false, false), (true, true, false), (true, false, false), (false, true, false), (false, false, true) })
                    foreach (var (set, endpoints) in EndpointSets)
                    {
                        n++;
                        var port = new ProxiedPort("ns-" + (n % 3), $"svc-{n}", n % 2 == 0 ? "http" : "", n % 4 == 0 ? "udp" : "tcp", 80 + n % 3,
                            IPAddress.Parse($"10.96.{n / 250}.{n % 250 + 1}"), hasNodePort ? 30000 + n : 0,
                            hasLb ? [IPAddress.Parse($"198.18.0.{200 + n % 50}")] : [], hasExternalIp ? [IPAddress.Parse($"198.18.1.{n % 250 + 1}")] : [],
                            external, @internal);
                        services.Add(new ProxiedService(port, endpoints));
                    }
        // Two Services claiming the same external address and port: nothing in the API forbids it.
        var twin = services.First(s => s.Port.ExternalIps.Count > 0 && s.Endpoints.Count > 0);
        services.Add(twin with { Port = twin.Port with { Service = "twin", ClusterIp = IPAddress.Parse("10.96.9.9") } });
        return services;
    }

    [Fact]
    public async Task Every_mix_of_policies_addresses_and_endpoint_states_is_a_transaction_nft_accepts_and_other_tables_survive_it()
    {
        Requires.Root();
        Requires.Tool("nft", "nftables");
        var ns = "hyk" + Convert.ToHexString(RandomNumberGenerator.GetBytes(3)).ToLowerInvariant();
        var runner = ProcessRunner.Default;
        await runner.RunAsync(["ip", "netns", "add", ns], CancellationToken.None);
        try
        {
            await runner.RunAsync(new ProcessRequest(["nft", "-f", "-"])
            {
                Namespace = ns,
                StandardInput = "table ip other-owner {\n  chain input {\n    type filter hook input priority 0; policy accept;\n    counter\n  }\n}\n",
            }, CancellationToken.None);
            var services = AllCombinations();
            foreach (var node in new[] { "node-1", "node-2", "node-3" })
            {
                var script = KubeProxyRuleset.Render(node, PodNetwork, services);
                var applied = await runner.RunAsync(new ProcessRequest(["nft", "-f", "-"]) { Namespace = ns, StandardInput = script, AllowFailure = true },
                    CancellationToken.None);
                Assert.True(applied.Succeeded, $"{node}: {applied.StandardError}");
            }
            // Applying the same script again (the table exists now) works too: it replaces the table whole.
            var again = await runner.RunAsync(new ProcessRequest(["nft", "-f", "-"])
            {
                Namespace = ns,
                StandardInput = KubeProxyRuleset.Render("node-1", PodNetwork, services.Take(3).ToList()),
            }, CancellationToken.None);
            Assert.True(again.Succeeded);
            var tables = (await runner.RunAsync(new ProcessRequest(["nft", "list", "tables"]) { Namespace = ns }, CancellationToken.None)).StandardOutput;
            Assert.Contains("table ip other-owner", tables);
            var ours = (await runner.RunAsync(new ProcessRequest(["nft", "list", "table", KubeProxyRuleset.Family, KubeProxyRuleset.Table]) { Namespace = ns },
                CancellationToken.None)).StandardOutput;
            Assert.DoesNotContain("svc-4/", ours);

            await runner.RunAsync(new ProcessRequest(["nft", "-f", "-"]) { Namespace = ns, StandardInput = KubeProxyRuleset.Removal() }, CancellationToken.None);
            tables = (await runner.RunAsync(new ProcessRequest(["nft", "list", "tables"]) { Namespace = ns }, CancellationToken.None)).StandardOutput;
            Assert.Equal("table ip other-owner", tables.Trim());
        }
        finally
        {
            await runner.RunAsync(new ProcessRequest(["ip", "netns", "del", ns]) { AllowFailure = true }, CancellationToken.None);
        }
    }
}
