using Hybrid.Integration.DataPlane;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>The DaemonSet's probes: every agent answers /healthz and /readyz on port 2113 of its node.</summary>
[Collection(LabCollection.Name)]
public sealed class HealthEndpointTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Joined_agents_are_live_and_ready_on_their_node_address_and_a_stopped_one_answers_nothing()
    {
        await using var lab = await AgentLab.StartAsync(output);
        foreach (var node in lab.Lab.Nodes)
        {
            var url = $"http://{node.Ipv4}:2113";
            Assert.Equal("ok\n", (await Curl.GetAsync(lab.ClientNamespace, url + "/healthz")).Body);
            // The lab saw the registration in the API; the agent reads its own write's answer a moment later.
            await Eventually.WaitAsync(async () => (await Curl.GetAsync(lab.ClientNamespace, url + "/readyz")).Body == "ok\n",
                TimeSpan.FromSeconds(10), $"{node.Name} to answer /readyz with ok");
            Assert.Equal("not found\n", (await Curl.GetAsync(lab.ClientNamespace, url + "/metrics")).Body);
        }
        var stopped = lab.Lab.Nodes[0];
        await lab.Agents.StopAsync(stopped.Name, graceful: true, CancellationToken.None);
        Assert.Equal(Curl.CouldNotConnect, (await Curl.GetAsync(lab.ClientNamespace, $"http://{stopped.Ipv4}:2113/healthz")).ExitCode);
    }
}
