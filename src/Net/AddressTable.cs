using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace Hybrid.Net;

/// <summary>
/// Puts addresses on interfaces, takes them off and lists them (RTM_NEWADDR / RTM_DELADDR / RTM_GETADDR).
/// Every address added here carries IFA_PROTO = <see cref="HybridProtocol"/>, so a restarted agent recognises
/// its own; a finite lifetime makes the kernel delete the address by itself unless it is refreshed in time
/// (adding an existing address again replaces it and restarts its lifetime clock).
/// Host-length addresses (/32, /128) get IFA_F_NOPREFIXROUTE (no per-VIP route; for IPv4 /32 the kernel adds
/// none anyway); shorter prefixes keep the kernel's prefix route so clients in that subnet are reached directly,
/// as kube-vip does. IPv6 addresses get IFA_F_NODAD so they are usable at once (never "tentative").
/// Caution, IPv4 prefixes shorter than /32: the first address of a subnet on an interface is its primary, later
/// ones are secondaries, and removing (or expiring) the primary silently removes the secondaries too unless
/// net.ipv4.conf.IF.promote_secondaries=1 (verified on this kernel). /32 VIPs are each their own primary.
/// </summary>
internal sealed class AddressTable(NetlinkSocket socket) : IDisposable, IAsyncDisposable
{
    /// <summary>IFA_PROTO value marking addresses added by Hybrid ('H').</summary>
    public const byte HybridProtocol = 0x48;

    /// <summary>Opens a table on its own netlink socket, in the named namespace when one is given.</summary>
    public static AddressTable Open(string? namespaceName = null) => new(NetlinkSocket.Open(namespaceName));

    /// <summary>
    /// Adds the address, or refreshes it if present (NLM_F_CREATE | NLM_F_REPLACE): idempotent. The lifetime is
    /// rounded up to whole seconds; null means forever. Throws <see cref="NetlinkException"/> when the kernel
    /// refuses (e.g. ENODEV for a missing interface).
    /// </summary>
    public async Task AddOrRefreshAsync(int ifIndex, IPAddress address, int prefixLength, TimeSpan? lifetime,
        CancellationToken cancellationToken)
    {
        var failures = await AddOrRefreshManyAsync([new AddressAssignment(ifIndex, address, prefixLength, lifetime)],
            cancellationToken).ConfigureAwait(false);
        if (failures.Count > 0) throw failures[0].Error;
    }

    /// <summary>
    /// Adds an address that should not be there yet (NLM_F_CREATE | NLM_F_EXCL: the kernel never replaces an
    /// existing one). When it is there already (EEXIST), it is refreshed only if Hybrid added it (its IFA_PROTO
    /// mark, e.g. left by an earlier agent process); an address somebody else added is left exactly as it is and
    /// reported as <see cref="AddressAddOutcome.NotOurs"/>.
    /// </summary>
    public async Task<AddressAddOutcome> AddAsync(int ifIndex, IPAddress address, int prefixLength, TimeSpan? lifetime,
        CancellationToken cancellationToken)
    {
        var result = (await AddManyAsync([new AddressAssignment(ifIndex, address, prefixLength, lifetime)], cancellationToken)
            .ConfigureAwait(false))[0];
        return result.Outcome ?? throw result.Error!;
    }

    /// <summary>
    /// <see cref="AddAsync"/> for many addresses with few system calls: the creates go out in batches (see
    /// <see cref="AddOrRefreshManyAsync"/>), and when some already exist one dump tells Hybrid's (refreshed, in
    /// one batch) from somebody else's (<see cref="AddressAddOutcome.NotOurs"/>, untouched). One result per
    /// assignment, in order; a refusal of one does not stop the others.
    /// </summary>
    public async Task<IReadOnlyList<AddressAddResult>> AddManyAsync(IReadOnlyList<AddressAssignment> assignments,
        CancellationToken cancellationToken)
    {
        foreach (var assignment in assignments) Validate(assignment);
        var created = await socket.ExecuteAsync(assignments.Count,
            (writer, i) => EncodeAdd(writer, assignments[i], replace: false), "RTM_NEWADDR", cancellationToken).ConfigureAwait(false);
        var results = new AddressAddResult[assignments.Count];
        var existing = new List<int>();
        for (var i = 0; i < assignments.Count; i++)
        {
            if (created[i].Succeeded) results[i] = new AddressAddResult(assignments[i], AddressAddOutcome.Added);
            else if (created[i].Errno == EEXIST) existing.Add(i);
            else results[i] = Refused(assignments[i], created[i]);
        }
        if (existing.Count == 0) return results;

        var present = new Dictionary<(int, IPAddress, int), InterfaceAddress>();
        foreach (var index in existing.Select(i => assignments[i].InterfaceIndex).Distinct())
            foreach (var a in await DumpAsync(index, cancellationToken).ConfigureAwait(false))
                present.TryAdd((a.InterfaceIndex, a.Address, a.PrefixLength), a);
        var ours = new List<int>();
        foreach (var i in existing)
        {
            var a = assignments[i];
            if (!present.TryGetValue((a.InterfaceIndex, a.Address, a.PrefixLength), out var found))
                // Gone again between the two calls: trying once more from the start is the domain's business (a retry).
                results[i] = new AddressAddResult(a, null, new NetlinkException($"RTM_NEWADDR {a}", EEXIST, "address vanished after EEXIST"));
            else if (!found.IsHybrid) results[i] = new AddressAddResult(a, AddressAddOutcome.NotOurs);
            else ours.Add(i);
        }
        if (ours.Count == 0) return results;
        var refreshed = await socket.ExecuteAsync(ours.Count,
            (writer, j) => EncodeAdd(writer, assignments[ours[j]], replace: true), "RTM_NEWADDR", cancellationToken).ConfigureAwait(false);
        for (var j = 0; j < ours.Count; j++)
        {
            var a = assignments[ours[j]];
            results[ours[j]] = refreshed[j].Succeeded ? new AddressAddResult(a, AddressAddOutcome.Refreshed) : Refused(a, refreshed[j]);
        }
        return results;
    }

    private static AddressAddResult Refused(AddressAssignment assignment, NetlinkStatus status) =>
        new(assignment, null, new NetlinkException($"RTM_NEWADDR {assignment}", status.Errno, status.KernelMessage));

    /// <summary>
    /// Adds or refreshes many addresses with few system calls: up to <see cref="NetlinkSocket.MaxMessagesPerSend"/>
    /// requests per send and one ack per send. Returns the requests the kernel refused (empty = all applied);
    /// one refusal does not stop the others.
    /// </summary>
    public async Task<IReadOnlyList<AddressFailure>> AddOrRefreshManyAsync(IReadOnlyList<AddressAssignment> assignments,
        CancellationToken cancellationToken)
    {
        foreach (var assignment in assignments) Validate(assignment);
        var results = await socket.ExecuteAsync(assignments.Count,
            (writer, i) => EncodeAdd(writer, assignments[i], replace: true), "RTM_NEWADDR", cancellationToken).ConfigureAwait(false);
        return Failures(assignments, results, NetlinkProtocol.RTM_NEWADDR, treatAsGone: false);
    }

    /// <summary>
    /// Removes the address. Idempotent: an address that is not there (EADDRNOTAVAIL, ENOENT, ESRCH), or whose
    /// interface no longer exists (ENODEV), counts as removed.
    /// </summary>
    public async Task RemoveAsync(int ifIndex, IPAddress address, int prefixLength, CancellationToken cancellationToken)
    {
        var failures = await RemoveManyAsync([new AddressAssignment(ifIndex, address, prefixLength)], cancellationToken)
            .ConfigureAwait(false);
        if (failures.Count > 0) throw failures[0].Error;
    }

    /// <summary>Removes many addresses in batches (see <see cref="AddOrRefreshManyAsync"/>); lifetimes are ignored.</summary>
    public async Task<IReadOnlyList<AddressFailure>> RemoveManyAsync(IReadOnlyList<AddressAssignment> addresses,
        CancellationToken cancellationToken)
    {
        foreach (var address in addresses) Validate(address);
        var results = await socket.ExecuteAsync(addresses.Count,
            (writer, i) => EncodeRemove(writer, addresses[i]), "RTM_DELADDR", cancellationToken).ConfigureAwait(false);
        return Failures(addresses, results, NetlinkProtocol.RTM_DELADDR, treatAsGone: true);
    }

    /// <summary>Lists the IPv4 and IPv6 addresses of one interface, or of all when <paramref name="ifIndex"/> is null.</summary>
    public async Task<IReadOnlyList<InterfaceAddress>> DumpAsync(int? ifIndex, CancellationToken cancellationToken)
    {
        var addresses = await socket.DumpAsync(writer =>
            {
                writer.BeginMessage(NetlinkProtocol.RTM_GETADDR, 0);
                var header = writer.AppendFixed(NetlinkProtocol.IfAddrMsgSize);
                header[0] = NetlinkProtocol.AF_UNSPEC;
                BinaryPrimitives.WriteUInt32LittleEndian(header[4..], (uint)(ifIndex ?? 0));
                writer.EndMessage();
            },
            NetlinkDecoder.DecodeAddress,
            ifIndex is { } index ? $"RTM_GETADDR dump of ifindex {index}" : "RTM_GETADDR dump",
            cancellationToken).ConfigureAwait(false);
        return ifIndex is { } only ? addresses.Where(a => a.InterfaceIndex == only).ToList() : addresses;
    }

    private const int EEXIST = 17;

    private static void EncodeAdd(NetlinkMessageWriter writer, AddressAssignment assignment, bool replace)
    {
        var ipv6 = assignment.Address.AddressFamily == AddressFamily.InterNetworkV6;
        var hostLength = ipv6 ? 128 : 32;
        uint flags = 0;
        if (ipv6) flags |= InterfaceAddressFlags.NoDad;
        if (assignment.PrefixLength == hostLength) flags |= InterfaceAddressFlags.NoPrefixRoute;
        var seconds = LifetimeSeconds(assignment.Lifetime);

        writer.BeginMessage(NetlinkProtocol.RTM_NEWADDR, (ushort)(NetlinkProtocol.NLM_F_CREATE
            | (replace ? NetlinkProtocol.NLM_F_REPLACE : NetlinkProtocol.NLM_F_EXCL)));
        WriteHeader(writer, assignment, (byte)flags);
        writer.AddAddress(NetlinkProtocol.IFA_LOCAL, assignment.Address);
        writer.AddAddress(NetlinkProtocol.IFA_ADDRESS, assignment.Address);
        writer.AddUInt32(NetlinkProtocol.IFA_FLAGS, flags);
        Span<byte> cacheInfo = stackalloc byte[16]; // ifa_prefered, ifa_valid, cstamp, tstamp
        cacheInfo.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(cacheInfo, seconds);
        BinaryPrimitives.WriteUInt32LittleEndian(cacheInfo[4..], seconds);
        writer.AddAttribute(NetlinkProtocol.IFA_CACHEINFO, cacheInfo);
        writer.AddUInt8(NetlinkProtocol.IFA_PROTO, HybridProtocol);
        writer.EndMessage();
    }

    private static void EncodeRemove(NetlinkMessageWriter writer, AddressAssignment address)
    {
        writer.BeginMessage(NetlinkProtocol.RTM_DELADDR, 0);
        WriteHeader(writer, address, 0);
        writer.AddAddress(NetlinkProtocol.IFA_LOCAL, address.Address);
        writer.AddAddress(NetlinkProtocol.IFA_ADDRESS, address.Address);
        writer.EndMessage();
    }

    private static void WriteHeader(NetlinkMessageWriter writer, AddressAssignment assignment, byte flags)
    {
        var header = writer.AppendFixed(NetlinkProtocol.IfAddrMsgSize); // struct ifaddrmsg
        header[0] = assignment.Address.AddressFamily == AddressFamily.InterNetworkV6 ? NetlinkProtocol.AF_INET6 : NetlinkProtocol.AF_INET;
        header[1] = (byte)assignment.PrefixLength;
        header[2] = flags;
        header[3] = 0; // RT_SCOPE_UNIVERSE
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], (uint)assignment.InterfaceIndex);
    }

    /// <summary>Whole seconds, rounded up (a VIP never lives shorter than asked); null = forever.</summary>
    internal static uint LifetimeSeconds(TimeSpan? lifetime)
    {
        if (lifetime is not { } value) return NetlinkProtocol.InfinityLifetime;
        var seconds = Math.Ceiling(value.TotalSeconds);
        return seconds >= NetlinkProtocol.InfinityLifetime ? NetlinkProtocol.InfinityLifetime - 1 : (uint)seconds;
    }

    private static void Validate(AddressAssignment assignment)
    {
        var family = assignment.Address.AddressFamily;
        if (family is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6))
            throw new ArgumentException($"{assignment.Address} is neither IPv4 nor IPv6", nameof(assignment));
        var maximum = family == AddressFamily.InterNetwork ? 32 : 128;
        if (assignment.PrefixLength < 0 || assignment.PrefixLength > maximum)
            throw new ArgumentOutOfRangeException(nameof(assignment), $"prefix length {assignment.PrefixLength} of {assignment.Address} is outside 0..{maximum}");
        if (assignment.InterfaceIndex <= 0)
            throw new ArgumentOutOfRangeException(nameof(assignment), $"interface index {assignment.InterfaceIndex} of {assignment.Address} must be positive");
        if (assignment.Lifetime is { } lifetime && lifetime <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(assignment), $"lifetime {lifetime} of {assignment.Address} must be positive (null = forever)");
    }

    private static List<AddressFailure> Failures(IReadOnlyList<AddressAssignment> requests, NetlinkStatus[] results,
        ushort type, bool treatAsGone)
    {
        var failures = new List<AddressFailure>();
        for (var i = 0; i < results.Length; i++)
        {
            var status = results[i];
            if (status.Succeeded || (treatAsGone && IsAlreadyGone(status.Errno))) continue;
            failures.Add(new AddressFailure(requests[i], new NetlinkException(
                $"{NetlinkProtocol.TypeName(type)} {requests[i]}", status.Errno, status.KernelMessage)));
        }
        return failures;
    }

    // EADDRNOTAVAIL: no such address; ENOENT / ESRCH: older kernels' "not found"; ENODEV: interface gone.
    private static bool IsAlreadyGone(int errno) => errno is 99 or 2 or 3 or 19;

    public void Dispose() => socket.Dispose();

    public ValueTask DisposeAsync() => socket.DisposeAsync();
}
