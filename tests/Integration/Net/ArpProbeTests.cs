using System.Net;
using Hybrid.Sandbox.Lab;
using Xunit;

namespace Hybrid.Integration.Net;

/// <summary>
/// ArpProbe reports every node that answers for an address, so the agent's tests can prove that exactly
/// one node answers for a VIP, and would see it if two did.
/// </summary>
public sealed class ArpProbeTests
{
    private static readonly IPAddress Vip = IPAddress.Parse("198.18.0.220");
    private static readonly TimeSpan Window = TimeSpan.FromMilliseconds(300);

    [Fact]
    public async Task Probe_sees_no_owner_then_exactly_one_mac_then_both_nodes_answering()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await ArpLab.CreateAsync(nodes: 2, ct);
        var (macA, macB) = (await lab.MacAsync(lab.Node(1), ArpLab.Interface, ct), await lab.MacAsync(lab.Node(2), ArpLab.Interface, ct));

        Assert.Empty(await ArpProbe.ResolveAsync(lab.Client, ArpLab.Interface, Vip, Window, ct));

        await lab.IpAsync(ct, "-n", lab.Node(1), "addr", "add", $"{Vip}/32", "dev", ArpLab.Interface);
        var one = await ArpProbe.ResolveAsync(lab.Client, ArpLab.Interface, Vip, Window, ct);
        Assert.Equal([macA], one.Select(a => a.Mac).Distinct());
        Assert.All(one, a => Assert.Equal(Vip, a.SenderIp));

        await lab.IpAsync(ct, "-n", lab.Node(2), "addr", "add", $"{Vip}/32", "dev", ArpLab.Interface);
        var two = await ArpProbe.ResolveAsync(lab.Client, ArpLab.Interface, Vip, Window, ct);
        Assert.Equal(new[] { macA, macB }.OrderBy(m => m.ToString()), two.Select(a => a.Mac).Distinct().OrderBy(m => m.ToString()));
    }

    [Fact]
    public async Task Probe_can_ask_from_a_given_sender_address()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await ArpLab.CreateAsync(nodes: 1, ct);
        var macA = await lab.MacAsync(lab.Node(1), ArpLab.Interface, ct);
        await using var capture = await ArpCapture.StartAsync(lab.Node(1), ArpLab.Interface, ct);

        var answers = await ArpProbe.ResolveAsync(lab.Client, ArpLab.Interface, ArpLab.NodeIp(1), IPAddress.Parse("198.18.0.101"), Window, ct);

        Assert.Equal(macA, Assert.Single(answers).Mac);
        var request = await capture.WaitForAsync(c => c.Operation == ArpOp.Request && c.TargetIp.Equals(ArpLab.NodeIp(1)), TimeSpan.FromSeconds(5), ct);
        Assert.Equal(IPAddress.Parse("198.18.0.101"), request.SenderIp);
    }
}
