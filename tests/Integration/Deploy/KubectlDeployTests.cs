using System.Diagnostics;
using Hybrid.Domain;
using Hybrid.Integration.Emulator;
using Hybrid.Sandbox.Lab;
using k8s;
using Xunit;

namespace Hybrid.Integration.Deploy;

/// <summary>
/// What an operator does, with the real `hybrid` executable and the real kubectl against the emulator:
/// generate the manifests kube-vip style and apply them, dry-run the kustomizations in deploy/, and
/// re-apply a List printed by `kubectl get -o yaml`.
/// </summary>
public sealed class KubectlDeployTests
{
    private static async Task<KubectlResult> HybridAsync(params string[] args)
    {
        var command = AgentProgram.Command(args);
        var psi = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in command.Skip(1)) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(deadline.Token);
        return new KubectlResult(process.ExitCode, await stdout, await stderr);
    }

    [Fact]
    public async Task A_kube_vip_generation_command_applied_with_kubectl_creates_the_agent_and_its_rbac()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var rbac = (await HybridAsync("manifest", "rbac")).EnsureSuccess().Stdout;
        var secret = (await HybridAsync("manifest", "secret")).EnsureSuccess().Stdout;
        var daemonSet = (await HybridAsync("manifest", "daemonset", "--services", "--arp", "--interface", "eth0", "--inCluster", "--servicesElection"))
            .EnsureSuccess().Stdout;
        (await h.KubectlAsync("apply", "-f", h.WriteFile("rbac.yaml", rbac))).EnsureSuccess();
        (await h.KubectlAsync("create", "-f", h.WriteFile("secret.yaml", secret))).EnsureSuccess();
        var applied = (await h.KubectlAsync("apply", "-f", h.WriteFile("daemonset.yaml", daemonSet))).EnsureSuccess();
        Assert.Contains("daemonset.apps/hybrid created", applied.Stdout);

        var ns = Manifest.DefaultNamespace;
        (await h.KubectlAsync("get", "namespace", ns)).EnsureSuccess();
        (await h.KubectlAsync("-n", ns, "get", "daemonset/hybrid", "serviceaccount/hybrid", "secret/hybrid-cluster-key", "role/hybrid-leases", "rolebinding/hybrid-leases"))
            .EnsureSuccess();
        (await h.KubectlAsync("get", "clusterrole/hybrid", "clusterrolebinding/hybrid")).EnsureSuccess();
        (await h.KubectlAsync("-n", "kube-system", "get", "role/hybrid-address-pools", "rolebinding/hybrid-address-pools")).EnsureSuccess();

        var ds = await h.Client.AppsV1.ReadNamespacedDaemonSetAsync("hybrid", ns);
        var pod = ds.Spec.Template.Spec;
        Assert.True(pod.HostNetwork);
        Assert.Equal("RuntimeDefault", pod.SecurityContext.SeccompProfile.Type);
        var c = pod.Containers.Single();
        Assert.Equal(["ALL"], c.SecurityContext.Capabilities.Drop);
        Assert.Equal(["NET_ADMIN", "NET_RAW"], c.SecurityContext.Capabilities.Add);
        Assert.False(c.SecurityContext.AllowPrivilegeEscalation);
        Assert.False(c.SecurityContext.Privileged);
        Assert.True(c.SecurityContext.ReadOnlyRootFilesystem);
        Assert.Equal(Manifest.DefaultHealthPort, c.Ports.Single(p => p.Name == "health").HostPort);
        Assert.Equal(2112, c.Ports.Single(p => p.Name == "metrics").HostPort);
        Assert.Equal("eth0", c.Env.Single(e => e.Name == "vip_interface").Value);
        Assert.Equal("true", c.Env.Single(e => e.Name == "svc_election").Value);

        // The key the Secret holds is the one the DaemonSet hands the agent: 32 random bytes, in base64.
        var keyRef = c.Env.Single(e => e.Name == Manifest.KeyVariable).ValueFrom.SecretKeyRef;
        var stored = await h.Client.CoreV1.ReadNamespacedSecretAsync(keyRef.Name, ns);
        var text = System.Text.Encoding.UTF8.GetString(stored.Data[keyRef.Key]);
        Assert.True(ClusterKeyModule.parse(text).IsOk, $"not a cluster key: {text}");
        var again = (await HybridAsync("manifest", "secret")).EnsureSuccess().Stdout;
        Assert.NotEqual(secret, again);
    }

    [Fact]
    public async Task Bad_flags_exit_2_listing_every_problem_and_print_nothing()
    {
        var result = await HybridAsync("manifest", "daemonset", "--services", "--bgp", "--interface=a/b", "--nope");
        Assert.Equal(2, result.ExitCode);
        Assert.Empty(result.Stdout);
        Assert.Contains("--bgp is not supported", result.Stderr);
        Assert.Contains("--interface \"a/b\"", result.Stderr);
        Assert.Contains("unknown flag: --nope", result.Stderr);
        Assert.Contains("--arp is required", result.Stderr);
        Assert.Contains("--inCluster is required", result.Stderr);
        var pod = await HybridAsync("manifest", "pod");
        Assert.Equal(2, pod.ExitCode);
        Assert.Contains("DaemonSet", pod.Stderr);
    }

    [Fact]
    public async Task Deploy_kustomizations_pass_a_server_dry_run_and_create_nothing()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var ns = Manifest.DefaultNamespace;
        // As on a real cluster, a dry run creates nothing, not even the namespace the other objects need.
        var fresh = await h.KubectlAsync("apply", "--dry-run=server", "-k", Path.Combine(ManifestTests.DeployDirectory, "base"));
        Assert.NotEqual(0, fresh.ExitCode);
        Assert.Contains($"namespaces \"{ns}\" not found", fresh.Stderr);

        (await h.KubectlAsync("create", "namespace", ns)).EnsureSuccess();
        foreach (var dir in new[] { "base", "overlays/release" })
        {
            var result = (await h.KubectlAsync("apply", "--dry-run=server", "-k", Path.Combine(ManifestTests.DeployDirectory, dir))).EnsureSuccess();
            var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(9, lines.Length);
            Assert.Equal($"namespace/{ns} configured (server dry run)", lines.Single(l => l.StartsWith("namespace/")));
            Assert.All(lines.Where(l => !l.StartsWith("namespace/")), l => Assert.EndsWith("created (server dry run)", l));
        }
        Assert.Empty((await h.Client.RbacAuthorizationV1.ListClusterRoleAsync()).Items);
        Assert.Empty((await h.Client.AppsV1.ListDaemonSetForAllNamespacesAsync()).Items);
        Assert.False((await h.Client.CoreV1.ReadNamespaceAsync(ns)).Metadata.Labels.ContainsKey("pod-security.kubernetes.io/enforce"));
        var release = (await h.KubectlAsync("kustomize", Path.Combine(ManifestTests.DeployDirectory, "overlays", "release"))).EnsureSuccess().Stdout;
        Assert.Matches(@"image: ghcr\.io/hybrid-lb/hybrid@sha256:[0-9a-f]{64}", release);
    }

    [Fact]
    public async Task A_list_printed_by_kubectl_get_re_applies()
    {
        await using var h = await EmulatorHarness.StartAsync(_ => new Sandbox.Api.ApiEmulatorOptions { SimulateWorkloads = true });
        (await h.KubectlAsync("create", "deployment", "web", "--image=nginx:1.27", "--replicas=2")).EnsureSuccess();
        (await h.KubectlAsync("expose", "deployment", "web", "--port=80", "--type=LoadBalancer", "--load-balancer-ip=198.18.0.220")).EnsureSuccess();
        (await h.KubectlAsync("annotate", "service", "web", "kube-vip.io/loadbalancerIPs=198.18.0.220")).EnsureSuccess();
        await h.Client.CoreV1.PatchNamespacedServiceStatusAsync(
            new k8s.Models.V1Patch("""{"status":{"loadBalancer":{"ingress":[{"ip":"198.18.0.220","ipMode":"VIP"}]}}}""", k8s.Models.V1Patch.PatchType.MergePatch), "web", "default");

        var services = (await h.KubectlAsync("get", "svc", "-o", "yaml")).EnsureSuccess().Stdout;
        Assert.StartsWith("apiVersion: v1\nitems:", services);
        Assert.Contains("kind: List", services);
        var applied = (await h.KubectlAsync("apply", "-f", h.WriteFile("services.yaml", services))).EnsureSuccess();
        Assert.Contains("service/web configured", applied.Stdout);
        Assert.Contains("service/kubernetes configured", applied.Stdout);

        // The printed resourceVersions are preconditions: after the objects changed, the old file conflicts,
        // as it does on a real cluster. A fresh print, edited, applies; the change lands and nothing else moves.
        var stale = await h.KubectlAsync("apply", "-f", h.WriteFile("stale.yaml", services.Replace("app: web", "app: web2")));
        Assert.NotEqual(0, stale.ExitCode);
        Assert.Contains("Conflict", stale.Stderr);
        services = (await h.KubectlAsync("get", "svc", "-o", "yaml")).EnsureSuccess().Stdout;
        (await h.KubectlAsync("apply", "-f", h.WriteFile("edited.yaml", services.Replace("app: web", "app: web2")))).EnsureSuccess();
        var web = await h.Client.CoreV1.ReadNamespacedServiceAsync("web", "default");
        Assert.Equal("web2", web.Spec.Selector["app"]);
        Assert.Equal("198.18.0.220", web.Metadata.Annotations["kube-vip.io/loadbalancerIPs"]);
        Assert.Equal("198.18.0.220", web.Status.LoadBalancer.Ingress.Single().Ip);

        var deployments = (await h.KubectlAsync("get", "deploy", "-o", "yaml")).EnsureSuccess().Stdout;
        (await h.KubectlAsync("apply", "-f", h.WriteFile("deployments.yaml", deployments))).EnsureSuccess();
    }
}
