using System.Diagnostics;
using k8s;
using Hybrid.Sandbox.Lab;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>
/// svc_election=true: one holder per VIP group, spread over the nodes; Local services follow their pods; a
/// node's failure, stop, crash or partition moves exactly its own groups, each to one answering node.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class ElectionTests(ITestOutputHelper output)
{
    private static readonly IReadOnlyDictionary<string, string> Election = new Dictionary<string, string> { ["svc_election"] = "true" };

    /// <summary>svc-00..svc-29 on 198.18.0.200..229, selecting the seed's test-deploy pods.</summary>
    private static readonly IReadOnlyDictionary<string, string> Thirty =
        Enumerable.Range(0, 30).ToDictionary(i => $"svc-{i:00}", i => $"198.18.0.{200 + i}");

    private static async Task<Dictionary<string, string>> CreateThirtyAsync(AgentLab lab)
    {
        await lab.ApplyAsync(Manifests.Deployment("test-deploy", "test", replicas: 3));
        await lab.ApplyAsync(string.Join("---\n", Thirty.Select(kv => Manifests.Service(kv.Key, kv.Value))));
        // Groups are dealt with bounded loads (no node above ⌈1.1 · 30 / 3⌉ = 11); a node that took far more
        // while its peers were slow to claim (a loaded machine) hands groups back once the cluster is still,
        // so this waits until no node holds more than 1.5 times its share (15), and none less than half of it
        // (5) while another holds more than 11.
        var placement = await Eventually.WaitAsync(async () =>
        {
            var current = await lab.PlacementAsync(Thirty.Values);
            if (!current.Values.All(nodes => nodes.Count == 1)) return null;
            var single = current.ToDictionary(kv => kv.Key, kv => kv.Value[0]);
            var loads = lab.Lab.Nodes.Select(n => single.Values.Count(v => v == n.Name)).ToList();
            return loads.Max() <= 15 && (loads.Min() >= 5 || loads.Max() <= 11) ? single : null;
        }, TimeSpan.FromSeconds(45), "each of the 30 VIPs on one node, none holding more than 15, none fewer than 5 while another holds more than 11");
        // What the Service reports is where the VIP is.
        await lab.WaitForIngressesAsync(Thirty);
        await Eventually.WaitAsync(async () =>
        {
            var services = (await lab.Client.CoreV1.ListNamespacedServiceAsync("default")).Items.ToDictionary(s => s.Metadata.Name);
            return Thirty.All(kv => services[kv.Key].Metadata.Annotations?.TryGetValue("kube-vip.io/vipHost", out var host) == true
                                    && host == placement[kv.Value]);
        }, TimeSpan.FromSeconds(15), "every Service's vipHost to name the node that has its VIP");
        return placement;
    }

    [Fact]
    public async Task A_dual_stack_Services_IPv4_and_IPv6_addresses_are_answered_from_one_node_and_fail_over_together()
    {
        await using var lab = await AgentLab.StartAsync(output, Election);
        await lab.ApplyAsync(Manifests.Deployment("test-deploy", "test", replicas: 3));
        // Six dual-stack Services: each address has its own group and Lease, dealt by its own name; without
        // the IPv6 group following the IPv4 one, six pairs over three nodes would almost never all sit together.
        var pairs = Enumerable.Range(0, 6).ToDictionary(i => $"dual-{i}", i => (V4: $"198.18.0.{210 + i}", V6: $"fd48:5942::d{10 + i}"));
        await lab.ApplyAsync(string.Join("---\n", pairs.Select(kv => Manifests.Service(kv.Key,
            annotations: new Dictionary<string, string> { ["kube-vip.io/loadbalancerIPs"] = $"{kv.Value.V4},{kv.Value.V6}" }))));
        var all = pairs.Values.SelectMany(p => new[] { p.V4, p.V6 }).ToList();
        var placement = await lab.WaitForSingleHoldersAsync(all, timeout: TimeSpan.FromSeconds(30));
        foreach (var (name, (v4, v6)) in pairs)
            Assert.True(placement[v4] == placement[v6], $"{name}: {v4} on {placement[v4]}, {v6} on {placement[v6]}");
        lab.Report($"six dual-stack Services: {string.Join(", ", lab.Lab.Nodes.Select(n => $"{n.Name}={placement.Values.Count(v => v == n.Name) / 2}"))}");

        // The holder of the first pair fails: its pairs move, each still to one node.
        var failed = placement[pairs["dual-0"].V4];
        await lab.Agents.KillAsync(failed, restart: false);
        await lab.Lab.Network.SetLinkAsync(failed, up: false, CancellationToken.None);
        var after = await lab.WaitForSingleHoldersAsync(all, (_, node) => node != failed, TimeSpan.FromSeconds(30));
        foreach (var (name, (v4, v6)) in pairs)
            Assert.True(after[v4] == after[v6], $"after {failed} failed, {name}: {v4} on {after[v4]}, {v6} on {after[v6]}");
        Assert.Equal([after[pairs["dual-0"].V4]], await lab.ArpRespondersAsync(pairs["dual-0"].V4));
    }

    /// <summary>The load bound of PROTOCOL.md §4: ⌈1.1 · groups / nodes⌉.</summary>
    private static int Bound(int groups, int nodes) => (int)Math.Ceiling(1.1 * groups / nodes);

    /// <summary>
    /// PROTOCOL.md §4's gross imbalance, which alone moves held groups: a node above 1.5 times the mean, or one
    /// below half of it while another is above the bound.
    /// </summary>
    private static bool GrosslyImbalanced(IReadOnlyList<int> loads)
    {
        var (groups, nodes) = (loads.Sum(), loads.Count);
        return loads.Any(l => 2 * nodes * l > 3 * groups)
               || (loads.Any(l => 2 * nodes * l < groups) && loads.Any(l => l > Bound(groups, nodes)));
    }

    private static string Spread(IReadOnlyDictionary<string, string> placement, AgentLab lab) =>
        string.Join(", ", lab.Lab.Nodes.Select(n => $"{n.Name}={placement.Values.Count(v => v == n.Name)}"));

    [Fact]
    public async Task Thirty_services_spread_over_three_nodes_each_answered_by_one_MAC_and_sharers_sit_together()
    {
        await using var lab = await AgentLab.StartAsync(output, Election);
        var placement = await CreateThirtyAsync(lab);
        lab.Report($"30 groups: {Spread(placement, lab)}");

        // Every node serves some of them.
        foreach (var node in lab.Lab.Nodes)
            Assert.InRange(placement.Values.Count(v => v == node.Name), 5, 15);
        foreach (var (ip, holder) in placement)
            Assert.Equal([holder], await lab.ArpRespondersAsync(ip, TimeSpan.FromMilliseconds(200)));

        // One Lease per group, naming the node that has the VIP.
        var leases = (await lab.Client.CoordinationV1.ListNamespacedLeaseAsync("kube-system",
            labelSelector: "hybrid.kube-vip.io/lease-kind=group")).Items;
        Assert.Equal(30, leases.Count);
        Assert.Equal(placement.Values.Order(), leases.Select(l => l.Spec.HolderIdentity).Order());

        // Services sharing an IP are one group: both report the same host, which alone has the VIP.
        const string shared = "198.18.0.240";
        (await lab.Kubectl.RunAsync("expose", "deployment", "test-deploy", "--port=80", "--target-port=80",
            "--type=LoadBalancer", "--name", "http1", $"--load-balancer-ip={shared}")).EnsureSuccess();
        (await lab.Kubectl.RunAsync("expose", "deployment", "test-deploy", "--port=81", "--target-port=80",
            "--type=LoadBalancer", "--name", "http2", $"--load-balancer-ip={shared}")).EnsureSuccess();
        var hosts = await lab.WaitForIngressesAsync(new Dictionary<string, string> { ["http1"] = shared, ["http2"] = shared });
        Assert.Equal(hosts["http1"], hosts["http2"]);
        await lab.WaitForHoldersAsync(shared, [hosts["http1"]]);
        Assert.Equal([hosts["http1"]], await lab.ArpRespondersAsync(shared));
        // Adding a group moved none of the others, unless the 31 groups are grossly imbalanced where the 30 were
        // not (a slow claimer on a loaded machine can leave 14/11/5): then groups leave only nodes above the bound.
        var loads = lab.Lab.Nodes.ToDictionary(n => n.Name, n => placement.Values.Count(v => v == n.Name) + (hosts["http1"] == n.Name ? 1 : 0));
        var after = await lab.WaitForSingleHoldersAsync(Thirty.Values.ToList());
        if (!GrosslyImbalanced(loads.Values.ToList())) Assert.Equal(placement, after);
        else
            foreach (var (ip, node) in after.Where(kv => placement[kv.Key] != kv.Value))
                Assert.True(loads[placement[ip]] > Bound(loads.Values.Sum(), loads.Count),
                    $"{ip} moved from {placement[ip]} ({loads[placement[ip]]} groups) to {node}: not from a node above the bound");

        // A deleted Service's group goes, Lease included (kube-vip #590); a changed address moves the Service
        // to the new group and the old one goes (kube-vip #1051).
        (await lab.Kubectl.RunAsync("delete", "service", "svc-00")).EnsureSuccess();
        (await lab.Kubectl.RunAsync("annotate", "service", "svc-01", "kube-vip.io/loadbalancerIPs=198.18.0.231")).EnsureSuccess();
        await lab.WaitForHoldersAsync("198.18.0.200", []);
        await lab.WaitForHoldersAsync("198.18.0.201", []);
        var moved = await lab.WaitForIngressAsync("svc-01", "198.18.0.231");
        await lab.WaitForHoldersAsync("198.18.0.231", [moved]);
        Assert.Equal([moved], await lab.ArpRespondersAsync("198.18.0.231"));
        await Eventually.WaitAsync(async () =>
        {
            var names = (await lab.Client.CoordinationV1.ListNamespacedLeaseAsync("kube-system",
                labelSelector: "hybrid.kube-vip.io/lease-kind=group")).Items.Select(l => l.Metadata.Name).ToHashSet();
            return !names.Contains("hybrid-vip-198.18.0.200") && !names.Contains("hybrid-vip-198.18.0.201")
                   && names.Contains("hybrid-vip-198.18.0.231") && names.Count == 30;
        }, TimeSpan.FromSeconds(15), "the Leases of the deleted and the re-addressed Service's groups to be deleted");
        Assert.Equal(["198.18.0.231"], (await lab.ServiceAsync("svc-01")).Status.LoadBalancer.Ingress.Select(i => i.Ip));
    }

    private static async Task<Dictionary<string, string>> NginxPodsAsync(AgentLab lab) =>
        (await lab.Client.CoreV1.ListNamespacedPodAsync("default", labelSelector: "app=nginx")).Items
        .Where(p => p.Metadata.DeletionTimestamp is null)
        .ToDictionary(p => p.Metadata.Name, p => p.Spec.NodeName);

    [Fact]
    public async Task The_seeds_Local_nginx_service_is_held_only_where_a_serving_nginx_pod_runs_and_follows_it()
    {
        const string vip = "198.18.0.230";
        await using var lab = await AgentLab.StartAsync(output, Election);
        await lab.ApplyAsync(Manifests.Deployment("nginx-deployment", "nginx", replicas: 2));
        await lab.ApplyAsync(SeedManifests.NginxService);
        // The manifest has no address: kube-vip's cloud provider would annotate one; the test does it.
        (await lab.Kubectl.RunAsync("annotate", "service", "nginx-service", $"kube-vip.io/loadbalancerIPs={vip}")).EnsureSuccess();

        var pods = await Eventually.WaitAsync(async () => await NginxPodsAsync(lab) is { Count: 2 } p ? p : null,
            TimeSpan.FromSeconds(10), "two nginx pods");
        var holder = await lab.WaitForIngressAsync("nginx-service", vip);
        Assert.Contains(holder, pods.Values);
        await lab.WaitForHoldersAsync(vip, [holder]);
        Assert.Equal([holder], await lab.ArpRespondersAsync(vip));

        // Make the holder the busiest node, so that the replacement of its pod is scheduled elsewhere.
        for (var i = 1; i <= 2; i++)
            await lab.ApplyAsync($"apiVersion: v1\nkind: Pod\nmetadata: {{name: filler-{i}, labels: {{app: filler}}}}\n" +
                                 $"spec: {{nodeName: {holder}, containers: [{{name: c, image: busybox}}]}}\n");
        await using (var timeline = await AddressTimeline.StartAsync(lab.Lab))
        {
            var deletedAt = Stopwatch.GetTimestamp();
            (await lab.Kubectl.RunAsync("delete", "pod", pods.First(p => p.Value == holder).Key)).EnsureSuccess();
            var podNodes = await Eventually.WaitAsync(async () =>
                    await NginxPodsAsync(lab) is { Count: 2 } p && !p.ContainsValue(holder) ? p.Values.ToHashSet() : null,
                TimeSpan.FromSeconds(10), $"the nginx pod to be replaced on a node other than {holder}");
            var successor = await Eventually.WaitAsync(async () => (await lab.HoldersAsync(vip)) is [var only] && only != holder ? only : null,
                TimeSpan.FromSeconds(10), $"{vip} to move off {holder}");
            var addedOnSuccessor = await timeline.FirstAsync(vip, c => c.Added && c.Node == successor, $"the addition on {successor}");
            lab.Report($"Local: pod on {holder} deleted, {vip} on {successor} after " +
                       $"{Stopwatch.GetElapsedTime(deletedAt, addedOnSuccessor.Ticks).TotalMilliseconds:F0} ms");
            Assert.Contains(successor, podNodes);
            Assert.Equal(TimeSpan.Zero, timeline.LongestOverlap(vip, [holder]));
            Assert.Equal([successor], await lab.ArpRespondersAsync(vip));
            Assert.Equal(successor, await lab.WaitForIngressAsync("nginx-service", vip));
            holder = successor;
        }

        // The holder's pod stops serving (not Ready): the VIP goes to the other node that runs one.
        pods = await NginxPodsAsync(lab);
        var other = pods.Values.Single(n => n != holder);
        (await lab.Kubectl.RunAsync("annotate", "pod", pods.First(p => p.Value == holder).Key, "sandbox.hybrid/ready=false")).EnsureSuccess();
        await lab.WaitForHoldersAsync(vip, [other]);
        Assert.Equal([other], await lab.ArpRespondersAsync(vip));

        // No pod serves at all: nobody announces, and the Service says why.
        (await lab.Kubectl.RunAsync("annotate", "pod", pods.First(p => p.Value == other).Key, "sandbox.hybrid/ready=false")).EnsureSuccess();
        await lab.WaitForHoldersAsync(vip, []);
        var warning = await lab.WaitForEventAsync("nginx-service", "NoEligibleNode");
        Assert.Equal("Warning", warning.Type);
        Assert.Contains("externalTrafficPolicy Local", warning.Note);
        Assert.Empty((await lab.ServiceAsync("nginx-service")).Status?.LoadBalancer?.Ingress ?? []);
        Assert.Empty(await lab.ArpRespondersAsync(vip));
    }

    /// <summary>Milliseconds from <paramref name="since"/> to each VIP's first gratuitous ARP from a node other than the old holder, sorted.</summary>
    private static async Task<List<double>> FirstAnnouncementsAsync(AgentLab lab, ArpCapture capture, IEnumerable<string> ips, long since, string oldHolder)
    {
        var latencies = new List<double>();
        foreach (var ip in ips)
        {
            var garp = await capture.WaitForAsync(p => p.IsGratuitous && p.SenderIp.ToString() == ip && p.MonotonicTicks > since
                && !p.SenderMac.Equals(lab.MacOf(oldHolder)), TimeSpan.FromSeconds(5), CancellationToken.None);
            latencies.Add(Stopwatch.GetElapsedTime(since, garp.MonotonicTicks).TotalMilliseconds);
        }
        return latencies.Order().ToList();
    }

    /// <summary>
    /// Waits until each VIP is on one node and the loads of the nodes other than <paramref name="gone"/> show no
    /// gross imbalance (docs/PROTOCOL.md §4: a node above 1.5 times the mean, or one below half of it while
    /// another is above ⌈1.1 times⌉): a failover deals the dead node's groups on top of what each survivor
    /// held, and such an imbalance is mended by moves once the cluster is still.
    /// </summary>
    private static Task<Dictionary<string, string>> WaitForNoGrossImbalanceAsync(AgentLab lab, IEnumerable<string> ips, string gone)
    {
        var survivors = lab.Lab.Nodes.Select(n => n.Name).Where(n => n != gone).ToList();
        return Eventually.WaitAsync(async () =>
        {
            var current = await lab.PlacementAsync(ips);
            if (!current.Values.All(nodes => nodes.Count == 1)) return null;
            var single = current.ToDictionary(kv => kv.Key, kv => kv.Value[0]);
            var loads = survivors.Select(n => single.Values.Count(v => v == n)).ToList();
            var (groups, nodes) = (single.Count, survivors.Count);
            var bound = (11 * groups + 10 * nodes - 1) / (10 * nodes);
            var gross = loads.Any(l => 2 * nodes * l > 3 * groups)
                        || (loads.Any(l => 2 * nodes * l < groups) && loads.Any(l => l > bound));
            return gross ? null : single;
        }, TimeSpan.FromSeconds(30), $"the loads of the nodes other than {gone} to be free of gross imbalance");
    }

    [Fact]
    public async Task Node_failure_then_a_graceful_stop_move_only_that_nodes_groups_each_to_one_answering_node()
    {
        await using var lab = await AgentLab.StartAsync(output, Election);
        var before = await CreateThirtyAsync(lab);
        await using var capture = await lab.CaptureAsync();

        // Node failure: the agent dies and the node drops off the LAN.
        var failed = before.Values.GroupBy(v => v).MaxBy(g => g.Count())!.Key;
        var failedAt = Stopwatch.GetTimestamp();
        await lab.Agents.KillAsync(failed, restart: false);
        await lab.Lab.Network.SetLinkAsync(failed, up: false, CancellationToken.None);
        var after = await lab.WaitForSingleHoldersAsync(before.Keys, (_, node) => node != failed);
        var moved = before.Where(kv => kv.Value == failed).Select(kv => kv.Key).ToList();
        var latencies = await FirstAnnouncementsAsync(lab, capture, moved, failedAt, failed);
        lab.Report($"node failure of {failed}: {moved.Count} groups moved, first gratuitous ARP after " +
                   $"{latencies[0]:F0}–{latencies[^1]:F0} ms; now {Spread(after, lab)}");

        Assert.All(before.Where(kv => kv.Value != failed), kv => Assert.Equal(kv.Value, after[kv.Key]));
        foreach (var ip in moved)
            Assert.Equal([after[ip]], await lab.ArpRespondersAsync(ip, TimeSpan.FromMilliseconds(200)));
        var takeover = await lab.WaitForEventAsync(Thirty.First(kv => kv.Value == moved[0]).Key, "TookOver");
        Assert.Contains(failed, takeover.Note);

        // Graceful stop of a survivor (once any gross imbalance the failover left is mended): its groups go to
        // the last node, with no instant of two holders.
        after = await WaitForNoGrossImbalanceAsync(lab, before.Keys, failed);
        var stopped = after.Values.First();
        var last = lab.Lab.Nodes.Select(n => n.Name).Single(n => n != failed && n != stopped);
        var handed = after.Where(kv => kv.Value == stopped).Select(kv => kv.Key).ToList();
        // What must never happen is two nodes answering: the successor may add the address before the
        // stopping node has removed it (its fence already stopped answering), so ARP answers are watched.
        var responders = await ResponderWatch.StartAsync(lab, handed);
        var stoppedAt = Stopwatch.GetTimestamp();
        await lab.Agents.StopAsync(stopped, graceful: true, CancellationToken.None);
        Assert.Equal(0, lab.Agents.LastExitCode(stopped));
        var final = await lab.WaitForSingleHoldersAsync(before.Keys, (_, node) => node == last);
        var handovers = await FirstAnnouncementsAsync(lab, capture, handed, stoppedAt, stopped);
        lab.Report($"graceful stop of {stopped}: {handed.Count} groups handed to {last}, first gratuitous ARP after " +
                   $"{handovers[0]:F0}–{handovers[^1]:F0} ms");
        await using (responders)
        {
            foreach (var ip in handed)
            {
                var probes = await responders.StopAsync(ip);
                Assert.True(ResponderWatch.DoubleAnswered(probes).Count == 0,
                    $"{ip} was answered by two nodes after the stop of {stopped}: {ResponderWatch.Describe(probes, stoppedAt)}");
            }
        }
        Assert.All(final.Values, node => Assert.Equal(last, node));
        foreach (var ip in handed)
            Assert.Equal([last], await lab.ArpRespondersAsync(ip, TimeSpan.FromMilliseconds(200)));
    }

    [Fact]
    public async Task A_crash_moves_each_group_with_no_instant_of_two_responders_and_a_holder_cut_off_from_the_API_keeps_its_groups()
    {
        await using var lab = await AgentLab.StartAsync(output, Election);
        var before = await CreateThirtyAsync(lab);

        // Crash (kill -9, eth0 stays up): its kernel fence stops each VIP's answers before another node starts.
        var crashed = before.Values.GroupBy(v => v).MaxBy(g => g.Count())!.Key;
        var crashedGroups = before.Where(kv => kv.Value == crashed).Select(kv => kv.Key).ToList();
        Assert.NotEmpty(crashedGroups);
        await lab.WaitForSteadyStateAsync(); // an API fence armed during the burst of claims would be waited out (D_A)
        var afterCrash = new Dictionary<string, string>();
        await using (var watch = await ResponderWatch.StartAsync(lab, crashedGroups))
        {
            var crashedAt = Stopwatch.GetTimestamp();
            await lab.Agents.KillAsync(crashed, restart: false);
            afterCrash = await lab.WaitForSingleHoldersAsync(before.Keys, (_, node) => node != crashed);
            var silences = new List<double>();
            foreach (var ip in crashedGroups)
            {
                var probes = await watch.StopAsync(ip);
                silences.Add(ResponderWatch.LongestSilenceMs(probes));
                Assert.True(ResponderWatch.DoubleAnswered(probes).Count == 0,
                    $"{ip} was answered by two nodes after the crash of {crashed}: {ResponderWatch.Describe(probes, crashedAt)}");
                Assert.Equal([crashed, afterCrash[ip]], ResponderWatch.Succession(probes));
            }
            lab.Report($"crash of {crashed}: {crashedGroups.Count} groups moved, each dark for {silences.Min():F0}–{silences.Max():F0} ms");
        }
        Assert.All(before.Where(kv => kv.Value != crashed), kv => Assert.Equal(kv.Value, afterCrash[kv.Key]));

        // The dead node's groups were dealt on top of what each survivor held, which can leave a gross
        // imbalance that is mended once the cluster is still; the partition starts after that.
        afterCrash = await WaitForNoGrossImbalanceAsync(lab, before.Keys, crashed);

        // Partition: a holder loses the API but the LAN vouches for it, so it keeps every group it has.
        var cut = afterCrash.Values.First();
        await lab.WaitForSteadyStateAsync(); // the survivors disarm the API fences they armed while node-1 was dying
        var registrations = await lab.RegistrationVersionsAsync();
        var cutAt = Stopwatch.GetTimestamp();
        lab.Lab.Partition(cut);
        await Eventually.WaitAsync(() => Stopwatch.GetElapsedTime(cutAt) > TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30), "5 s of partition");
        Assert.Equal(afterCrash, await lab.WaitForSingleHoldersAsync(before.Keys));
        lab.Lab.ClearFaults();
        Assert.Equal(registrations, await lab.RegistrationVersionsAsync());
    }
}
