using System.Diagnostics;
using k8s;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>
/// One-way loss of the LAN heartbeats on the holder (nftables in its namespace): whichever way they are
/// lost, the VIP moves with no instant at which two nodes answer for it.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class LanLossTests(ITestOutputHelper output)
{
    private const string Vip = "198.18.0.220";

    [Fact]
    public async Task A_holder_that_hears_no_peer_releases_and_another_node_alone_answers()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http1", Vip);
        await lab.WaitForHoldersAsync(Vip, [holder]);
        await using var watch = await ResponderWatch.StartAsync(lab, Vip);

        var start = Stopwatch.GetTimestamp();
        string successor;
        await using (await lab.DropHeartbeatsAsync(holder, inbound: true))
        {
            successor = await Eventually.WaitAsync(async () => (await lab.HoldersAsync(Vip)).SingleOrDefault(n => n != holder),
                TimeSpan.FromSeconds(15), $"a node other than the deaf {holder} to answer alone");
        }
        var probes = await watch.StopAsync();

        lab.Report($"deaf holder {holder}: {successor} answers; longest silence {ResponderWatch.LongestSilenceMs(probes):F0} ms; " +
                   ResponderWatch.Describe(probes, start));
        Assert.Empty(ResponderWatch.DoubleAnswered(probes));
        Assert.Equal([holder, successor], ResponderWatch.Succession(probes));
        Assert.Equal(successor, await lab.WaitForIngressAsync("http1", Vip));
    }

    [Fact]
    public async Task A_holder_no_peer_hears_keeps_its_VIP_on_an_API_fence_until_it_loses_the_API_too()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http1", Vip);
        await lab.WaitForHoldersAsync(Vip, [holder]);
        await using var watch = await ResponderWatch.StartAsync(lab, Vip);

        var start = Stopwatch.GetTimestamp();
        string successor;
        long cutAt;
        await using (await lab.DropHeartbeatsAsync(holder, inbound: false))
        {
            // Its peers cannot vouch for it any more, the API can: it arms an API fence and keeps answering.
            await Eventually.WaitAsync(async () =>
                (await lab.RegistrationAsync(holder))
                .Metadata.Annotations is { } a && a.TryGetValue("hybrid.kube-vip.io/fence", out var fence) && fence == "api",
                TimeSpan.FromSeconds(5), $"the mute {holder} to arm its API fence");
            await Eventually.WaitAsync(() => Stopwatch.GetElapsedTime(start) > TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30), "5 s of muteness");
            Assert.Equal([holder], await lab.HoldersAsync(Vip));

            // Cut off from the API as well, it can renew neither fence: it stops answering, then it is deposed.
            cutAt = Stopwatch.GetTimestamp();
            lab.Lab.Partition(holder);
            successor = await Eventually.WaitAsync(async () => (await lab.HoldersAsync(Vip)).SingleOrDefault(n => n != holder),
                TimeSpan.FromSeconds(15), $"a node other than the mute, cut-off {holder} to answer alone");
        }
        lab.Lab.ClearFaults();
        var probes = await watch.StopAsync();

        lab.Report($"mute holder {holder} kept {Vip} on its API fence; cut off from the API too, {successor} answered after " +
                   $"{ResponderWatch.LongestSilenceMs(probes):F0} ms of silence; {ResponderWatch.Describe(probes, start)}");
        Assert.Empty(ResponderWatch.DoubleAnswered(probes));
        Assert.Empty(ResponderWatch.Unanswered(probes.Where(p => p.SentTicks < cutAt)));
        Assert.Equal([holder, successor], ResponderWatch.Succession(probes));
        Assert.Equal(successor, await lab.WaitForIngressAsync("http1", Vip));
    }
}
