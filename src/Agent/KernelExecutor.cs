using System.Net;
using System.Net.NetworkInformation;
using Hybrid.Facade;
using Hybrid.Net;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Applies the domain's kernel actions to the VIP interface: the fence table (nftables), the VIP addresses
/// (rtnetlink, with a lifetime) and gratuitous announcements. Every action that could extend the right to
/// answer re-reads the monotonic clock immediately before its syscall and is skipped when the fence
/// deadline it carries has passed (the fresh-clock rule), so an action decided long ago never outlives the
/// fence. Runs on the protocol loop, one action at a time. An action over several VIPs writes the fence once
/// for all of them (one nf_tables netlink batch) and their addresses in netlink batches, in the order the
/// domain's command defines, and reports the
/// VIPs it went otherwise for. A VIP the domain puts on a macvlan (a DHCP lease) goes on that macvlan of the VIP
/// interface, created if missing exactly as the DHCP client creates it; the fence on the VIP interface covers it.
/// </summary>
internal sealed class KernelExecutor(
    KernelFence fence,
    LinkInfo link,
    AddressTable addresses,
    MacvlanTable macvlans,
    Announcer? announcer,
    ILogger<KernelExecutor> logger)
{
    public async Task<KernelReport> ApplyAsync(KernelAction action, CancellationToken cancellationToken)
    {
        try
        {
            switch (action)
            {
                case KernelAction.InstallFence install:
                    fence.Install(link, install.Managed.Select(b => new IPAddress(b)).ToList(), [], cancellationToken);
                    return new KernelReport(KernelResult.Applied);
                case KernelAction.ExtendFence extend:
                    var written = fence.Extend(extend.DeadlineMs, cancellationToken);
                    return written.Kind == FenceWriteKind.Extended
                        ? new KernelReport(KernelResult.Applied, AnsweringEndsByMs: written.AnsweringEndsByMs)
                        : new KernelReport(KernelResult.FenceEnded);
                case { IsExpireFence: true }:
                    fence.Expire(cancellationToken);
                    return new KernelReport(KernelResult.Applied);
                case KernelAction.Admit admit:
                    return await AdmitAsync(admit, cancellationToken);
                case KernelAction.RefreshAddress refresh:
                {
                    var index = refresh.Vip.Macvlan is { } carrier
                        ? (await macvlans.GetAsync(carrier.Name, cancellationToken))?.Index
                        : link.Index;
                    // A macvlan deleted under the address (its DHCP client stopped) took the address with it.
                    if (index is not { } interfaceIndex) return new KernelReport(KernelResult.Failed, $"macvlan {refresh.Vip.Macvlan!.Name} is gone");
                    if (MonotonicClock.NowMs >= refresh.FenceDeadlineMs) return new KernelReport(KernelResult.FenceEnded);
                    await addresses.AddOrRefreshAsync(interfaceIndex, new IPAddress(refresh.Vip.Address), refresh.Vip.Prefix,
                        TimeSpan.FromMilliseconds(refresh.LifetimeMs), cancellationToken);
                    return new KernelReport(KernelResult.Applied);
                }
                case KernelAction.Hold hold:
                    fence.Hold(hold.Addresses.Select(b => new IPAddress(b)).ToList(), cancellationToken);
                    return new KernelReport(KernelResult.Applied);
                case KernelAction.Unhold unhold:
                    fence.Release(unhold.Addresses.Select(b => new IPAddress(b)).ToList(), cancellationToken);
                    return new KernelReport(KernelResult.Applied);
                case KernelAction.Withdraw withdraw:
                    return await WithdrawAsync(withdraw, cancellationToken);
                case KernelAction.Announce announce:
                {
                    if (announcer is null) return new KernelReport(KernelResult.Applied);
                    if (MonotonicClock.NowMs >= announce.FenceDeadlineMs) return new KernelReport(KernelResult.FenceEnded);
                    var source = announce.Macvlan is { } carrier ? new PhysicalAddress(carrier.Mac) : null;
                    var outcome = await announcer.AnnounceAsync(new IPAddress(announce.Address), source, cancellationToken);
                    return new KernelReport(outcome == AnnounceOutcome.Sent ? KernelResult.Applied : KernelResult.FenceEnded);
                }
                default:
                    return new KernelReport(KernelResult.Failed, $"unknown kernel action {action}");
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e)
        {
            logger.LogError("Kernel action {Action} failed: {Error}", Describe(action), e.Message);
            return new KernelReport(KernelResult.Failed, e.Message);
        }
    }

    /// <summary>
    /// Fences every VIP off first (the address must never be answered before the domain holds it), then adds the
    /// addresses; one that somebody else put there is fenced off no longer, so it is answered as before.
    /// </summary>
    private async Task<KernelReport> AdmitAsync(KernelAction.Admit admit, CancellationToken cancellationToken)
    {
        var lifetime = TimeSpan.FromMilliseconds(admit.LifetimeMs);
        var exceptions = new List<VipReport>();
        var indexes = await MacvlanIndexesAsync(admit.Vips, create: true, exceptions, cancellationToken);
        var vips = admit.Vips.Where(v => Carries(v, indexes)).ToList();
        var assignments = vips.Select(v => new AddressAssignment(IndexOf(v, indexes), new IPAddress(v.Address), v.Prefix, lifetime)).ToList();
        fence.Manage(assignments.Select(a => a.Address).ToList(), cancellationToken);
        fence.MarkMacvlans(OnMacvlans(vips), marked: true, cancellationToken);
        var results = await addresses.AddManyAsync(assignments, cancellationToken);
        foreach (var failed in results.Where(r => r.Error is not null))
        {
            logger.LogError("Kernel action admit {Address}/{Prefix} failed: {Error}", failed.Assignment.Address, failed.Assignment.PrefixLength, failed.Error!.Message);
            exceptions.Add(Report(failed.Assignment.Address, KernelResult.Failed, failed.Error.Message));
        }
        var foreign = results.Where(r => r.Outcome == AddressAddOutcome.NotOurs).Select(r => r.Assignment).ToList();
        if (foreign.Count == 0) return new KernelReport(KernelResult.Applied, Exceptions: exceptions);
        try
        {
            fence.Unmanage(foreign.Select(a => a.Address).ToList(), cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Still fenced off: reported as failed, the domain admits them again (and finds them foreign again).
            logger.LogError("Kernel action unmanage of {Count} foreign address(es) failed: {Error}", foreign.Count, e.Message);
            exceptions.AddRange(foreign.Select(a => Report(a.Address, KernelResult.Failed, e.Message)));
            return new KernelReport(KernelResult.Applied, Exceptions: exceptions);
        }
        foreach (var a in foreign)
        {
            logger.LogWarning("{Address}/{Prefix} is already on the VIP interface and Hybrid did not add it: left untouched", a.Address, a.PrefixLength);
            exceptions.Add(Report(a.Address, KernelResult.NotOurs, "the address is on the interface and not Hybrid's"));
        }
        return new KernelReport(KernelResult.Applied, Exceptions: exceptions);
    }

    /// <summary>Off the interface first, then no longer managed: never an unguarded moment. An address that stays keeps its guard.</summary>
    private async Task<KernelReport> WithdrawAsync(KernelAction.Withdraw withdraw, CancellationToken cancellationToken)
    {
        var exceptions = new List<VipReport>();
        var indexes = await MacvlanIndexesAsync(withdraw.Vips, create: false, exceptions, cancellationToken);
        // A VIP whose macvlan is gone went with it: only its guard is left to remove.
        var assignments = withdraw.Vips.Where(v => Carries(v, indexes))
            .Select(v => new AddressAssignment(IndexOf(v, indexes), new IPAddress(v.Address), v.Prefix)).ToList();
        var failures = await addresses.RemoveManyAsync(assignments, cancellationToken);
        foreach (var failure in failures)
        {
            logger.LogError("Kernel action withdraw {Address}/{Prefix} failed: {Error}", failure.Assignment.Address, failure.Assignment.PrefixLength, failure.Error.Message);
            exceptions.Add(Report(failure.Assignment.Address, KernelResult.Failed, failure.Error.Message));
        }
        var kept = failures.Select(f => f.Assignment.Address).Concat(exceptions.Select(e => new IPAddress(e.Address))).ToHashSet();
        var removed = withdraw.Vips.Where(v => !kept.Contains(new IPAddress(v.Address))).ToList();
        if (removed.Count > 0)
        {
            fence.MarkMacvlans(OnMacvlans(removed), marked: false, cancellationToken);
            fence.Unmanage(removed.Select(v => new IPAddress(v.Address)).ToList(), cancellationToken);
        }
        return new KernelReport(KernelResult.Applied, Exceptions: exceptions);
    }

    /// <summary>
    /// The interface index of each macvlan the VIPs name (absent: the macvlan is missing). With
    /// <paramref name="create"/> a missing one is created as the DHCP client creates it (down, its sysctls, up):
    /// a node taking a DHCP Service over admits its address before its client starts. A macvlan that cannot be
    /// had fails its VIPs (reported in <paramref name="exceptions"/>).
    /// </summary>
    private async Task<Dictionary<string, int>> MacvlanIndexesAsync(IEnumerable<VipAddress> vips, bool create, List<VipReport> exceptions,
        CancellationToken cancellationToken)
    {
        var indexes = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var group in vips.Where(v => v.Macvlan is not null).GroupBy(v => v.Macvlan!.Name, StringComparer.Ordinal))
        {
            var carrier = group.First().Macvlan!;
            try
            {
                if (create)
                {
                    var made = await macvlans.PrepareAsync(link.Index, carrier.Name, new PhysicalAddress(carrier.Mac), cancellationToken);
                    indexes[carrier.Name] = made.Index;
                }
                else if (await macvlans.GetAsync(carrier.Name, cancellationToken) is { } found)
                {
                    indexes[carrier.Name] = found.Index;
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                logger.LogError("Kernel action on macvlan {Macvlan} failed: {Error}", carrier.Name, e.Message);
                exceptions.AddRange(group.Select(v => Report(new IPAddress(v.Address), KernelResult.Failed, e.Message)));
            }
        }
        return indexes;
    }

    private static bool Carries(VipAddress vip, Dictionary<string, int> indexes) => vip.Macvlan is null || indexes.ContainsKey(vip.Macvlan.Name);

    private int IndexOf(VipAddress vip, Dictionary<string, int> indexes) => vip.Macvlan is null ? link.Index : indexes[vip.Macvlan.Name];

    private static List<(IPAddress Address, PhysicalAddress Mac)> OnMacvlans(IEnumerable<VipAddress> vips) =>
        vips.Where(v => v.Macvlan is not null).Select(v => (new IPAddress(v.Address), new PhysicalAddress(v.Macvlan!.Mac))).ToList();

    private static VipReport Report(IPAddress address, KernelResult result, string reason) => new(address.GetAddressBytes(), result, reason);

    /// <summary>The action in words, with its addresses in the usual notation.</summary>
    public static string Describe(KernelAction action) => action switch
    {
        KernelAction.InstallFence i => $"install fence ({i.Managed.Length} managed)",
        KernelAction.ExtendFence e => $"extend fence to {e.DeadlineMs}",
        { IsExpireFence: true } => "expire fence",
        KernelAction.Admit a => $"admit {Vips(a.Vips.Select(v => $"{new IPAddress(v.Address)}/{v.Prefix}"))}",
        KernelAction.RefreshAddress r => $"refresh {new IPAddress(r.Vip.Address)}",
        KernelAction.Hold h => $"hold {Vips(h.Addresses.Select(b => new IPAddress(b).ToString()))}",
        KernelAction.Unhold u => $"unhold {Vips(u.Addresses.Select(b => new IPAddress(b).ToString()))}",
        KernelAction.Withdraw w => $"withdraw {Vips(w.Vips.Select(v => new IPAddress(v.Address).ToString()))}",
        KernelAction.Announce a => $"announce {new IPAddress(a.Address)}",
        _ => action.ToString() ?? "?",
    };

    /// <summary>"a, b, c" or "1000 VIPs (a, b, c, …)": a log line stays short however many VIPs an action has.</summary>
    private static string Vips(IEnumerable<string> addresses)
    {
        var list = addresses.ToList();
        return list.Count <= 3 ? string.Join(", ", list) : $"{list.Count} VIPs ({string.Join(", ", list.Take(3))}, …)";
    }
}

/// <summary>
/// How a kernel action went; for a fence extension, until when the kernel may answer at the latest; for an
/// action over several VIPs, the VIPs it went otherwise for.
/// </summary>
internal readonly record struct KernelReport(KernelResult Result, string? Reason = null, long? AnsweringEndsByMs = null,
    IReadOnlyList<VipReport>? Exceptions = null);
