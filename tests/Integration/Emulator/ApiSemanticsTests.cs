using System.Net;
using System.Text.Json.Nodes;
using Xunit;

namespace Hybrid.Integration.Emulator;

/// <summary>Raw-HTTP checks of the API server semantics the agent depends on: conflicts, 410, list/RV
/// consistency, status subresource rules, validation and error shapes, patch flavours, finalizers, selectors.</summary>
public sealed class ApiSemanticsTests
{
    private const string Services = "/api/v1/namespaces/default/services";

    private static string Lb(string name, string extra = "") =>
        $$$"""{"apiVersion":"v1","kind":"Service","metadata":{"name":"{{{name}}}"},"spec":{"type":"LoadBalancer","selector":{"app":"web"},"ports":[{"port":80}]{{{extra}}}}}""";

    [Fact]
    public async Task A_stale_update_gets_409_Conflict_with_the_servers_status_shape()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var (code, created, _) = await h.SendAsync(HttpMethod.Post, Services, Lb("web"));
        Assert.Equal(201, code);
        var stale = created!.ToJsonString();
        var fresh = (JsonObject)created.DeepClone();
        fresh["metadata"]!["labels"] = new JsonObject { ["a"] = "b" };
        Assert.Equal(200, (await h.SendAsync(HttpMethod.Put, Services + "/web", fresh.ToJsonString())).Status);

        var (conflict, body, _) = await h.SendAsync(HttpMethod.Put, Services + "/web", stale);
        Assert.Equal(409, conflict);
        Assert.Equal("Status", body!["kind"]!.GetValue<string>());
        Assert.Equal("Failure", body["status"]!.GetValue<string>());
        Assert.Equal("Conflict", body["reason"]!.GetValue<string>());
        Assert.Equal(409, body["code"]!.GetValue<int>());
        Assert.Equal("Operation cannot be fulfilled on services \"web\": the object has been modified; please apply your changes to the latest version and try again",
            body["message"]!.GetValue<string>());
        Assert.Equal("web", body["details"]!["name"]!.GetValue<string>());
        Assert.Equal("services", body["details"]!["kind"]!.GetValue<string>());

        // A merge patch carrying a stale resourceVersion is a precondition too.
        var patch = "{\"metadata\":{\"resourceVersion\":\"" + created["metadata"]!["resourceVersion"] + "\",\"labels\":{\"x\":\"y\"}}}";
        Assert.Equal(409, (await h.SendAsync(HttpMethod.Patch, Services + "/web", patch, "application/merge-patch+json")).Status);

        var (exists, existsBody, _) = await h.SendAsync(HttpMethod.Post, Services, Lb("web"));
        Assert.Equal(409, exists);
        Assert.Equal("AlreadyExists", existsBody!["reason"]!.GetValue<string>());
        Assert.Equal("services \"web\" already exists", existsBody["message"]!.GetValue<string>());

        var (missing, missingBody, _) = await h.SendAsync(HttpMethod.Get, "/apis/coordination.k8s.io/v1/namespaces/default/leases/nope");
        Assert.Equal(404, missing);
        Assert.Equal("leases.coordination.k8s.io \"nope\" not found", missingBody!["message"]!.GetValue<string>());
        Assert.Equal("coordination.k8s.io", missingBody["details"]!["group"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_too_old_watch_gets_one_410_ERROR_event_and_the_stream_ends()
    {
        await using var h = await EmulatorHarness.StartAsync(_ => new Sandbox.Api.ApiEmulatorOptions { HistoryLimit = 3 });
        var list = await h.SendAsync(HttpMethod.Get, Services);
        var rv = list.Body!["metadata"]!["resourceVersion"]!.GetValue<string>();
        for (var i = 0; i < 5; i++) Assert.Equal(201, (await h.SendAsync(HttpMethod.Post, Services, Lb("s" + i))).Status);

        using var response = await h.Http.GetAsync($"{Services}?watch=true&resourceVersion={rv}", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var evt = JsonNode.Parse(Assert.Single(lines))!;
        Assert.Equal("ERROR", evt["type"]!.GetValue<string>());
        Assert.Equal(410, evt["object"]!["code"]!.GetValue<int>());
        Assert.Equal("Expired", evt["object"]!["reason"]!.GetValue<string>());
        Assert.StartsWith($"too old resource version: {rv} (", evt["object"]!["message"]!.GetValue<string>());

        // Within the kept history the replay works: the last 3 changes are still there.
        var recent = long.Parse(h.Emulator.Resources.Store.CurrentRv.ToString()) - 2;
        using var ok = await h.Http.GetAsync($"{Services}?watch=true&resourceVersion={recent}&timeoutSeconds=1", HttpCompletionOption.ResponseHeadersRead);
        var replay = (await ok.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, replay.Length);
        Assert.All(replay, l => Assert.Equal("ADDED", JsonNode.Parse(l)!["type"]!.GetValue<string>()));
    }

    [Fact]
    public async Task A_list_is_consistent_with_its_resource_version_under_concurrent_writes()
    {
        await using var h = await EmulatorHarness.StartAsync();
        using var stop = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            var i = 0;
            while (!stop.IsCancellationRequested)
                await h.SendAsync(HttpMethod.Post, "/api/v1/namespaces/default/configmaps", $$$"""{"metadata":{"name":"cm-{{{i++}}}"}}""");
        });
        try
        {
            for (var round = 0; round < 20; round++)
            {
                var list = (await h.SendAsync(HttpMethod.Get, "/api/v1/namespaces/default/configmaps")).Body!;
                var listRv = long.Parse(list["metadata"]!["resourceVersion"]!.GetValue<string>());
                var items = list["items"]!.AsArray();
                Assert.All(items, i => Assert.True(long.Parse(i!["metadata"]!["resourceVersion"]!.GetValue<string>()) <= listRv));
                // Watching from the list RV yields exactly the objects created after the list: none is lost or repeated.
                using var response = await h.Http.GetAsync($"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={listRv}&timeoutSeconds=1",
                    HttpCompletionOption.ResponseHeadersRead);
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
                var first = JsonNode.Parse((await reader.ReadLineAsync())!)!;
                var name = first["object"]!["metadata"]!["name"]!.GetValue<string>();
                Assert.Equal("ADDED", first["type"]!.GetValue<string>());
                Assert.DoesNotContain(items, i => i!["metadata"]!["name"]!.GetValue<string>() == name);
                Assert.Equal(items.Count, int.Parse(name[3..]));
            }
        }
        finally
        {
            await stop.CancelAsync();
            await writer;
        }
    }

    [Fact]
    public async Task Status_subresource_rules_and_validation()
    {
        await using var h = await EmulatorHarness.StartAsync();
        Assert.Equal(201, (await h.SendAsync(HttpMethod.Post, Services, Lb("web", ",\"loadBalancerIP\":\"198.18.0.9\""))).Status);

        // /status writes keep the spec.
        var status = """{"spec":{"type":"ClusterIP"},"status":{"loadBalancer":{"ingress":[{"ip":"198.18.0.9","ipMode":"VIP","ports":[{"port":80,"protocol":"TCP"}]}]}}}""";
        var (code, afterStatus, _) = await h.SendAsync(HttpMethod.Patch, Services + "/web/status", status, "application/merge-patch+json");
        Assert.Equal(200, code);
        Assert.Equal("LoadBalancer", afterStatus!["spec"]!["type"]!.GetValue<string>());
        Assert.Equal("198.18.0.9", afterStatus["status"]!["loadBalancer"]!["ingress"]![0]!["ip"]!.GetValue<string>());

        // Main-resource writes keep the stored status.
        var main = """{"metadata":{"annotations":{"k":"v"}},"status":{"loadBalancer":{}}}""";
        var (_, afterMain, _) = await h.SendAsync(HttpMethod.Patch, Services + "/web", main, "application/merge-patch+json");
        Assert.Equal("198.18.0.9", afterMain!["status"]!["loadBalancer"]!["ingress"]![0]!["ip"]!.GetValue<string>());

        // Leaving type LoadBalancer clears status.loadBalancer and the node ports.
        var toClusterIp = """[{"op":"replace","path":"/spec/type","value":"ClusterIP"},{"op":"remove","path":"/spec/loadBalancerIP"}]""";
        var (jsonPatchCode, cluster, _) = await h.SendAsync(HttpMethod.Patch, Services + "/web", toClusterIp, "application/json-patch+json");
        Assert.Equal(200, jsonPatchCode);
        Assert.Equal("{}", cluster!["status"]!["loadBalancer"]!.ToJsonString());
        Assert.Null(cluster["spec"]!["ports"]![0]!["nodePort"]);
        Assert.Null(cluster["spec"]!["externalTrafficPolicy"]);

        // Validation: 422 with causes.
        var (bad, badBody, _) = await h.SendAsync(HttpMethod.Post, Services, Lb("bad-ip", ",\"loadBalancerIP\":\"not-an-ip\""));
        Assert.Equal(422, bad);
        Assert.Equal("Invalid", badBody!["reason"]!.GetValue<string>());
        Assert.Equal("spec.loadBalancerIP", badBody["details"]!["causes"]![0]!["field"]!.GetValue<string>());
        Assert.StartsWith("Service \"bad-ip\" is invalid: spec.loadBalancerIP: Invalid value: \"not-an-ip\"", badBody["message"]!.GetValue<string>());
        Assert.Equal(201, (await h.SendAsync(HttpMethod.Post, Services, Lb("dhcp", ",\"loadBalancerIP\":\"0.0.0.0\""))).Status);
        var (badPort, badPortBody, _) = await h.SendAsync(HttpMethod.Post, Services,
            """{"metadata":{"name":"ports"},"spec":{"type":"LoadBalancer","ports":[{"port":0},{"port":80,"protocol":"ICMP"}]}}""");
        Assert.Equal(422, badPort);
        var fields = badPortBody!["details"]!["causes"]!.AsArray().Select(c => c!["field"]!.GetValue<string>()).ToList();
        Assert.Contains("spec.ports[0].port", fields);
        Assert.Contains("spec.ports[0].name", fields);
        Assert.Contains("spec.ports[1].protocol", fields);
        var (badStatus, _, _) = await h.SendAsync(HttpMethod.Patch, Services + "/dhcp/status",
            """{"status":{"loadBalancer":{"ingress":[{"ip":"300.1.1.1"}]}}}""", "application/merge-patch+json");
        Assert.Equal(422, badStatus);

        // Bad bodies: 400 and 415.
        Assert.Equal(400, (await h.SendAsync(HttpMethod.Post, Services, "{not json")).Status);
        var (unsupported, unsupportedBody, _) = await h.SendAsync(HttpMethod.Patch, Services + "/dhcp", "{}", "text/plain");
        Assert.Equal(415, unsupported);
        Assert.Equal("UnsupportedMediaType", unsupportedBody!["reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task Finalizers_hold_deletion_until_removed_and_watchers_see_the_transition()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var cm = "/api/v1/namespaces/default/configmaps";
        Assert.Equal(201, (await h.SendAsync(HttpMethod.Post, cm, """{"metadata":{"name":"held","finalizers":["hybrid.io/test"]}}""")).Status);
        var (code, pending, _) = await h.SendAsync(HttpMethod.Delete, cm + "/held");
        Assert.Equal(200, code);
        Assert.NotNull(pending!["metadata"]!["deletionTimestamp"]);
        Assert.Equal(200, (await h.SendAsync(HttpMethod.Get, cm + "/held")).Status);
        var rv = pending["metadata"]!["resourceVersion"]!.GetValue<string>();
        var (patched, _, _) = await h.SendAsync(HttpMethod.Patch, cm + "/held", """{"metadata":{"finalizers":null}}""", "application/merge-patch+json");
        Assert.Equal(200, patched);
        Assert.Equal(404, (await h.SendAsync(HttpMethod.Get, cm + "/held")).Status);
        using var watch = await h.Http.GetAsync($"{cm}?watch=true&resourceVersion={rv}&timeoutSeconds=1", HttpCompletionOption.ResponseHeadersRead);
        var events = (await watch.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("DELETED", JsonNode.Parse(Assert.Single(events))!["type"]!.GetValue<string>());
    }

    [Fact]
    public async Task Watch_selectors_report_objects_entering_and_leaving_as_ADDED_and_DELETED_and_bookmarks_arrive()
    {
        await using var h = await EmulatorHarness.StartAsync(_ => new Sandbox.Api.ApiEmulatorOptions { BookmarkInterval = TimeSpan.FromMilliseconds(200) });
        Assert.Equal(201, (await h.SendAsync(HttpMethod.Post, Services, Lb("moving"))).Status);
        using var response = await h.Http.GetAsync($"{Services}?watch=true&fieldSelector=spec.type%3DLoadBalancer&labelSelector=tier%3Dfront&allowWatchBookmarks=true",
            HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        async Task<JsonNode> Next(bool skipBookmarks = true)
        {
            while (true)
            {
                var line = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10));
                var node = JsonNode.Parse(line!)!;
                if (!skipBookmarks || node["type"]!.GetValue<string>() != "BOOKMARK") return node;
            }
        }
        var bookmark = await Next(skipBookmarks: false);
        Assert.Equal("BOOKMARK", bookmark["type"]!.GetValue<string>());
        Assert.Equal("Service", bookmark["object"]!["kind"]!.GetValue<string>());

        await h.SendAsync(HttpMethod.Patch, Services + "/moving", """{"metadata":{"labels":{"tier":"front"}}}""", "application/merge-patch+json");
        var added = await Next();
        Assert.Equal("ADDED", added["type"]!.GetValue<string>());
        await h.SendAsync(HttpMethod.Patch, Services + "/moving", """{"spec":{"type":"NodePort","allocateLoadBalancerNodePorts":null}}""", "application/merge-patch+json");
        var left = await Next();
        Assert.Equal("DELETED", left["type"]!.GetValue<string>());
        Assert.Equal("NodePort", left["object"]!["spec"]!["type"]!.GetValue<string>());
        Assert.Equal(201, (await h.SendAsync(HttpMethod.Post, Services, Lb("other"))).Status);
        await h.SendAsync(HttpMethod.Patch, Services + "/other", """{"metadata":{"labels":{"tier":"front"}}}""", "application/merge-patch+json");
        var other = await Next();
        Assert.Equal("ADDED", other["type"]!.GetValue<string>());
        Assert.Equal("other", other["object"]!["metadata"]!["name"]!.GetValue<string>());

        // metadata.name field selectors on lists (kubectl delete --wait relies on them).
        var byName = await h.SendAsync(HttpMethod.Get, Services + "?fieldSelector=metadata.name%3Dother");
        Assert.Equal("other", Assert.Single(byName.Body!["items"]!.AsArray())!["metadata"]!["name"]!.GetValue<string>());
    }

    [Fact]
    public async Task Server_side_apply_creates_then_merges_and_strategic_merge_handles_directives()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var apply = """{"apiVersion":"v1","kind":"Service","metadata":{"name":"ssa"},"spec":{"type":"LoadBalancer","ports":[{"name":"http","port":80}]}}""";
        var (created, _, _) = await h.SendAsync(HttpMethod.Patch, Services + "/ssa?fieldManager=hybrid", apply, "application/apply-patch+yaml");
        Assert.Equal(201, created);
        var (updated, body, _) = await h.SendAsync(HttpMethod.Patch, Services + "/ssa?fieldManager=hybrid",
            """{"apiVersion":"v1","kind":"Service","metadata":{"name":"ssa","annotations":{"a":"b"}}}""", "application/apply-patch+yaml");
        Assert.Equal(200, updated);
        Assert.Equal("b", body!["metadata"]!["annotations"]!["a"]!.GetValue<string>());
        Assert.Equal(80, body["spec"]!["ports"]![0]!["port"]!.GetValue<int>());
        Assert.Equal(422, (await h.SendAsync(HttpMethod.Patch, Services + "/ssa", apply, "application/apply-patch+yaml")).Status);

        // Strategic merge: ports merge by port, $patch: delete removes one.
        var smp = """{"spec":{"ports":[{"name":"https","port":443},{"port":80,"$patch":"delete"}]}}""";
        var (_, merged, _) = await h.SendAsync(HttpMethod.Patch, Services + "/ssa", smp, "application/strategic-merge-patch+json");
        var ports = merged!["spec"]!["ports"]!.AsArray();
        Assert.Equal(443, Assert.Single(ports)!["port"]!.GetValue<int>());
        Assert.Equal(443, ports[0]!["targetPort"]!.GetValue<int>());
    }
}
