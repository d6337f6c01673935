using System.Buffers.Binary;
using System.Net;
using Hybrid.Domain;
using Hybrid.Net;
using Hybrid.Sandbox.Lab;
using Xunit;

namespace Hybrid.Integration.Upnp;

/// <summary>The pieces under the UPnP tests: the STUN answer, description and SSDP parsing, and the gateway's
/// lifecycle (it leaves nothing behind, and says why when it cannot start).</summary>
public sealed class UpnpLabPartsTests
{
    private static byte[] BindingRequest(params byte[] attributes)
    {
        var request = new byte[20 + attributes.Length];
        BinaryPrimitives.WriteUInt16BigEndian(request, 0x0001);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(2), (ushort)attributes.Length);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(4), 0x2112A442);
        for (var i = 0; i < 12; i++) request[8 + i] = (byte)(0xA0 + i);
        attributes.CopyTo(request, 20);
        return request;
    }

    /// <summary>Decodes XOR-MAPPED-ADDRESS the way RFC 5389 section 15.2 defines it.</summary>
    private static IPEndPoint Mapped(byte[] answer)
    {
        Assert.Equal(0x0101, BinaryPrimitives.ReadUInt16BigEndian(answer));
        Assert.Equal(answer.Length - 20, BinaryPrimitives.ReadUInt16BigEndian(answer.AsSpan(2)));
        Assert.Equal(0x0020, BinaryPrimitives.ReadUInt16BigEndian(answer.AsSpan(20)));
        var family = answer[25];
        var port = BinaryPrimitives.ReadUInt16BigEndian(answer.AsSpan(26)) ^ 0x2112;
        var length = family == 1 ? 4 : 16;
        var address = new byte[length];
        for (var i = 0; i < length; i++) address[i] = (byte)(answer[28 + i] ^ answer[4 + i]);
        return new IPEndPoint(new IPAddress(address), port);
    }

    [Fact]
    public void The_STUN_answer_carries_the_senders_address_and_port_and_the_request_transaction()
    {
        var changeRequest = new byte[] { 0x00, 0x03, 0x00, 0x04, 0, 0, 0, 0x06 }; // what miniupnpd sends
        foreach (var sender in new[] { new IPEndPoint(IPAddress.Parse("198.19.0.2"), 36338), new IPEndPoint(IPAddress.Parse("2001:db8::7"), 1) })
        {
            var request = BindingRequest(changeRequest);
            var answer = StunResponder.Answer(request, sender);
            Assert.NotNull(answer);
            Assert.Equal(request.AsSpan(8, 12).ToArray(), answer.AsSpan(8, 12).ToArray());
            Assert.Equal(sender, Mapped(answer));
        }
        Assert.Null(StunResponder.Answer(new byte[19], new IPEndPoint(IPAddress.Loopback, 1)));
        var notBinding = BindingRequest();
        notBinding[1] = 0x02;
        Assert.Null(StunResponder.Answer(notBinding, new IPEndPoint(IPAddress.Loopback, 1)));
        var noCookie = BindingRequest();
        noCookie[4] = 0;
        Assert.Null(StunResponder.Answer(noCookie, new IPEndPoint(IPAddress.Loopback, 1)));
    }

    private const string Description = """
        <?xml version="1.0"?>
        <root xmlns="urn:schemas-upnp-org:device-1-0">
          <URLBase>http://198.18.0.1:5000/</URLBase>
          <device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><UDN>uuid:igd</UDN>
            <serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/l3f</controlURL></service></serviceList>
            <deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType><UDN>uuid:wan</UDN>
              <deviceList>
                <device><UDN>uuid:conn-1</UDN><serviceList>
                  <service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>/ppp</controlURL></service>
                  <service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>ipc1</controlURL></service>
                </serviceList></device>
                <device><UDN>uuid:conn-2</UDN><serviceList>
                  <service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>http://198.18.0.9:80/ppp2</controlURL></service>
                </serviceList></device>
              </deviceList></device></deviceList>
          </device>
        </root>
        """;

    [Fact]
    public void A_description_yields_the_best_WAN_connection_service_of_every_nested_device()
    {
        var gateways = GatewayDescription.Parse(Description, new Uri("http://198.18.0.1:4000/rootDesc.xml"));

        Assert.Equal(
            [
                new Gateway(GatewayId.NewGatewayId("uuid:conn-1"), "http://198.18.0.1:5000/ipc1", "urn:schemas-upnp-org:service:WANIPConnection:1"),
                new Gateway(GatewayId.NewGatewayId("uuid:conn-2"), "http://198.18.0.9/ppp2", "urn:schemas-upnp-org:service:WANPPPConnection:1"),
            ],
            gateways);
        var withoutBase = Description.Replace("<URLBase>http://198.18.0.1:5000/</URLBase>", "");
        Assert.Equal("http://198.18.0.1:4000/ipc1", GatewayDescription.Parse(withoutBase, new Uri("http://198.18.0.1:4000/rootDesc.xml"))[0].ControlUrl);
    }

    [Fact]
    public void A_description_that_is_not_one_is_refused_with_the_reason()
    {
        var location = new Uri("http://198.18.0.1/d.xml");
        Assert.Contains("not XML", Assert.Throws<FormatException>(() => GatewayDescription.Parse("<root", location)).Message);
        Assert.Contains("not a UPnP device description", Assert.Throws<FormatException>(() => GatewayDescription.Parse("<html/>", location)).Message);
        var bomb = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaa\">]><root xmlns=\"urn:schemas-upnp-org:device-1-0\">&a;</root>";
        Assert.Throws<FormatException>(() => GatewayDescription.Parse(bomb, location));
        Assert.Empty(GatewayDescription.Parse("<root xmlns=\"urn:schemas-upnp-org:device-1-0\"><device><UDN>uuid:x</UDN></device></root>", location));
    }

    [Fact]
    public void Only_a_search_answer_with_an_http_LOCATION_counts()
    {
        Assert.Equal(new Uri("http://198.18.0.1:45841/rootDesc.xml"),
            SsdpSearch.LocationOf("HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:x\r\nlocation: http://198.18.0.1:45841/rootDesc.xml\r\n\r\n"));
        Assert.Null(SsdpSearch.LocationOf("NOTIFY * HTTP/1.1\r\nLOCATION: http://198.18.0.1/\r\n\r\n"));
        Assert.Null(SsdpSearch.LocationOf("HTTP/1.1 200 OK\r\nLOCATION: file:///etc/passwd\r\n\r\n"));
        Assert.Null(SsdpSearch.LocationOf("HTTP/1.1 200 OK\r\nST: urn:x\r\n\r\n"));
    }

    [Fact]
    public async Task The_gateway_leaves_no_process_table_or_file_behind()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var lab = await UpnpLab.CreateAsync(cts.Token);
        var gateway = lab.Gateway!;
        var pid = int.Parse(await File.ReadAllTextAsync(Path.Combine(lab.RunDirectory, "miniupnpd", "miniupnpd.pid"), cts.Token));
        Assert.True(ProcessSignals.IsAlive(pid));
        Assert.Contains("chain prerouting_miniupnpd", await lab.GatewayRulesAsync(cts.Token));

        await lab.StopGatewayAsync();

        Assert.True(gateway.HasExited);
        Assert.False(ProcessSignals.IsAlive(pid));
        Assert.False(Directory.Exists(Path.Combine(lab.RunDirectory, "miniupnpd")));
        var tables = await ProcessRunner.Default.RunAsync(new ProcessRequest(["nft", "list", "tables"]) { Namespace = lab.Router }, cts.Token);
        Assert.DoesNotContain(MiniUpnpdGateway.TableName, tables.StandardOutput);
    }

    [Fact]
    public async Task A_gateway_whose_STUN_server_does_not_answer_fails_to_start_with_miniupnpds_words_and_leaves_nothing()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var lab = await UpnpLab.CreateAsync(cts.Token, startGateway: false);
        var runDirectory = Path.Combine(lab.RunDirectory, "lonely");
        var options = new MiniUpnpdOptions(lab.Router, "lan0", "wan0", new IPEndPoint(UpnpLab.InternetHost, 3479), runDirectory);

        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => MiniUpnpdGateway.StartAsync(options, cts.Token));

        Assert.Contains("STUN", failure.Message);
        Assert.False(Directory.Exists(runDirectory));
        var tables = await ProcessRunner.Default.RunAsync(new ProcessRequest(["nft", "list", "tables"]) { Namespace = lab.Router }, cts.Token);
        Assert.DoesNotContain(MiniUpnpdGateway.TableName, tables.StandardOutput);
    }
}
