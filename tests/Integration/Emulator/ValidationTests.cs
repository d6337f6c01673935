using System.Text.Json.Nodes;
using Xunit;

namespace Hybrid.Integration.Emulator;

/// <summary>
/// The emulator refuses what kube-apiserver refuses, with its status codes and messages: ObjectMeta (label
/// values, annotation size, names), Events (the 1 kB note and the 128-byte fields), request options read as
/// the server reads them (booleans, integers, dryRun, fieldValidation), and fields a kind does not have.
/// </summary>
public sealed class ValidationTests
{
    private const string ConfigMaps = "/api/v1/namespaces/default/configmaps";
    private const string EventsV1 = "/apis/events.k8s.io/v1/namespaces/default/events";

    private static string ConfigMap(string name, JsonObject? labels = null, JsonObject? annotations = null) => new JsonObject
    {
        ["apiVersion"] = "v1",
        ["kind"] = "ConfigMap",
        ["metadata"] = new JsonObject { ["name"] = name, ["labels"] = labels, ["annotations"] = annotations },
    }.ToJsonString();

    private static string Message(JsonNode? body) => body!["message"]!.GetValue<string>();

    [Fact]
    public async Task Label_values_longer_than_63_characters_are_refused_with_the_servers_message()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var value = new string('v', 64);
        var (code, body, _) = await h.SendAsync(HttpMethod.Post, ConfigMaps, ConfigMap("c", new JsonObject { ["tier"] = value }));
        Assert.Equal(422, code);
        Assert.Equal($"ConfigMap \"c\" is invalid: metadata.labels: Invalid value: \"{value}\": must be no more than 63 characters", Message(body));
        Assert.Equal("FieldValueInvalid", body!["details"]!["causes"]![0]!["reason"]!.GetValue<string>());

        (code, body, _) = await h.SendAsync(HttpMethod.Post, ConfigMaps, ConfigMap("c", new JsonObject { ["tier"] = "a b" }));
        Assert.Equal(422, code);
        Assert.Contains("a valid label must be an empty string or consist of alphanumeric characters", Message(body));
        (code, _, _) = await h.SendAsync(HttpMethod.Post, ConfigMaps, ConfigMap("c", new JsonObject { ["tier"] = new string('v', 63), ["empty"] = "" }));
        Assert.Equal(201, code);

        // Updates are validated too, and a refused write changes nothing.
        var patch = "{\"metadata\":{\"labels\":{\"example.com/bad key\":\"x\"}}}";
        (code, body, _) = await h.SendAsync(HttpMethod.Patch, ConfigMaps + "/c", patch, "application/merge-patch+json");
        Assert.Equal(422, code);
        Assert.Contains("metadata.labels: Invalid value: \"example.com/bad key\": name part must consist of alphanumeric characters", Message(body));
        var stored = (await h.SendAsync(HttpMethod.Get, ConfigMaps + "/c")).Body!;
        Assert.Null(stored["metadata"]!["labels"]!["example.com/bad key"]);
    }

    [Fact]
    public async Task Annotations_may_total_256_kB_and_not_one_byte_more()
    {
        await using var h = await EmulatorHarness.StartAsync();
        const int limit = 256 * 1024;
        // Key "a" (1 byte) plus the value: exactly at the limit is fine.
        var (code, _, _) = await h.SendAsync(HttpMethod.Post, ConfigMaps, ConfigMap("at", annotations: new JsonObject { ["a"] = new string('x', limit - 1) }));
        Assert.Equal(201, code);
        var (over, body, _) = await h.SendAsync(HttpMethod.Post, ConfigMaps, ConfigMap("over", annotations: new JsonObject { ["a"] = new string('x', limit) }));
        Assert.Equal(422, over);
        Assert.Equal("ConfigMap \"over\" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes", Message(body));
        Assert.Equal("FieldValueTooLong", body!["details"]!["causes"]![0]!["reason"]!.GetValue<string>());
        // Multi-byte characters count in bytes, as Go's len() does: 87,382 '€' are 262,146 bytes.
        (over, _, _) = await h.SendAsync(HttpMethod.Post, ConfigMaps, ConfigMap("euro", annotations: new JsonObject { ["a"] = new string('€', 87_382) }));
        Assert.Equal(422, over);
    }

    [Fact]
    public async Task Names_get_every_message_the_server_gives()
    {
        await using var h = await EmulatorHarness.StartAsync();
        var name = new string('A', 254);
        var (code, body, _) = await h.SendAsync(HttpMethod.Post, ConfigMaps, ConfigMap(name));
        Assert.Equal(422, code);
        var causes = body!["details"]!["causes"]!.AsArray().Select(c => c!["message"]!.GetValue<string>()).ToList();
        Assert.Equal(2, causes.Count);
        Assert.EndsWith("must be no more than 253 characters", causes[0]);
        Assert.Contains("a lowercase RFC 1123 subdomain must consist of", causes[1]);
        // Group kinds are named with their group, as GroupKind.String() does.
        (code, body, _) = await h.SendAsync(HttpMethod.Post, "/apis/coordination.k8s.io/v1/namespaces/default/leases", """{"metadata":{"name":"Bad_Name"}}""");
        Assert.Equal(422, code);
        Assert.StartsWith("Lease.coordination.k8s.io \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\"", Message(body));
        // RBAC names are path segments: anything but '/', '%', '.' and '..'.
        (code, _, _) = await h.SendAsync(HttpMethod.Post, "/apis/rbac.authorization.k8s.io/v1/clusterroles", """{"metadata":{"name":"system:Kube Thing"},"rules":[]}""");
        Assert.Equal(201, code);
        (code, body, _) = await h.SendAsync(HttpMethod.Post, "/apis/rbac.authorization.k8s.io/v1/clusterroles", """{"metadata":{"name":".."},"rules":[]}""");
        Assert.Equal(422, code);
        Assert.EndsWith("metadata.name: Invalid value: \"..\": may not be '..'", Message(body));
    }

    private static JsonObject Event(string name, string note, string instance = "hybrid-node-1") => new()
    {
        ["apiVersion"] = "events.k8s.io/v1",
        ["kind"] = "Event",
        ["metadata"] = new JsonObject { ["name"] = name },
        ["eventTime"] = "2026-12-01T10:00:00.000000Z",
        ["reportingController"] = "hybrid.kube-vip.io/agent",
        ["reportingInstance"] = instance,
        ["action"] = "Announced",
        ["reason"] = "Announced",
        ["type"] = "Normal",
        ["note"] = note,
        ["regarding"] = new JsonObject { ["apiVersion"] = "v1", ["kind"] = "Service", ["namespace"] = "default", ["name"] = "web" },
    };

    [Fact]
    public async Task An_event_note_holds_1024_bytes_and_its_reporting_instance_128()
    {
        await using var h = await EmulatorHarness.StartAsync();
        Assert.Equal(201, (await h.SendAsync(HttpMethod.Post, EventsV1, Event("fits", new string('n', 1024)).ToJsonString())).Status);

        var (code, body, _) = await h.SendAsync(HttpMethod.Post, EventsV1, Event("long", new string('n', 1025)).ToJsonString());
        Assert.Equal(422, code);
        Assert.Equal("Event.events.k8s.io \"long\" is invalid: message: Invalid value: \"\": can have at most 1024 characters", Message(body));

        // 342 '€' are 342 characters but 1,026 bytes: refused, as Go's len() counts bytes.
        Assert.Equal(422, (await h.SendAsync(HttpMethod.Post, EventsV1, Event("euro", new string('€', 342)).ToJsonString())).Status);

        (code, body, _) = await h.SendAsync(HttpMethod.Post, EventsV1, Event("node", "ok", "hybrid.kube-vip.io/agent-" + new string('n', 110)).ToJsonString());
        Assert.Equal(422, code);
        Assert.Contains("reportingInstance: Invalid value: \"\": can have at most 128 characters", Message(body));

        var noAction = Event("no-action", "ok");
        noAction.Remove("action");
        noAction["type"] = "Info";
        (code, body, _) = await h.SendAsync(HttpMethod.Post, EventsV1, noAction.ToJsonString());
        Assert.Equal(422, code);
        Assert.Equal("Event.events.k8s.io \"no-action\" is invalid: [action: Required value, type: Invalid value: \"\": has invalid value: Info]", Message(body));

        // core/v1 Events without eventTime (old-style) have no such limits.
        var core = new JsonObject
        {
            ["metadata"] = new JsonObject { ["name"] = "old" },
            ["involvedObject"] = new JsonObject { ["kind"] = "Service", ["namespace"] = "default", ["name"] = "web" },
            ["reason"] = "Old",
            ["message"] = new string('m', 5000),
        };
        Assert.Equal(201, (await h.SendAsync(HttpMethod.Post, "/api/v1/namespaces/default/events", core.ToJsonString())).Status);
    }

    [Fact]
    public async Task Query_parameters_are_read_as_kube_apiserver_reads_them()
    {
        await using var h = await EmulatorHarness.StartAsync();
        Assert.Equal(201, (await h.SendAsync(HttpMethod.Post, ConfigMaps, ConfigMap("c"))).Status);

        // A boolean is false only when absent, "0" or "false" in any case; anything else is true.
        foreach (var value in new[] { "true", "1", "t", "yes", "" })
        {
            using var watch = await h.Http.GetAsync($"{ConfigMaps}?watch={value}&timeoutSeconds=1", HttpCompletionOption.ResponseHeadersRead);
            var first = (await watch.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(first.Length > 0 && JsonNode.Parse(first[0])!["type"]!.GetValue<string>() == "ADDED", $"watch={value} is a watch");
        }
        foreach (var value in new[] { "false", "FALSE", "False", "0" })
        {
            var (_, list, _) = await h.SendAsync(HttpMethod.Get, $"{ConfigMaps}?watch={value}");
            Assert.Equal("ConfigMapList", list!["kind"]!.GetValue<string>());
        }
        // ?watch on one object is a plain get (only the deprecated /watch/ paths watch one object).
        var (_, single, _) = await h.SendAsync(HttpMethod.Get, $"{ConfigMaps}/c?watch=true");
        Assert.Equal("ConfigMap", single!["kind"]!.GetValue<string>());

        var (code, body, _) = await h.SendAsync(HttpMethod.Get, $"{ConfigMaps}?limit=ten");
        Assert.Equal(400, code);
        Assert.Equal("strconv.ParseInt: parsing \"ten\": invalid syntax", Message(body));

        (code, body, _) = await h.SendAsync(HttpMethod.Post, $"{ConfigMaps}?dryRun=true", ConfigMap("d"));
        Assert.Equal(422, code);
        Assert.Equal("CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{\"true\"}: supported values: \"All\"", Message(body));
        Assert.Equal(404, (await h.SendAsync(HttpMethod.Get, ConfigMaps + "/d")).Status);

        (code, body, _) = await h.SendAsync(HttpMethod.Patch, $"{ConfigMaps}/c?fieldValidation=strict", "{}", "application/merge-patch+json");
        Assert.Equal(422, code);
        Assert.Equal("PatchOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"strict\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"", Message(body));
    }

    [Fact]
    public async Task Fields_a_kind_does_not_have_are_refused_when_strict_reported_when_warned_and_never_stored()
    {
        await using var h = await EmulatorHarness.StartAsync();
        const string svc = """{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","colour":"red"},"spec":{"portz":1,"ports":[{"port":80,"targt":8080}]}}""";
        var (code, body, _) = await h.SendAsync(HttpMethod.Post, "/api/v1/namespaces/default/services?fieldValidation=Strict", svc);
        Assert.Equal(400, code);
        Assert.Equal("Service in version \"v1\" cannot be handled as a Service: strict decoding error: unknown field \"metadata.colour\", unknown field \"spec.portz\", unknown field \"spec.ports[0].targt\"",
            Message(body));

        var (created, stored, response) = await h.SendAsync(HttpMethod.Post, "/api/v1/namespaces/default/services", svc);
        Assert.Equal(201, created);
        var warnings = response.Headers.GetValues("Warning").ToList();
        Assert.Contains("299 - \"unknown field \\\"spec.portz\\\"\"", warnings);
        Assert.Equal(3, warnings.Count);
        Assert.Null(stored!["spec"]!["portz"]);
        Assert.Null(stored["spec"]!["ports"]![0]!["targt"]);
        Assert.Null((await h.SendAsync(HttpMethod.Get, "/api/v1/namespaces/default/services/web")).Body!["metadata"]!["colour"]);

        // A patch is judged by its result.
        (code, body, _) = await h.SendAsync(HttpMethod.Patch, "/api/v1/namespaces/default/services/web?fieldValidation=Strict",
            """{"spec":{"selectr":{"app":"web"}}}""", "application/merge-patch+json");
        Assert.Equal(400, code);
        Assert.Contains("unknown field \"spec.selectr\"", Message(body));
        (code, _, response) = await h.SendAsync(HttpMethod.Patch, "/api/v1/namespaces/default/services/web?fieldValidation=Ignore",
            """{"spec":{"selectr":{"app":"web"}}}""", "application/merge-patch+json");
        Assert.Equal(200, code);
        Assert.False(response.Headers.Contains("Warning"));
    }

    [Fact]
    public async Task A_status_write_cannot_change_labels_or_annotations()
    {
        await using var h = await EmulatorHarness.StartAsync();
        const string svc = """{"metadata":{"name":"lb","labels":{"a":"1"}},"spec":{"type":"LoadBalancer","ports":[{"port":80}]}}""";
        Assert.Equal(201, (await h.SendAsync(HttpMethod.Post, "/api/v1/namespaces/default/services", svc)).Status);
        var (code, written, _) = await h.SendAsync(HttpMethod.Patch, "/api/v1/namespaces/default/services/lb/status",
            """{"metadata":{"labels":{"a":"2"},"annotations":{"kube-vip.io/vipHost":"node-1"}},"status":{"loadBalancer":{"ingress":[{"ip":"198.18.0.220"}]}}}""",
            "application/merge-patch+json");
        Assert.Equal(200, code);
        Assert.Equal("198.18.0.220", written!["status"]!["loadBalancer"]!["ingress"]![0]!["ip"]!.GetValue<string>());
        Assert.Equal("1", written["metadata"]!["labels"]!["a"]!.GetValue<string>());
        Assert.Null(written["metadata"]!["annotations"]);
    }
}
