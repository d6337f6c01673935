using System.Net;
using Hybrid.Net;

namespace Hybrid.Agent;

/// <summary>Where this node's VIP addresses live.</summary>
internal interface IVipAddresses
{
    /// <summary>Addresses left by an earlier run of the agent (recognised by Hybrid's mark).</summary>
    Task<IReadOnlyList<(IPAddress Address, int Prefix, TimeSpan? Remaining)>> OwnAsync(CancellationToken cancellationToken);

    Task AddAsync(IPAddress address, int prefix, TimeSpan lifetime, CancellationToken cancellationToken);

    /// <summary>Restarts the lifetime of many addresses at once; returns the ones that failed, with why.</summary>
    Task<IReadOnlyList<(IPAddress Address, string Error)>> RefreshAsync(
        IReadOnlyList<(IPAddress Address, int Prefix)> vips, TimeSpan lifetime, CancellationToken cancellationToken);

    Task RemoveAsync(IPAddress address, int prefix, CancellationToken cancellationToken);
}

/// <summary>VIPs on a real interface, through rtnetlink.</summary>
internal sealed class KernelVipAddresses(AddressTable table, int interfaceIndex) : IVipAddresses
{
    public async Task<IReadOnlyList<(IPAddress Address, int Prefix, TimeSpan? Remaining)>> OwnAsync(CancellationToken cancellationToken) =>
        (await table.DumpAsync(interfaceIndex, cancellationToken))
            .Where(a => a.IsHybrid)
            .Select(a => (a.Address, a.PrefixLength, a.ValidLifetime))
            .ToList();

    public Task AddAsync(IPAddress address, int prefix, TimeSpan lifetime, CancellationToken cancellationToken) =>
        table.AddOrRefreshAsync(interfaceIndex, address, prefix, lifetime, cancellationToken);

    public async Task<IReadOnlyList<(IPAddress Address, string Error)>> RefreshAsync(
        IReadOnlyList<(IPAddress Address, int Prefix)> vips, TimeSpan lifetime, CancellationToken cancellationToken) =>
        (await table.AddOrRefreshManyAsync(
            vips.Select(v => new AddressAssignment(interfaceIndex, v.Address, v.Prefix, lifetime)).ToList(), cancellationToken))
        .Select(f => (f.Assignment.Address, f.Error.Message))
        .ToList();

    public Task RemoveAsync(IPAddress address, int prefix, CancellationToken cancellationToken) =>
        table.RemoveAsync(interfaceIndex, address, prefix, cancellationToken);
}

/// <summary>
/// No data plane at all: the ownership protocol runs, nothing reaches an interface. Only for measuring the
/// agent's API traffic with many simulated nodes in one process (tests/Benchmarks api-load), where no
/// network namespace is needed or wanted.
/// </summary>
internal sealed class DetachedVipAddresses : IVipAddresses
{
    public Task<IReadOnlyList<(IPAddress Address, int Prefix, TimeSpan? Remaining)>> OwnAsync(CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<(IPAddress, int, TimeSpan?)>>([]);

    public Task AddAsync(IPAddress address, int prefix, TimeSpan lifetime, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task<IReadOnlyList<(IPAddress Address, string Error)>> RefreshAsync(
        IReadOnlyList<(IPAddress Address, int Prefix)> vips, TimeSpan lifetime, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<(IPAddress, string)>>([]);

    public Task RemoveAsync(IPAddress address, int prefix, CancellationToken cancellationToken) => Task.CompletedTask;
}
