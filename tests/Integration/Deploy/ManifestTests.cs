using Hybrid.Facade;
using k8s;
using k8s.Models;
using Xunit;

namespace Hybrid.Integration.Deploy;

/// <summary>
/// The manifests in deploy/ are what an operator applies: they must parse as Kubernetes objects, grant only
/// what the agent uses, and configure the agent with variables it understands.
/// </summary>
public sealed class ManifestTests
{
    private static readonly string DeployDirectory = Path.Combine(RepositoryRoot(), "deploy");

    private static string RepositoryRoot()
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Hybrid.sln"))) dir = Path.GetDirectoryName(dir);
        return dir ?? throw new InvalidOperationException("Hybrid.sln not found above the test binaries");
    }

    private static List<object> Load(string file) =>
        KubernetesYaml.LoadAllFromString(File.ReadAllText(Path.Combine(DeployDirectory, file)));

    [Fact]
    public void Daemonset_runs_on_the_host_network_with_only_NET_ADMIN_and_NET_RAW()
    {
        var ds = Load("daemonset.yaml").OfType<V1DaemonSet>().Single();
        Assert.True(ds.Spec.Template.Spec.HostNetwork);
        var container = Assert.Single(ds.Spec.Template.Spec.Containers);
        Assert.Equal(["NET_ADMIN", "NET_RAW"], container.SecurityContext.Capabilities.Add.Order());
        Assert.Equal(["ALL"], container.SecurityContext.Capabilities.Drop);
        Assert.False(container.SecurityContext.Privileged ?? false);
        Assert.False(container.SecurityContext.AllowPrivilegeEscalation ?? true);
        Assert.Equal("spec.nodeName", container.Env.Single(e => e.Name == "vip_nodename").ValueFrom.FieldRef.FieldPath);
    }

    [Fact]
    public void Daemonset_environment_is_valid_agent_configuration()
    {
        var container = Load("daemonset.yaml").OfType<V1DaemonSet>().Single().Spec.Template.Spec.Containers.Single();
        var unknown = container.Env.Select(e => e.Name).Except(Configuration.Variables).ToList();
        Assert.Empty(unknown);
        // Values from the downward API, as the kubelet would fill them in.
        var environment = container.Env.ToDictionary(
            e => e.Name,
            e => e.Value ?? (e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" ? "node-1" : "kube-system"));
        // The cluster key comes from a Secret the operator creates (never from the manifests).
        environment["lan_key"] = Convert.ToBase64String(new byte[32]);
        var outcome = Configuration.Parse(environment, null, null);
        var valid = Assert.IsType<SettingsOutcome.Valid>(outcome);
        Assert.Equal("node-1", valid.Settings.NodeName);
        Assert.Equal("kube-system", valid.Settings.LeaseNamespace);
    }

    [Fact]
    public void Cluster_role_grants_reads_and_status_writes_only()
    {
        var role = Load("rbac.yaml").OfType<V1ClusterRole>().Single();
        var grants = role.Rules.SelectMany(r => r.Resources.SelectMany(res => r.Verbs.Select(v => $"{res}:{v}"))).ToHashSet();
        Assert.DoesNotContain(grants, g => g.EndsWith(":*") || g.StartsWith("*:"));
        Assert.Subset(new HashSet<string>
        {
            "services:get", "services:list", "services:watch", "services:patch", "services/status:patch",
            "endpointslices:get", "endpointslices:list", "endpointslices:watch", "events:create", "events:patch",
            "nodes:get", "nodes:list", "nodes:watch",
        }, grants);
        Assert.DoesNotContain(role.Rules, r => r.Resources.Contains("leases"));
    }

    [Fact]
    public void Leases_and_the_pool_ConfigMap_are_granted_only_in_the_agents_namespace()
    {
        var objects = Load("rbac.yaml");
        var role = objects.OfType<V1Role>().Single();
        Assert.Equal("kube-system", role.Metadata.NamespaceProperty);
        Assert.Equal(["configmaps", "leases"], role.Rules.SelectMany(r => r.Resources).Order());
        var pools = role.Rules.Single(r => r.Resources.Contains("configmaps"));
        Assert.Equal(["kubevip"], pools.ResourceNames);
        Assert.Equal(["get", "list", "watch"], pools.Verbs.Order());
        var binding = objects.OfType<V1RoleBinding>().Single();
        Assert.Equal(role.Metadata.Name, binding.RoleRef.Name);
        Assert.Equal("hybrid", binding.Subjects.Single().Name);
    }

    [Fact]
    public void Kustomization_lists_every_manifest()
    {
        var text = File.ReadAllText(Path.Combine(DeployDirectory, "kustomization.yaml"));
        foreach (var file in Directory.GetFiles(DeployDirectory, "*.yaml").Select(Path.GetFileName))
        {
            if (file == "kustomization.yaml") continue;
            Assert.Contains($"- {file}", text);
        }
    }
}
