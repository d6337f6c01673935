using Hybrid.Net;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Follows the VIP interface through netlink and reports whether it can carry VIPs (administratively up,
/// with carrier) to the protocol: a node with a dead NIC hands its groups over at once. A change of the
/// interface's own addresses, or of the link, has <see cref="InterfaceFactsReader"/> read them again. An
/// interface of the same name with another index (deleted and created again) is the
/// <see cref="Replacement"/>: <paramref name="onReplaced"/> is called once, and the agent starts over on it.
/// </summary>
internal sealed class LinkWatcher(NetlinkMonitor monitor, LinkTable links, LinkInfo link, InterfaceFactsReader facts,
    ProtocolInbox inbox, Action onReplaced, ILogger<LinkWatcher> logger)
{
    private readonly int interfaceIndex = link.Index;
    private bool? _up;

    /// <summary>The interface that replaced the watched one, once one has.</summary>
    public LinkInfo? Replacement { get; private set; }

    /// <summary>Whether the interface is usable now (read once before the loop starts).</summary>
    public async Task<bool> ReadAsync(CancellationToken cancellationToken)
    {
        var link = await links.GetAsync(interfaceIndex, cancellationToken);
        _up = Usable(link);
        return _up.Value;
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
                        Report(changed.Link);
                        await facts.ReportAsync(cancellationToken);
                        break;
                    case LinkChanged changed when changed.Link.Name == link.Name && Replacement is null:
                        Replacement = changed.Link;
                        onReplaced();
                        break;
                    case AddressAdded { Address: { IsHybrid: false } added } when added.InterfaceIndex == interfaceIndex:
                        await facts.ReportAsync(cancellationToken);
                        break;
                    case AddressRemoved { Address: { IsHybrid: false } removed } when removed.InterfaceIndex == interfaceIndex:
                        await facts.ReportAsync(cancellationToken);
                        break;
                    case LinkRemoved removed when removed.Index == interfaceIndex:
                        Report(null);
                        break;
                    case Overrun:
                        logger.LogWarning("Netlink events were lost; re-reading the interface");
                        Report(await links.GetAsync(interfaceIndex, cancellationToken));
                        await facts.ReportAsync(cancellationToken);
                        break;
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private static bool Usable(LinkInfo? link) => link is { AdministrativelyUp: true, LowerUp: true };

    private void Report(LinkInfo? link)
    {
        var up = Usable(link);
        if (up == _up) return;
        _up = up;
        if (up) logger.LogInformation("VIP interface {Interface} is up", link!.Name);
        else logger.LogWarning("VIP interface {Interface} is down or has no carrier", link?.Name ?? $"#{interfaceIndex}");
        inbox.Post(node => node.LinkChanged(up, MonotonicClock.NowMs));
    }
}
