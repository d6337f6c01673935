using System.Net.NetworkInformation;
using Hybrid.Domain;
using Hybrid.Facade;
using Hybrid.Net;
using Hybrid.Net.Dhcp;
using Microsoft.Extensions.Logging;
using DhcpClient = Hybrid.Domain.Dhcp;

namespace Hybrid.Agent;

/// <summary>
/// Runs the DHCP clients the domain starts (StartDhcp) and stops them (StopDhcp), one per Service, each on its
/// own macvlan of the VIP interface: created down, its sysctls written, set up (docs/DHCP.md), the packet socket
/// and the <see cref="DhcpClientRunner"/> on it; the runner's Leased/Lost reach the domain as DhcpReported. A
/// stop completes (release sent, macvlan deleted) before a new client of the same Service creates its macvlan.
/// Start and Stop are called by the protocol loop only; the work runs in the background.
/// </summary>
internal sealed partial class DhcpSupervisor(int parentIndex, ProtocolInbox inbox, ILoggerFactory loggers) : IAsyncDisposable
{
    /// <summary>How long a stop waits for the runner (a DHCPRELEASE is one frame): the macvlan goes anyway.</summary>
    private static readonly TimeSpan StopBudget = TimeSpan.FromSeconds(2);

    private sealed class Client(CancellationTokenSource cancel, DhcpIdentity identity)
    {
        public CancellationTokenSource Cancel { get; } = cancel;
        public DhcpIdentity Identity { get; } = identity;
        public Task Run { get; set; } = Task.CompletedTask;
        public volatile DhcpClientRunner? Runner;
    }

    private readonly ILogger<DhcpSupervisor> _logger = loggers.CreateLogger<DhcpSupervisor>();
    private readonly MacvlanTable _macvlans = MacvlanTable.Open();
    private readonly Dictionary<string, Client> _running = new(StringComparer.Ordinal);
    /// <summary>The last stop of each Service, which its next start waits for (the macvlan has one name).</summary>
    private readonly Dictionary<string, Task> _stopping = new(StringComparer.Ordinal);

    public int Running => _running.Count;

    public void Start(ShellCommand.StartDhcp start, CancellationToken cancellationToken)
    {
        var key = KubeObjects.Key(start.Namespace, start.Name);
        if (_running.ContainsKey(key)) return;
        var client = new Client(CancellationTokenSource.CreateLinkedTokenSource(cancellationToken), start.Identity);
        var previous = _stopping.GetValueOrDefault(key, Task.CompletedTask);
        client.Run = Task.Run(() => RunAsync(key, start, previous, client), CancellationToken.None);
        _running[key] = client;
    }

    public void Stop(ShellCommand.StopDhcp stop)
    {
        var key = KubeObjects.Key(stop.Namespace, stop.Name);
        if (!_running.Remove(key, out var client)) return;
        _stopping[key] = Task.Run(() => StopAsync(key, stop.Identity, stop.Release, client), CancellationToken.None);
    }

    private async Task RunAsync(string key, ShellCommand.StartDhcp start, Task previousStop, Client client)
    {
        var token = client.Cancel.Token;
        var name = start.Identity.Interface.Value;
        var backoff = new Backoff();
        try
        {
            await previousStop.WaitAsync(token);
            DhcpFrameCodec.WarmUp();
            while (true)
            {
                DhcpPacketSocket? socket = null;
                try
                {
                    var link = await _macvlans.PrepareAsync(parentIndex, name, new PhysicalAddress(start.Identity.Mac.Bytes), token);
                    socket = DhcpPacketSocket.Open(link.Index);
                    var runner = new DhcpClientRunner(DhcpClient.create(start.Identity, DhcpTimingModule.Default), socket, TimeProvider.System,
                        loggers.CreateLogger<DhcpClientRunner>());
                    client.Runner = runner;
                    LogStarted(key, name, start.Identity.Mac.ToString(), start.Known is null ? "(none)" : IpModule.format(start.Known));
                    var pump = PumpAsync(start, runner);
                    try
                    {
                        await runner.RunAsync(start.Known, token);
                    }
                    finally
                    {
                        await pump;
                    }
                    return;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    var delay = backoff.Next();
                    LogSetUpFailed(e, key, name, (int)delay.TotalMilliseconds);
                    await Task.Delay(delay, token);
                }
                finally
                {
                    socket?.Dispose();
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Hands the runner's Leased and Lost commands to the domain.</summary>
    private async Task PumpAsync(ShellCommand.StartDhcp start, DhcpClientRunner runner)
    {
        await foreach (var command in runner.Events.ReadAllAsync())
            inbox.Post(n => n.DhcpReported(start.Namespace, start.Name, command, MonotonicClock.NowMs));
    }

    private async Task StopAsync(string key, DhcpIdentity identity, bool release, Client client)
    {
        var name = identity.Interface.Value;
        try
        {
            if (client.Runner is { } runner)
            {
                using var budget = new CancellationTokenSource(StopBudget);
                await runner.StopAsync(release ? StopMode.ReleaseLease : StopMode.KeepLease, budget.Token);
            }
        }
        catch (OperationCanceledException)
        {
            LogStopSlow(key, (int)StopBudget.TotalMilliseconds);
        }
        await client.Cancel.CancelAsync();
        try { await client.Run; } catch (OperationCanceledException) { }
        client.Cancel.Dispose();
        try
        {
            using var budget = new CancellationTokenSource(StopBudget);
            await _macvlans.DeleteAsync(name, budget.Token);
            LogStopped(key, name, release ? "released" : "kept for the next holder");
        }
        catch (Exception e)
        {
            LogDeleteFailed(e, key, name);
        }
    }

    public async ValueTask DisposeAsync()
    {
        // What the domain did not stop (the agent ends without a graceful stop): keep the leases, delete the macvlans.
        foreach (var key in _running.Keys.ToArray())
        {
            var client = _running[key];
            _running.Remove(key);
            _stopping[key] = StopAsync(key, client.Identity, false, client);
        }
        try
        {
            await Task.WhenAll(_stopping.Values);
        }
        catch (Exception e)
        {
            _logger.LogDebug("A DHCP client ended with {Error}", e.Message);
        }
        await _macvlans.DisposeAsync();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Service}: DHCP client on macvlan {Macvlan} ({Mac}), confirming {Known}")]
    private partial void LogStarted(string service, string macvlan, string mac, string known);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Service}: setting up macvlan {Macvlan} failed; retrying in {Delay} ms")]
    private partial void LogSetUpFailed(Exception error, string service, string macvlan, int delay);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Service}: the DHCP client did not stop within {Budget} ms; its macvlan is deleted anyway")]
    private partial void LogStopSlow(string service, int budget);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Service}: DHCP client stopped, lease {Outcome}, macvlan {Macvlan} deleted")]
    private partial void LogStopped(string service, string macvlan, string outcome);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Service}: deleting macvlan {Macvlan} failed")]
    private partial void LogDeleteFailed(Exception error, string service, string macvlan);
}
