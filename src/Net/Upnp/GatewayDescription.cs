using System.Xml;
using System.Xml.Linq;
using Hybrid.Domain;

namespace Hybrid.Net;

/// <summary>
/// Reads an IGD device description (UPnP Device Architecture 1.1, 2.3): the WAN connection services of every
/// device, nested devices included (IGD → WANDevice → WANConnectionDevice), with their control URLs resolved
/// against URLBase or the description's own URL. Per device the best service wins: WANIPConnection:2, then
/// WANIPConnection:1, then WANPPPConnection:1 (the three that offer AddPortMapping).
/// </summary>
internal static class GatewayDescription
{
    public static readonly string[] ServiceTypes =
    [
        "urn:schemas-upnp-org:service:WANIPConnection:2",
        "urn:schemas-upnp-org:service:WANIPConnection:1",
        "urn:schemas-upnp-org:service:WANPPPConnection:1",
    ];

    private static readonly XNamespace Device = "urn:schemas-upnp-org:device-1-0";

    /// <summary>The gateways a description offers (possibly none).</summary>
    /// <exception cref="FormatException">Not a device description.</exception>
    public static IReadOnlyList<Gateway> Parse(string xml, Uri location)
    {
        XDocument document;
        try
        {
            // No DTDs: a description never needs one, and entity expansion is how XML bombs work.
            using var reader = XmlReader.Create(new StringReader(xml), new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null });
            document = XDocument.Load(reader);
        }
        catch (XmlException e)
        {
            throw new FormatException($"the description at {location} is not XML: {e.Message}", e);
        }
        var root = document.Root;
        if (root is null || root.Name != Device + "root")
            throw new FormatException($"the description at {location} is not a UPnP device description (root element {root?.Name})");
        var baseUri = root.Element(Device + "URLBase")?.Value.Trim() is { Length: > 0 } text && Uri.TryCreate(text, UriKind.Absolute, out var b) ? b : location;

        var gateways = new List<Gateway>();
        foreach (var device in root.Descendants(Device + "device"))
        {
            var udn = device.Element(Device + "UDN")?.Value.Trim();
            if (string.IsNullOrEmpty(udn)) continue;
            var services = device.Element(Device + "serviceList")?.Elements(Device + "service") ?? [];
            var best = services
                .Select(s => (Type: s.Element(Device + "serviceType")?.Value.Trim() ?? "", Control: s.Element(Device + "controlURL")?.Value.Trim() ?? ""))
                .Where(s => Array.IndexOf(ServiceTypes, s.Type) >= 0 && s.Control.Length > 0)
                .OrderBy(s => Array.IndexOf(ServiceTypes, s.Type))
                .FirstOrDefault();
            if (best.Type is null) continue;
            if (!Uri.TryCreate(baseUri, best.Control, out var control) || control.Scheme != Uri.UriSchemeHttp)
                throw new FormatException($"the description at {location} has an unusable control URL '{best.Control}'");
            gateways.Add(new Gateway(GatewayId.NewGatewayId(udn), control.AbsoluteUri, best.Type));
        }
        return gateways;
    }
}
