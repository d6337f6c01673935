using System.Diagnostics;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using Xunit;

namespace Hybrid.Integration.Emulator;

/// <summary>
/// The emulator against a second client library nobody here wrote: Debian's python3-kubernetes (the official
/// Python client), in small scripts: lists and selectors, a watch resumed from a list's resourceVersion,
/// 410 Expired after compaction, merge, strategic-merge and JSON patches, the status subresource, and 409s.
/// </summary>
public sealed class PythonClientTests
{
    private const string Prelude = """
        import json, sys
        from kubernetes import client, config, watch, dynamic
        from kubernetes.client.rest import ApiException
        config.load_kube_config()
        v1 = client.CoreV1Api()
        out = {}
        def cm(name, labels=None):
            return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}}, "data": {"k": "v"}}

        """;

    /// <summary>Runs a script with Debian's python3 (not whatever python is first on PATH) and returns the JSON
    /// object it prints last.</summary>
    private static async Task<JsonNode> PythonAsync(EmulatorHarness h, string script)
    {
        const string python = "/usr/bin/python3";
        if (!File.Exists(python) || !Directory.Exists("/usr/lib/python3/dist-packages/kubernetes"))
            throw new InvalidOperationException("this test needs Debian's python3 with the Kubernetes client (Debian package python3-kubernetes); the test command installs it");
        var path = h.WriteFile($"script-{Guid.NewGuid():N}.py", Prelude + script + "\nprint(json.dumps(out))\n");
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(path);
        psi.Environment["KUBECONFIG"] = h.KubeconfigPath;
        psi.Environment["HOME"] = h.Directory;
        psi.Environment["TMPDIR"] = h.Directory;
        psi.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"python script did not finish: {await stderr}");
        }
        var text = await stdout;
        if (process.ExitCode != 0) throw new Xunit.Sdk.XunitException($"python exited {process.ExitCode}\n{text}\n{await stderr}");
        return JsonNode.Parse(text.TrimEnd().Split('\n')[^1])!;
    }

    private static List<string> Strings(JsonNode? array) => array!.AsArray().Select(n => n!.ToString()).ToList();

    [Fact]
    public async Task Python_lists_with_label_selectors_and_pages()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var result = await PythonAsync(h, """
            for i, tier in enumerate(["front", "back", "front"]):
                v1.create_namespaced_config_map("default", cm("c%d" % i, {"tier": tier}))
            out["all"] = [c.metadata.name for c in v1.list_namespaced_config_map("default").items]
            out["front"] = [c.metadata.name for c in v1.list_namespaced_config_map("default", label_selector="tier=front").items]
            out["notfront"] = [c.metadata.name for c in v1.list_namespaced_config_map("default", label_selector="tier!=front").items]
            page = v1.list_namespaced_config_map("default", limit=2)
            out["page1"] = [c.metadata.name for c in page.items]
            out["page2"] = [c.metadata.name for c in v1.list_namespaced_config_map("default", limit=2, _continue=page.metadata._continue).items]
            out["services"] = [s.metadata.name for s in v1.list_service_for_all_namespaces().items]
            """);
        Assert.Equal(["c0", "c1", "c2"], Strings(result["all"]));
        Assert.Equal(["c0", "c2"], Strings(result["front"]));
        Assert.Equal(["c1"], Strings(result["notfront"]));
        Assert.Equal(["c0", "c1"], Strings(result["page1"]));
        Assert.Equal(["c2"], Strings(result["page2"]));
        Assert.Contains("kubernetes", Strings(result["services"]));
        // What Python wrote, the C# client reads.
        Assert.Equal("back", (await h.Client.CoreV1.ReadNamespacedConfigMapAsync("c1", "default")).Metadata.Labels["tier"]);
    }

    [Fact]
    public async Task Python_watches_resume_from_a_lists_resource_version()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var result = await PythonAsync(h, """
            v1.create_namespaced_config_map("default", cm("old"))
            rv = v1.list_namespaced_config_map("default").metadata.resource_version
            v1.create_namespaced_config_map("default", cm("new"))
            v1.patch_namespaced_config_map("new", "default", {"data": {"k": "changed"}})
            v1.delete_namespaced_config_map("old", "default")
            events = []
            for e in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2):
                events.append([e["type"], e["object"].metadata.name, (e["object"].data or {}).get("k")])
            out["resumed"] = events
            out["initial"] = [[e["type"], e["object"].metadata.name]
                              for e in watch.Watch().stream(v1.list_namespaced_config_map, "default", timeout_seconds=1)]
            """);
        var resumed = result["resumed"]!.AsArray().Select(e => string.Join(' ', e!.AsArray().Select(x => x?.ToString()))).ToList();
        Assert.Equal(["ADDED new v", "MODIFIED new changed", "DELETED old v"], resumed);
        Assert.Equal(["ADDED new"], result["initial"]!.AsArray().Select(e => string.Join(' ', e!.AsArray().Select(x => x?.ToString()))));
    }

    [Fact]
    public async Task Python_gets_410_Expired_when_the_history_was_compacted_and_recovers_by_listing()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var rv = (await h.Client.CoreV1.ListNamespacedConfigMapAsync("default")).Metadata.ResourceVersion;
        await h.Client.CoreV1.CreateNamespacedConfigMapAsync(new V1ConfigMap { Metadata = new V1ObjectMeta { Name = "after" } }, "default");
        h.Emulator.InjectFault(new JsonObject { ["kind"] = "compact" });
        var result = await PythonAsync(h, $$"""
            try:
                for e in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version="{{rv}}", timeout_seconds=2):
                    out.setdefault("events", []).append(e["type"])
            except ApiException as e:
                out["status"] = e.status
                out["reason"] = e.reason
            fresh = v1.list_namespaced_config_map("default")
            out["listed"] = [c.metadata.name for c in fresh.items]
            out["after"] = [e["type"] for e in watch.Watch().stream(v1.list_namespaced_config_map, "default",
                                                                 resource_version=fresh.metadata.resource_version, timeout_seconds=1)]
            """);
        Assert.Null(result["events"]);
        Assert.Equal(410, result["status"]!.GetValue<int>());
        Assert.StartsWith($"Expired: too old resource version: {rv}", result["reason"]!.GetValue<string>());
        Assert.Equal(["after"], Strings(result["listed"]));
        Assert.Empty(Strings(result["after"]));
    }

    [Fact]
    public async Task Python_patches_merge_strategically_as_json_merge_and_as_json_patch()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var result = await PythonAsync(h, """
            svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}
            v1.create_namespaced_service("default", svc)
            # A dict body is sent as a strategic merge patch: ports merge by port.
            s = v1.patch_namespaced_service("web", "default", {"spec": {"ports": [{"name": "alt", "port": 81}]}})
            out["strategic"] = [p.port for p in s.spec.ports]
            # The dynamic client (which discovers the API first) sends a JSON merge patch: lists are replaced.
            dyn = dynamic.DynamicClient(client.ApiClient(), cache_file=sys.argv[0] + ".discovery")
            services = dyn.resources.get(api_version="v1", kind="Service")
            m = dyn.patch(services, name="web", namespace="default", body={"spec": {"ports": [{"name": "only", "port": 82}]}},
                          content_type="application/merge-patch+json")
            out["merge"] = [p["port"] for p in m.spec.ports]
            # A list body is sent as a JSON patch.
            j = v1.patch_namespaced_service("web", "default", [{"op": "add", "path": "/metadata/labels", "value": {"tier": "front"}}])
            out["json"] = j.metadata.labels
            out["nodePort"] = j.spec.ports[0].node_port
            """);
        Assert.Equal([80, 81], result["strategic"]!.AsArray().Select(p => p!.GetValue<int>()));
        Assert.Equal([82], result["merge"]!.AsArray().Select(p => p!.GetValue<int>()));
        Assert.Equal("front", result["json"]!["tier"]!.GetValue<string>());
        Assert.InRange(result["nodePort"]!.GetValue<int>(), 30000, 32767);
    }

    [Fact]
    public async Task Python_writes_status_only_through_the_status_subresource()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var result = await PythonAsync(h, """
            svc = {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
            v1.create_namespaced_service("default", svc)
            ingress = {"loadBalancer": {"ingress": [{"ip": "198.18.0.220", "ipMode": "VIP", "ports": [{"port": 80, "protocol": "TCP"}]}]}}
            s = v1.patch_namespaced_service_status("lb", "default", {"status": ingress, "spec": {"type": "ClusterIP"}})
            out["status"] = s.status.load_balancer.ingress[0].ip
            out["specType"] = s.spec.type
            # The main resource ignores status.
            cur = v1.read_namespaced_service("lb", "default")
            cur.status.load_balancer.ingress[0].ip = "198.18.0.221"
            cur.metadata.labels = {"seen": "yes"}
            r = v1.replace_namespaced_service("lb", "default", cur)
            out["afterReplace"] = r.status.load_balancer.ingress[0].ip
            out["label"] = r.metadata.labels["seen"]
            try:
                v1.patch_namespaced_service_status("lb", "default", {"status": {"loadBalancer": {"ingress": [{"ip": "not-an-ip"}]}}})
            except ApiException as e:
                out["invalid"] = [e.status, json.loads(e.body)["message"]]
            """);
        Assert.Equal("198.18.0.220", result["status"]!.GetValue<string>());
        Assert.Equal("LoadBalancer", result["specType"]!.GetValue<string>());
        Assert.Equal("198.18.0.220", result["afterReplace"]!.GetValue<string>());
        Assert.Equal("yes", result["label"]!.GetValue<string>());
        Assert.Equal(422, result["invalid"]![0]!.GetValue<int>());
        Assert.Contains("status.loadBalancer.ingress[0].ip: Invalid value: \"not-an-ip\"", result["invalid"]![1]!.GetValue<string>());
    }

    [Fact]
    public async Task Python_gets_409_for_a_stale_write_and_for_an_existing_name()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var result = await PythonAsync(h, """
            v1.create_namespaced_config_map("default", cm("c"))
            stale = v1.read_namespaced_config_map("c", "default")
            fresh = v1.read_namespaced_config_map("c", "default")
            fresh.data = {"k": "first"}
            v1.replace_namespaced_config_map("c", "default", fresh)
            stale.data = {"k": "second"}
            try:
                v1.replace_namespaced_config_map("c", "default", stale)
            except ApiException as e:
                body = json.loads(e.body)
                out["stale"] = [e.status, body["reason"], body["message"], body["details"]["kind"]]
            try:
                v1.create_namespaced_config_map("default", cm("c"))
            except ApiException as e:
                out["exists"] = [e.status, json.loads(e.body)["reason"]]
            out["data"] = v1.read_namespaced_config_map("c", "default").data["k"]
            """);
        Assert.Equal(409, result["stale"]![0]!.GetValue<int>());
        Assert.Equal("Conflict", result["stale"]![1]!.GetValue<string>());
        Assert.Equal("Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again",
            result["stale"]![2]!.GetValue<string>());
        Assert.Equal("configmaps", result["stale"]![3]!.GetValue<string>());
        Assert.Equal(409, result["exists"]![0]!.GetValue<int>());
        Assert.Equal("AlreadyExists", result["exists"]![1]!.GetValue<string>());
        Assert.Equal("first", result["data"]!.GetValue<string>());
    }
}
