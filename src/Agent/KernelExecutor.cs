using System.Net;
using Hybrid.Facade;
using Hybrid.Net;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Applies the domain's kernel actions to the VIP interface: the fence table (nftables), the VIP addresses
/// (rtnetlink, with a lifetime) and gratuitous announcements. Every action that could extend the right to
/// answer re-reads the monotonic clock immediately before its syscall and is skipped when the fence
/// deadline it carries has passed (the fresh-clock rule), so an action decided long ago never outlives the
/// fence. Runs on the protocol loop, one action at a time: each is a fraction of a millisecond.
/// </summary>
internal sealed class KernelExecutor(
    KernelFence fence,
    LinkInfo link,
    AddressTable addresses,
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
                {
                    // Fenced off first: the address must never be answered before the domain holds it.
                    var vip = new IPAddress(admit.Address);
                    fence.Manage([vip], cancellationToken);
                    var added = await addresses.AddAsync(link.Index, vip, admit.Prefix, TimeSpan.FromMilliseconds(admit.LifetimeMs), cancellationToken);
                    if (added != AddressAddOutcome.NotOurs) return new KernelReport(KernelResult.Applied);
                    // Somebody else's address: no longer fenced off either, so it is answered as before.
                    fence.Unmanage([vip], cancellationToken);
                    logger.LogWarning("{Address}/{Prefix} is already on the VIP interface and Hybrid did not add it: left untouched", vip, admit.Prefix);
                    return new KernelReport(KernelResult.NotOurs, "the address is on the interface and not Hybrid's");
                }
                case KernelAction.RefreshAddress refresh:
                {
                    if (MonotonicClock.NowMs >= refresh.FenceDeadlineMs) return new KernelReport(KernelResult.FenceEnded);
                    await addresses.AddOrRefreshAsync(link.Index, new IPAddress(refresh.Address), refresh.Prefix,
                        TimeSpan.FromMilliseconds(refresh.LifetimeMs), cancellationToken);
                    return new KernelReport(KernelResult.Applied);
                }
                case KernelAction.Hold hold:
                    fence.Hold([new IPAddress(hold.Address)], cancellationToken);
                    return new KernelReport(KernelResult.Applied);
                case KernelAction.Unhold unhold:
                    fence.Release([new IPAddress(unhold.Address)], cancellationToken);
                    return new KernelReport(KernelResult.Applied);
                case KernelAction.Withdraw withdraw:
                {
                    // Off the interface first, then no longer managed: never an unguarded moment.
                    var vip = new IPAddress(withdraw.Address);
                    await addresses.RemoveAsync(link.Index, vip, withdraw.Prefix, cancellationToken);
                    fence.Unmanage([vip], cancellationToken);
                    return new KernelReport(KernelResult.Applied);
                }
                case KernelAction.Announce announce:
                {
                    if (announcer is null) return new KernelReport(KernelResult.Applied);
                    if (MonotonicClock.NowMs >= announce.FenceDeadlineMs) return new KernelReport(KernelResult.FenceEnded);
                    var outcome = await announcer.AnnounceAsync(new IPAddress(announce.Address), cancellationToken);
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

    /// <summary>The action in words, with its address in the usual notation.</summary>
    public static string Describe(KernelAction action) => action switch
    {
        KernelAction.InstallFence i => $"install fence ({i.Managed.Length} managed)",
        KernelAction.ExtendFence e => $"extend fence to {e.DeadlineMs}",
        { IsExpireFence: true } => "expire fence",
        KernelAction.Admit a => $"admit {new IPAddress(a.Address)}/{a.Prefix}",
        KernelAction.RefreshAddress r => $"refresh {new IPAddress(r.Address)}",
        KernelAction.Hold h => $"hold {new IPAddress(h.Address)}",
        KernelAction.Unhold u => $"unhold {new IPAddress(u.Address)}",
        KernelAction.Withdraw w => $"withdraw {new IPAddress(w.Address)}",
        KernelAction.Announce a => $"announce {new IPAddress(a.Address)}",
        _ => action.ToString() ?? "?",
    };
}

/// <summary>How a kernel action went; for a fence extension, until when the kernel may answer at the latest.</summary>
internal readonly record struct KernelReport(KernelResult Result, string? Reason = null, long? AnsweringEndsByMs = null);
