using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Hybrid.Sandbox.Api;
using Xunit;

namespace Hybrid.Integration.Emulator;

/// <summary>The /_lab test hooks: request accounting, injected failures and delays, dropped watches,
/// compaction, and partitions of a Unix-socket client.</summary>
public sealed class LabHooksTests
{
    private const string Leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases";

    private static HttpClient UnixClient(string socketPath) => new(new SocketsHttpHandler
    {
        ConnectCallback = async (_, ct) =>
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    })
    { BaseAddress = new Uri("http://node-a.local"), Timeout = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task Stats_count_requests_per_verb_resource_and_client_and_reset()
    {
        await using var h = await EmulatorHarness.StartAsync();
        Assert.Equal(201, (await h.SendAsync(HttpMethod.Post, Leases, """{"metadata":{"name":"l"},"spec":{"holderIdentity":"a"}}""")).Status);
        for (var i = 0; i < 3; i++) await h.SendAsync(HttpMethod.Get, Leases + "/l");
        await h.SendAsync(HttpMethod.Get, Leases);
        await h.SendAsync(HttpMethod.Post, "/api/v1/namespaces/default/services", """{"metadata":{"name":"s"},"spec":{"ports":[{"port":80}]}}""");
        await h.SendAsync(HttpMethod.Patch, "/api/v1/namespaces/default/services/s/status", """{"status":{}}""", "application/merge-patch+json");
        await h.SendAsync(HttpMethod.Get, "/version");

        var stats = (await h.SendAsync(HttpMethod.Get, "/_lab/stats")).Body!;
        Assert.Equal(1, stats["requests"]!["create"]!["leases"]!.GetValue<long>());
        Assert.Equal(3, stats["requests"]!["get"]!["leases"]!.GetValue<long>());
        Assert.Equal(1, stats["requests"]!["list"]!["leases"]!.GetValue<long>());
        Assert.Equal(1, stats["requests"]!["patch"]!["services/status"]!.GetValue<long>());
        Assert.Equal(7, stats["total"]!.GetValue<long>());
        Assert.Equal(3, stats["clients"]!["127.0.0.1"]!["get"]!["leases"]!.GetValue<long>());
        Assert.Equal(3, h.Emulator.Stats.Get("get", "leases"));

        Assert.Equal(200, (await h.SendAsync(HttpMethod.Delete, "/_lab/stats")).Status);
        stats = (await h.SendAsync(HttpMethod.Get, "/_lab/stats")).Body!;
        Assert.Equal(0, stats["total"]!.GetValue<long>());
        Assert.Empty(stats["requests"]!.AsObject());
    }

    [Fact]
    public async Task Faults_fail_the_next_N_matching_requests_with_proper_Status_bodies()
    {
        await using var h = await EmulatorHarness.StartAsync();
        await h.SendAsync(HttpMethod.Post, Leases, """{"metadata":{"name":"l"}}""");
        var added = await h.SendAsync(HttpMethod.Post, "/_lab/faults", """{"path":"/leases/l","verb":"get","status":429,"count":2,"retryAfterSeconds":3}""");
        Assert.Equal(200, added.Status);
        Assert.Equal("fault-1", added.Body!["faults"]![0]!["id"]!.GetValue<string>());

        for (var i = 0; i < 2; i++)
        {
            var (code, body, response) = await h.SendAsync(HttpMethod.Get, Leases + "/l");
            Assert.Equal(429, code);
            Assert.Equal("TooManyRequests", body!["reason"]!.GetValue<string>());
            Assert.Equal(3, body["details"]!["retryAfterSeconds"]!.GetValue<int>());
            Assert.Equal("3", response.Headers.RetryAfter!.ToString());
        }
        Assert.Equal(200, (await h.SendAsync(HttpMethod.Get, Leases + "/l")).Status);
        Assert.Equal(200, (await h.SendAsync(HttpMethod.Put, Leases + "/l", """{"metadata":{"name":"l"},"spec":{"holderIdentity":"x"}}""")).Status);

        // A duration fault on service status writes only.
        await h.SendAsync(HttpMethod.Post, "/api/v1/namespaces/default/services", """{"metadata":{"name":"s"},"spec":{"ports":[{"port":80}]}}""");
        await h.SendAsync(HttpMethod.Post, "/_lab/faults", """{"resource":"services/status","status":500,"durationMs":400}""");
        var (failed, failedBody, _) = await h.SendAsync(HttpMethod.Patch, "/api/v1/namespaces/default/services/s/status", """{"status":{}}""", "application/merge-patch+json");
        Assert.Equal(500, failed);
        Assert.Equal("InternalError", failedBody!["reason"]!.GetValue<string>());
        Assert.Equal(200, (await h.SendAsync(HttpMethod.Get, "/api/v1/namespaces/default/services/s")).Status);
        await Eventually.WaitAsync(async () => (await h.SendAsync(HttpMethod.Patch, "/api/v1/namespaces/default/services/s/status", """{"status":{}}""",
            "application/merge-patch+json")).Status == 200, TimeSpan.FromSeconds(5), "the 400 ms fault to expire");

        // 503 by regex, then cleared.
        await h.SendAsync(HttpMethod.Post, "/_lab/faults", """{"pathRegex":"^/api/v1/namespaces/[^/]+/services$","status":503}""");
        var (unavailable, unavailableBody, _) = await h.SendAsync(HttpMethod.Get, "/api/v1/namespaces/default/services");
        Assert.Equal(503, unavailable);
        Assert.Equal("ServiceUnavailable", unavailableBody!["reason"]!.GetValue<string>());
        var listed = (await h.SendAsync(HttpMethod.Get, "/_lab/faults")).Body!;
        Assert.Equal(503, Assert.Single(listed["faults"]!.AsArray())!["status"]!.GetValue<int>());
        Assert.Equal(200, (await h.SendAsync(HttpMethod.Delete, "/_lab/faults")).Status);
        Assert.Equal(200, (await h.SendAsync(HttpMethod.Get, "/api/v1/namespaces/default/services")).Status);
        Assert.Equal(409, (await h.SendAsync(HttpMethod.Post, "/_lab/faults", """{"status":409,"verb":"PUT","count":1}"""))
            .Status == 200 ? (await h.SendAsync(HttpMethod.Put, Leases + "/l", """{"metadata":{"name":"l"}}""")).Status : -1);
    }

    [Fact]
    public async Task Delay_dropWatches_and_compact_faults()
    {
        await using var h = await EmulatorHarness.StartAsync();
        await h.SendAsync(HttpMethod.Post, "/_lab/faults", """{"kind":"delay","delayMs":300,"path":"/configmaps","count":1}""");
        var sw = Stopwatch.StartNew();
        Assert.Equal(200, (await h.SendAsync(HttpMethod.Get, "/api/v1/namespaces/default/configmaps")).Status);
        Assert.True(sw.ElapsedMilliseconds >= 290, $"delayed request took {sw.ElapsedMilliseconds} ms");

        var list = await h.SendAsync(HttpMethod.Get, "/api/v1/namespaces/default/configmaps");
        var rv = list.Body!["metadata"]!["resourceVersion"]!.GetValue<string>();
        using var response = await h.Http.GetAsync($"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}", HttpCompletionOption.ResponseHeadersRead);
        var body = response.Content.ReadAsStringAsync();
        await Eventually.WaitAsync(async () => (await h.SendAsync(HttpMethod.Get, "/_lab/watches")).Body!["open"]!.GetValue<int>() == 1, TimeSpan.FromSeconds(5), "the watch to open");
        var dropped = await h.SendAsync(HttpMethod.Post, "/_lab/faults", """{"kind":"dropWatches","resource":"configmaps"}""");
        Assert.Equal(1, dropped.Body!["faults"]![0]!["closed"]!.GetValue<int>());
        Assert.Equal("", await body.WaitAsync(TimeSpan.FromSeconds(5)));

        await h.SendAsync(HttpMethod.Post, "/api/v1/namespaces/default/configmaps", """{"metadata":{"name":"c"}}""");
        var compacted = await h.SendAsync(HttpMethod.Post, "/_lab/faults", """{"kind":"compact"}""");
        Assert.NotNull(compacted.Body!["faults"]![0]!["resourceVersion"]);
        var expired = await h.Http.GetStringAsync($"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}");
        Assert.Contains("\"code\":410", expired);
    }

    [Fact]
    public async Task A_partitioned_unix_client_loses_its_watch_and_requests_while_tcp_clients_work()
    {
        var dir = EmulatorHarness.NewDirectory();
        var socket = Path.Combine(dir, "node-a.sock");
        try
        {
            await using var h = await EmulatorHarness.StartAsync(_ => new ApiEmulatorOptions { UnixListeners = [new UnixListener("node-a", socket)] });
            using var nodeA = UnixClient(socket);
            Assert.Equal(HttpStatusCode.OK, (await nodeA.GetAsync("/api/v1/namespaces/default/services")).StatusCode);
            var stats = (await h.SendAsync(HttpMethod.Get, "/_lab/stats")).Body!;
            Assert.Equal(1, stats["clients"]!["node-a"]!["list"]!["services"]!.GetValue<long>());

            using var watch = await nodeA.GetAsync("/api/v1/namespaces/default/services?watch=true", HttpCompletionOption.ResponseHeadersRead);
            var stream = await watch.Content.ReadAsStreamAsync();
            var reader = new StreamReader(stream);
            Assert.Contains("\"ADDED\"", await reader.ReadLineAsync()); // the kubernetes service

            var partition = await h.SendAsync(HttpMethod.Post, "/_lab/faults", """{"kind":"partition","client":"node-a","durationSeconds":30}""");
            Assert.Equal(200, partition.Status);
            Assert.Equal("partition:node-a", partition.Body!["faults"]![0]!["id"]!.GetValue<string>());

            // The open watch is cut at once: reading ends or fails.
            var cut = await Task.Run(async () =>
            {
                try { return await reader.ReadLineAsync() is null; }
                catch (IOException) { return true; }
                catch (HttpRequestException) { return true; }
            }).WaitAsync(TimeSpan.FromSeconds(5));
            Assert.True(cut);

            // New requests from the partitioned client fail at the connection; TCP clients are unaffected.
            await Assert.ThrowsAnyAsync<HttpRequestException>(() => nodeA.GetAsync("/api/v1/namespaces/default/services"));
            Assert.Equal(200, (await h.SendAsync(HttpMethod.Get, "/api/v1/namespaces/default/services")).Status);
            Assert.Single((await h.SendAsync(HttpMethod.Get, "/_lab/faults")).Body!["partitions"]!.AsArray());

            // Clearing the faults heals the partition.
            Assert.Equal(200, (await h.SendAsync(HttpMethod.Delete, "/_lab/faults")).Status);
            using var healed = UnixClient(socket);
            Assert.Equal(HttpStatusCode.OK, (await healed.GetAsync("/api/v1/namespaces/default/services")).StatusCode);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
