using Hybrid.Facade;
using Hybrid.Net;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Reads what the address policy needs of the VIP interface — its own addresses (not the VIPs, which carry
/// the Hybrid protocol mark) and the gateways of the default routes through it — and reports them to the
/// protocol, which publishes them in this node's registration so that every node refuses them.
/// </summary>
internal sealed class InterfaceFactsReader(AddressTable addresses, LinkTable links, int interfaceIndex, ProtocolInbox inbox, ILogger<InterfaceFactsReader> logger)
{
    public async Task ReportAsync(CancellationToken cancellationToken)
    {
        try
        {
            var own = (await addresses.DumpAsync(interfaceIndex, cancellationToken))
                .Where(a => !a.IsHybrid)
                .Select(a => new ExistingVip { Address = a.Address.GetAddressBytes(), Prefix = a.PrefixLength })
                .ToArray();
            var gateways = (await links.DefaultGatewaysAsync(interfaceIndex, cancellationToken))
                .Select(g => g.GetAddressBytes())
                .ToArray();
            var now = MonotonicClock.NowMs;
            inbox.Post(n => n.InterfaceRead(own, gateways, now));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        catch (NetlinkException e)
        {
            // The last reading stays in force; the next address or link change reads again.
            logger.LogWarning("Reading the VIP interface's addresses and gateways failed: {Error}", e.Message);
        }
    }
}
