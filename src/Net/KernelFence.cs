using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Hybrid.Net;

/// <summary>
/// The node's kernel fence: one nftables netdev table on the VIP interface that lets the kernel answer for
/// a VIP (ARP, neighbour discovery, any IP traffic to or from it) only while the agent HOLDS it and the
/// node's fence element lives (see <see cref="KernelFenceRuleset"/> and docs/KERNEL-FENCE.md). The domain
/// computes the fence deadline; this class writes it, and the kernel enforces it to the tick even if the
/// agent is frozen or dead.
/// <para>
/// A managed VIP that is not held is never answered; a held VIP is answered until the deadline of the last
/// <see cref="Extend"/>. An address on the interface that is not managed is not guarded at all, so every VIP
/// the agent puts on the interface must be managed first. Held VIPs are always managed too.
/// </para>
/// <para>
/// The fence owns exactly its own table and touches nothing else. It works in the network namespace of
/// the thread that calls <see cref="Open"/>. Every write is one nftables transaction (all of it applies or
/// none): <see cref="Install"/>, <see cref="Read"/> and <see cref="Uninstall"/> through libnftables, every element
/// change as a netlink batch of its own (<see cref="NftablesElementSocket"/>), which does not list the namespace's
/// other tables first. Calls block for that transaction and are serialised. The cancellation token is honoured
/// until the transaction starts.
/// </para>
/// </summary>
internal sealed partial class KernelFence : IDisposable
{
    /// <summary>The table name the agent uses.</summary>
    public const string DefaultTableName = "hybrid_fence";

    /// <summary>
    /// The shortest timeout the fence element is written with: one kernel tick at the coarsest HZ Linux
    /// configures (100). The kernel keeps element timeouts in whole ticks, rounded down, and older kernels
    /// (the 5.x series, for one) give an element whose timeout rounds to zero ticks NO expiry at all: it
    /// would never end. A
    /// deadline closer than this removes the element instead. Also the default timeout of the fence set,
    /// so that an element written without one ends at once rather than never.
    /// </summary>
    public const long MinimumTimeoutMs = 10;

    /// <summary>The longest timeout accepted: a fence deadline further away is a caller's bug.</summary>
    public const long MaximumTimeoutMs = int.MaxValue;

    private readonly NftablesSession session;
    private readonly NftablesElementSocket elements;
    private readonly Func<long> clockMs;
    private volatile int interfaceIndex; // of the last Install; 0 = not installed by this instance

    private KernelFence(NftablesSession session, NftablesElementSocket elements, string tableName, Func<long> clockMs)
    {
        this.session = session;
        this.elements = elements;
        this.clockMs = clockMs;
        TableName = tableName;
    }

    /// <summary>The nftables table (family netdev) this fence owns.</summary>
    public string TableName { get; }

    /// <summary>
    /// A fence over table <paramref name="tableName"/> in the calling thread's network namespace, reading
    /// <paramref name="clockMs"/> (the node's monotonic clock in milliseconds, as deadlines are given).
    /// Nothing is written until <see cref="Install"/>.
    /// </summary>
    public static KernelFence Open(Func<long> clockMs, string tableName = DefaultTableName)
    {
        ArgumentNullException.ThrowIfNull(clockMs);
        if (!TableNamePattern().IsMatch(tableName))
            throw new ArgumentException($"'{tableName}' is not a valid nftables table name (letters, digits, '_', starting with a letter)", nameof(tableName));
        var session = NftablesSession.Open();
        try
        {
            return new KernelFence(session, NftablesElementSocket.Open(), tableName, clockMs);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Installs the table on <paramref name="link"/> with <paramref name="managed"/> managed,
    /// <paramref name="held"/> held (and managed) and NO fence element: held VIPs are fenced until the next
    /// <see cref="Extend"/>. A table already bound to that device is rewritten in place in one transaction
    /// (packets see the old rules until the new ones are in place): only its sets when it holds this version's
    /// rules for this index; otherwise it is created, or replaced (a table on another device). The chains are bound to the device by name and the fence element is keyed
    /// by its index, so an interface deleted and created again (a new index) needs a new Install; until then
    /// its held VIPs stay fenced.
    /// </summary>
    public void Install(LinkInfo link, IReadOnlyCollection<IPAddress> managed, IReadOnlyCollection<IPAddress> held,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(link);
        if (link.Index <= 0) throw new ArgumentOutOfRangeException(nameof(link), $"interface index {link.Index} of '{link.Name}' must be positive");
        if (link.Name.Length is 0 or >= 16 || link.Name.Any(c => c is '"' or '\\' or '/' || char.IsWhiteSpace(c) || char.IsControl(c)))
            throw new ArgumentException($"'{link.Name}' is not an interface name nftables can bind to", nameof(link));
        var managedVips = Vips(managed, nameof(managed));
        var heldVips = Vips(held, nameof(held));
        if (Binding(cancellationToken) is { } bound && bound.Device == link.Name)
        {
            // The same rules for the same index (an agent restarting): only the sets change, since declaring the
            // chains again is not quite gap-free (KernelFenceRuleset.RefreshSets).
            var sameRules = bound.InterfaceIndex == link.Index && bound.RulesDigest == KernelFenceRuleset.RulesDigest && bound.RulesComplete;
            try
            {
                session.Run(sameRules
                    ? KernelFenceRuleset.RefreshSets(TableName, managedVips, heldVips)
                    : KernelFenceRuleset.Refresh(TableName, link.Name, link.Index, managedVips, heldVips), cancellationToken);
                interfaceIndex = link.Index;
                return;
            }
            catch (NftablesException)
            {
                // a chain or set is missing or differs: the table is replaced below
            }
        }
        session.Run(KernelFenceRuleset.Replace(TableName, link.Name, link.Index, managedVips, heldVips), cancellationToken);
        interfaceIndex = link.Index;
    }

    /// <summary>Guards <paramref name="vips"/>: from now on they are answered only while held and the fence lives.</summary>
    public void Manage(IReadOnlyCollection<IPAddress> vips, CancellationToken cancellationToken) =>
        Change(vips, nameof(vips), "manage", cancellationToken, (batch, v) => KernelFenceElements.Add(batch, "managed", v));

    /// <summary>Stops guarding <paramref name="vips"/> (and releases them): do this only once they are off the interface.</summary>
    public void Unmanage(IReadOnlyCollection<IPAddress> vips, CancellationToken cancellationToken) =>
        Change(vips, nameof(vips), "unmanage", cancellationToken, (batch, v) =>
        {
            KernelFenceElements.Remove(batch, "held", v);
            KernelFenceElements.Remove(batch, "managed", v);
        });

    /// <summary>
    /// Marks (or unmarks) VIPs whose address is on a macvlan of the device, each with the macvlan's MAC: an ARP
    /// reply for one leaves only from its macvlan's MAC, not from the device's own. One libnftables transaction.
    /// </summary>
    public void MarkMacvlans(IReadOnlyCollection<(IPAddress Address, PhysicalAddress Mac)> vips, bool marked, CancellationToken cancellationToken)
    {
        var text = KernelFenceRuleset.MacvlanElements(TableName, marked, vips);
        if (text.Length > 0) session.Run(text, cancellationToken);
    }

    /// <summary>Holds <paramref name="vips"/> (managing them too): answered while the fence element lives.</summary>
    public void Hold(IReadOnlyCollection<IPAddress> vips, CancellationToken cancellationToken) =>
        Change(vips, nameof(vips), "hold", cancellationToken, (batch, v) =>
        {
            KernelFenceElements.Add(batch, "managed", v);
            KernelFenceElements.Add(batch, "held", v);
        });

    /// <summary>Releases <paramref name="vips"/>: still managed, so never answered until held again.</summary>
    public void Release(IReadOnlyCollection<IPAddress> vips, CancellationToken cancellationToken) =>
        Change(vips, nameof(vips), "release", cancellationToken, (batch, v) => KernelFenceElements.Remove(batch, "held", v));

    /// <summary>
    /// Extends the node's fence to <paramref name="deadlineMs"/> (the clock given to <see cref="Open"/>). The
    /// FRESH-CLOCK RULE: the clock is read under the batch's lock immediately before it is encoded and sent, and
    /// the element is written with timeout = deadline − now, so time spent waiting for the lock never lengthens the
    /// fence (the kernel applies the batch within the send: tens of microseconds, whatever else the namespace's
    /// nftables holds). When that timeout is below <see cref="MinimumTimeoutMs"/> (the deadline has passed or is
    /// about to) the element is deleted instead. Returns what was written.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">the deadline is more than <see cref="MaximumTimeoutMs"/> away.</exception>
    /// <exception cref="InvalidOperationException">this fence has not been installed.</exception>
    public FenceWrite Extend(long deadlineMs, CancellationToken cancellationToken)
    {
        var index = RequireInstalled();
        var clock = 0L;
        var timeout = 0L;
        elements.Commit(NftablesProtocol.NFPROTO_NETDEV, TableName, batch =>
        {
            clock = clockMs();
            timeout = deadlineMs - clock;
            if (timeout > MaximumTimeoutMs)
                throw new ArgumentOutOfRangeException(nameof(deadlineMs), deadlineMs, $"a fence deadline {timeout} ms ahead is beyond the {MaximumTimeoutMs} ms maximum");
            if (timeout >= MinimumTimeoutMs) KernelFenceElements.Extend(batch, index, timeout);
            else KernelFenceElements.Expire(batch, index);
        }, $"extending the fence of netdev table {TableName}", cancellationToken);
        var completed = clockMs();
        return timeout >= MinimumTimeoutMs
            ? new FenceWrite(FenceWriteKind.Extended, clock, timeout, completed)
            : new FenceWrite(FenceWriteKind.Removed, clock, 0, completed);
    }

    /// <summary>Deletes the fence element now: no held VIP is answered from the moment this returns.</summary>
    public FenceWrite Expire(CancellationToken cancellationToken)
    {
        var index = RequireInstalled();
        var clock = 0L;
        elements.Commit(NftablesProtocol.NFPROTO_NETDEV, TableName, batch =>
        {
            clock = clockMs();
            KernelFenceElements.Expire(batch, index);
        }, $"expiring the fence of netdev table {TableName}", cancellationToken);
        return new FenceWrite(FenceWriteKind.Removed, clock, 0, clockMs());
    }

    /// <summary>The table as the kernel has it, or null when there is none.</summary>
    public InstalledFence? Read(CancellationToken cancellationToken)
    {
        var tables = session.RunJson("list tables netdev", cancellationToken);
        if (!KernelFenceListing.HasTable(tables, TableName)) return null;
        var json = session.RunJson($"list table netdev {TableName}", cancellationToken);
        var text = session.Run($"list table netdev {TableName}", cancellationToken);
        return KernelFenceListing.Parse(json, text, TableName);
    }

    /// <summary>How the table is bound, or null (no table, no chains, several devices).</summary>
    private FenceBinding? Binding(CancellationToken cancellationToken) =>
        KernelFenceListing.HasTable(session.RunJson("list tables netdev", cancellationToken), TableName)
            ? KernelFenceListing.Binding(
                session.RunJson($"list table netdev {TableName}", cancellationToken),
                session.Run($"list table netdev {TableName}", cancellationToken), TableName)
            : null;

    /// <summary>Deletes the table (if it exists): nothing is guarded any more.</summary>
    public void Uninstall(CancellationToken cancellationToken)
    {
        session.Run(KernelFenceRuleset.Uninstall(TableName), cancellationToken);
        interfaceIndex = 0;
    }

    /// <summary>Closes the nftables session and socket; the table stays (the kernel keeps enforcing it).</summary>
    public void Dispose()
    {
        elements.Dispose();
        session.Dispose();
    }

    private void Change(IReadOnlyCollection<IPAddress> vips, string name, string verb, CancellationToken cancellationToken,
        Action<NftablesElementBatch, IReadOnlyCollection<IPAddress>> write)
    {
        var valid = Vips(vips, name);
        if (valid.Count == 0) return;
        elements.Commit(NftablesProtocol.NFPROTO_NETDEV, TableName, batch => write(batch, valid),
            $"{verb} {string.Join(", ", valid.Take(3))}{(valid.Count > 3 ? $" and {valid.Count - 3} more" : "")} in netdev table {TableName}",
            cancellationToken);
    }

    private int RequireInstalled() =>
        interfaceIndex > 0 ? interfaceIndex : throw new InvalidOperationException($"the kernel fence '{TableName}' is not installed: call Install first");

    /// <summary>Unicast IPv4/IPv6 addresses, IPv4-mapped ones as IPv4, without duplicates; anything else is refused whole.</summary>
    private static List<IPAddress> Vips(IReadOnlyCollection<IPAddress> vips, string name)
    {
        ArgumentNullException.ThrowIfNull(vips, name);
        var result = new List<IPAddress>(vips.Count);
        var seen = new HashSet<IPAddress>();
        foreach (var vip in vips)
        {
            ArgumentNullException.ThrowIfNull(vip, name);
            var address = vip.IsIPv4MappedToIPv6 ? vip.MapToIPv4() : vip;
            var unusable = address.AddressFamily switch
            {
                AddressFamily.InterNetwork => address.Equals(IPAddress.Any) || address.Equals(IPAddress.Broadcast) || address.GetAddressBytes()[0] is >= 224 and <= 239,
                AddressFamily.InterNetworkV6 => address.Equals(IPAddress.IPv6Any) || address.IsIPv6Multicast,
                _ => true,
            };
            if (unusable) throw new ArgumentException($"{vip} cannot be a VIP: it is not a unicast IPv4 or IPv6 address", name);
            if (address.AddressFamily == AddressFamily.InterNetworkV6 && address.ScopeId != 0) address = new IPAddress(address.GetAddressBytes());
            if (seen.Add(address)) result.Add(address);
        }
        return result;
    }

    [GeneratedRegex("^[A-Za-z][A-Za-z0-9_]{0,62}$")]
    private static partial Regex TableNamePattern();
}
