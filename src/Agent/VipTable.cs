using System.Net;
using Hybrid.Facade;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// The VIPs this agent put on its interface (netlink, marked with Hybrid's address protocol), with what
/// the domain needs to know about each: when the kernel will drop it unless refreshed, and how many
/// announcements went out since it was added. At startup it adopts the marked addresses it finds (a
/// restarted agent), which the first plan then keeps or removes.
/// </summary>
internal sealed class VipTable(IVipAddresses addresses, ILogger<VipTable> logger)
{
    private sealed record Entry(IPAddress Address, int Prefix, long? ExpiresAt, long? AddedAt, int Sent, long LastSentAt);

    // Written by the reconcile loop, and by the link watcher when the kernel drops an address.
    private readonly Lock _lock = new();
    private readonly Dictionary<IPAddress, Entry> _entries = [];
    private readonly HashSet<IPAddress> _removing = [];

    public int Count
    {
        get { lock (_lock) return _entries.Count; }
    }

    public async Task AdoptAsync(CancellationToken cancellationToken)
    {
        var now = MonotonicClock.NowMs;
        foreach (var (address, prefix, remaining) in await addresses.OwnAsync(cancellationToken))
        {
            long? expires = remaining is { } life ? now + (long)life.TotalMilliseconds : null;
            lock (_lock) _entries[address] = new Entry(address, prefix, expires, null, 0, 0);
            logger.LogInformation("Found {Vip}/{Prefix} from an earlier run on the interface", address, prefix);
        }
    }

    public VipInput[] Snapshot()
    {
        lock (_lock)
        {
            return _entries.Values.Select(e => new VipInput
            {
                Address = e.Address.ToString(),
                Prefix = e.Prefix,
                ExpiresAt = e.ExpiresAt,
                AddedAt = e.AddedAt,
                Sent = e.Sent,
                LastSentAt = e.LastSentAt,
            }).ToArray();
        }
    }

    public async Task AddAsync(IPAddress address, int prefix, long lifetimeMs, CancellationToken cancellationToken)
    {
        var now = MonotonicClock.NowMs;
        await addresses.AddAsync(address, prefix, TimeSpan.FromMilliseconds(lifetimeMs), cancellationToken);
        lock (_lock) _entries[address] = new Entry(address, prefix, now + lifetimeMs, now, 0, now);
    }

    public async Task RefreshAsync(IReadOnlyList<(IPAddress Address, int Prefix)> vips, long lifetimeMs, CancellationToken cancellationToken)
    {
        var now = MonotonicClock.NowMs;
        foreach (var (address, error) in await addresses.RefreshAsync(vips, TimeSpan.FromMilliseconds(lifetimeMs), cancellationToken))
            logger.LogError("Refreshing {Vip} failed: {Error}", address, error);
        lock (_lock)
        {
            foreach (var (address, prefix) in vips)
            {
                _entries[address] = _entries.TryGetValue(address, out var e)
                    ? e with { ExpiresAt = now + lifetimeMs }
                    : new Entry(address, prefix, now + lifetimeMs, null, 0, 0);
            }
        }
    }

    public async Task RemoveAsync(IPAddress address, int prefix, CancellationToken cancellationToken)
    {
        lock (_lock) _removing.Add(address);
        try
        {
            await addresses.RemoveAsync(address, prefix, cancellationToken);
            lock (_lock) _entries.Remove(address);
        }
        finally
        {
            lock (_lock) _removing.Remove(address);
        }
    }

    public void Announced(IPAddress address)
    {
        var now = MonotonicClock.NowMs;
        lock (_lock)
        {
            if (_entries.TryGetValue(address, out var e))
                _entries[address] = e with { AddedAt = e.AddedAt ?? now, Sent = e.Sent + 1, LastSentAt = now };
        }
    }

    /// <summary>
    /// The kernel (lifetime expiry) or an operator removed an address: forget it. Returns false for an address
    /// this table is removing itself (the netlink notification of our own removal).
    /// </summary>
    public bool Vanished(IPAddress address)
    {
        lock (_lock) return !_removing.Contains(address) && _entries.Remove(address);
    }
}
