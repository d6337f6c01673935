using Hybrid.Sandbox.Lab;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>The seed document's example, in a 3-node lab, in kube-vip's default ARP mode (one leader).</summary>
[Collection(LabCollection.Name)]
public sealed class SeedExampleTests(ITestOutputHelper output)
{
    private const string Vip = "198.18.0.220";

    [Fact]
    public async Task Two_services_share_one_VIP_announced_and_answered_by_one_node_only()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await using var capture = await lab.CaptureAsync();

        await lab.ExposeSeedExampleAsync(Vip);

        var host1 = await lab.WaitForIngressAsync("http1", Vip);
        var host2 = await lab.WaitForIngressAsync("http2", Vip);
        Assert.Equal(host1, host2);
        await lab.WaitForHoldersAsync(Vip, [host1]);

        var responders = await lab.ArpRespondersAsync(Vip);
        Assert.Equal([host1], responders);
        // The same question through the CLI a user of the sandbox would ask.
        var whoHas = await ProcessRunner.Default.RunAsync(new ProcessRequest(
            ["dotnet", typeof(HybridLab).Assembly.Location, "who-has", Vip, "--name", lab.Lab.Topology.Name]) { AllowFailure = true },
            CancellationToken.None);
        Assert.Equal(0, whoHas.ExitCode);
        Assert.Contains($"({host1})", whoHas.StandardOutput);

        var garp = await capture.WaitForAsync(
            p => p.IsGratuitous && p.SenderIp.ToString() == Vip && p.SenderMac.Equals(lab.MacOf(host1)),
            TimeSpan.FromSeconds(5), CancellationToken.None);
        lab.Report($"gratuitous ARP for {Vip} from {host1} ({garp.Operation}) captured in the client namespace");

        var table = (await lab.Kubectl.RunAsync("get", "svc")).EnsureSuccess().Stdout;
        Assert.Matches(@"http1\s+LoadBalancer\s+\S+\s+198\.18\.0\.220\s+80:\d+/TCP", table);
        Assert.Matches(@"http2\s+LoadBalancer\s+\S+\s+198\.18\.0\.220\s+81:\d+/TCP", table);
        var announced = await lab.WaitForEventAsync("http1", "Announced");
        Assert.Contains(host1, announced.Note);
    }

    [Fact]
    public async Task Deleting_one_sharer_keeps_the_VIP_and_deleting_the_last_removes_it()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http2", Vip);
        await lab.WaitForHoldersAsync(Vip, [holder]);

        (await lab.Kubectl.RunAsync("delete", "svc", "http1")).EnsureSuccess();
        // A service created after the deletion is announced only once the agent has processed the deletion.
        await lab.ApplyAsync(Manifests.Service("sentinel", "198.18.0.230"));
        await lab.WaitForIngressAsync("sentinel", "198.18.0.230");
        Assert.Equal([holder], await lab.HoldersAsync(Vip));
        Assert.Equal([holder], await lab.ArpRespondersAsync(Vip));

        (await lab.Kubectl.RunAsync("delete", "svc", "http2")).EnsureSuccess();
        await lab.WaitForHoldersAsync(Vip, []);
        Assert.Empty(await lab.ArpRespondersAsync(Vip));
        Assert.NotEmpty(await lab.HoldersAsync("198.18.0.230"));
    }
}
