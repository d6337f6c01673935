using System.Net;
using Hybrid.Integration.Agent;
using k8s;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.DataPlane;

/// <summary>
/// Traffic through the lab with the agents running: the real curl in the client namespace reaches pods through
/// a VIP, the node holding it and that node's kube-proxy rules (DNAT to a random endpoint; masquerade for
/// Cluster, the client's own address for Local).
/// </summary>
[Collection(LabCollection.Name)]
public sealed class ServiceTrafficTests(ITestOutputHelper output)
{
    private const string Vip = "198.18.0.220";

    private static async Task<HashSet<string>> ReadyPodsAsync(AgentLab lab, string app, int count) =>
        await Eventually.WaitAsync(async () =>
        {
            var pods = (await lab.Client.CoreV1.ListNamespacedPodAsync("default", labelSelector: $"app={app}")).Items
                .Where(p => p.Metadata.DeletionTimestamp is null && p.Status?.Conditions?.Any(c => c.Type == "Ready" && c.Status == "True") == true)
                .Select(p => p.Metadata.Name).ToHashSet();
            return pods.Count == count ? pods : null;
        }, TimeSpan.FromSeconds(30), $"{count} Ready {app} pods");

    /// <summary>Every address a node may masquerade with: its LAN address and its end of the pod links.</summary>
    private static HashSet<string> NodeAddresses(AgentLab lab) =>
        lab.Lab.Nodes.SelectMany(n => new[] { n.Ipv4.ToString(), lab.Lab.Topology.PodGateway(n).ToString() }).ToHashSet();

    private static string AddressOf(string clientIp) => IPEndPoint.Parse(clientIp).Address.ToString();

    [Fact]
    public async Task The_seeds_http1_and_http2_answer_from_test_deploy_pods_spread_masqueraded_and_from_replacements_after_a_delete()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        await lab.WaitForIngressesAsync(new Dictionary<string, string> { ["http1"] = Vip, ["http2"] = Vip });
        var pods = await ReadyPodsAsync(lab, "test", 3);
        var client = lab.ClientNamespace;

        Assert.Contains(await Curl.AnswerAsync(client, $"http://{Vip}/hostname"), pods);
        Assert.Contains(await Curl.AnswerAsync(client, $"http://{Vip}:81/hostname"), pods);

        var answers = new List<string>();
        for (var i = 0; i < 30; i++)
        {
            var answer = await Curl.GetAsync(client, $"http://{Vip}/hostname");
            Assert.True(answer.Answered, $"request {i + 1}: {answer}");
            answers.Add(answer.Body);
        }
        lab.Report($"30 requests to {Vip}: {string.Join(", ", answers.GroupBy(a => a).Select(g => $"{g.Key} × {g.Count()}"))}");
        Assert.All(answers, a => Assert.Contains(a, pods));
        Assert.True(answers.Distinct().Count() > 1, "one pod answered all 30 requests: no random endpoint selection");

        // Cluster policy: the pod sees a node's address, not the client's.
        var seen = await Curl.AnswerAsync(client, $"http://{Vip}/clientip");
        Assert.Contains(AddressOf(seen), NodeAddresses(lab));
        var page = await Curl.AnswerAsync(client, $"http://{Vip}:81/");
        Assert.Contains(pods, p => page.Contains(p, StringComparison.Ordinal));

        // Replace every pod: the VIP reaches the new ones, and only them.
        (await lab.Kubectl.RunAsync("delete", "pod", "-l", "app=test")).EnsureSuccess();
        var replacements = await Eventually.WaitAsync(async () =>
            await ReadyPodsAsync(lab, "test", 3) is var now && !now.Overlaps(pods) ? now : null, TimeSpan.FromSeconds(30), "three new Ready pods");
        await Eventually.WaitAsync(async () =>
        {
            for (var i = 0; i < 10; i++)
                if ((await Curl.GetAsync(client, $"http://{Vip}/hostname")).Body is var name && !replacements.Contains(name)) return false;
            return true;
        }, TimeSpan.FromSeconds(15), "ten answers in a row from the new pods");
    }

    [Fact]
    public async Task The_seeds_Local_nginx_service_keeps_the_client_address_and_answers_from_the_holders_own_pod()
    {
        const string localVip = "198.18.0.230";
        const string clusterVip = "198.18.0.231";
        await using var lab = await AgentLab.StartAsync(output, new Dictionary<string, string> { ["svc_election"] = "true" });
        await lab.ApplyAsync(Manifests.Deployment("nginx-deployment", "nginx", replicas: 2));
        await lab.ApplyAsync(SeedManifests.NginxService);
        (await lab.Kubectl.RunAsync("annotate", "service", "nginx-service", $"kube-vip.io/loadbalancerIPs={localVip}")).EnsureSuccess();
        await lab.ApplyAsync(Manifests.Service("nginx-cluster", clusterVip, app: "nginx"));
        var holder = await lab.WaitForIngressAsync("nginx-service", localVip);
        await lab.WaitForIngressAsync("nginx-cluster", clusterVip);
        await ReadyPodsAsync(lab, "nginx", 2);
        var podNodes = (await lab.Client.CoreV1.ListNamespacedPodAsync("default", labelSelector: "app=nginx")).Items
            .ToDictionary(p => p.Metadata.Name, p => p.Spec.NodeName);
        var client = lab.ClientNamespace;

        var seen = await Curl.AnswerAsync(client, $"http://{localVip}/clientip");
        Assert.Equal(lab.Lab.ClientHost.Ipv4.ToString(), AddressOf(seen));
        for (var i = 0; i < 10; i++)
        {
            var name = await Curl.AnswerAsync(client, $"http://{localVip}/hostname");
            Assert.Equal(holder, podNodes[name]);
        }

        var masqueraded = await Curl.AnswerAsync(client, $"http://{clusterVip}/clientip");
        Assert.Contains(AddressOf(masqueraded), NodeAddresses(lab));

        // The NodePort of a Local Service: a node with a local pod answers with the client's address, a node
        // without one drops the connection (no reject: another node may serve it).
        var nodePort = (await lab.ServiceAsync("nginx-service")).Spec.Ports.Single().NodePort!.Value;
        var withPod = lab.Lab.Nodes.First(n => podNodes.ContainsValue(n.Name));
        var withoutPod = lab.Lab.Nodes.Single(n => !podNodes.ContainsValue(n.Name));
        Assert.Equal(lab.Lab.ClientHost.Ipv4.ToString(), AddressOf(await Curl.AnswerAsync(client, $"http://{withPod.Ipv4}:{nodePort}/clientip")));
        var dropped = await Curl.GetAsync(client, $"http://{withoutPod.Ipv4}:{nodePort}/clientip", TimeSpan.FromSeconds(2));
        Assert.Equal(Curl.TimedOut, dropped.ExitCode);
    }
}
