using Hybrid.Domain;
using Microsoft.Extensions.Logging;

namespace Hybrid.Net;

/// <summary>
/// Finds the gateways on the VIP interface: an SSDP search, then each answering device's description
/// (fetched with the domain's timeout) for its WAN connection service. A description that cannot be fetched
/// or read is logged and left out; the others still count.
/// </summary>
internal sealed partial class GatewayDiscovery(SsdpSearch search, GatewayHttp http, ILogger<GatewayDiscovery> logger)
{
    /// <summary>The gateways found (possibly none), each once.</summary>
    public async Task<IReadOnlyList<Gateway>> DiscoverAsync(CancellationToken cancellationToken)
    {
        var locations = await search.SearchAsync(cancellationToken);
        var described = await Task.WhenAll(locations.Select(l => DescribeAsync(l, cancellationToken)));
        var gateways = described.SelectMany(g => g).DistinctBy(g => g.Id).ToList();
        foreach (var g in gateways) LogFound(g.Id.ToString(), g.ServiceType, g.ControlUrl, search.InterfaceName);
        return gateways;
    }

    private async Task<IReadOnlyList<Gateway>> DescribeAsync(Uri location, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromMilliseconds(Upnp.CallTimeout));
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, location);
            using var response = await http.SendAsync(request, null, deadline.Token);
            response.EnsureSuccessStatusCode();
            return GatewayDescription.Parse(await response.Content.ReadAsStringAsync(deadline.Token), location);
        }
        catch (Exception e) when (e is HttpRequestException or FormatException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
        {
            LogUnreadable(location, e.Message);
            return [];
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Gateway {Gateway}: {ServiceType} at {ControlUrl}, found on {Interface}")]
    private partial void LogFound(string gateway, string serviceType, string controlUrl, string @interface);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The gateway description at {Location} could not be read: {Reason}")]
    private partial void LogUnreadable(Uri location, string reason);
}
