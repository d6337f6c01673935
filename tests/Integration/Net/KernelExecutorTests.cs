using System.Net;
using System.Net.Sockets;
using Hybrid.Agent;
using Hybrid.Facade;
using Hybrid.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Hybrid.Integration.Net;

/// <summary>
/// The agent's kernel executor against a real namespace: commands over several VIPs (one nftables transaction
/// for all of them, their addresses in netlink batches) leave each VIP where its own outcome says.
/// </summary>
public sealed class KernelExecutorTests
{
    private static readonly IPAddress[] Ours =
        [.. Enumerable.Range(221, 5).Select(i => IPAddress.Parse($"198.18.0.{i}")), IPAddress.Parse("fd00::221")];

    private static readonly IPAddress Foreign = IPAddress.Parse("198.18.0.230");

    [Fact]
    public async Task An_admit_of_many_VIPs_fences_and_adds_each_and_leaves_a_foreign_address_unfenced_and_untouched_reported_alone()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await FenceLab.CreateAsync(ct);
        var node = await lab.AddHostAsync("node", "198.18.0.11/24", "fd00::11/64", ct);
        // Somebody else's address (no Hybrid mark), and one an earlier agent process left (Hybrid's).
        await lab.IpAsync(ct, "-n", node, "addr", "add", $"{Foreign}/32", "dev", FenceLab.Interface);
        var (link, fence, addresses, executor) = await OpenAsync(lab, node, ct);
        using (fence)
        await using (addresses)
        {
            await addresses.AddOrRefreshAsync(link.Index, Ours[0], 32, TimeSpan.FromSeconds(5), ct);

            var report = await executor.ApplyAsync(KernelAction.NewAdmit(Vips([.. Ours, Foreign]), 30_000), ct);

            Assert.Equal(KernelResult.Applied, report.Result);
            var only = Assert.Single(report.Exceptions ?? []);
            Assert.Equal((Foreign, KernelResult.NotOurs), (new IPAddress(only.Address), only.Result));
            var installed = fence.Read(ct)!;
            Assert.Equal(Ours.ToHashSet(), installed.Managed);
            Assert.Empty(installed.Held);
            var present = (await addresses.DumpAsync(link.Index, ct)).ToDictionary(a => a.Address);
            foreach (var vip in Ours)
            {
                Assert.True(present[vip].IsHybrid, $"{present[vip]} is not marked as Hybrid's");
                Assert.InRange(present[vip].ValidLifetime!.Value.TotalSeconds, 20, 30); // the earlier one refreshed too
            }
            Assert.False(present[Foreign].IsHybrid);
            Assert.Null(present[Foreign].ValidLifetime); // untouched: still forever
        }
    }

    [Fact]
    public async Task Hold_unhold_and_withdraw_of_many_VIPs_move_each_of_them_and_withdraw_leaves_nothing_managed_or_on_the_interface()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = cts.Token;
        await using var lab = await FenceLab.CreateAsync(ct);
        var node = await lab.AddHostAsync("node", "198.18.0.11/24", "fd00::11/64", ct);
        var (link, fence, addresses, executor) = await OpenAsync(lab, node, ct);
        using (fence)
        await using (addresses)
        {
            var bytes = Ours.Select(v => v.GetAddressBytes()).ToArray();
            await AppliedAsync(executor, KernelAction.NewAdmit(Vips(Ours), 30_000), ct);

            await AppliedAsync(executor, KernelAction.NewHold(bytes), ct);
            Assert.Equal(Ours.ToHashSet(), fence.Read(ct)!.Held);

            await AppliedAsync(executor, KernelAction.NewUnhold(bytes[..2]), ct);
            var unheld = fence.Read(ct)!;
            Assert.Equal(Ours[2..].ToHashSet(), unheld.Held);
            Assert.Equal(Ours.ToHashSet(), unheld.Managed);

            await AppliedAsync(executor, KernelAction.NewUnhold(bytes[2..]), ct);
            await AppliedAsync(executor, KernelAction.NewWithdraw(Vips(Ours)), ct);
            var withdrawn = fence.Read(ct)!;
            Assert.Empty(withdrawn.Managed);
            Assert.Empty(withdrawn.Held);
            var left = (await addresses.DumpAsync(link.Index, ct)).Select(a => a.Address).ToHashSet();
            Assert.Empty(left.Intersect(Ours));
        }
    }

    private static async Task<(LinkInfo, KernelFence, AddressTable, KernelExecutor)> OpenAsync(FenceLab lab, string node, CancellationToken ct)
    {
        var link = await lab.LinkAsync(node, FenceLab.Interface, ct);
        var fence = await NetworkNamespace.RunInAsync(node, () => KernelFence.Open(() => MonotonicClock.NowMs), ct);
        fence.Install(link, [], [], ct);
        var addresses = AddressTable.Open(node);
        return (link, fence, addresses, new KernelExecutor(fence, link, addresses, MacvlanTable.Open(node), null, NullLogger<KernelExecutor>.Instance));
    }

    private static VipAddress[] Vips(IEnumerable<IPAddress> vips) =>
        [.. vips.Select(v => new VipAddress(v.GetAddressBytes(), v.AddressFamily == AddressFamily.InterNetwork ? 32 : 128, null))];

    private static async Task AppliedAsync(KernelExecutor executor, KernelAction action, CancellationToken ct)
    {
        var report = await executor.ApplyAsync(action, ct);
        Assert.True(report.Result == KernelResult.Applied && report.Exceptions is not { Count: > 0 },
            $"{KernelExecutor.Describe(action)}: {report.Result} {report.Reason} {string.Join(", ", (report.Exceptions ?? []).Select(e => $"{new IPAddress(e.Address)} {e.Result}"))}");
    }
}
