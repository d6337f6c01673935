using System.Text.Json.Nodes;
using Hybrid.Domain;
using Hybrid.Facade;
using k8s;
using k8s.Models;
using Xunit;

namespace Hybrid.Integration.Deploy;

/// <summary>
/// deploy/ is what an operator applies, and `hybrid manifest` is what a kube-vip user generates: the two must
/// be the same objects, parse as Kubernetes objects, run the agent hardened as the README says, and configure
/// it with variables it understands.
/// </summary>
public sealed class ManifestTests
{
    internal static readonly string RepositoryRoot = FindRepositoryRoot();
    internal static readonly string DeployDirectory = Path.Combine(RepositoryRoot, "deploy");

    /// <summary>The command line deploy/base/daemonset.yaml corresponds to.</summary>
    internal static readonly string[] BaseDaemonSetArguments = ["daemonset", "--services", "--arp", "--inCluster"];

    private static string FindRepositoryRoot()
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Hybrid.sln"))) dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("Hybrid.sln not found above the test binaries");
    }

    private static List<object> Load(string file) =>
        KubernetesYaml.LoadAllFromString(File.ReadAllText(Path.Combine(DeployDirectory, file)));

    /// <summary>Runs `hybrid manifest ARGS` in-process and returns its stdout (failing on a non-zero exit).</summary>
    internal static string Generate(params string[] args)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var status = ManifestCommand.Run(args, output, errors);
        Assert.True(status == 0, $"hybrid manifest {string.Join(' ', args)} exited {status}: {errors}");
        return output.ToString();
    }

    private static JsonNode Canonical(object o) => JsonNode.Parse(KubernetesJson.Serialize(o))!;

    private static V1Container Agent() =>
        Load("base/daemonset.yaml").OfType<V1DaemonSet>().Single().Spec.Template.Spec.Containers.Single();

    [Fact]
    public void Deploy_base_is_exactly_what_hybrid_manifest_generates()
    {
        var deployed = Load("base/rbac.yaml").Concat(Load("base/daemonset.yaml")).Select(Canonical).ToList();
        var generated = KubernetesYaml.LoadAllFromString(Generate("rbac") + Generate(BaseDaemonSetArguments)).Select(Canonical).ToList();
        Assert.Equal(generated.Count, deployed.Count);
        for (var i = 0; i < generated.Count; i++)
            Assert.True(JsonNode.DeepEquals(generated[i], deployed[i]),
                $"object {i} differs\ngenerated: {generated[i].ToJsonString()}\ndeploy/:   {deployed[i].ToJsonString()}");
    }

    [Fact]
    public void The_agent_runs_hardened_on_the_host_network()
    {
        var pod = Load("base/daemonset.yaml").OfType<V1DaemonSet>().Single().Spec.Template.Spec;
        Assert.True(pod.HostNetwork);
        Assert.Equal("RuntimeDefault", pod.SecurityContext.SeccompProfile.Type);
        Assert.Equal("hybrid", pod.ServiceAccountName);
        var c = Assert.Single(pod.Containers);
        Assert.Equal(["NET_ADMIN", "NET_RAW"], c.SecurityContext.Capabilities.Add.Order());
        Assert.Equal(["ALL"], c.SecurityContext.Capabilities.Drop);
        Assert.False(c.SecurityContext.Privileged);
        Assert.False(c.SecurityContext.AllowPrivilegeEscalation);
        Assert.True(c.SecurityContext.ReadOnlyRootFilesystem);
        Assert.False(c.Resources.Limits.ContainsKey("cpu"));
        Assert.NotNull(c.Resources.Limits["memory"]);
        Assert.Equal(["metrics", "health"], c.Ports.Select(p => p.Name));
        Assert.Equal(2112, c.Ports.Single(p => p.Name == "metrics").ContainerPort);
        var health = c.Ports.Single(p => p.Name == "health");
        Assert.Equal(Manifest.DefaultHealthPort, health.ContainerPort);
        Assert.Equal("/healthz", c.LivenessProbe.HttpGet.Path);
        Assert.Equal("/readyz", c.ReadinessProbe.HttpGet.Path);
        Assert.Equal(health.Name, c.LivenessProbe.HttpGet.Port.Value);
        Assert.Equal(health.Name, c.ReadinessProbe.HttpGet.Port.Value);
    }

    [Fact]
    public void The_environment_is_a_valid_agent_configuration_with_the_cluster_key_from_its_secret()
    {
        var c = Agent();
        var pending = Manifest.PendingVariables.ToArray();
        // Every variable is one the agent reads, or the process environment its runtime is given (malloc's).
        Assert.Empty(c.Env.Select(e => e.Name).Except(Configuration.Variables).Except(pending).Except(Manifests.RuntimeEnvironment.Keys));
        var key = c.Env.Single(e => e.Name == Manifest.KeyVariable).ValueFrom.SecretKeyRef;
        Assert.Equal((Manifest.SecretName, Manifest.SecretKey), (key.Name, key.Key));
        // Values as the kubelet fills them in.
        Assert.All(Manifests.RuntimeEnvironment, v => Assert.Equal(v.Value, c.Env.Single(e => e.Name == v.Key).Value));
        var environment = c.Env.Where(e => !pending.Contains(e.Name) && e.Name != Manifest.KeyVariable).ToDictionary(
            e => e.Name,
            e => e.Value ?? (e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" ? "node-1" : "hybrid-system"));
        // The cluster key, as the operator's Secret would give it.
        environment[Manifest.KeyVariable] = Convert.ToBase64String(new byte[32]);
        var valid = Assert.IsType<SettingsOutcome.Valid>(Configuration.Parse(environment, null, null));
        Assert.Equal("node-1", valid.Settings.NodeName);
        Assert.Equal("hybrid-system", valid.Settings.LeaseNamespace);
    }

    [Fact]
    public void Leases_are_granted_only_in_the_agents_own_namespace()
    {
        var objects = Load("base/rbac.yaml");
        Assert.DoesNotContain(objects.OfType<V1ClusterRole>().Single().Rules, r => r.Resources.Contains("leases"));
        var leaseRoles = objects.OfType<V1Role>().Where(r => r.Rules.Any(rule => rule.Resources.Contains("leases"))).ToList();
        Assert.Equal(["hybrid-system"], leaseRoles.Select(r => r.Metadata.NamespaceProperty));
        var kubeSystem = objects.OfType<V1Role>().Where(r => r.Metadata.NamespaceProperty == "kube-system").SelectMany(r => r.Rules).ToList();
        Assert.All(kubeSystem, r => Assert.Equal(["kubevip"], r.ResourceNames));
        var daemonSet = Load("base/daemonset.yaml").OfType<V1DaemonSet>().Single();
        Assert.Equal("hybrid-system", daemonSet.Metadata.NamespaceProperty);
        Assert.Equal("metadata.namespace", Agent().Env.Single(e => e.Name == "cp_namespace").ValueFrom.FieldRef.FieldPath);
    }

    [Fact]
    public void The_base_lists_every_manifest_and_the_release_pins_a_digest()
    {
        var text = File.ReadAllText(Path.Combine(DeployDirectory, "base", "kustomization.yaml"));
        foreach (var file in Directory.GetFiles(Path.Combine(DeployDirectory, "base"), "*.yaml").Select(Path.GetFileName))
            if (file != "kustomization.yaml") Assert.Contains($"- {file}", text);
        var release = File.ReadAllText(Path.Combine(DeployDirectory, "overlays", "release", "kustomization.yaml"));
        Assert.Matches(@"(?m)^\s+digest: sha256:[0-9a-f]{64}$", release);
    }
}
