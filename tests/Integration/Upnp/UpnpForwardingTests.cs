using System.Net;
using Hybrid.Domain;
using Hybrid.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Hybrid.Integration.Upnp;

/// <summary>
/// The UPnP client and <see cref="UpnpForwarder"/> against Debian's miniupnpd in a router namespace (secure mode,
/// as home routers run it), with traffic from an "Internet" namespace through the router's NAT to a listener on
/// the VIP. Every wait is a condition with a deadline.
/// </summary>
public sealed class UpnpForwardingTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);
    private static readonly ServiceKey Web = new("default", "web");

    private static CancellationToken Deadline(int seconds = 90) => new CancellationTokenSource(TimeSpan.FromSeconds(seconds)).Token;

    private static async Task<Gateway> DiscoverOneAsync(NodeClient client, CancellationToken ct)
    {
        var gateways = await client.Discovery.DiscoverAsync(ct);
        return Assert.Single(gateways);
    }

    private static Mapping MappingOf(Gateway gateway, int port, MappingLease lease) =>
        new(new MappingKey(gateway.Id, MappingProtocol.Tcp, port), UpnpLab.VipIp, port, Hybrid.Domain.Upnp.description(Web), lease, Web);

    [Fact]
    public async Task Discovery_on_the_VIP_interface_finds_the_gateway_and_its_WAN_IP_connection_service()
    {
        var ct = Deadline();
        await using var lab = await UpnpLab.CreateAsync(ct);
        using var client = lab.CreateNodeClient();

        var gateway = await DiscoverOneAsync(client, ct);

        Assert.Equal("urn:schemas-upnp-org:service:WANIPConnection:2", gateway.ServiceType);
        var control = new Uri(gateway.ControlUrl);
        Assert.Equal(UpnpLab.RouterLan.ToString(), control.Host);
        Assert.Equal(lab.Gateway!.HttpPort, control.Port);
        Assert.StartsWith("uuid:", gateway.Id.ToString());
        Assert.Equal(UpnpLab.RouterWan, await client.Igd.GetExternalIPAddressAsync(gateway, null, ct));
    }

    [Fact]
    public async Task A_mapping_sent_from_the_VIP_carries_Internet_traffic_to_the_VIP_and_a_delete_ends_it()
    {
        var ct = Deadline();
        await using var lab = await UpnpLab.CreateAsync(ct);
        using var client = lab.CreateNodeClient();
        await using var listener = lab.ListenOnVip(32380, "hello-from-the-vip");
        var gateway = await DiscoverOneAsync(client, ct);

        var before = await lab.ConnectFromInternetAsync(32380, ct);
        Assert.Null(before.Answer); // nothing forwards the port yet

        await client.Igd.AddPortMappingAsync(gateway, MappingOf(gateway, 32380, UpnpLab.Lease(600)), ct);

        var entry = await client.Igd.GetSpecificPortMappingEntryAsync(gateway, MappingProtocol.Tcp, 32380, null, ct);
        Assert.NotNull(entry);
        Assert.Equal(UpnpLab.Vip, entry.InternalClient);
        Assert.Equal(32380, entry.InternalPort);
        Assert.Equal("hybrid default/web", entry.Description);
        Assert.InRange(entry.LeaseDurationSeconds, 590, 600);
        // An independent client (miniupnpc) sees the same entry.
        Assert.Contains($"32380->{UpnpLab.Vip}:32380", (await lab.UpnpcAsync(ct, "-l")).StandardOutput);

        var through = await lab.ConnectFromInternetAsync(32380, ct);
        Assert.Equal("hello-from-the-vip", through.Answer);
        Assert.Equal(1, listener.Accepted);

        await client.Igd.DeletePortMappingAsync(gateway, new MappingKey(gateway.Id, MappingProtocol.Tcp, 32380), UpnpLab.Vip, ct);

        Assert.Null(await client.Igd.GetSpecificPortMappingEntryAsync(gateway, MappingProtocol.Tcp, 32380, null, ct));
        var after = await lab.ConnectFromInternetAsync(32380, ct);
        Assert.Null(after.Answer);
        Assert.Equal(1, listener.Accepted);
        Assert.DoesNotContain("32380", await lab.GatewayRulesAsync(ct));
    }

    [Fact]
    public async Task A_port_another_host_has_mapped_is_refused_with_718_and_reported_as_a_conflict()
    {
        var ct = Deadline();
        await using var lab = await UpnpLab.CreateAsync(ct);
        using var client = lab.CreateNodeClient();
        var gateway = await DiscoverOneAsync(client, ct);
        // Another host on the LAN (the node's own address, via miniupnpc) holds TCP 32380.
        var other = await lab.UpnpcAsync(ct, "-a", UpnpLab.NodeIp.ToString(), "32380", "32380", "TCP", "600");
        Assert.True(other.Succeeded, other.StandardOutput + other.StandardError);
        Assert.Equal(UpnpLab.NodeIp, (await client.Igd.GetSpecificPortMappingEntryAsync(gateway, MappingProtocol.Tcp, 32380, null, ct))!.InternalClient);

        var refused = await Assert.ThrowsAsync<UpnpCallException>(() =>
            client.Igd.AddPortMappingAsync(gateway, MappingOf(gateway, 32380, UpnpLab.Lease(600)), ct));

        Assert.Equal(718, refused.UpnpErrorCode);
        var reason = FailureReasonModule.ofFailure(refused.Failure);
        Assert.Equal(FailureReason.ConflictInMappingEntry, reason);
        var problem = ForwardProblem.NewMappingFailed(gateway.Id, new ServicePort("TCP", 32380), reason);
        Assert.Equal("UPnPConflict", ForwardProblemModule.eventReason(problem));
        Assert.Contains("another host", ForwardProblemModule.describe(problem));
        // The other host's mapping is untouched.
        Assert.Equal(UpnpLab.NodeIp, (await client.Igd.GetSpecificPortMappingEntryAsync(gateway, MappingProtocol.Tcp, 32380, null, ct))!.InternalClient);
    }

    [Fact]
    public async Task A_gateway_that_starts_after_the_forwarder_is_found_by_a_later_search_and_then_forwards()
    {
        var ct = Deadline(120);
        await using var lab = await UpnpLab.CreateAsync(ct, startGateway: false);
        using var client = lab.CreateNodeClient();
        await using var listener = lab.ListenOnVip(32380, "late-gateway");
        await using var forwarder = ForwarderRun.Start(client, UpnpLab.Forward("web", 32380, Hybrid.Domain.Upnp.DefaultLease));

        await Eventually.WaitAsync(() => forwarder.Forwarder.Problems.Any(p => p.Item2.IsNoGatewayFound), Patience,
            "the forwarder searched in vain and says so");
        Assert.True(forwarder.Forwarder.State.Discovery is Discovery.Idle { failures: > 0 });

        await lab.StartGatewayAsync(ct);

        await Eventually.WaitAsync(async () => (await lab.ConnectFromInternetAsync(32380, ct)).Answer == "late-gateway", TimeSpan.FromSeconds(60),
            "traffic from the Internet reaches the VIP once the late gateway is found");
        await Eventually.WaitAsync(() => forwarder.Forwarder.ExternalAddresses(Web).SequenceEqual([IpModule.tryParse(UpnpLab.RouterWan.ToString())!.Value]),
            Patience, "the gateway's external address is reported for the Service");
        Assert.DoesNotContain(forwarder.Forwarder.Problems, p => p.Item2.IsNoGatewayFound);
    }

    [Fact]
    public async Task A_short_lease_lapses_without_refresh_and_stays_while_the_forwarder_refreshes_it()
    {
        var ct = Deadline(120);
        await using var lab = await UpnpLab.CreateAsync(ct);
        using var client = lab.CreateNodeClient();
        var gateway = await DiscoverOneAsync(client, ct);

        // Control: a 3 s mapping made once is gone soon after 3 s (the gateway really expires leases).
        await client.Igd.AddPortMappingAsync(gateway, MappingOf(gateway, 32381, UpnpLab.Lease(3)), ct);
        Assert.NotNull(await client.Igd.GetSpecificPortMappingEntryAsync(gateway, MappingProtocol.Tcp, 32381, null, ct));
        await Eventually.WaitAsync(async () => await client.Igd.GetSpecificPortMappingEntryAsync(gateway, MappingProtocol.Tcp, 32381, null, ct) is null,
            TimeSpan.FromSeconds(15), "the unrefreshed 3 s mapping expires");

        await using var listener = lab.ListenOnVip(32380, "refreshed");
        await using var forwarder = ForwarderRun.Start(client, UpnpLab.Forward("web", 32380, UpnpLab.Lease(3)));
        await Eventually.WaitAsync(async () => await client.Igd.GetSpecificPortMappingEntryAsync(gateway, MappingProtocol.Tcp, 32380, null, ct) is not null,
            Patience, "the forwarder maps the port");

        // Four lease lengths: the entry never disappears, and its remaining lease never runs out.
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var lowest = int.MaxValue;
        while (watch.Elapsed < TimeSpan.FromSeconds(12))
        {
            var entry = await client.Igd.GetSpecificPortMappingEntryAsync(gateway, MappingProtocol.Tcp, 32380, null, ct);
            Assert.True(entry is not null, $"the mapping vanished after {watch.Elapsed.TotalSeconds:0.0} s although the forwarder refreshes it");
            lowest = Math.Min(lowest, entry.LeaseDurationSeconds);
            await Task.Delay(200, ct);
        }
        Assert.InRange(lowest, 1, 3);
        Assert.Equal("refreshed", (await lab.ConnectFromInternetAsync(32380, ct)).Answer);
    }

    [Fact]
    public async Task A_hand_over_leaves_the_mapping_to_the_next_holder_and_a_Service_that_stops_forwarding_is_deleted()
    {
        var ct = Deadline(120);
        await using var lab = await UpnpLab.CreateAsync(ct);
        using var client = lab.CreateNodeClient();
        var gateway = await DiscoverOneAsync(client, ct);
        await using var listener = lab.ListenOnVip(32380, "kept");
        var lease = Hybrid.Domain.Upnp.DefaultLease;
        await using var forwarder = ForwarderRun.Start(client,
            UpnpLab.Forwards(("web", 32380, lease, true, "default"), ("api", 32381, lease, true, "default")));
        async Task<bool> Mapped(int port) => await client.Igd.GetSpecificPortMappingEntryAsync(gateway, MappingProtocol.Tcp, port, null, ct) is not null;
        await Eventually.WaitAsync(async () => await Mapped(32380) && await Mapped(32381), Patience, "both ports mapped");

        // web's group moves to another node (which maps again), api stops asking for forwarding.
        forwarder.Forwarder.Update(UpnpLab.Forwards(("web", 32380, lease, false, "default")), [UpnpLab.VipIp]);

        await Eventually.WaitAsync(async () => !await Mapped(32381), Patience, "api's mapping is deleted");
        await Eventually.WaitAsync(() => forwarder.Forwarder.State.Mappings.IsEmpty, Patience, "this node forgets both");
        Assert.True(await Mapped(32380), "web's mapping stays for the new holder");
        Assert.Equal("kept", (await lab.ConnectFromInternetAsync(32380, ct)).Answer);
        Assert.Null((await lab.ConnectFromInternetAsync(32381, ct)).Answer);
    }

    /// <summary>A running forwarder in the node's namespace; disposal stops it.</summary>
    private sealed class ForwarderRun : IAsyncDisposable
    {
        private readonly CancellationTokenSource stop = new();
        private readonly Task run;

        private ForwarderRun(UpnpForwarder forwarder)
        {
            Forwarder = forwarder;
            run = forwarder.RunAsync(stop.Token);
        }

        public UpnpForwarder Forwarder { get; }

        public static ForwarderRun Start(NodeClient client, Wants wants)
        {
            var forwarder = new UpnpForwarder(client.Discovery, client.Igd, TimeProvider.System, _ => { }, NullLogger<UpnpForwarder>.Instance);
            forwarder.Update(wants, [UpnpLab.VipIp]);
            return new ForwarderRun(forwarder);
        }

        public async ValueTask DisposeAsync()
        {
            await stop.CancelAsync();
            await run;
            stop.Dispose();
        }
    }
}
