using System.Net;
using System.Net.Sockets;
using System.Text;
using Hybrid.Domain;
using Microsoft.Extensions.Logging;

namespace Hybrid.Net;

/// <summary>
/// One SSDP search (UPnP Device Architecture 1.1, 1.3.2) for Internet Gateway Devices on ONE interface: an
/// M-SEARCH to 239.255.255.250:1900 from a UDP socket bound to the interface (SO_BINDTODEVICE, so that the
/// query and the unicast answers use the VIP interface whatever the routing table says), sent for IGD v1 and v2,
/// twice; then it listens for the answers and returns the description URLs (LOCATION) they name.
/// How long it listens and how often it asks are the domain's constants (<see cref="Upnp"/>).
/// </summary>
internal sealed partial class SsdpSearch(string interfaceName, SocketFactory sockets, ILogger<SsdpSearch> logger)
{
    private static readonly IPEndPoint Multicast = new(IPAddress.Parse("239.255.255.250"), 1900);

    /// <summary>The search targets: a gateway answers the one its device type matches.</summary>
    private static readonly string[] Targets =
        ["urn:schemas-upnp-org:device:InternetGatewayDevice:2", "urn:schemas-upnp-org:device:InternetGatewayDevice:1"];

    private const int SolSocket = 1;
    private const int SoBindToDevice = 25;

    public string InterfaceName => interfaceName;

    /// <summary>Description URLs of the gateways that answered (possibly none), each once.</summary>
    /// <exception cref="SocketException">The interface does not exist or the socket cannot send on it.</exception>
    public async Task<IReadOnlyList<Uri>> SearchAsync(CancellationToken cancellationToken)
    {
        using var socket = sockets(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.SetRawSocketOption(SolSocket, SoBindToDevice, Encoding.ASCII.GetBytes(interfaceName + "\0"));
        socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastTimeToLive, 2);
        socket.Bind(new IPEndPoint(IPAddress.Any, 0));

        using var listening = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        listening.CancelAfter(TimeSpan.FromMilliseconds(Upnp.SearchListen));
        var found = new List<Uri>();
        var receiving = ReceiveAsync(socket, found, listening.Token);
        try
        {
            for (var round = 0; round < 2; round++)
            {
                if (round > 0) await Task.Delay(TimeSpan.FromMilliseconds(Upnp.SearchRepeatGap), listening.Token);
                foreach (var target in Targets)
                    await socket.SendToAsync(Request(target), SocketFlags.None, Multicast, listening.Token);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // listening time is over
        }
        await receiving;
        cancellationToken.ThrowIfCancellationRequested();
        LogSearched(interfaceName, found.Count, string.Join(", ", found));
        return found;
    }

    private async Task ReceiveAsync(Socket socket, List<Uri> found, CancellationToken listening)
    {
        var buffer = new byte[2048];
        while (true)
        {
            SocketReceiveFromResult received;
            try
            {
                received = await socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), listening);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            var location = LocationOf(Encoding.ASCII.GetString(buffer, 0, received.ReceivedBytes));
            if (location is null)
                LogIgnored(received.RemoteEndPoint);
            else if (!found.Contains(location))
                found.Add(location);
        }
    }

    private static byte[] Request(string target) => Encoding.ASCII.GetBytes(
        "M-SEARCH * HTTP/1.1\r\n" +
        $"HOST: {Multicast}\r\n" +
        "MAN: \"ssdp:discover\"\r\n" +
        $"MX: {Upnp.SearchMx}\r\n" +
        $"ST: {target}\r\n" +
        "\r\n");

    /// <summary>The LOCATION of a "HTTP/1.1 200 OK" search answer; null for anything else.</summary>
    internal static Uri? LocationOf(string answer)
    {
        var lines = answer.Split("\r\n");
        if (lines.Length == 0 || !lines[0].StartsWith("HTTP/1.1 200", StringComparison.Ordinal)) return null;
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':');
            if (colon <= 0 || !line[..colon].Trim().Equals("LOCATION", StringComparison.OrdinalIgnoreCase)) continue;
            return Uri.TryCreate(line[(colon + 1)..].Trim(), UriKind.Absolute, out var uri) && uri.Scheme == Uri.UriSchemeHttp ? uri : null;
        }
        return null;
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "SSDP search on {Interface}: {Count} gateway description(s) {Locations}")]
    private partial void LogSearched(string @interface, int count, string locations);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Ignored an SSDP datagram from {Sender} that is no search answer with a LOCATION")]
    private partial void LogIgnored(EndPoint sender);
}
