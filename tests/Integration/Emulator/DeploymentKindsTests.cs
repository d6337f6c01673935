using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using Xunit;

namespace Hybrid.Integration.Emulator;

/// <summary>The kinds Hybrid's manifests contain (DaemonSets, ServiceAccounts, Secrets, RBAC) with the API
/// server's scope, discovery, defaults, validation and tables, through kubectl and the client library.</summary>
public sealed class DeploymentKindsTests
{
    private static string Message(JsonNode? body) => body!["message"]!.GetValue<string>();

    [Fact]
    public async Task Kubectl_discovers_the_new_kinds_with_their_scope_and_short_names()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var resources = (await h.KubectlAsync("api-resources")).EnsureSuccess().Stdout;
        Assert.Matches(@"(?m)^daemonsets\s+ds\s+apps/v1\s+true\s+DaemonSet$", resources);
        Assert.Matches(@"(?m)^serviceaccounts\s+sa\s+v1\s+true\s+ServiceAccount$", resources);
        Assert.Matches(@"(?m)^secrets\s+v1\s+true\s+Secret$", resources);
        Assert.Matches(@"(?m)^clusterroles\s+rbac\.authorization\.k8s\.io/v1\s+false\s+ClusterRole$", resources);
        Assert.Matches(@"(?m)^clusterrolebindings\s+rbac\.authorization\.k8s\.io/v1\s+false\s+ClusterRoleBinding$", resources);
        Assert.Matches(@"(?m)^roles\s+rbac\.authorization\.k8s\.io/v1\s+true\s+Role$", resources);
        Assert.Matches(@"(?m)^rolebindings\s+rbac\.authorization\.k8s\.io/v1\s+true\s+RoleBinding$", resources);
        // A cluster-scoped kind has no namespaced path.
        Assert.Equal(404, (await h.SendAsync(HttpMethod.Get, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/clusterroles")).Status);
    }

    [Fact]
    public async Task Typed_kubectl_creates_work_and_get_prints_the_servers_columns()
    {
        await using var h = await EmulatorHarness.StartAsync();
        // These commands send protobuf bodies.
        (await h.KubectlAsync("create", "secret", "generic", "creds", "--from-literal=user=admin", "--from-literal=pass=s3cret")).EnsureSuccess();
        (await h.KubectlAsync("create", "serviceaccount", "robot")).EnsureSuccess();
        (await h.KubectlAsync("create", "clusterrole", "reader", "--verb=get,list,watch", "--resource=services")).EnsureSuccess();
        (await h.KubectlAsync("create", "clusterrolebinding", "alice-reads", "--clusterrole=reader", "--user=alice", "--serviceaccount=default:robot")).EnsureSuccess();
        (await h.KubectlAsync("create", "role", "leases", "--verb=get,update", "--resource=leases.coordination.k8s.io")).EnsureSuccess();
        (await h.KubectlAsync("create", "rolebinding", "robot-leases", "--role=leases", "--serviceaccount=default:robot")).EnsureSuccess();

        Assert.Matches(@"creds\s+Opaque\s+2\s+\d+s", (await h.KubectlAsync("get", "secret", "creds")).EnsureSuccess().Stdout);
        Assert.Matches(@"robot\s+0\s+\d+s", (await h.KubectlAsync("get", "sa", "robot")).EnsureSuccess().Stdout);
        Assert.Matches(@"reader\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", (await h.KubectlAsync("get", "clusterrole", "reader")).EnsureSuccess().Stdout);
        Assert.Matches(@"alice-reads\s+ClusterRole/reader\s+\d+s\s+alice\s+default/robot",
            (await h.KubectlAsync("get", "clusterrolebinding", "alice-reads", "-o", "wide")).EnsureSuccess().Stdout);
        Assert.Matches(@"robot-leases\s+Role/leases\s+\d+s", (await h.KubectlAsync("get", "rolebinding")).EnsureSuccess().Stdout);

        var secret = await h.Client.CoreV1.ReadNamespacedSecretAsync("creds", "default");
        Assert.Equal("s3cret", System.Text.Encoding.UTF8.GetString(secret.Data["pass"]));
        var binding = await h.Client.RbacAuthorizationV1.ReadClusterRoleBindingAsync("alice-reads");
        Assert.Equal("rbac.authorization.k8s.io", binding.Subjects.Single(s => s.Kind == "User").ApiGroup);
        Assert.Equal("default", binding.Subjects.Single(s => s.Kind == "ServiceAccount").NamespaceProperty);
        var role = await h.Client.RbacAuthorizationV1.ReadNamespacedRoleAsync("leases", "default");
        Assert.Equal(["coordination.k8s.io"], role.Rules.Single().ApiGroups);
    }

    [Fact]
    public async Task A_secrets_stringData_is_stored_as_data_and_an_immutable_secret_keeps_it()
    {
        await using var h = await EmulatorHarness.StartAsync();
        const string path = "/api/v1/namespaces/default/secrets";
        var (code, created, _) = await h.SendAsync(HttpMethod.Post, path,
            """{"metadata":{"name":"key"},"stringData":{"key":"c2VjcmV0"},"data":{"other":"eA=="},"immutable":true}""");
        Assert.Equal(201, code);
        Assert.Equal("Opaque", created!["type"]!.GetValue<string>());
        Assert.Null(created["stringData"]);
        Assert.Equal(Convert.ToBase64String("c2VjcmV0"u8.ToArray()), created["data"]!["key"]!.GetValue<string>());
        Assert.Equal("eA==", created["data"]!["other"]!.GetValue<string>());

        var (refused, body, _) = await h.SendAsync(HttpMethod.Patch, path + "/key", """{"stringData":{"key":"changed"}}""", "application/merge-patch+json");
        Assert.Equal(422, refused);
        Assert.Equal("Secret \"key\" is invalid: data: Forbidden: field is immutable when `immutable` is set", Message(body));

        (refused, body, _) = await h.SendAsync(HttpMethod.Post, path, """{"metadata":{"name":"bad"},"data":{"a b":"eA=="}}""");
        Assert.Equal(422, refused);
        Assert.StartsWith("Secret \"bad\" is invalid: data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters", Message(body));
        (refused, body, _) = await h.SendAsync(HttpMethod.Post, path, """{"metadata":{"name":"bad"},"data":{"a":"not base64!"}}""");
        Assert.Equal(400, refused);
        Assert.StartsWith("Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data", Message(body));
    }

    [Fact]
    public async Task Bindings_keep_their_roleRef_and_need_namespaced_service_account_subjects()
    {
        await using var h = await EmulatorHarness.StartAsync();
        const string path = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
        const string binding = """{"metadata":{"name":"b"},"roleRef":{"kind":"ClusterRole","name":"view"},"subjects":[{"kind":"ServiceAccount","name":"hybrid","namespace":"hybrid-system"}]}""";
        var (code, created, _) = await h.SendAsync(HttpMethod.Post, path, binding);
        Assert.Equal(201, code);
        Assert.Equal("rbac.authorization.k8s.io", created!["roleRef"]!["apiGroup"]!.GetValue<string>());

        var (refused, body, _) = await h.SendAsync(HttpMethod.Patch, path + "/b", """{"roleRef":{"name":"edit"}}""", "application/merge-patch+json");
        Assert.Equal(422, refused);
        Assert.Equal("ClusterRoleBinding.rbac.authorization.k8s.io \"b\" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef",
            Message(body));

        (refused, body, _) = await h.SendAsync(HttpMethod.Post, path,
            """{"metadata":{"name":"c"},"roleRef":{"kind":"Role","name":"view"},"subjects":[{"kind":"ServiceAccount","name":"hybrid"}]}""");
        Assert.Equal(422, refused);
        Assert.Equal("ClusterRoleBinding.rbac.authorization.k8s.io \"c\" is invalid: [roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\", subjects[0].namespace: Required value]",
            Message(body));

        (refused, body, _) = await h.SendAsync(HttpMethod.Post, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
            """{"metadata":{"name":"r"},"rules":[{"resources":["leases"]},{"verbs":["get"],"nonResourceURLs":["/healthz"]}]}""");
        Assert.Equal(422, refused);
        Assert.Equal("Role.rbac.authorization.k8s.io \"r\" is invalid: [rules[0].verbs: Required value: verbs must contain at least one value, rules[0].apiGroups: Required value: resource rules must supply at least one api group, rules[1].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs]",
            Message(body));
    }

    private static V1DaemonSet Agent(string image = "ghcr.io/hybrid-lb/hybrid:latest") => new()
    {
        Metadata = new V1ObjectMeta { Name = "agent", Labels = new Dictionary<string, string> { ["app"] = "agent" } },
        Spec = new V1DaemonSetSpec
        {
            Selector = new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["app"] = "agent" } },
            Template = new V1PodTemplateSpec
            {
                Metadata = new V1ObjectMeta { Labels = new Dictionary<string, string> { ["app"] = "agent" } },
                Spec = new V1PodSpec
                {
                    HostNetwork = true,
                    Containers = [new V1Container { Name = "agent", Image = image, Ports = [new V1ContainerPort { Name = "health", ContainerPort = 2113 }] }],
                },
            },
        },
    };

    [Fact]
    public async Task A_daemonset_gets_the_servers_defaults_and_a_new_generation_per_spec_change()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var ds = await h.Client.AppsV1.CreateNamespacedDaemonSetAsync(Agent(), "default");
        Assert.Equal(1, ds.Metadata.Generation);
        Assert.Equal("RollingUpdate", ds.Spec.UpdateStrategy.Type);
        Assert.Equal("1", ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable.Value);
        Assert.Equal("0", ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge.Value);
        Assert.Equal(10, ds.Spec.RevisionHistoryLimit);
        var port = ds.Spec.Template.Spec.Containers.Single().Ports.Single();
        Assert.Equal(2113, port.HostPort);
        Assert.Equal("TCP", port.Protocol);
        Assert.Equal("Always", ds.Spec.Template.Spec.RestartPolicy);
        Assert.Equal(0, ds.Status.DesiredNumberScheduled);

        ds.Spec.Template.Spec.Containers[0].Image = "ghcr.io/hybrid-lb/hybrid:v2";
        Assert.Equal(2, (await h.Client.AppsV1.ReplaceNamespacedDaemonSetAsync(ds, "agent", "default")).Metadata.Generation);
        var labelled = await h.Client.AppsV1.PatchNamespacedDaemonSetAsync(new V1Patch("""{"metadata":{"labels":{"x":"y"}}}""", V1Patch.PatchType.MergePatch), "agent", "default");
        Assert.Equal(2, labelled.Metadata.Generation);
        Assert.Matches(@"agent\s+0\s+0\s+0\s+0\s+0\s+<none>\s+\d+s", (await h.KubectlAsync("get", "ds")).EnsureSuccess().Stdout);

        var bad = Agent();
        bad.Metadata.Name = "bad";
        bad.Spec.Template.Metadata.Labels["app"] = "other";
        bad.Spec.Template.Spec.RestartPolicy = "OnFailure";
        var error = await Assert.ThrowsAsync<k8s.Autorest.HttpOperationException>(() => h.Client.AppsV1.CreateNamespacedDaemonSetAsync(bad, "default"));
        Assert.Equal(422, (int)error.Response.StatusCode);
        var message = Message(JsonNode.Parse(error.Response.Content));
        Assert.Contains("spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`", message);
        Assert.Contains("spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"", message);
    }

    [Fact]
    public async Task Deleting_a_namespace_deletes_its_secrets_accounts_roles_and_daemonsets()
    {
        await using var h = await EmulatorHarness.StartAsync();
        (await h.KubectlAsync("create", "namespace", "hybrid-system")).EnsureSuccess();
        (await h.KubectlAsync("-n", "hybrid-system", "create", "secret", "generic", "hybrid-cluster-key", "--from-literal=key=k")).EnsureSuccess();
        (await h.KubectlAsync("-n", "hybrid-system", "create", "serviceaccount", "hybrid")).EnsureSuccess();
        (await h.KubectlAsync("-n", "hybrid-system", "create", "role", "hybrid-leases", "--verb=get", "--resource=leases.coordination.k8s.io")).EnsureSuccess();
        await h.Client.AppsV1.CreateNamespacedDaemonSetAsync(Agent(), "hybrid-system");
        (await h.KubectlAsync("delete", "namespace", "hybrid-system", "--wait=true", "--timeout=20s")).EnsureSuccess();
        Assert.Empty((await h.Client.CoreV1.ListSecretForAllNamespacesAsync()).Items);
        Assert.Empty((await h.Client.CoreV1.ListServiceAccountForAllNamespacesAsync()).Items);
        Assert.Empty((await h.Client.RbacAuthorizationV1.ListRoleForAllNamespacesAsync()).Items);
        Assert.Empty((await h.Client.AppsV1.ListDaemonSetForAllNamespacesAsync()).Items);
    }
}
