using Hybrid.Sandbox.Lab;
using k8s;
using System.Diagnostics;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>Moving a VIP when its holder dies, stops, crashes or comes back.</summary>
[Collection(LabCollection.Name)]
public sealed class FailoverTests(ITestOutputHelper output)
{
    private const string Vip = "198.18.0.220";

    [Fact]
    public async Task Node_failure_moves_the_VIP_to_another_node_which_alone_answers_ARP()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http1", Vip);
        await lab.WaitForHoldersAsync(Vip, [holder]);
        await using var capture = await lab.CaptureAsync();

        var killedAt = Stopwatch.GetTimestamp();
        await lab.Agents.KillAsync(holder, restart: false);
        await lab.Lab.Network.SetLinkAsync(holder, up: false, CancellationToken.None);

        var garp = await capture.WaitForAsync(
            p => p.IsGratuitous && p.SenderIp.ToString() == Vip && !p.SenderMac.Equals(lab.MacOf(holder)),
            TimeSpan.FromSeconds(10), CancellationToken.None);
        var successor = lab.NodeOfMac(garp.SenderMac);
        lab.Report($"node failure: {holder} killed, first gratuitous ARP from {successor} after " +
                   $"{Stopwatch.GetElapsedTime(killedAt, garp.MonotonicTicks).TotalMilliseconds:F0} ms");

        Assert.NotEqual(holder, successor);
        Assert.Equal([successor], await lab.ArpRespondersAsync(Vip));
        Assert.Equal(successor, await lab.WaitForIngressAsync("http1", Vip));
        var tookOver = await lab.WaitForEventAsync("http1", "TookOver");
        Assert.Contains(holder, tookOver.Note);
    }

    [Fact]
    public async Task Graceful_stop_hands_over_at_once()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http1", Vip);
        await lab.WaitForHoldersAsync(Vip, [holder]);
        await using var capture = await lab.CaptureAsync();
        await using var timeline = await AddressTimeline.StartAsync(lab.Lab);

        var stoppedAt = Stopwatch.GetTimestamp();
        await lab.Agents.StopAsync(holder, graceful: true, CancellationToken.None);
        var garp = await capture.WaitForAsync(
            p => p.IsGratuitous && p.SenderIp.ToString() == Vip && !p.SenderMac.Equals(lab.MacOf(holder)),
            TimeSpan.FromSeconds(5), CancellationToken.None);
        var successor = lab.NodeOfMac(garp.SenderMac);
        lab.Report($"graceful hand-over: SIGTERM to {holder}, first gratuitous ARP from {successor} after " +
                   $"{Stopwatch.GetElapsedTime(stoppedAt, garp.MonotonicTicks).TotalMilliseconds:F0} ms");

        Assert.Equal(0, lab.Agents.LastExitCode(holder));
        await lab.WaitForHoldersAsync(Vip, [successor]);
        Assert.Equal([successor], await lab.ArpRespondersAsync(Vip));
        Assert.Equal(TimeSpan.Zero, timeline.LongestOverlap(Vip, [holder]));
        // The stopping agent wrote its registration "left": nobody waits for it to fall silent.
        var registration = await lab.RegistrationAsync(holder);
        Assert.Equal("left", registration.Metadata.Annotations["hybrid.kube-vip.io/state"]);
        Assert.Null(registration.Spec.HolderIdentity);
    }

    [Fact]
    public async Task A_crashed_agent_stops_answering_before_another_node_answers_and_does_not_answer_again_on_restart()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http1", Vip);
        await lab.WaitForHoldersAsync(Vip, [holder]);
        await lab.WaitForSteadyStateAsync(); // an API fence armed while claiming would be waited out (D_A)
        await using var watch = await ResponderWatch.StartAsync(lab, Vip);

        // kill -9 with eth0 up: the address stays on the interface, the kernel fence stops the answers.
        var killedAt = Stopwatch.GetTimestamp();
        await lab.Agents.KillAsync(holder, restart: false);
        var successor = await Eventually.WaitAsync(async () =>
            (await lab.HoldersAsync(Vip)).FirstOrDefault(n => n != holder), TimeSpan.FromSeconds(10), "another node to answer for the VIP");

        var logLength = lab.Log(holder).Length;
        await lab.Agents.StartAsync(holder, CancellationToken.None);
        await Eventually.WaitAsync(() => lab.Log(holder)[logLength..].Contains("Caches synced"),
            TimeSpan.FromSeconds(30), $"the restarted agent on {holder} to sync");
        // A service created after the restart is processed by every agent, the restarted one included.
        await lab.ApplyAsync(Manifests.Service("sentinel", "198.18.0.230"));
        await lab.WaitForIngressAsync("sentinel", "198.18.0.230");
        var probes = await watch.StopAsync();

        lab.Report($"crash: {holder} killed, {successor} answered after {ResponderWatch.LongestSilenceMs(probes):F0} ms of silence; " +
                   $"{probes.Count} ARP probes: {ResponderWatch.Describe(probes, killedAt)}");
        Assert.Empty(ResponderWatch.DoubleAnswered(probes));
        Assert.Equal([holder, successor], ResponderWatch.Succession(probes));
        Assert.Equal([successor], await lab.HoldersAsync(Vip));
        Assert.Equal([successor], await lab.ArpRespondersAsync(Vip));
    }

    [Fact]
    public async Task A_VIP_interface_deleted_and_created_again_is_followed_and_answers_with_its_new_MAC()
    {
        await using var lab = await AgentLab.StartAsync(output, nodes: 1);
        await lab.ExposeSeedExampleAsync(Vip);
        var node = await lab.WaitForIngressAsync("http1", Vip);
        Assert.Equal([node], await lab.ArpRespondersAsync(Vip));
        var before = (await lab.RegistrationAsync(node)).Metadata.Annotations;

        // A driver reload: the interface goes, and one of the same name comes back with a new index and MAC.
        const string newMac = "02:48:59:01:00:7e";
        await lab.Lab.Network.RecreateLinkAsync(node, newMac, CancellationToken.None);

        await Eventually.WaitAsync(() => lab.Log(node).Contains("was created again"), TimeSpan.FromSeconds(10),
            $"{node} to notice its VIP interface was created again");
        var answers = await Eventually.WaitAsync(async () =>
        {
            var macs = (await ArpProbe.ResolveAsync(lab.ClientNamespace, lab.Lab.ClientHost.Interface, System.Net.IPAddress.Parse(Vip),
                TimeSpan.FromMilliseconds(300), CancellationToken.None)).Select(a => a.Mac.ToString()).Distinct().ToList();
            return macs.Count > 0 ? macs : null;
        }, TimeSpan.FromSeconds(15), $"{Vip} to be answered again");
        Assert.Equal([newMac.Replace(":", "").ToUpperInvariant()], answers);
        Assert.Equal([node], await lab.HoldersAsync(Vip));
        // A new session: the node registered again under a new incarnation, and its agent kept running.
        var after = (await lab.RegistrationAsync(node)).Metadata.Annotations;
        Assert.NotEqual(before["hybrid.kube-vip.io/incarnation"], after["hybrid.kube-vip.io/incarnation"]);
        Assert.Null(lab.Agents.LastExitCode(node));
    }
}
