using System.Text.Json.Nodes;
using Hybrid.Sandbox;
using k8s;
using Xunit;

namespace Hybrid.Integration.Emulator;

/// <summary>Discovery as kubectl 1.32 sees it (short names, tables for every resource, aggregated-discovery
/// fallback, OpenAPI), and the `hybrid api` command's lifecycle.</summary>
public sealed class DiscoveryAndCommandTests
{
    [Fact]
    public async Task Kubectl_finds_every_resource_by_short_name_and_prints_server_side_tables()
    {
        await using var h = await EmulatorHarness.StartAsync(_ => new Sandbox.Api.ApiEmulatorOptions { SimulateWorkloads = true });
        var resources = (await h.KubectlAsync("api-resources")).EnsureSuccess().Stdout;
        foreach (var (name, shortName) in new[] { ("services", "svc"), ("endpoints", "ep"), ("deployments", "deploy"), ("nodes", "no"), ("namespaces", "ns"), ("pods", "po"), ("events", "ev") })
            Assert.Matches($@"(?m)^{name}\s+{shortName}\s", resources);
        Assert.Matches(@"(?m)^leases\s+coordination\.k8s\.io/v1\s+true\s+Lease", resources);
        Assert.Matches(@"(?m)^endpointslices\s+discovery\.k8s\.io/v1\s+true\s+EndpointSlice", resources);

        (await h.KubectlAsync("create", "-f", h.WriteFile("node.yaml", """
            apiVersion: v1
            kind: Node
            metadata:
              name: node-1
              labels:
                node-role.kubernetes.io/control-plane: ""
            status:
              conditions:
              - type: Ready
                status: "True"
            """))).EnsureSuccess();
        // Typed kubectl commands send protobuf bodies. Node IPAM gives node-1 198.18.65.0/24 (the pod network's first /24 stays unused).
        (await h.KubectlAsync("create", "deployment", "web", "--image=nginx:1.27", "--replicas=1", "--port=8080")).EnsureSuccess();
        (await h.KubectlAsync("create", "namespace", "plunder")).EnsureSuccess();
        (await h.KubectlAsync("create", "configmap", "settings", "--from-literal=mode=arp")).EnsureSuccess();
        var web = await h.Client.AppsV1.ReadNamespacedDeploymentAsync("web", "default");
        Assert.Equal("web", web.Spec.Selector.MatchLabels["app"]);
        Assert.Equal(8080, web.Spec.Template.Spec.Containers.Single().Ports.Single().ContainerPort);
        Assert.Equal("nginx:1.27", web.Spec.Template.Spec.Containers.Single().Image);
        Assert.Equal("Active", (await h.Client.CoreV1.ReadNamespaceAsync("plunder")).Status.Phase);
        Assert.Equal("arp", (await h.Client.CoreV1.ReadNamespacedConfigMapAsync("settings", "default")).Data["mode"]);
        (await h.KubectlAsync("create", "-f", h.WriteFile("lease.yaml", """
            apiVersion: coordination.k8s.io/v1
            kind: Lease
            metadata:
              name: plndr-svcs-lock
              namespace: kube-system
            spec:
              holderIdentity: node-1
              leaseDurationSeconds: 15
            """))).EnsureSuccess();
        await Eventually.WaitAsync(async () => (await h.KubectlAsync("get", "po")).Stdout.Contains("Running"), TimeSpan.FromSeconds(15), "the pod to run");

        Assert.Matches(@"node-1\s+Ready\s+control-plane\s+\d+s", (await h.KubectlAsync("get", "no")).EnsureSuccess().Stdout);
        Assert.Matches(@"kube-system\s+Active\s+\d+s", (await h.KubectlAsync("get", "ns")).EnsureSuccess().Stdout);
        Assert.Matches(@"web-\S+\s+1/1\s+Running\s+0\s+\d+s", (await h.KubectlAsync("get", "po")).EnsureSuccess().Stdout);
        Assert.Matches(@"web\s+1/1\s+1\s+1\s+\d+s", (await h.KubectlAsync("get", "deploy")).EnsureSuccess().Stdout);
        Assert.Matches(@"plndr-svcs-lock\s+node-1\s+\d+s", (await h.KubectlAsync("get", "leases", "-n", "kube-system")).EnsureSuccess().Stdout);
        (await h.KubectlAsync("expose", "deployment", "web", "--port=80", "--target-port=8080")).EnsureSuccess();
        await Eventually.WaitAsync(async () => System.Text.RegularExpressions.Regex.IsMatch((await h.KubectlAsync("get", "ep")).Stdout, @"web\s+198\.18\.65\.\d+:8080\s+\d+s"),
            TimeSpan.FromSeconds(10), "kubectl get ep to show the pod");
        var wide = (await h.KubectlAsync("get", "po", "-o", "wide")).EnsureSuccess().Stdout;
        Assert.Matches(@"web-\S+\s+1/1\s+Running\s+0\s+\d+s\s+198\.18\.65\.\d+\s+node-1", wide);
        (await h.KubectlAsync("scale", "deployment", "web", "--replicas=2")).EnsureSuccess();
        (await h.KubectlAsync("rollout", "status", "deployment/web", "--timeout=20s")).EnsureSuccess();
        Assert.Equal(2, (await h.Client.CoreV1.ListNamespacedPodAsync("default", labelSelector: "app=web")).Items.Count);
        var events = await h.KubectlAsync("get", "ev");
        Assert.Equal(0, events.ExitCode);
        Assert.DoesNotContain("could also match", events.Stderr);
    }

    [Fact]
    public async Task Discovery_answers_aggregated_requests_with_the_legacy_format_and_serves_openapi()
    {
        await using var h = await EmulatorHarness.StartAsync();
        const string aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        var (code, apis, response) = await h.SendAsync(HttpMethod.Get, "/apis", accept: aggregated);
        Assert.Equal(200, code);
        Assert.Equal("application/json", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("APIGroupList", apis!["kind"]!.GetValue<string>());
        var version = (await h.SendAsync(HttpMethod.Get, "/version")).Body!;
        Assert.Equal("32", version["minor"]!.GetValue<string>());
        Assert.StartsWith("v1.32.", version["gitVersion"]!.GetValue<string>());

        var services = (await h.SendAsync(HttpMethod.Get, "/api/v1")).Body!["resources"]!.AsArray();
        Assert.Contains(services, r => r!["name"]!.GetValue<string>() == "services/status");

        var root = (await h.SendAsync(HttpMethod.Get, "/openapi/v3")).Body!;
        var appsUrl = root["paths"]!["apis/apps/v1"]!["serverRelativeURL"]!.GetValue<string>();
        var apps = (await h.SendAsync(HttpMethod.Get, appsUrl)).Body!;
        var patch = apps["paths"]!["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]!["patch"]!;
        Assert.Equal("Deployment", patch["x-kubernetes-group-version-kind"]!["kind"]!.GetValue<string>());
        Assert.Contains(patch["parameters"]!.AsArray(), p => p!["name"]!.GetValue<string>() == "fieldValidation");

        using var pb = new HttpRequestMessage(HttpMethod.Get, "/openapi/v2");
        pb.Headers.TryAddWithoutValidation("Accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf");
        var bytes = await (await h.Http.SendAsync(pb)).Content.ReadAsByteArrayAsync();
        Assert.Equal(new byte[] { 0x0A, 3, (byte)'2', (byte)'.', (byte)'0' }, bytes[..5]);
    }

    [Fact]
    public async Task The_api_command_writes_a_kubeconfig_serves_until_cancelled_and_exits_zero()
    {
        var dir = EmulatorHarness.NewDirectory();
        try
        {
            var kubeconfig = Path.Combine(dir, "kubeconfig");
            using var stop = new CancellationTokenSource();
            var run = ApiCommand.RunAsync(["--listen", "127.0.0.1:0", "--kubeconfig-out", kubeconfig, "--unix", $"node-a={Path.Combine(dir, "a.sock")}"], stop.Token);
            await Eventually.WaitAsync(() => File.Exists(kubeconfig) || run.IsCompleted, TimeSpan.FromSeconds(20), "the kubeconfig");
            Assert.False(run.IsCompleted, "the command keeps serving");
            using var client = new Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfig));
            var namespaces = await client.CoreV1.ListNamespaceAsync();
            Assert.Contains(namespaces.Items, n => n.Metadata.Name == "kube-system");
            Assert.True(File.Exists(Path.Combine(dir, "a.sock")));
            await stop.CancelAsync();
            Assert.Equal(0, await run.WaitAsync(TimeSpan.FromSeconds(15)));
            Assert.False(File.Exists(Path.Combine(dir, "a.sock")), "the Unix socket is removed on exit");
            Assert.Equal(2, await ApiCommand.RunAsync(["--bogus"], CancellationToken.None));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
