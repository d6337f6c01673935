using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Xml;
using System.Xml.Linq;
using Hybrid.Domain;
using Microsoft.Extensions.Logging;

namespace Hybrid.Net;

/// <summary>One mapping as GetSpecificPortMappingEntry reports it.</summary>
internal sealed record PortMappingEntry(int InternalPort, IPAddress InternalClient, bool Enabled, string Description, int LeaseDurationSeconds);

/// <summary>
/// SOAP calls to a gateway's WAN connection service (WANIPConnection:1/2, WANPPPConnection:1; the four actions
/// Hybrid needs). Each call has the domain's timeout; a failure is thrown as <see cref="UpnpCallException"/>
/// carrying the UPnPError code (SOAP fault), the HTTP status, or why there was no answer.
/// </summary>
internal sealed partial class IgdClient(GatewayHttp http, ILogger<IgdClient> logger)
{
    private static readonly XNamespace Soap = "http://schemas.xmlsoap.org/soap/envelope/";
    private static readonly XNamespace Control = "urn:schemas-upnp-org:control-1-0";

    /// <summary>AddPortMapping to the mapping's client (the VIP), sent from that address.</summary>
    public async Task AddPortMappingAsync(Gateway gateway, Mapping mapping, CancellationToken cancellationToken)
    {
        var client = ToAddress(mapping.Client);
        await CallAsync(gateway, "AddPortMapping", client,
        [
            ("NewRemoteHost", ""),
            ("NewExternalPort", mapping.Key.ExternalPort.ToString(CultureInfo.InvariantCulture)),
            ("NewProtocol", MappingProtocolModule.name(mapping.Key.Protocol)),
            ("NewInternalPort", mapping.InternalPort.ToString(CultureInfo.InvariantCulture)),
            ("NewInternalClient", client.ToString()),
            ("NewEnabled", "1"),
            ("NewPortMappingDescription", mapping.Description),
            ("NewLeaseDuration", LeaseSecondsOf(mapping.Lease).ToString(CultureInfo.InvariantCulture)),
        ], cancellationToken);
        LogAdded(mapping.Key.ExternalPort, MappingProtocolModule.name(mapping.Key.Protocol), client, gateway.Id.ToString(), LeaseSecondsOf(mapping.Lease));
    }

    /// <summary>DeletePortMapping, sent from <paramref name="source"/> (null: any address).</summary>
    public async Task DeletePortMappingAsync(Gateway gateway, MappingKey key, IPAddress? source, CancellationToken cancellationToken)
    {
        await CallAsync(gateway, "DeletePortMapping", source,
        [
            ("NewRemoteHost", ""),
            ("NewExternalPort", key.ExternalPort.ToString(CultureInfo.InvariantCulture)),
            ("NewProtocol", MappingProtocolModule.name(key.Protocol)),
        ], cancellationToken);
        LogDeleted(key.ExternalPort, MappingProtocolModule.name(key.Protocol), gateway.Id.ToString());
    }

    /// <summary>GetExternalIPAddress; null when the gateway reports none (empty, or not an IPv4 address).</summary>
    public async Task<IPAddress?> GetExternalIPAddressAsync(Gateway gateway, IPAddress? source, CancellationToken cancellationToken)
    {
        var answer = await CallAsync(gateway, "GetExternalIPAddress", source, [], cancellationToken);
        var text = Argument(answer, "NewExternalIPAddress", "GetExternalIPAddress");
        return IPAddress.TryParse(text.Trim(), out var address) && address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? address : null;
    }

    /// <summary>GetSpecificPortMappingEntry; null when the gateway has no such mapping (714).</summary>
    public async Task<PortMappingEntry?> GetSpecificPortMappingEntryAsync(
        Gateway gateway, MappingProtocol protocol, int externalPort, IPAddress? source, CancellationToken cancellationToken)
    {
        const string action = "GetSpecificPortMappingEntry";
        try
        {
            var answer = await CallAsync(gateway, action, source,
            [
                ("NewRemoteHost", ""),
                ("NewExternalPort", externalPort.ToString(CultureInfo.InvariantCulture)),
                ("NewProtocol", MappingProtocolModule.name(protocol)),
            ], cancellationToken);
            int Number(string name) => int.TryParse(Argument(answer, name, action), NumberStyles.None, CultureInfo.InvariantCulture, out var n)
                ? n
                : throw new UpnpCallException(action, CallFailure.NewMalformed($"{name} is not a number"));
            var client = IPAddress.TryParse(Argument(answer, "NewInternalClient", action), out var a)
                ? a
                : throw new UpnpCallException(action, CallFailure.NewMalformed("NewInternalClient is not an address"));
            return new PortMappingEntry(Number("NewInternalPort"), client, Argument(answer, "NewEnabled", action) is "1" or "true",
                Argument(answer, "NewPortMappingDescription", action), Number("NewLeaseDuration"));
        }
        catch (UpnpCallException e) when (e.UpnpErrorCode == 714)
        {
            return null;
        }
    }

    private static IPAddress ToAddress(Ip ip) => IPAddress.Parse(IpModule.format(ip));

    private static int LeaseSecondsOf(MappingLease lease) => lease is MappingLease.Lasting lasting ? lasting.Item.Value : 0;

    private static string Argument(XElement answer, string name, string action) =>
        answer.Elements().FirstOrDefault(e => e.Name.LocalName == name)?.Value
        ?? throw new UpnpCallException(action, CallFailure.NewMalformed($"the answer has no {name}"));

    /// <summary>One SOAP action; returns the {action}Response element.</summary>
    private async Task<XElement> CallAsync(
        Gateway gateway, string action, IPAddress? source, (string Name, string Value)[] arguments, CancellationToken cancellationToken)
    {
        XNamespace service = gateway.ServiceType;
        var envelope = new XDocument(
            new XDeclaration("1.0", "utf-8", null),
            new XElement(Soap + "Envelope",
                new XAttribute(XNamespace.Xmlns + "s", Soap),
                new XAttribute(Soap + "encodingStyle", "http://schemas.xmlsoap.org/soap/encoding/"),
                new XElement(Soap + "Body",
                    new XElement(service + action,
                        new XAttribute(XNamespace.Xmlns + "u", service),
                        arguments.Select(a => new XElement(a.Name, a.Value))))));
        using var request = new HttpRequestMessage(HttpMethod.Post, gateway.ControlUrl)
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new StringContent("<?xml version=\"1.0\"?>\r\n" + envelope.Root!.ToString(SaveOptions.DisableFormatting)),
        };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse("text/xml; charset=\"utf-8\"");
        request.Headers.TryAddWithoutValidation("SOAPAction", $"\"{gateway.ServiceType}#{action}\"");
        request.Headers.ExpectContinue = false;

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromMilliseconds(Upnp.CallTimeout));
        string body;
        HttpStatusCode status;
        try
        {
            using var response = await http.SendAsync(request, source, deadline.Token);
            status = response.StatusCode;
            body = await response.Content.ReadAsStringAsync(deadline.Token);
        }
        catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
        {
            throw Failed(gateway, action, CallFailure.NewUnreachable($"no answer within {Upnp.CallTimeout / 1000.0:0.#} s"), e);
        }
        catch (HttpRequestException e)
        {
            throw Failed(gateway, action, CallFailure.NewUnreachable(e.Message), e);
        }

        XElement? bodyElement;
        try
        {
            using var reader = XmlReader.Create(new StringReader(body), new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null });
            bodyElement = XDocument.Load(reader).Root?.Element(Soap + "Body");
        }
        catch (XmlException e)
        {
            throw Failed(gateway, action, status == HttpStatusCode.OK ? CallFailure.NewMalformed($"not XML: {e.Message}") : CallFailure.NewHttpStatus((int)status), e);
        }
        if (status != HttpStatusCode.OK)
        {
            var error = bodyElement?.Descendants(Control + "UPnPError").FirstOrDefault();
            var code = error?.Element(Control + "errorCode")?.Value.Trim();
            throw Failed(gateway, action, int.TryParse(code, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
                ? CallFailure.NewSoapFault(n, error!.Element(Control + "errorDescription")?.Value.Trim() ?? "")
                : CallFailure.NewHttpStatus((int)status));
        }
        return bodyElement?.Elements().FirstOrDefault(e => e.Name.LocalName == action + "Response")
            ?? throw Failed(gateway, action, CallFailure.NewMalformed($"the answer has no {action}Response"));
    }

    private UpnpCallException Failed(Gateway gateway, string action, CallFailure failure, Exception? inner = null)
    {
        var exception = new UpnpCallException(action, failure, inner);
        LogFailed(action, gateway.ControlUrl, exception.Message);
        return exception;
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "Mapped {Port}/{Protocol} to {Client} on gateway {Gateway} for {LeaseSeconds} s")]
    private partial void LogAdded(int port, string protocol, IPAddress client, string gateway, int leaseSeconds);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Deleted mapping {Port}/{Protocol} on gateway {Gateway}")]
    private partial void LogDeleted(int port, string protocol, string gateway);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Action} at {ControlUrl}: {Failure}")]
    private partial void LogFailed(string action, string controlUrl, string failure);
}
