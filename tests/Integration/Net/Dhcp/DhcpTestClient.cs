using System.Net;
using System.Threading.Channels;
using Hybrid.Domain;
using Hybrid.Net;
using Hybrid.Net.Dhcp;
using Hybrid.Sandbox.Lab;
using Microsoft.Extensions.Logging;
using Microsoft.FSharp.Collections;
using Microsoft.FSharp.Core;
using Xunit.Abstractions;
using DhcpClient = Hybrid.Domain.Dhcp;

namespace Hybrid.Integration.Net.Dhcp;

/// <summary>
/// One Service's DHCP client on one lab node, wired the way the agent will wire it: the macvlan on the node's
/// eth0 (created down, sysctls set, then up), the packet socket on it, the runner; and, playing the agent's
/// part, the leased address put on the macvlan when obtained and taken off when lost. Disposing cancels the
/// runner (nothing more is sent) and deletes the macvlan.
/// </summary>
internal sealed class DhcpTestClient : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Channel<DhcpCommand> _seen = Channel.CreateUnbounded<DhcpCommand>();
    private readonly List<DhcpCommand> _history = [];
    private readonly MacvlanTable _macvlans;
    private readonly AddressTable _addresses;
    private readonly DhcpPacketSocket _socket;
    private Task _run = Task.CompletedTask;
    private Task _pump = Task.CompletedTask;

    private DhcpTestClient(LabHost node, DhcpIdentity identity, MacvlanLink link, MacvlanTable macvlans, AddressTable addresses,
        DhcpPacketSocket socket, DhcpClientRunner runner)
    {
        Node = node;
        Identity = identity;
        Link = link;
        _macvlans = macvlans;
        _addresses = addresses;
        _socket = socket;
        Runner = runner;
    }

    public LabHost Node { get; }
    public DhcpIdentity Identity { get; }
    public MacvlanLink Link { get; }
    public DhcpClientRunner Runner { get; }

    /// <summary>The MAC as dnsmasq prints it.</summary>
    public string Mac => Identity.Mac.ToString();

    /// <summary>Leased and Lost commands so far, in order.</summary>
    public IReadOnlyList<DhcpCommand> History
    {
        get
        {
            lock (_history) return _history.ToArray();
        }
    }

    /// <summary>The identity of a Service with this UID and annotations, as the agent computes it.</summary>
    public static DhcpIdentity IdentityOf(string uid, params (string Key, string Value)[] annotations)
    {
        var service = new Service(
            new ServiceKey("default", "svc-" + uid[..8]), uid, 0, "LoadBalancer", FSharpOption<string>.None,
            new Microsoft.FSharp.Collections.FSharpMap<string, string>(annotations.Select(a => Tuple.Create(a.Key, a.Value))),
            FSharpOption<string>.Some("0.0.0.0"), Microsoft.FSharp.Collections.FSharpList<ServicePort>.Empty, TrafficPolicy.Cluster,
            MapModule.Empty<string, string>(), Microsoft.FSharp.Collections.FSharpList<IngressEntry>.Empty, 0);
        var result = DhcpIdentityModule.ofService(service);
        return result.IsOk ? result.ResultValue : throw new ArgumentException(string.Join("; ", result.ErrorValue.Select(DhcpIdentityErrorModule.describe)));
    }

    public static async Task<DhcpTestClient> StartAsync(LabHost node, DhcpIdentity identity, DhcpTiming timing, Ip? known,
        ITestOutputHelper output, CancellationToken ct)
    {
        DhcpFrameCodec.WarmUp(); // as the agent does at startup
        var name = identity.Interface.Value;
        var macvlans = MacvlanTable.Open(node.Namespace);
        var addresses = AddressTable.Open(node.Namespace);
        await using var links = LinkTable.Open(node.Namespace);
        var parent = await links.GetAsync(node.Interface, ct) ?? throw new InvalidOperationException($"{node.Namespace} has no {node.Interface}");
        var link = await macvlans.EnsureAsync(parent.Index, name, new System.Net.NetworkInformation.PhysicalAddress(identity.Mac.Bytes), ct);
        NetworkNamespace.RunIn(node.Namespace, () => MacvlanSysctls.Apply(name));
        await macvlans.SetUpAsync(link.Index, ct);
        var socket = NetworkNamespace.RunIn(node.Namespace, () => DhcpPacketSocket.Open(link.Index));
        var runner = new DhcpClientRunner(DhcpClient.create(identity, timing), socket, TimeProvider.System,
            new TestOutputLogger<DhcpClientRunner>(output, $"{node.Name}/{name}"));
        var client = new DhcpTestClient(node, identity, link, macvlans, addresses, socket, runner);
        client._run = runner.RunAsync(known, client._stop.Token);
        client._pump = client.PumpAsync();
        return client;
    }

    /// <summary>Plays the agent: the address goes on the macvlan when obtained, off when lost.</summary>
    private async Task PumpAsync()
    {
        await foreach (var command in Runner.Events.ReadAllAsync())
        {
            switch (command)
            {
                case DhcpCommand.Leased { Item2.IsObtained: true } leased:
                    await _addresses.AddOrRefreshAsync(Link.Index, DhcpFrameCodec.ToAddress(leased.Item1.Address), 32, null, CancellationToken.None);
                    break;
                case DhcpCommand.Lost lost:
                    await _addresses.RemoveAsync(Link.Index, DhcpFrameCodec.ToAddress(lost.address), 32, CancellationToken.None);
                    break;
            }
            lock (_history) _history.Add(command);
            _seen.Writer.TryWrite(command);
        }
        _seen.Writer.TryComplete();
    }

    /// <summary>The next Leased/Lost command (after those already waited for) that matches.</summary>
    public async Task<T> WaitForAsync<T>(Func<T, bool> match, TimeSpan deadline, string what) where T : DhcpCommand
    {
        using var timeout = new CancellationTokenSource(deadline);
        try
        {
            while (true)
            {
                var command = await _seen.Reader.ReadAsync(timeout.Token);
                if (command is T typed && match(typed)) return typed;
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{Node.Name}/{Identity.Interface}: no {what} within {deadline.TotalSeconds:0.#} s; " +
                $"phase {DhcpClient.phaseName(Runner.State.Phase)}, history: {string.Join(", ", History.Select(Describe))}");
        }
        catch (ChannelClosedException)
        {
            throw new InvalidOperationException($"{Node.Name}/{Identity.Interface}: the client stopped before {what}");
        }
    }

    /// <summary>The next lease obtained.</summary>
    public async Task<Lease> ObtainedAsync(TimeSpan deadline) =>
        (await WaitForAsync<DhcpCommand.Leased>(l => l.Item2.IsObtained, deadline, "lease obtained")).Item1;

    public static string Describe(DhcpCommand command) => command switch
    {
        DhcpCommand.Leased l => $"{(l.Item2.IsObtained ? "obtained" : "extended")} {IpModule.format(l.Item1.Address)}",
        DhcpCommand.Lost l => $"lost {IpModule.format(l.address)} ({LostReasonModule.describe(l.reason)})",
        _ => command.ToString()!,
    };

    /// <summary>Stops the runner as the agent would (release, or keep for the next holder).</summary>
    public async Task StopAsync(StopMode mode, CancellationToken ct)
    {
        await Runner.StopAsync(mode, ct);
        await _run;
        await _pump;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _run;
        }
        catch (OperationCanceledException)
        {
        }
        await _pump;
        _socket.Dispose();
        await _macvlans.DeleteAsync(Link.Name, CancellationToken.None);
        await _macvlans.DisposeAsync();
        await _addresses.DisposeAsync();
        _stop.Dispose();
    }
}

/// <summary>Writes log lines to the test's output (they show when a test fails).</summary>
internal sealed class TestOutputLogger<T>(ITestOutputHelper output, string prefix) : ILogger<T>
{
    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        try
        {
            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel,-11} {prefix}: {formatter(state, exception)}");
        }
        catch (InvalidOperationException)
        {
            // the test has finished: nobody reads its output any more
        }
    }
}
