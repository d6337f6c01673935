using System.Net;
using Hybrid.Sandbox.Lab;

namespace Hybrid.Integration.Net.Dhcp;

/// <summary>
/// A test's view of a real dnsmasq (<see cref="LabDnsmasq"/>): either its own, on the lab's extra host "dhcp"
/// (the client tests, which build no router), or the lab router's (<see cref="Of"/>, the agent tests). Disposing
/// writes dnsmasq's log to the test output (shown when a test fails) and stops dnsmasq when the test started it.
/// </summary>
internal sealed class DnsmasqServer : IAsyncDisposable
{
    /// <summary>T1 3 s and T2 5 s: renewals and rebinding within seconds on dnsmasq's shortest lease.</summary>
    public static DnsmasqConfig Fast(IPAddress first, IPAddress last) => new(first, last) { RenewSeconds = 3, RebindSeconds = 5 };

    private readonly LabDnsmasq _server;
    private readonly bool _owned;
    private readonly Xunit.Abstractions.ITestOutputHelper _output;

    private DnsmasqServer(LabDnsmasq server, bool owned, Xunit.Abstractions.ITestOutputHelper output)
    {
        _server = server;
        _owned = owned;
        _output = output;
    }

    public LabHost Host => _server.Host;
    public string LeaseFile => _server.LeaseFile;
    public string LogFile => _server.LogFile;

    /// <summary>Wires the "dhcp" host to the lab and starts dnsmasq on it.</summary>
    public static async Task<DnsmasqServer> StartAsync(NetnsLab lab, DnsmasqConfig config, Xunit.Abstractions.ITestOutputHelper output, CancellationToken ct)
    {
        Requires.Tool("dnsmasq", "dnsmasq-base");
        var host = await lab.AddHostAsync(lab.Topology.ExtraHost("dhcp", 1), ct);
        var server = await LabDnsmasq.StartAsync(host, lab.Topology.PrefixLength, Path.Combine(lab.RunDirectory, "dnsmasq"), config, ct);
        return new DnsmasqServer(server, owned: true, output);
    }

    /// <summary>The lab router's dnsmasq, which the lab stops.</summary>
    public static DnsmasqServer Of(HybridLab lab, Xunit.Abstractions.ITestOutputHelper output) =>
        new(lab.Router?.Dhcp ?? throw new InvalidOperationException("the lab's router runs no DHCP server"), owned: false, output);

    public Task RestartAsync(DnsmasqConfig config, bool forgetLeases, CancellationToken ct) => _server.RestartAsync(config, forgetLeases, ct);

    public IReadOnlyList<string> Log() => _server.Log();

    public IReadOnlyList<string> LogOf(string mac) => _server.LogOf(mac);

    public IReadOnlyList<DnsmasqLease> Leases() => _server.Leases();

    public async ValueTask DisposeAsync()
    {
        if (_owned) await _server.StopAsync();
        try
        {
            foreach (var line in _server.Log()) _output.WriteLine("dnsmasq: " + line);
        }
        catch (InvalidOperationException)
        {
            // the test has finished
        }
    }
}
