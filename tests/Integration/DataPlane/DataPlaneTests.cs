using System.Security.Cryptography;
using Hybrid.Integration.Agent;
using Hybrid.Sandbox.DataPlane;
using Hybrid.Sandbox.Lab;
using k8s;
using k8s.Models;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.DataPlane;

/// <summary>
/// The data plane on its own (no agents): pods are namespaces reachable across nodes until their node fails,
/// kube-proxy rejects a port without endpoints and leaves other nftables tables alone, and the lab's teardown
/// leaves no pod namespace behind.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class DataPlaneTests(ITestOutputHelper output)
{
    private const string Prefix = "hyd";

    private static async Task<HybridLab> StartLabAsync()
    {
        Requires.Root();
        Requires.Tool("nft", "nftables");
        await NetnsLab.SweepOrphansAsync(Prefix, CancellationToken.None);
        var name = Prefix + Convert.ToHexString(RandomNumberGenerator.GetBytes(2)).ToLowerInvariant();
        return await HybridLab.StartAsync(new LabOptions { Spec = new LabSpec(name, 3), StartAgents = false }, CancellationToken.None);
    }

    private static V1Service NodePortService(string name, string app) => new()
    {
        Metadata = new V1ObjectMeta { Name = name },
        Spec = new V1ServiceSpec
        {
            Type = "NodePort",
            Selector = new Dictionary<string, string> { ["app"] = app },
            Ports = [new V1ServicePort { Port = 80, TargetPort = 80, Protocol = "TCP" }],
        },
    };

    [Fact]
    public async Task Pods_answer_across_nodes_until_their_node_fails_and_a_port_without_endpoints_is_refused()
    {
        var lab = await StartLabAsync();
        var names = new List<string>();
        try
        {
            await lab.Client.AppsV1.CreateNamespacedDeploymentAsync(new V1Deployment
            {
                Metadata = new V1ObjectMeta { Name = "web" },
                Spec = new V1DeploymentSpec
                {
                    Replicas = 3,
                    Selector = new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["app"] = "web" } },
                    Template = new V1PodTemplateSpec
                    {
                        Metadata = new V1ObjectMeta { Labels = new Dictionary<string, string> { ["app"] = "web" } },
                        Spec = new V1PodSpec { Containers = [new V1Container { Name = "web", Image = "nginx" }] },
                    },
                },
            }, "default");
            var pods = await Eventually.WaitAsync(async () =>
            {
                var list = (await lab.Client.CoreV1.ListNamespacedPodAsync("default", labelSelector: "app=web")).Items;
                return list.Count == 3 && list.All(p => p.Status.Conditions.Any(c => c.Type == "Ready" && c.Status == "True")) ? list : null;
            }, TimeSpan.FromSeconds(30), "three Ready pods");
            names.AddRange(lab.DataPlane!.Kubelets.Running.Select(r => r.Sandbox.Namespace));
            Assert.Equal(3, names.Count);
            output.WriteLine($"pods: {string.Join(", ", pods.Select(p => $"{p.Metadata.Name} {p.Status.PodIP} on {p.Spec.NodeName}"))}; namespaces {string.Join(", ", names)}");
            Assert.All(names, n => Assert.True(LabTopology.IsLabNamespace(lab.Topology.Name, n), n));

            // Every node reaches every pod by its address; the pod names itself.
            foreach (var pod in pods)
                foreach (var node in lab.Nodes)
                    Assert.Equal(pod.Metadata.Name, await Curl.AnswerAsync(node.Namespace, $"http://{pod.Status.PodIP}/hostname"));

            // A failed node takes its pods off the network; they come back with it.
            var victim = pods[0];
            var other = lab.Nodes.First(n => n.Name != victim.Spec.NodeName);
            await lab.Network.SetLinkAsync(victim.Spec.NodeName, up: false, CancellationToken.None);
            Assert.Equal(Curl.TimedOut, (await Curl.GetAsync(other.Namespace, $"http://{victim.Status.PodIP}/hostname", TimeSpan.FromSeconds(1))).ExitCode);
            await lab.Network.SetLinkAsync(victim.Spec.NodeName, up: true, CancellationToken.None);
            Assert.Equal(victim.Metadata.Name, await Curl.AnswerAsync(other.Namespace, $"http://{victim.Status.PodIP}/hostname"));
            // The kernel dropped the failed node's routes to the other pods with its link; they are back.
            foreach (var pod in pods.Where(p => p.Spec.NodeName != victim.Spec.NodeName))
                Assert.Equal(pod.Metadata.Name, await Curl.AnswerAsync(lab.Node(victim.Spec.NodeName).Namespace, $"http://{pod.Status.PodIP}/hostname"));

            // A NodePort with endpoints answers on every node; one without endpoints is refused at once.
            var served = await lab.Client.CoreV1.CreateNamespacedServiceAsync(NodePortService("served", "web"), "default");
            var empty = await lab.Client.CoreV1.CreateNamespacedServiceAsync(NodePortService("empty", "nothing"), "default");
            foreach (var node in lab.Nodes)
                Assert.Contains(await Curl.AnswerAsync(lab.ClientHost.Namespace, $"http://{node.Ipv4}:{served.Spec.Ports[0].NodePort}/hostname"),
                    pods.Select(p => p.Metadata.Name));
            await Eventually.WaitAsync(async () => (await Curl.GetAsync(lab.ClientHost.Namespace,
                    $"http://{lab.Nodes[0].Ipv4}:{empty.Spec.Ports[0].NodePort}/", TimeSpan.FromSeconds(2))).ExitCode == Curl.CouldNotConnect,
                TimeSpan.FromSeconds(15), "the port without endpoints to be refused");
        }
        finally
        {
            await lab.DisposeAsync();
        }
        var left = await NetnsLab.ListNamespacesAsync(CancellationToken.None);
        Assert.DoesNotContain(left, ns => LabTopology.IsLabNamespace(lab.Topology.Name, ns));
    }

    [Fact]
    public async Task Kube_proxy_replaces_only_its_own_table()
    {
        await using var lab = await StartLabAsync();
        var node = lab.Nodes[0];
        // Another user of nftables in the node's namespace, as the agent's fence will be.
        await lab.Network.ExecAsync(node.Namespace, new ProcessRequest(["nft", "-f", "-"])
        {
            StandardInput = "table netdev other-owner {\n  set fence {\n    type ipv4_addr\n    elements = { 198.18.0.250 }\n  }\n}\n",
        }, CancellationToken.None);

        await lab.Client.CoreV1.CreateNamespacedServiceAsync(NodePortService("first", "web"), "default");
        await Eventually.WaitAsync(() => lab.DataPlane!.Proxies.AppliedRuleset(node.Name)?.Contains("default/first/", StringComparison.Ordinal) == true,
            TimeSpan.FromSeconds(15), "kube-proxy to apply the first Service");
        await lab.Client.CoreV1.DeleteNamespacedServiceAsync("first", "default");
        await Eventually.WaitAsync(() => lab.DataPlane!.Proxies.AppliedRuleset(node.Name)?.Contains("default/first/", StringComparison.Ordinal) == false,
            TimeSpan.FromSeconds(15), "kube-proxy to apply the deletion");

        var tables = (await lab.Network.ExecAsync(node.Namespace, ["nft", "list", "tables"], CancellationToken.None)).StandardOutput;
        Assert.Contains($"table {KubeProxyRuleset.Family} {KubeProxyRuleset.Table}", tables);
        var other = (await lab.Network.ExecAsync(node.Namespace, ["nft", "list", "table", "netdev", "other-owner"], CancellationToken.None)).StandardOutput;
        Assert.Contains("198.18.0.250", other);
        var ours = (await lab.Network.ExecAsync(node.Namespace, ["nft", "list", "table", KubeProxyRuleset.Family, KubeProxyRuleset.Table], CancellationToken.None)).StandardOutput;
        Assert.DoesNotContain("default/first/", ours);
    }
}
