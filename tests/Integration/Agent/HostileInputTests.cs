using k8s;
using k8s.Models;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>Bad objects get a clear Warning (or are ignored) and never hurt anything else.</summary>
[Collection(LabCollection.Name)]
public sealed class HostileInputTests(ITestOutputHelper output)
{
    /// <summary>Fifty kinds of nonsense in kube-vip.io/loadbalancerIPs (spec.loadBalancerIP is validated by the API server).</summary>
    private static IReadOnlyList<string> Hostile() =>
    [
        "not-an-ip", "999.1.1.1", "198.18.0.1/24", "198.18.0.0/16", "fd00::/64", "1.2.3", "1.2.3.4.5", "01.02.03.04",
        "198.18.0.220,198.18.0.221", "0.0.0.0,198.18.0.222", "::,fd00::1,fd00::2", "127.0.0.1", "224.0.0.1", "169.254.1.1",
        "255.255.255.255", "fe80::1", "ff02::1", "::1", "::ffff:198.18.0.1", "fd00::1%eth0", "١٩٨.١٨.٠.١", "198.18.0.2２",
        "💥", "<script>", "' OR 1=1 --", "${jndi:ldap://x}", "1e3", "0x7f.1.1.1", "198.18.0.256", "[fd00::1]",
        "fd00:::1", "fd00::1::2", "gggg::1", "-1.0.0.0", "+1.2.3.4", "198.18.0.1 198.18.0.2", "198.18.0.1;rm -rf /",
        new string('9', 10_000), string.Join(",", Enumerable.Range(1, 10).Select(i => $"198.18.0.{200 + i}")),
        string.Join(",", Enumerable.Range(1, 500).Select(i => $"fd00::{i:x}")), "198.18.0.1,,,198.18.0.2", "0.0.0.0/0",
        "localhost", "example.com", "198.18.0.1:80", "0", "-", "*", "null", "Ω.Ω.Ω.Ω",
    ];

    [Fact]
    public async Task Fifty_hostile_services_get_warnings_and_a_good_service_afterwards_is_announced()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ApplyAsync(Manifests.Deployment("web", "test", replicas: 2));
        var hostile = Hostile().ToList();
        Assert.Equal(50, hostile.Count);
        for (var i = 0; i < hostile.Count; i++)
        {
            var service = new V1Service
            {
                Metadata = new V1ObjectMeta
                {
                    Name = $"hostile-{i}",
                    Annotations = new Dictionary<string, string> { ["kube-vip.io/loadbalancerIPs"] = hostile[i] },
                },
                Spec = new V1ServiceSpec
                {
                    Type = "LoadBalancer",
                    Selector = new Dictionary<string, string> { ["app"] = "test" },
                    Ports = [new V1ServicePort { Port = 80, TargetPort = 80, Protocol = "TCP" }],
                },
            };
            await lab.Client.CoreV1.CreateNamespacedServiceAsync(service, "default");
        }

        await lab.ApplyAsync(Manifests.Service("good", "198.18.0.240"));
        var holder = await lab.WaitForIngressAsync("good", "198.18.0.240", TimeSpan.FromSeconds(30));
        await lab.WaitForHoldersAsync("198.18.0.240", [holder]);
        Assert.Equal([holder], await lab.ArpRespondersAsync("198.18.0.240"));

        // Every hostile service got an InvalidAddress warning, and only one: re-planning for a later change
        // (another good Service) does not warn again.
        async Task<Dictionary<string, int>> WarningsAsync() =>
            (await lab.Client.EventsV1.ListNamespacedEventAsync("default")).Items
                .Where(e => e.Reason == "InvalidAddress").GroupBy(e => e.Regarding.Name)
                .ToDictionary(g => g.Key, g => g.Count());
        await Eventually.WaitAsync(async () =>
        {
            var warned = await WarningsAsync();
            return Enumerable.Range(0, hostile.Count).All(i => warned.ContainsKey($"hostile-{i}"));
        }, TimeSpan.FromSeconds(30), "an InvalidAddress warning for every hostile service");
        await lab.ApplyAsync(Manifests.Service("later", "198.18.0.241"));
        var laterHolder = await lab.WaitForIngressAsync("later", "198.18.0.241", TimeSpan.FromSeconds(30));
        var warnings = await WarningsAsync();
        // Exactly one each, even when a stall during the burst got a node deposed: it keeps its janitor duties
        // for the grace in which it rejoins, so no other node posts its warnings again, nor it after rejoining.
        var deposed = lab.Lab.Nodes.Where(n => lab.Log(n.Name).Contains("was deposed by", StringComparison.Ordinal)).Select(n => n.Name).ToList();
        Assert.All(Enumerable.Range(0, hostile.Count), i =>
            Assert.True(warnings.GetValueOrDefault($"hostile-{i}") == 1,
                $"hostile-{i}: {warnings.GetValueOrDefault($"hostile-{i}")} warnings (deposed meanwhile: [{string.Join(", ", deposed)}])"));

        foreach (var i in Enumerable.Range(0, hostile.Count))
            Assert.Empty((await lab.ServiceAsync($"hostile-{i}")).Status?.LoadBalancer?.Ingress ?? []);
        foreach (var node in lab.Lab.Nodes)
        {
            Assert.True(lab.Agents.IsRunning(node.Name), $"agent on {node.Name} is not running");
            Assert.Equal(0, lab.Agents.Restarts(node.Name));
            // The holders carry the good VIPs, and no node carries anything a hostile annotation named.
            var expected = new[] { (holder, "198.18.0.240/32"), (laterHolder, "198.18.0.241/32") }
                .Where(h => h.Item1 == node.Name).Select(h => h.Item2).Order().ToList();
            var vips = (await lab.Lab.Network.AddressesAsync(node.Namespace, node.Interface, CancellationToken.None))
                .Where(a => a.StartsWith("198.18.0.2") || a.StartsWith("198.18.0.3") || a.StartsWith("fd00")).Order().ToList();
            Assert.Equal(expected, vips);
        }
    }

    [Fact]
    public async Task A_Local_service_without_svc_election_is_announced_by_the_leader_with_one_warning()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ApplyAsync(Manifests.Deployment("nginx", "nginx", replicas: 1));
        await lab.ApplyAsync(Manifests.Service("nginx-service", "198.18.0.225", app: "nginx", local: true));
        var holder = await lab.WaitForIngressAsync("nginx-service", "198.18.0.225");
        await lab.WaitForHoldersAsync("198.18.0.225", [holder]);
        var warning = await lab.WaitForEventAsync("nginx-service", "LocalNeedsElection");
        Assert.Equal("Warning", warning.Type);
        Assert.Contains("svc_election", warning.Note);
        Assert.Single(await lab.EventsAsync("nginx-service"), e => e.Reason == "LocalNeedsElection");
    }
}
