using Hybrid.Net;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Follows the VIP interface through netlink: administrative state and carrier become
/// <see cref="NodeState.LinkUp"/> (a node with a dead NIC must stop counting as eligible at once), and an
/// address the kernel drops (its lifetime ran out) is forgotten so the next plan can restore it.
/// </summary>
internal sealed class LinkWatcher(
    NetlinkMonitor monitor,
    LinkTable links,
    int interfaceIndex,
    NodeState node,
    VipTable vips,
    ReconcileSignal signal,
    ILogger<LinkWatcher> logger)
{
    public async Task InitialiseAsync(CancellationToken cancellationToken)
    {
        var link = await links.GetAsync(interfaceIndex, cancellationToken);
        Apply(link);
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var e in monitor.ReadAllAsync(cancellationToken))
            {
                switch (e)
                {
                    case LinkChanged changed when changed.Link.Index == interfaceIndex:
                        Apply(changed.Link);
                        break;
                    case LinkRemoved removed when removed.Index == interfaceIndex:
                        Apply(null);
                        break;
                    case AddressRemoved removed when removed.Address.InterfaceIndex == interfaceIndex && removed.Address.IsHybrid:
                        if (vips.Vanished(removed.Address.Address))
                        {
                            logger.LogWarning("{Vip} disappeared from the interface", removed.Address.Address);
                            signal.Notify("address removed");
                        }
                        break;
                    case Overrun:
                        logger.LogWarning("Netlink events were lost; re-reading the interface");
                        Apply(await links.GetAsync(interfaceIndex, cancellationToken));
                        break;
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private void Apply(LinkInfo? link)
    {
        var up = link is { AdministrativelyUp: true, LowerUp: true };
        if (up == node.LinkUp) return;
        node.LinkUp = up;
        if (up) logger.LogInformation("VIP interface {Interface} is up", link!.Name);
        else logger.LogWarning("VIP interface {Interface} is down or has no carrier: withdrawing and releasing", link?.Name ?? $"#{interfaceIndex}");
        signal.Notify("link");
    }
}
