using System.Diagnostics;
using System.Text.Json.Nodes;
using k8s;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>API trouble must never withdraw a healthy VIP by itself; only the fencing rule may.</summary>
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
        await using var timeline = await AddressTimeline.StartAsync(lab.Lab);
        var heartbeatBefore = (await lab.Client.CoordinationV1.ReadNamespacedLeaseAsync($"hybrid-node-{holder}", "kube-system")).Metadata.ResourceVersion;

        lab.Lab.InjectFault(new JsonObject { ["kind"] = "dropWatches" });
        lab.Lab.InjectFault(new JsonObject { ["kind"] = "compact" });
        lab.Lab.InjectFault(new JsonObject { ["kind"] = "fail", ["status"] = 500, ["resource"] = "services/status", ["durationSeconds"] = 30 });
        lab.Lab.InjectFault(new JsonObject { ["kind"] = "fail", ["status"] = 500, ["resource"] = "events", ["durationSeconds"] = 30 });
        var faultsEnd = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 30;

        // During the outage a new service still gets its VIP on the LAN (status cannot be written yet).
        await lab.ApplyAsync(Manifests.Service("late", "198.18.0.221"));
        await lab.WaitForHoldersAsync("198.18.0.221", [holder]);
        Assert.Equal([holder], await lab.ArpRespondersAsync("198.18.0.221"));
        Assert.Empty((await lab.ServiceAsync("late")).Status?.LoadBalancer?.Ingress ?? []);

        // The heartbeat keeps renewing (its resource version moves) and the VIP stays put all along.
        await Eventually.WaitAsync(async () =>
            (await lab.Client.CoordinationV1.ReadNamespacedLeaseAsync($"hybrid-node-{holder}", "kube-system")).Metadata.ResourceVersion != heartbeatBefore,
            TimeSpan.FromSeconds(5), "the holder's heartbeat to renew during the outage");
        await Eventually.WaitAsync(() => Stopwatch.GetTimestamp() > faultsEnd, TimeSpan.FromSeconds(40), "the 30 s of failing writes to end");
        Assert.DoesNotContain(timeline.Changes(Vip), c => !c.Added);
        Assert.Equal([holder], await lab.HoldersAsync(Vip));

        // After the outage, status and Events catch up.
        Assert.Equal(holder, await lab.WaitForIngressAsync("late", "198.18.0.221", TimeSpan.FromSeconds(30)));
        await lab.WaitForEventAsync("late", "Announced", TimeSpan.FromSeconds(30));
        Assert.Equal(holder, await lab.WaitForIngressAsync("http1", Vip));
    }

    [Fact]
    public async Task A_holder_cut_off_from_the_API_withdraws_within_the_renew_deadline_before_another_node_takes_over()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http1", Vip);
        await lab.WaitForHoldersAsync(Vip, [holder]);
        await using var timeline = await AddressTimeline.StartAsync(lab.Lab);
        await using var capture = await lab.CaptureAsync();

        // Probe ARP continuously from the client while the VIP moves: no probe may ever get two answers.
        using var probing = new CancellationTokenSource();
        var probes = Task.Run(async () =>
        {
            var results = new List<IReadOnlyList<string>>();
            while (!probing.IsCancellationRequested)
                results.Add(await lab.ArpRespondersAsync(Vip, TimeSpan.FromMilliseconds(60)));
            return results;
        });

        var cutAt = Stopwatch.GetTimestamp();
        lab.Lab.Partition(holder);
        var successor = await Eventually.WaitAsync(async () =>
            (await lab.HoldersAsync(Vip)).FirstOrDefault(n => n != holder), TimeSpan.FromSeconds(10), "another node to take the VIP");
        await lab.WaitForHoldersAsync(Vip, [successor]);
        await probing.CancelAsync();
        var answers = await probes;

        var withdrawn = await timeline.FirstAsync(Vip, c => c.Node == holder && !c.Added, $"the withdrawal on {holder}");
        var added = await timeline.FirstAsync(Vip, c => c.Node == successor && c.Added, $"the addition on {successor}");
        var withdrawMs = Stopwatch.GetElapsedTime(cutAt, withdrawn.Ticks).TotalMilliseconds;
        var takeoverMs = Stopwatch.GetElapsedTime(cutAt, added.Ticks).TotalMilliseconds;
        lab.Report($"partition: {holder} withdrew {Vip} {withdrawMs:F0} ms after losing the API, {successor} added it at {takeoverMs:F0} ms; " +
                   $"{answers.Count} ARP probes, max responders per probe {answers.Max(a => a.Count)}");

        Assert.True(withdrawn.Ticks < added.Ticks, "the partitioned holder must withdraw before another node adds the VIP");
        Assert.True(withdrawMs <= 1750 + 300, $"withdrawal took {withdrawMs:F0} ms, more than the renew deadline (1.75 s) plus scheduling");
        Assert.Equal(TimeSpan.Zero, timeline.LongestOverlap(Vip, [holder]));
        Assert.All(answers, a => Assert.True(a.Count <= 1, $"two nodes answered ARP at once: {string.Join(", ", a)}"));
        Assert.Equal([successor], await lab.ArpRespondersAsync(Vip));
        Assert.DoesNotContain(capture.Snapshot(), p => p.IsGratuitous && p.SenderIp.ToString() == Vip
            && p.SenderMac.Equals(lab.MacOf(holder)) && p.MonotonicTicks > withdrawn.Ticks);
    }
}
