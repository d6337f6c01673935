using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using Xunit;

namespace Hybrid.Integration.Emulator;

/// <summary>The seed document's kubectl commands, run with the real kubectl 1.32 against the emulator, with
/// assertions on what a real API server would store.</summary>
public sealed class KubectlSeedTests
{
    private const string Deployment = """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: test-deploy
        spec:
          replicas: 2
          selector:
            matchLabels:
              app: nginx
          template:
            metadata:
              labels:
                app: nginx
            spec:
              containers:
              - name: nginx
                image: nginx:1.27
                ports:
                - containerPort: 80
                env:
                - name: A
                  value: "1"
        """;

    private const string DeploymentChanged = """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: test-deploy
        spec:
          replicas: 3
          selector:
            matchLabels:
              app: nginx
          template:
            metadata:
              labels:
                app: nginx
            spec:
              containers:
              - name: sidecar
                image: busybox:1.36
              - name: nginx
                image: nginx:1.27
                ports:
                - containerPort: 8080
                - containerPort: 80
                env:
                - name: B
                  value: "2"
                - name: A
                  value: "1"
        """;

    private const string DhcpService = """
        apiVersion: v1
        kind: Service
        metadata:
          name: nginx-dhcp
          annotations:
            kube-vip.io/loadbalancerHostname: mydhcp-test
        spec:
          loadBalancerIP: 0.0.0.0
          ports:
          - name: http
            port: 80
            protocol: TCP
            targetPort: 80
          selector:
            app: hello-world
          type: LoadBalancer
        """;

    private static async Task<JsonObject> GetJsonAsync(EmulatorHarness h, string path) =>
        (JsonObject)JsonNode.Parse(await h.Http.GetStringAsync(path))!;

    [Fact]
    public async Task The_seed_commands_work_and_store_what_a_real_API_server_stores()
    {
        await using var h = await EmulatorHarness.StartAsync();
        (await h.KubectlAsync("apply", "-f", h.WriteFile("deploy.yaml", Deployment))).EnsureSuccess();
        var deploy = await GetJsonAsync(h, "/apis/apps/v1/namespaces/default/deployments/test-deploy");
        Assert.Equal(1, deploy["metadata"]!["generation"]!.GetValue<int>());
        Assert.Contains("kubectl.kubernetes.io/last-applied-configuration", deploy["metadata"]!["annotations"]!.AsObject().Select(kv => kv.Key));
        Assert.Equal("RollingUpdate", deploy["spec"]!["strategy"]!["type"]!.GetValue<string>());

        var http1 = (await h.KubectlAsync("expose", "deployment", "test-deploy", "--port=80", "--target-port=80", "--type=LoadBalancer",
            "--name", "http1", "--load-balancer-ip=198.18.0.220")).EnsureSuccess();
        Assert.Contains("service/http1 exposed", http1.Stdout);
        (await h.KubectlAsync("expose", "deployment", "test-deploy", "--port=81", "--target-port=80", "--type=LoadBalancer",
            "--name", "http2", "--load-balancer-ip=198.18.0.220")).EnsureSuccess();

        var svc = await h.Client.CoreV1.ReadNamespacedServiceAsync("http1", "default");
        Assert.Equal("LoadBalancer", svc.Spec.Type);
        Assert.Equal("198.18.0.220", svc.Spec.LoadBalancerIP);
        Assert.Equal("nginx", svc.Spec.Selector["app"]);
        Assert.Equal("Cluster", svc.Spec.ExternalTrafficPolicy);
        Assert.Equal("Cluster", svc.Spec.InternalTrafficPolicy);
        Assert.Equal("None", svc.Spec.SessionAffinity);
        Assert.True(svc.Spec.AllocateLoadBalancerNodePorts);
        Assert.Equal(["IPv4"], svc.Spec.IpFamilies);
        Assert.Equal("SingleStack", svc.Spec.IpFamilyPolicy);
        Assert.StartsWith("10.", svc.Spec.ClusterIP);
        Assert.Equal([svc.Spec.ClusterIP], svc.Spec.ClusterIPs);
        var port = Assert.Single(svc.Spec.Ports);
        Assert.Equal(80, port.Port);
        Assert.Equal("TCP", port.Protocol);
        Assert.Equal(80, port.TargetPort.Value == "80" ? 80 : -1);
        Assert.InRange(port.NodePort ?? 0, 30000, 32767);
        var http2 = await h.Client.CoreV1.ReadNamespacedServiceAsync("http2", "default");
        Assert.NotEqual(svc.Spec.ClusterIP, http2.Spec.ClusterIP);
        Assert.NotEqual(port.NodePort, http2.Spec.Ports[0].NodePort);

        var table = (await h.KubectlAsync("get", "svc")).EnsureSuccess().Stdout;
        var lines = table.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+AGE$", lines[0]);
        Assert.Matches($@"^http1\s+LoadBalancer\s+{svc.Spec.ClusterIP.Replace(".", "\\.")}\s+<pending>\s+80:{port.NodePort}/TCP\s+\d+s$", lines.Single(l => l.StartsWith("http1")));
        Assert.Matches(@"^kubernetes\s+ClusterIP\s+10\.96\.0\.1\s+<none>\s+443/TCP\s+\d+s$", lines.Single(l => l.StartsWith("kubernetes")));

        (await h.KubectlAsync("annotate", "service", "http1", "kube-vip.io/forwardUPNP=true")).EnsureSuccess();
        svc = await h.Client.CoreV1.ReadNamespacedServiceAsync("http1", "default");
        Assert.Equal("true", svc.Metadata.Annotations["kube-vip.io/forwardUPNP"]);
        Assert.Equal(port.NodePort, svc.Spec.Ports[0].NodePort);

        (await h.KubectlAsync("apply", "-f", h.WriteFile("nginx-service.yaml", SeedManifests.NginxService))).EnsureSuccess();
        var local = await h.Client.CoreV1.ReadNamespacedServiceAsync("nginx-service", "default");
        Assert.Equal("Local", local.Spec.ExternalTrafficPolicy);
        Assert.InRange(local.Spec.HealthCheckNodePort ?? 0, 30000, 32767);

        (await h.KubectlAsync("apply", "-f", h.WriteFile("dhcp.yaml", DhcpService))).EnsureSuccess();
        var dhcp = await h.Client.CoreV1.ReadNamespacedServiceAsync("nginx-dhcp", "default");
        Assert.Equal("0.0.0.0", dhcp.Spec.LoadBalancerIP);
        Assert.Equal("mydhcp-test", dhcp.Metadata.Annotations["kube-vip.io/loadbalancerHostname"]);
        Assert.Equal("http", dhcp.Spec.Ports[0].Name);

        // kubectl get svc -w prints a new row when the agent writes the status.
        using var watch = h.StartKubectl("get", "svc", "-w");
        try
        {
            var output = new System.Text.StringBuilder();
            var reader = Task.Run(async () =>
            {
                string? line;
                while ((line = await watch.StandardOutput.ReadLineAsync()) is not null)
                    lock (output) output.AppendLine(line);
            });
            await Eventually.WaitAsync(() => { lock (output) return output.ToString().Contains("nginx-dhcp"); }, TimeSpan.FromSeconds(20), "the initial table");
            var status = new V1Patch("{\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"198.18.0.155\"}]}}}", V1Patch.PatchType.MergePatch);
            await h.Client.CoreV1.PatchNamespacedServiceStatusAsync(status, "nginx-dhcp", "default");
            await Eventually.WaitAsync(() =>
            {
                lock (output)
                    return output.ToString().Split('\n').Any(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^nginx-dhcp\s+LoadBalancer\s+\S+\s+198\.18\.0\.155\s+80:\d+/TCP"));
            }, TimeSpan.FromSeconds(10), "kubectl get svc -w to print the new external IP");
            lock (output) Assert.Equal(1, output.ToString().Split('\n').Count(l => l.StartsWith("NAME")));
        }
        finally
        {
            watch.Kill(entireProcessTree: true);
            await watch.WaitForExitAsync();
        }

        var deleted = (await h.KubectlAsync("delete", "svc", "http1")).EnsureSuccess();
        Assert.Contains("service \"http1\" deleted", deleted.Stdout);
        var gone = await h.SendAsync(HttpMethod.Get, "/api/v1/namespaces/default/services/http1");
        Assert.Equal(404, gone.Status);
        Assert.Equal("NotFound", gone.Body!["reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_second_apply_sends_a_strategic_merge_patch_with_element_order_and_is_honoured()
    {
        await using var h = await EmulatorHarness.StartAsync();
        (await h.KubectlAsync("apply", "-f", h.WriteFile("deploy.yaml", Deployment))).EnsureSuccess();
        var applied = (await h.KubectlAsync("apply", "-f", h.WriteFile("deploy2.yaml", DeploymentChanged), "-v=8")).EnsureSuccess();
        Assert.Contains("deployment.apps/test-deploy configured", applied.Stdout);
        Assert.Contains("application/strategic-merge-patch+json", applied.Stderr);
        Assert.Contains("$setElementOrder/containers", applied.Stderr);

        var d = await h.Client.AppsV1.ReadNamespacedDeploymentAsync("test-deploy", "default");
        Assert.Equal(3, d.Spec.Replicas);
        Assert.Equal(2, d.Metadata.Generation);
        Assert.Equal(["sidecar", "nginx"], d.Spec.Template.Spec.Containers.Select(c => c.Name));
        var nginx = d.Spec.Template.Spec.Containers[1];
        Assert.Equal([8080, 80], nginx.Ports.Select(p => p.ContainerPort));
        Assert.Equal(["B", "A"], nginx.Env.Select(e => e.Name));
        Assert.Equal("IfNotPresent", nginx.ImagePullPolicy);

        // Unchanged re-apply: no patch, no new generation.
        (await h.KubectlAsync("apply", "-f", Path.Combine(h.Directory, "deploy2.yaml"))).EnsureSuccess();
        Assert.Equal(2, (await h.Client.AppsV1.ReadNamespacedDeploymentAsync("test-deploy", "default")).Metadata.Generation);

        // kubectl create -f works with validation on, and a second create reports AlreadyExists.
        (await h.KubectlAsync("create", "-f", h.WriteFile("svc.yaml", SeedManifests.NginxService))).EnsureSuccess();
        var again = await h.KubectlAsync("create", "-f", Path.Combine(h.Directory, "svc.yaml"));
        Assert.NotEqual(0, again.ExitCode);
        Assert.Contains("AlreadyExists", again.Stderr);
    }

    [Fact]
    public async Task Describe_shows_events_written_through_events_k8s_io_and_get_events_lists_them()
    {
        await using var h = await EmulatorHarness.StartAsync();
        (await h.KubectlAsync("apply", "-f", h.WriteFile("svc.yaml", SeedManifests.NginxService))).EnsureSuccess();
        var svc = await h.Client.CoreV1.ReadNamespacedServiceAsync("nginx-service", "default");
        await h.Client.EventsV1.CreateNamespacedEventAsync(new Eventsv1Event
        {
            Metadata = new V1ObjectMeta { GenerateName = "nginx-service." },
            EventTime = DateTime.UtcNow,
            ReportingController = "hybrid.io/agent",
            ReportingInstance = "hybrid-node-1",
            Action = "Announce",
            Reason = "AnnouncedVip",
            Type = "Normal",
            Note = "198.18.0.220 announced from node-1",
            Regarding = new V1ObjectReference { Kind = "Service", ApiVersion = "v1", NamespaceProperty = "default", Name = "nginx-service", Uid = svc.Metadata.Uid },
        }, "default");

        var describe = (await h.KubectlAsync("describe", "svc", "nginx-service")).EnsureSuccess().Stdout;
        Assert.Matches(@"Normal\s+AnnouncedVip\s+\S+\s+hybrid\.io/agent\s+198\.18\.0\.220 announced from node-1", describe);
        Assert.Matches(@"External Traffic Policy:\s+Local", describe);

        var events = (await h.KubectlAsync("get", "events")).EnsureSuccess().Stdout;
        Assert.Matches(@"Normal\s+AnnouncedVip\s+service/nginx-service\s+198\.18\.0\.220 announced from node-1", events);

        // The same object through core/v1 carries the mapped field names.
        var core = Assert.Single((await h.Client.CoreV1.ListNamespacedEventAsync("default")).Items);
        Assert.Equal("198.18.0.220 announced from node-1", core.Message);
        Assert.Equal("nginx-service", core.InvolvedObject.Name);
        Assert.Equal("hybrid.io/agent", core.ReportingComponent);
    }

    [Fact]
    public async Task Deleting_a_deployment_with_kubectl_removes_its_pods()
    {
        await using var h = await EmulatorHarness.StartAsync(_ => new Sandbox.Api.ApiEmulatorOptions { SimulateWorkloads = true });
        (await h.KubectlAsync("create", "-f", h.WriteFile("node.yaml", """
            apiVersion: v1
            kind: Node
            metadata:
              name: node-1
            status:
              conditions:
              - type: Ready
                status: "True"
            """))).EnsureSuccess();
        (await h.KubectlAsync("apply", "-f", h.WriteFile("deploy.yaml", Deployment))).EnsureSuccess();
        await Eventually.WaitAsync(async () => (await h.Client.CoreV1.ListNamespacedPodAsync("default")).Items.Count == 2, TimeSpan.FromSeconds(10), "two pods");
        var pods = (await h.KubectlAsync("get", "pods")).EnsureSuccess().Stdout;
        Assert.Matches(@"test-deploy-\S+\s+1/1\s+Running\s+0\s+\d+s", pods);
        var deploys = (await h.KubectlAsync("get", "deploy")).EnsureSuccess().Stdout;
        Assert.Matches(@"test-deploy\s+2/2\s+2\s+2\s+\d+s", deploys);

        var deleted = (await h.KubectlAsync("delete", "deployment", "test-deploy")).EnsureSuccess();
        Assert.Contains("deployment.apps \"test-deploy\" deleted", deleted.Stdout);
        // Background propagation (kubectl's default): the garbage collector removes the Pods after the reply.
        await Eventually.WaitAsync(async () => (await h.Client.CoreV1.ListNamespacedPodAsync("default")).Items.Count == 0,
            TimeSpan.FromSeconds(10), "the deployment's pods to be deleted");
        var foreground = (await h.KubectlAsync("apply", "-f", Path.Combine(h.Directory, "deploy.yaml"))).EnsureSuccess();
        Assert.Contains("created", foreground.Stdout);
        await Eventually.WaitAsync(async () => (await h.Client.CoreV1.ListNamespacedPodAsync("default")).Items.Count == 2, TimeSpan.FromSeconds(10), "two pods again");
        (await h.KubectlAsync("delete", "deployment", "test-deploy", "--cascade=foreground")).EnsureSuccess();
        // Background propagation (kubectl's default): the garbage collector removes the Pods after the reply.
        await Eventually.WaitAsync(async () => (await h.Client.CoreV1.ListNamespacedPodAsync("default")).Items.Count == 0,
            TimeSpan.FromSeconds(10), "the deployment's pods to be deleted");
        Assert.Empty((await h.Client.AppsV1.ListNamespacedDeploymentAsync("default")).Items);
    }
}
