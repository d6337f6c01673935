using System.Diagnostics;
using System.Text.Json.Nodes;
using k8s;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>
/// API trouble never takes a VIP off the LAN while the LAN is healthy: the LAN fence keeps the holder's right
/// to answer, and the API is needed only to change who holds a group.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class FaultTests(ITestOutputHelper output)
{
    private const string Vip = "198.18.0.220";

    [Fact]
    public async Task Dropped_watches_compacted_history_and_failing_status_writes_withdraw_nothing_and_status_catches_up()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http1", Vip);
        await lab.WaitForHoldersAsync(Vip, [holder]);
        await using var watch = await ResponderWatch.StartAsync(lab, Vip);
        // A first relist right after start runs code the JIT has not compiled yet, and the stall may arm an API
        // fence (two registration writes): warm that path up, then count from a steady state.
        lab.Lab.InjectFault(new JsonObject { ["kind"] = "dropWatches" });
        IReadOnlyList<string> registrations = [];
        await Eventually.WaitAsync(async () =>
        {
            await lab.WaitForSteadyStateAsync();
            var before = await lab.RegistrationVersionsAsync();
            await Task.Delay(TimeSpan.FromSeconds(2)); // a window in which nobody writes: settled
            registrations = await lab.RegistrationVersionsAsync();
            return before.SequenceEqual(registrations);
        }, TimeSpan.FromSeconds(30), "no registration written for 2 s after the warm-up relist");

        lab.Lab.InjectFault(new JsonObject { ["kind"] = "dropWatches" });
        lab.Lab.InjectFault(new JsonObject { ["kind"] = "compact" });
        lab.Lab.InjectFault(new JsonObject { ["kind"] = "fail", ["status"] = 500, ["resource"] = "services/status" });
        lab.Lab.InjectFault(new JsonObject { ["kind"] = "fail", ["status"] = 500, ["resource"] = "events" });

        // During the faults a new service still gets its VIP on the LAN (status cannot be written yet).
        await lab.ApplyAsync(Manifests.Service("late", "198.18.0.221"));
        var lateHolder = await Eventually.WaitAsync(async () => (await lab.HoldersAsync("198.18.0.221")).SingleOrDefault(),
            TimeSpan.FromSeconds(15), "198.18.0.221 to be answered by one node");
        Assert.Equal([lateHolder], await lab.ArpRespondersAsync("198.18.0.221"));
        Assert.Empty((await lab.ServiceAsync("late")).Status?.LoadBalancer?.Ingress ?? []);
        // Status writes keep failing for a while: the agents retry them and change nothing on the LAN.
        await Eventually.WaitAsync(() => lab.Lab.Api.Faults.Rules.Sum(r => r.Hits) >= 10, TimeSpan.FromSeconds(30),
            "the failing status and Event writes to have been tried 10 times");
        lab.Lab.ClearFaults();

        // After the faults, status and Events catch up; no node wrote its registration (zero writes in steady state).
        Assert.Equal(lateHolder, await lab.WaitForIngressAsync("late", "198.18.0.221", TimeSpan.FromSeconds(30)));
        await lab.WaitForEventAsync("late", "Announced", TimeSpan.FromSeconds(30));
        Assert.Equal(holder, await lab.WaitForIngressAsync("http1", Vip));
        var probes = await watch.StopAsync();
        Assert.Equal(registrations, await lab.RegistrationVersionsAsync());
        Assert.Empty(ResponderWatch.Unanswered(probes));
        Assert.Equal([holder], ResponderWatch.Succession(probes));
    }

    [Fact]
    public async Task Sixty_seconds_of_503_on_every_request_leave_the_VIP_answered_by_its_holder_throughout()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http1", Vip);
        await lab.WaitForHoldersAsync(Vip, [holder]);
        await using var watch = await ResponderWatch.StartAsync(lab, Vip);

        var start = Stopwatch.GetTimestamp();
        lab.Lab.InjectFault(new JsonObject { ["kind"] = "fail", ["status"] = 503 });
        // Open watches end too, as when an API server goes down: every agent keeps asking and is refused.
        lab.Lab.InjectFault(new JsonObject { ["kind"] = "dropWatches" });
        await Task.Delay(TimeSpan.FromSeconds(60)); // the length of the outage under test
        var rejected = lab.Lab.Api.Faults.Rules.Sum(r => r.Hits);
        lab.Lab.ClearFaults();
        var probes = await watch.StopAsync();

        lab.Report($"60 s of 503: {probes.Count} ARP probes, {ResponderWatch.Unanswered(probes).Count} unanswered, " +
                   $"longest silence {ResponderWatch.LongestSilenceMs(probes):F0} ms; {rejected} API requests refused");
        Assert.True(rejected > 0, "the agents never asked the API anything during the outage: the fault was not exercised");
        Assert.Empty(ResponderWatch.DoubleAnswered(probes));
        Assert.True(ResponderWatch.Unanswered(probes, start).Count == 0, ResponderWatch.Describe(probes, start));
        Assert.Equal([holder], ResponderWatch.Succession(probes));

        // The API is back: the cluster moves on as usual.
        await lab.ApplyAsync(Manifests.Service("after", "198.18.0.222"));
        await lab.WaitForIngressAsync("after", "198.18.0.222", TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task Two_seconds_of_delay_on_every_request_leave_the_VIP_answered_and_a_new_Service_still_gets_its_VIP()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http1", Vip);
        await lab.WaitForHoldersAsync(Vip, [holder]);
        await using var watch = await ResponderWatch.StartAsync(lab, Vip);

        var start = Stopwatch.GetTimestamp();
        lab.Lab.InjectFault(new JsonObject { ["kind"] = "delay", ["delayMs"] = 2000 });
        await lab.ApplyAsync(Manifests.Service("slow", "198.18.0.223"));
        var slowHolder = await Eventually.WaitAsync(async () => (await lab.HoldersAsync("198.18.0.223")).SingleOrDefault(),
            TimeSpan.FromSeconds(30), "198.18.0.223 to be answered by one node while every request takes 2 s");
        var claimedMs = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        await Eventually.WaitAsync(() => Stopwatch.GetElapsedTime(start) > TimeSpan.FromSeconds(20), TimeSpan.FromSeconds(60),
            "20 s of delayed requests");
        lab.Lab.ClearFaults();
        var probes = await watch.StopAsync();

        lab.Report($"2 s delay on every request for {Stopwatch.GetElapsedTime(start).TotalSeconds:F0} s: {probes.Count} ARP probes, " +
                   $"{ResponderWatch.Unanswered(probes).Count} unanswered; a new Service was answered {claimedMs:F0} ms after it was applied");
        Assert.Empty(ResponderWatch.DoubleAnswered(probes));
        Assert.True(ResponderWatch.Unanswered(probes, start).Count == 0, ResponderWatch.Describe(probes, start));
        Assert.Equal([holder], ResponderWatch.Succession(probes));
        Assert.Equal(slowHolder, await lab.WaitForIngressAsync("slow", "198.18.0.223", TimeSpan.FromSeconds(30)));
    }

    [Fact]
    public async Task A_leader_cut_off_from_the_API_keeps_leading_while_the_LAN_vouches_for_it_and_catches_up_when_it_is_back()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http1", Vip);
        await lab.WaitForHoldersAsync(Vip, [holder]);
        await using var watch = await ResponderWatch.StartAsync(lab, Vip);

        var start = Stopwatch.GetTimestamp();
        lab.Lab.Partition(holder);
        // svc_election=false: one leader holds every VIP. Cut off, it cannot see a new Service, and nobody
        // else takes the leadership from it while the LAN vouches for it.
        await lab.ApplyAsync(Manifests.Service("later", "198.18.0.224"));
        await Eventually.WaitAsync(() => Stopwatch.GetElapsedTime(start) > TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30),
            "10 s of partition");
        Assert.Empty(await lab.HoldersAsync("198.18.0.224"));
        lab.Lab.ClearFaults();
        var probes = await watch.StopAsync();

        lab.Report($"{holder} cut off from the API for 10 s: {probes.Count} ARP probes, {ResponderWatch.Unanswered(probes).Count} unanswered");
        Assert.Empty(ResponderWatch.DoubleAnswered(probes));
        Assert.True(ResponderWatch.Unanswered(probes, start).Count == 0, ResponderWatch.Describe(probes, start));
        Assert.Equal([holder], ResponderWatch.Succession(probes));
        Assert.Equal(holder, await lab.WaitForIngressAsync("later", "198.18.0.224", TimeSpan.FromSeconds(30)));
        Assert.Equal([holder], await lab.HoldersAsync("198.18.0.224"));
    }
}
