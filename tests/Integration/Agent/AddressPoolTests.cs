using Hybrid.Integration.DataPlane;
using k8s;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>
/// Address pools (kube-vip-cloud-provider's ConfigMap kube-system/kubevip) and the address policy, seen as a
/// tenant and a client on the LAN see them: what is refused is never answered by any agent, what a pool
/// assigns is announced and serves traffic, and adding pools never takes a running Service off the network.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class AddressPoolTests(ITestOutputHelper output)
{
    private const string Tenant = "tenant";
    private const string PoolRange = "198.18.0.200-198.18.0.210";

    [Fact]
    public async Task A_tenant_asking_for_a_nodes_the_gateways_or_the_clients_address_gets_a_warning_and_no_agent_answers_while_a_pool_address_works()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await CreatePoolsAsync(lab, ("range-global", PoolRange));
        await CreateNamespaceAsync(lab, Tenant);
        await lab.ApplyAsync(InNamespace(Tenant, Manifests.Deployment("web", "web", replicas: 2)));
        var node2 = lab.Lab.Topology.Node(2).Ipv4.ToString();
        var client = lab.Lab.ClientHost.Ipv4.ToString();
        var gateway = lab.Lab.Topology.Reserved.ToString();
        await lab.ApplyAsync(InNamespace(Tenant, Manifests.Service("steal-node", node2, app: "web")));
        await lab.ApplyAsync(InNamespace(Tenant, Manifests.Service("steal-gateway", gateway, app: "web")));
        await lab.ApplyAsync(InNamespace(Tenant, Manifests.Service("steal-client", client, app: "web")));
        await lab.ApplyAsync(InNamespace(Tenant, Manifests.Service("good", "198.18.0.205", app: "web")));

        var holder = await lab.WaitForIngressAsync("good", "198.18.0.205", ns: Tenant);
        Assert.Equal([holder], await lab.ArpRespondersAsync("198.18.0.205"));
        Assert.Equal("web", (await Curl.AnswerAsync(lab.ClientNamespace, "http://198.18.0.205/hostname")).Split('-')[0]);

        var nodeWarning = await lab.WaitForEventAsync("steal-node", "AddressReserved", ns: Tenant);
        Assert.Equal("Warning", nodeWarning.Type);
        Assert.Contains("node node-2", nodeWarning.Note);
        var gatewayWarning = await lab.WaitForEventAsync("steal-gateway", "AddressReserved", ns: Tenant);
        Assert.Contains("default gateway", gatewayWarning.Note);
        var clientWarning = await lab.WaitForEventAsync("steal-client", "AddressNotInPool", ns: Tenant);
        Assert.Contains("outside the global pool", clientWarning.Note);

        foreach (var (name, ip) in new[] { ("steal-node", node2), ("steal-gateway", gateway), ("steal-client", client) })
        {
            Assert.Empty((await lab.ServiceAsync(name, Tenant)).Status?.LoadBalancer?.Ingress ?? []);
            Assert.Empty(await lab.HoldersAsync(ip));
        }
        // Only the real owners answer: node-2 for its own address, nobody else for the client's or the gateway's.
        Assert.Equal(["node-2"], await lab.ArpRespondersAsync(node2));
        Assert.Empty(await lab.ArpRespondersAsync(client));
        Assert.Empty(await lab.ArpRespondersAsync(gateway));
    }

    [Fact]
    public async Task A_pool_gives_unaddressed_services_its_lowest_free_addresses_which_are_announced_and_serve()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await CreatePoolsAsync(lab, ("range-global", PoolRange), ("range-" + Tenant, "198.18.0.240-198.18.0.241"),
            ("range-Not_A_Namespace", "198.18.0.250-198.18.0.251"));
        await lab.ApplyAsync(Manifests.Deployment("test-deploy", "test", replicas: 2));
        // Taken by hand, without the cloud provider's label: it still counts as used.
        await lab.ApplyAsync(Manifests.Service("by-hand", "198.18.0.200"));
        await lab.WaitForIngressAsync("by-hand", "198.18.0.200");

        (await lab.Kubectl.RunAsync("expose", "deployment", "test-deploy", "--port=80", "--target-port=80",
            "--type=LoadBalancer", "--name", "web1")).EnsureSuccess();
        var first = await WaitForAssignedAsync(lab, "web1", "default");
        Assert.Equal("198.18.0.201", first);
        (await lab.Kubectl.RunAsync("expose", "deployment", "test-deploy", "--port=80", "--target-port=80",
            "--type=LoadBalancer", "--name", "web2")).EnsureSuccess();
        Assert.Equal("198.18.0.202", await WaitForAssignedAsync(lab, "web2", "default"));

        var service = await lab.ServiceAsync("web1");
        Assert.Equal("kube-vip", service.Metadata.Labels["implementation"]);
        var assigned = await lab.WaitForEventAsync("web1", "AddressAssigned");
        Assert.Equal("Normal", assigned.Type);
        Assert.Contains("198.18.0.201", assigned.Note);

        var holder = await lab.WaitForIngressAsync("web1", "198.18.0.201");
        await lab.WaitForHoldersAsync("198.18.0.201", [holder]);
        Assert.Equal([holder], await lab.ArpRespondersAsync("198.18.0.201"));
        Assert.StartsWith("test-deploy-", await Curl.AnswerAsync(lab.ClientNamespace, "http://198.18.0.201/hostname"));

        // The bad entry is reported on the ConfigMap; the good ones are used.
        var bad = await Eventually.WaitAsync(async () =>
                (await lab.Client.EventsV1.ListNamespacedEventAsync("kube-system")).Items
                .FirstOrDefault(e => e.Regarding?.Kind == "ConfigMap" && e.Regarding.Name == "kubevip" && e.Reason == "InvalidAddressPool"),
            TimeSpan.FromSeconds(15), "an InvalidAddressPool Warning on kube-system/kubevip");
        Assert.Equal("Warning", bad.Type);
        Assert.Contains("range-Not_A_Namespace", bad.Note);

        // A namespace's own range wins over the global one.
        await CreateNamespaceAsync(lab, Tenant);
        await lab.ApplyAsync(InNamespace(Tenant, Manifests.Service("own-range")));
        Assert.Equal("198.18.0.240", await WaitForAssignedAsync(lab, "own-range", Tenant));
    }

    [Fact]
    public async Task A_service_outside_the_pools_keeps_its_address_with_a_warning_when_pools_are_added_and_a_new_one_is_refused()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ApplyAsync(Manifests.Deployment("test-deploy", "test", replicas: 2));
        await lab.ApplyAsync(Manifests.Service("legacy", "198.18.0.230"));
        var holder = await lab.WaitForIngressAsync("legacy", "198.18.0.230");

        await CreatePoolsAsync(lab, ("range-global", PoolRange));
        var kept = await lab.WaitForEventAsync("legacy", "AddressOutsidePolicyKept");
        Assert.Equal("Warning", kept.Type);
        Assert.Contains("198.18.0.230", kept.Note);
        await lab.ApplyAsync(Manifests.Service("late", "198.18.0.231"));
        await lab.WaitForEventAsync("late", "AddressNotInPool");

        Assert.Equal(holder, await lab.WaitForIngressAsync("legacy", "198.18.0.230"));
        Assert.Equal([holder], await lab.HoldersAsync("198.18.0.230"));
        Assert.Equal([holder], await lab.ArpRespondersAsync("198.18.0.230"));
        Assert.StartsWith("test-deploy-", await Curl.AnswerAsync(lab.ClientNamespace, "http://198.18.0.230/hostname"));
        Assert.Empty((await lab.ServiceAsync("late")).Status?.LoadBalancer?.Ingress ?? []);
        Assert.Empty(await lab.HoldersAsync("198.18.0.231"));
        Assert.Empty(await lab.ArpRespondersAsync("198.18.0.231"));
    }

    [Fact]
    public async Task Eleven_services_on_a_ten_address_range_the_eleventh_waits_with_a_warning_until_an_address_is_freed()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await CreatePoolsAsync(lab, ("range-global", "198.18.0.200-198.18.0.209"));
        await lab.ApplyAsync(Manifests.Deployment("test-deploy", "test", replicas: 2));
        // One apply: the Services are handled oldest first, then by name, so svc-NN gets .2NN and svc-10 none.
        var names = Enumerable.Range(0, 11).Select(i => $"svc-{i:00}").ToList();
        await lab.ApplyAsync(string.Join("---\n", names.Select(n => Manifests.Service(n))));

        var expected = names.Take(10).Select((n, i) => (Name: n, Ip: $"198.18.0.{200 + i}")).ToList();
        foreach (var (name, ip) in expected) Assert.Equal(ip, await WaitForAssignedAsync(lab, name, "default"));
        await lab.WaitForIngressesAsync(expected.ToDictionary(e => e.Name, e => e.Ip));
        await lab.WaitForSingleHoldersAsync(expected.Select(e => e.Ip).ToList());
        foreach (var (_, ip) in expected.Where((_, i) => i % 3 == 0))
            Assert.Single(await lab.ArpRespondersAsync(ip));

        var exhausted = await lab.WaitForEventAsync("svc-10", "AddressPoolExhausted");
        Assert.Equal("Warning", exhausted.Type);
        Assert.Contains("no address assigned: every IPv4 address of", exhausted.Note);
        Assert.Contains("is in use", exhausted.Note);
        var eleventh = await lab.ServiceAsync("svc-10");
        Assert.False(eleventh.Metadata.Annotations?.ContainsKey("kube-vip.io/loadbalancerIPs") ?? false);
        Assert.Empty(eleventh.Status?.LoadBalancer?.Ingress ?? []);

        // Deleting one frees its address; the waiting Service gets it and it is answered by one node.
        (await lab.Kubectl.RunAsync("delete", "service", "svc-03")).EnsureSuccess();
        Assert.Equal("198.18.0.203", await WaitForAssignedAsync(lab, "svc-10", "default"));
        var holder = await lab.WaitForIngressAsync("svc-10", "198.18.0.203");
        await lab.WaitForHoldersAsync("198.18.0.203", [holder]);
        Assert.Equal([holder], await lab.ArpRespondersAsync("198.18.0.203"));
        var assigned = await lab.WaitForEventAsync("svc-10", "AddressAssigned");
        Assert.Contains("198.18.0.203", assigned.Note);
    }

    [Fact]
    public async Task A_node_labelled_exclude_from_external_load_balancers_hands_its_groups_to_others_takes_no_new_one_and_may_hold_again_once_unlabelled()
    {
        const string label = "node.kubernetes.io/exclude-from-external-load-balancers";
        await using var lab = await AgentLab.StartAsync(output, new Dictionary<string, string> { ["svc_election"] = "true" });
        await lab.ApplyAsync(Manifests.Deployment("test-deploy", "test", replicas: 3));
        var vips = Enumerable.Range(0, 6).ToDictionary(i => $"svc-{i:00}", i => $"198.18.0.{200 + i}");
        await lab.ApplyAsync(string.Join("---\n", vips.Select(kv => Manifests.Service(kv.Key, kv.Value))));
        var before = await lab.WaitForSingleHoldersAsync(vips.Values.ToList());
        // The node with the most groups is labelled (any value counts, the empty one included).
        var excluded = before.Values.GroupBy(n => n).OrderByDescending(g => g.Count()).ThenBy(g => g.Key).First().Key;
        var itsVips = before.Where(kv => kv.Value == excluded).Select(kv => kv.Key).ToList();
        lab.Report($"labelling {excluded}, which holds {string.Join(", ", itsVips)}");
        (await lab.Kubectl.RunAsync("label", "node", excluded, $"{label}=")).EnsureSuccess();

        var after = await lab.WaitForSingleHoldersAsync(vips.Values.ToList(), (_, node) => node != excluded);
        foreach (var (ip, holder) in before.Where(kv => kv.Value != excluded))
            Assert.Equal(holder, after[ip]); // only the labelled node's groups moved
        foreach (var ip in itsVips)
            Assert.Equal([after[ip]], await lab.ArpRespondersAsync(ip));
        var name = vips.First(kv => kv.Value == itsVips[0]).Key;
        await lab.WaitForIngressAsync(name, itsVips[0]);
        var withdrawn = await Eventually.WaitAsync(async () =>
                (await lab.EventsAsync(name)).FirstOrDefault(e => e.Reason == "Withdrawn" && e.Note.Contains(label)),
            TimeSpan.FromSeconds(15), $"a Withdrawn Event for {name} naming the label");
        Assert.Contains(itsVips[0], withdrawn.Note);
        Assert.Contains($"Holding no VIP: this node is labelled {label}", lab.Log(excluded));

        // New groups do not land on it either.
        var more = Enumerable.Range(6, 3).ToDictionary(i => $"svc-{i:00}", i => $"198.18.0.{200 + i}");
        await lab.ApplyAsync(string.Join("---\n", more.Select(kv => Manifests.Service(kv.Key, kv.Value))));
        await lab.WaitForSingleHoldersAsync(vips.Values.Concat(more.Values).ToList(), (_, node) => node != excluded);
        Assert.DoesNotContain(await lab.PlacementAsync(vips.Values.Concat(more.Values)), kv => kv.Value.Contains(excluded));

        // Unlabelled, it is a candidate again: the two others hold all nine groups, more than the load bound
        // (⌈1.1 · 9 / 3⌉ = 4) while it holds none, so once the cluster is still groups move back to it.
        (await lab.Kubectl.RunAsync("label", "node", excluded, $"{label}-")).EnsureSuccess();
        await Eventually.WaitAsync(async () =>
            {
                var placement = await lab.PlacementAsync(vips.Values.Concat(more.Values));
                return placement.Values.All(n => n.Count == 1) && placement.Values.Any(n => n[0] == excluded);
            }, TimeSpan.FromSeconds(45), $"{excluded} to hold a group again, each VIP on one node");
        var back = (await lab.PlacementAsync(vips.Values.Concat(more.Values))).First(kv => kv.Value.SequenceEqual([excluded])).Key;
        Assert.Equal([excluded], await lab.ArpRespondersAsync(back));
        Assert.Contains("This node may hold VIPs again", lab.Log(excluded));
    }

    private static async Task CreatePoolsAsync(AgentLab lab, params (string Key, string Value)[] entries)
    {
        var args = new List<string> { "-n", "kube-system", "create", "configmap", "kubevip" };
        args.AddRange(entries.Select(e => $"--from-literal={e.Key}={e.Value}"));
        (await lab.Kubectl.RunAsync([.. args])).EnsureSuccess();
    }

    private static async Task CreateNamespaceAsync(AgentLab lab, string name) =>
        (await lab.Kubectl.RunAsync("create", "namespace", name)).EnsureSuccess();

    /// <summary>The manifest with its object (and only it, not a pod template) in <paramref name="ns"/>.</summary>
    private static string InNamespace(string ns, string manifest) =>
        manifest.Replace("metadata:\n  name:", $"metadata:\n  namespace: {ns}\n  name:");

    /// <summary>Waits until the Service carries an assigned address; returns it.</summary>
    private static Task<string> WaitForAssignedAsync(AgentLab lab, string name, string ns) =>
        Eventually.WaitAsync(async () =>
                (await lab.ServiceAsync(name, ns)).Metadata.Annotations?.TryGetValue("kube-vip.io/loadbalancerIPs", out var ip) == true ? ip : null,
            TimeSpan.FromSeconds(20), $"an address assigned to {ns}/{name}");
}
