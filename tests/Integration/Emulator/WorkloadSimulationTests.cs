using k8s;
using k8s.Models;
using Hybrid.Sandbox.Api;
using Xunit;

namespace Hybrid.Integration.Emulator;

/// <summary>The in-process controller-manager and kubelets: Deployments get Ready Pods spread over Ready Nodes,
/// Services get EndpointSlices and Endpoints that follow the Pods.</summary>
public sealed class WorkloadSimulationTests
{
    private static V1Node Node(string name, int i) => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Labels = new Dictionary<string, string> { ["kubernetes.io/hostname"] = name } },
        Status = new V1NodeStatus
        {
            Conditions = [new V1NodeCondition { Type = "Ready", Status = "True" }],
            Addresses = [new V1NodeAddress { Type = "InternalIP", Address = $"198.18.0.{10 + i}" }],
        },
    };

    [Fact]
    public async Task Three_replicas_over_three_nodes_are_ready_on_distinct_nodes_and_the_slice_follows_a_rescheduled_pod()
    {
        await using var h = await EmulatorHarness.StartAsync(_ => new ApiEmulatorOptions { SimulateWorkloads = true });
        var client = h.Client;
        for (var i = 1; i <= 3; i++) await client.CoreV1.CreateNodeAsync(Node($"node-{i}", i));
        await client.AppsV1.CreateNamespacedDeploymentAsync(new V1Deployment
        {
            Metadata = new V1ObjectMeta { Name = "web" },
            Spec = new V1DeploymentSpec
            {
                Replicas = 3,
                Selector = new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["app"] = "web" } },
                Template = new V1PodTemplateSpec
                {
                    Metadata = new V1ObjectMeta { Labels = new Dictionary<string, string> { ["app"] = "web" } },
                    Spec = new V1PodSpec { Containers = [new V1Container { Name = "web", Image = "nginx:1.27", Ports = [new V1ContainerPort { Name = "http", ContainerPort = 8080 }] }] },
                },
            },
        }, "default");
        await client.CoreV1.CreateNamespacedServiceAsync(new V1Service
        {
            Metadata = new V1ObjectMeta { Name = "web" },
            Spec = new V1ServiceSpec
            {
                Type = "LoadBalancer",
                ExternalTrafficPolicy = "Local",
                Selector = new Dictionary<string, string> { ["app"] = "web" },
                Ports = [new V1ServicePort { Name = "http", Port = 80, TargetPort = "http" }],
            },
        }, "default");

        var pods = await Eventually.WaitAsync(async () =>
        {
            var list = (await client.CoreV1.ListNamespacedPodAsync("default", labelSelector: "app=web")).Items;
            return list.Count == 3 && list.All(p => p.Status.Conditions.Any(c => c.Type == "Ready" && c.Status == "True")) ? list : null;
        }, TimeSpan.FromSeconds(10), "three Ready pods");
        Assert.Equal(3, pods.Select(p => p.Spec.NodeName).Distinct().Count());
        Assert.All(pods, p => Assert.Equal("Running", p.Status.Phase));
        // Node IPAM gave each node its own /24 of the pod network, and each pod an address from its node's /24.
        var cidrs = (await client.CoreV1.ListNodeAsync()).Items.ToDictionary(n => n.Metadata.Name, n => System.Net.IPNetwork.Parse(n.Spec.PodCIDR));
        Assert.Equal(3, cidrs.Values.Distinct().Count());
        Assert.All(cidrs.Values, c => Assert.True(c.PrefixLength == 24 && System.Net.IPNetwork.Parse("198.18.64.0/18").Contains(c.BaseAddress), $"{c}"));
        Assert.All(pods, p => Assert.True(cidrs[p.Spec.NodeName].Contains(System.Net.IPAddress.Parse(p.Status.PodIP)), $"{p.Status.PodIP} outside {cidrs[p.Spec.NodeName]}"));
        Assert.All(pods, p => Assert.NotEqual(cidrs[p.Spec.NodeName].BaseAddress.ToString()[..^1] + "1", p.Status.PodIP));
        Assert.All(pods, p => Assert.Equal("Deployment", p.Metadata.OwnerReferences.Single().Kind));

        var deployment = await Eventually.WaitAsync(async () =>
        {
            var d = await client.AppsV1.ReadNamespacedDeploymentAsync("web", "default");
            return d.Status?.ReadyReplicas == 3 ? d : null;
        }, TimeSpan.FromSeconds(10), "deployment status");
        Assert.Equal(3, deployment.Status.AvailableReplicas);
        Assert.Equal(3, deployment.Status.Replicas);

        async Task<V1EndpointSlice> SliceWith(Func<V1EndpointSlice, bool> ok, string what) => await Eventually.WaitAsync(async () =>
        {
            var slices = (await client.DiscoveryV1.ListNamespacedEndpointSliceAsync("default", labelSelector: "kubernetes.io/service-name=web")).Items;
            return slices.Count == 1 && ok(slices[0]) ? slices[0] : null;
        }, TimeSpan.FromSeconds(10), what);
        var slice = await SliceWith(s => s.Endpoints?.Count == 3, "an EndpointSlice with three endpoints");
        Assert.Equal("IPv4", slice.AddressType);
        Assert.Equal("endpointslice-controller.k8s.io", slice.Metadata.Labels["endpointslice.kubernetes.io/managed-by"]);
        Assert.Equal(8080, Assert.Single(slice.Ports).Port);
        Assert.Equal("http", slice.Ports[0].Name);
        Assert.Equal(pods.Select(p => p.Spec.NodeName).Order(), slice.Endpoints.Select(e => e.NodeName).Order());
        Assert.All(slice.Endpoints, e => Assert.True(e.Conditions.Ready == true && e.Conditions.Serving == true && e.Conditions.Terminating == false));
        var endpoints = await client.CoreV1.ReadNamespacedEndpointsAsync("web", "default");
        Assert.Equal(3, endpoints.Subsets.Single().Addresses.Count);

        // Delete a pod: a replacement appears (possibly elsewhere) and the slice follows.
        var victim = pods[0];
        await client.CoreV1.DeleteNamespacedPodAsync(victim.Metadata.Name, "default");
        slice = await SliceWith(s => s.Endpoints?.Count == 3 && s.Endpoints.All(e => e.TargetRef.Name != victim.Metadata.Name), "the slice to drop the deleted pod and add its replacement");
        var replacement = (await client.CoreV1.ListNamespacedPodAsync("default", labelSelector: "app=web")).Items.Single(p => pods.All(o => o.Metadata.Name != p.Metadata.Name));
        Assert.Contains(slice.Endpoints, e => e.TargetRef.Name == replacement.Metadata.Name && e.NodeName == replacement.Spec.NodeName && e.Addresses.Single() == replacement.Status.PodIP);

        // A pod marked not ready becomes a non-serving endpoint.
        var marked = replacement.Metadata.Name;
        await client.CoreV1.PatchNamespacedPodAsync(new V1Patch("{\"metadata\":{\"annotations\":{\"sandbox.hybrid/ready\":\"false\"}}}", V1Patch.PatchType.MergePatch), marked, "default");
        slice = await SliceWith(s => s.Endpoints.Any(e => e.TargetRef.Name == marked && e.Conditions.Serving == false && e.Conditions.Ready == false), "the marked pod to stop serving");
        Assert.Equal(2, slice.Endpoints.Count(e => e.Conditions.Ready == true));
        endpoints = await client.CoreV1.ReadNamespacedEndpointsAsync("web", "default");
        Assert.Equal(marked, endpoints.Subsets.Single().NotReadyAddresses.Single().TargetRef.Name);

        // A node going NotReady makes its pods not ready.
        var node = (await client.CoreV1.ReadNodeAsync("node-2"));
        node.Status.Conditions = [new V1NodeCondition { Type = "Ready", Status = "False" }];
        await client.CoreV1.ReplaceNodeStatusAsync(node, "node-2");
        await SliceWith(s => s.Endpoints.Where(e => e.NodeName == "node-2").All(e => e.Conditions.Ready == false), "node-2's endpoints to turn not ready");

        // Deleting the Service removes its slice and Endpoints.
        await client.CoreV1.DeleteNamespacedServiceAsync("web", "default");
        await Eventually.WaitAsync(async () => (await client.DiscoveryV1.ListNamespacedEndpointSliceAsync("default")).Items.Count == 0
            && (await client.CoreV1.ListNamespacedEndpointsAsync("default")).Items.Count == 0, TimeSpan.FromSeconds(10), "the slice and Endpoints to go");
    }

    [Fact]
    public async Task A_pod_with_a_readiness_gate_is_ready_and_an_endpoint_only_once_its_gate_condition_is_true()
    {
        const string gate = "example.com/serving";
        await using var h = await EmulatorHarness.StartAsync(_ => new ApiEmulatorOptions { SimulateWorkloads = true, PodReadinessGates = [gate] });
        var client = h.Client;
        await client.CoreV1.CreateNodeAsync(Node("node-1", 1));
        await client.AppsV1.CreateNamespacedDeploymentAsync(new V1Deployment
        {
            Metadata = new V1ObjectMeta { Name = "web" },
            Spec = new V1DeploymentSpec
            {
                Replicas = 1,
                Selector = new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["app"] = "web" } },
                Template = new V1PodTemplateSpec
                {
                    Metadata = new V1ObjectMeta { Labels = new Dictionary<string, string> { ["app"] = "web" } },
                    Spec = new V1PodSpec { Containers = [new V1Container { Name = "web", Image = "nginx" }] },
                },
            },
        }, "default");
        await client.CoreV1.CreateNamespacedServiceAsync(new V1Service
        {
            Metadata = new V1ObjectMeta { Name = "web" },
            Spec = new V1ServiceSpec { Selector = new Dictionary<string, string> { ["app"] = "web" }, Ports = [new V1ServicePort { Port = 80 }] },
        }, "default");

        var pod = await Eventually.WaitAsync(async () => (await client.CoreV1.ListNamespacedPodAsync("default")).Items.SingleOrDefault(p => p.Status?.PodIP is not null),
            TimeSpan.FromSeconds(10), "a running pod");
        Assert.Equal(gate, Assert.Single(pod.Spec.ReadinessGates).ConditionType);
        Assert.Equal("False", pod.Status.Conditions.Single(c => c.Type == "Ready").Status);
        Assert.Equal("True", pod.Status.Conditions.Single(c => c.Type == "ContainersReady").Status);
        var slice = await Eventually.WaitAsync(async () => (await client.DiscoveryV1.ListNamespacedEndpointSliceAsync("default")).Items.SingleOrDefault(s => s.Endpoints?.Count == 1),
            TimeSpan.FromSeconds(10), "a slice with the pod");
        Assert.False(slice.Endpoints[0].Conditions.Ready);

        var patch = $"{{\"status\":{{\"conditions\":[{{\"type\":\"{gate}\",\"status\":\"True\"}}]}}}}";
        await client.CoreV1.PatchNamespacedPodStatusAsync(new V1Patch(patch, V1Patch.PatchType.StrategicMergePatch), pod.Metadata.Name, "default");
        await Eventually.WaitAsync(async () => (await client.DiscoveryV1.ListNamespacedEndpointSliceAsync("default")).Items
            .Any(s => s.Endpoints?.SingleOrDefault()?.Conditions.Ready == true), TimeSpan.FromSeconds(10), "the endpoint to turn ready");
        var ready = await client.CoreV1.ReadNamespacedPodAsync(pod.Metadata.Name, "default");
        Assert.Equal("True", ready.Status.Conditions.Single(c => c.Type == "Ready").Status);
        Assert.Equal("True", ready.Status.Conditions.Single(c => c.Type == gate).Status);
    }

    [Fact]
    public async Task A_watcher_sees_the_slice_for_a_hand_made_pod_once_its_service_exists()
    {
        await using var h = await EmulatorHarness.StartAsync(_ => new ApiEmulatorOptions { SimulateWorkloads = true });
        await h.Client.CoreV1.CreateNodeAsync(Node("node-1", 1));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var list = await h.Client.DiscoveryV1.ListNamespacedEndpointSliceAsync("default");
        await h.Client.CoreV1.CreateNamespacedPodAsync(new V1Pod
        {
            Metadata = new V1ObjectMeta { Name = "manual", Labels = new Dictionary<string, string> { ["app"] = "db" } },
            Spec = new V1PodSpec { NodeName = "node-1", Containers = [new V1Container { Name = "db", Image = "postgres:17" }] },
            Status = new V1PodStatus { Phase = "Running", PodIP = "198.18.69.9", Conditions = [new V1PodCondition { Type = "Ready", Status = "True" }] },
        }, "default", cancellationToken: cts.Token);
        await h.Client.CoreV1.CreateNamespacedServiceAsync(new V1Service
        {
            Metadata = new V1ObjectMeta { Name = "db" },
            Spec = new V1ServiceSpec { Selector = new Dictionary<string, string> { ["app"] = "db" }, Ports = [new V1ServicePort { Port = 5432 }] },
        }, "default", cancellationToken: cts.Token);
        V1EndpointSlice? seen = null;
        await foreach (var (type, slice) in h.Client.DiscoveryV1.WatchListNamespacedEndpointSliceAsync("default", resourceVersion: list.Metadata.ResourceVersion, cancellationToken: cts.Token))
        {
            if (slice.Endpoints?.Count != 1) continue;
            seen = slice;
            break;
        }
        var endpoint = Assert.Single(seen!.Endpoints);
        Assert.Equal("198.18.69.9", endpoint.Addresses.Single());
        Assert.Equal("node-1", endpoint.NodeName);
        Assert.Equal(5432, seen.Ports.Single().Port);
        // The pod was made by hand (no Deployment owns it): the simulator leaves its status alone.
        Assert.Equal("198.18.69.9", (await h.Client.CoreV1.ReadNamespacedPodAsync("manual", "default")).Status.PodIP);
    }
}
