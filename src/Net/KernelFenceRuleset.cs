using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Text;

namespace Hybrid.Net;

/// <summary>
/// The nft text of the kernel fence (docs/KERNEL-FENCE.md explains every rule), written through libnftables when
/// the table is installed; later element changes are netlink batches (<see cref="KernelFenceElements"/>). One
/// netdev table bound to one device holds
/// <list type="bullet">
/// <item><c>managed4</c>/<c>managed6</c>: every VIP the agent guards; <c>held4</c>/<c>held6</c>: those it
/// answers for now;</item>
/// <item><c>fence</c>: at most ONE element, the device's interface index, whose timeout is the node's
/// fence deadline. A held VIP is answered only while that element lives, so one write extends the fence of
/// every held VIP, and the kernel ends it on time even if the agent is frozen or dead.</item>
/// <item><c>macvlan4</c>: the VIPs on a macvlan of the device (DHCP leases), and <c>macvlanmac4</c> each with
/// its macvlan's MAC: an ARP reply for one of them leaves only from that MAC. Linux answers ARP for a local
/// address on every interface, so the device itself would answer first, with its own MAC (docs/DHCP.md).</item>
/// </list>
/// The chains on the device see the macvlans' frames too: ingress runs before macvlan takes a frame over, and a
/// macvlan transmits through the device.
/// IPv6 sets are 128-bit integers (the addresses' bytes) rather than ipv6_addr, so that one set matches both
/// IPv6 header addresses and ICMPv6 neighbour discovery targets: nft 1.0.6 has no expression for the target
/// field, only the raw <c>@th,64,128</c>, which cannot look up an ipv6_addr set.
/// </summary>
internal static class KernelFenceRuleset
{
    /// <summary>Netdev hook priority of both chains: ahead of any other netdev chain on the device.</summary>
    public const int Priority = -500;

    /// <summary>
    /// The comment that records the installed interface index and <see cref="RulesDigest"/>:
    /// "hybrid kernel fence, ifindex 2, rules 0123abcd" (read back by <see cref="KernelFence.Read"/>).
    /// </summary>
    public const string CommentPrefix = "hybrid kernel fence, ifindex ";

    /// <summary>The chains of the table, base chains first.</summary>
    public static readonly string[] Chains = ["ingress", "egress", "arp_in", "arp_out", "ip_in", "ip_out", "ip6_in", "ip6_out"];

    /// <summary>How many rules each chain holds (a hand-edited table differs, and is declared again).</summary>
    public static readonly IReadOnlyDictionary<string, int> RulesPerChain = new Dictionary<string, int>
    {
        ["ingress"] = 1, ["egress"] = 1, ["arp_in"] = 2, ["arp_out"] = 3, ["ip_in"] = 2, ["ip_out"] = 2, ["ip6_in"] = 4, ["ip6_out"] = 4,
    };

    /// <summary>
    /// A digest of the rules this version writes (the device and interface index left out): a table whose comment
    /// records it, on the same device and index, needs only its sets rewritten (<see cref="RefreshSets"/>).
    /// </summary>
    public static readonly string RulesDigest = Convert.ToHexStringLower(
        System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(TableText("t", "device", 0, digest: ""))))[..8];

    /// <summary>The set that holds the fence element.</summary>
    public const string FenceSet = "fence";

    /// <summary>The sets of the table.</summary>
    public static readonly string[] Sets = ["managed4", "held4", "managed6", "held6", FenceSet, "macvlan4", "macvlanmac4"];

    /// <summary>
    /// Creates the table, replacing one that exists (create if absent, delete, create: one transaction), with
    /// <paramref name="managed"/> managed, <paramref name="held"/> held and no fence element. Replacing a
    /// table deletes its base chains and registers new ones, and packets can slip through that (measured:
    /// 0-4 of a flood in 300 replacements), so <see cref="Refresh"/> is used whenever the table is already
    /// bound to the device.
    /// </summary>
    public static string Replace(string table, string device, int interfaceIndex,
        IReadOnlyCollection<IPAddress> managed, IReadOnlyCollection<IPAddress> held)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"table netdev {table}\ndelete table netdev {table}\n");
        AppendTable(text, table, device, interfaceIndex);
        AddElements(text, table, "managed", managed.Concat(held).Distinct().ToList());
        AddElements(text, table, "held", held);
        return text.ToString();
    }

    /// <summary>
    /// Rewrites a table already bound to <paramref name="device"/> in place, in one transaction: every chain
    /// and set is flushed and filled again, while the base chains (and their hooks) stay, so packets see the
    /// old rules until the new ones are in place (measured: nothing of a flood through 1,200 refreshes). The
    /// fence element is gone afterwards. Fails as a whole if the table lacks a chain or a set (a kernel that
    /// deleted the base chains with their device, or a table from another version): then replace it.
    /// </summary>
    public static string Refresh(string table, string device, int interfaceIndex,
        IReadOnlyCollection<IPAddress> managed, IReadOnlyCollection<IPAddress> held)
    {
        var text = new StringBuilder();
        foreach (var chain in Chains) text.Append(CultureInfo.InvariantCulture, $"flush chain netdev {table} {chain}\n");
        foreach (var set in Sets) text.Append(CultureInfo.InvariantCulture, $"flush set netdev {table} {set}\n");
        AppendTable(text, table, device, interfaceIndex);
        AddElements(text, table, "managed", managed.Concat(held).Distinct().ToList());
        AddElements(text, table, "held", held);
        return text.ToString();
    }

    /// <summary>
    /// Rewrites only the sets of a table that already holds this version's rules on the right device and index,
    /// in one transaction, leaving the chains alone: flushing and declaring the chains again (<see cref="Refresh"/>)
    /// let one datagram of a flood through about once in 1,500 installs on Linux 6.18; this let none through
    /// 4,500. The fence element is gone afterwards. Fails as a whole if a set is missing.
    /// </summary>
    public static string RefreshSets(string table, IReadOnlyCollection<IPAddress> managed, IReadOnlyCollection<IPAddress> held)
    {
        var text = new StringBuilder();
        foreach (var set in Sets) text.Append(CultureInfo.InvariantCulture, $"flush set netdev {table} {set}\n");
        AddElements(text, table, "managed", managed.Concat(held).Distinct().ToList());
        AddElements(text, table, "held", held);
        return text.ToString();
    }

    private static void AppendTable(StringBuilder text, string table, string device, int interfaceIndex) =>
        text.Append(TableText(table, device, interfaceIndex, RulesDigest));

    /// <summary>The table's declaration: sets, chains and rules; the ingress dispatch rule's comment records the interface index and the rules' digest.</summary>
    private static string TableText(string table, string device, int interfaceIndex, string digest) =>
        string.Create(CultureInfo.InvariantCulture, $$"""
            table netdev {{table}} {
              set managed4 { type ipv4_addr; }
              set held4 { type ipv4_addr; }
              set managed6 { typeof @nh,64,128; }
              set held6 { typeof @nh,64,128; }
              set fence { type iface_index; flags timeout; timeout {{KernelFence.MinimumTimeoutMs}}ms; }
              set macvlan4 { type ipv4_addr; }
              set macvlanmac4 { type ipv4_addr . ether_addr; }
              chain ingress {
                type filter hook ingress device "{{device}}" priority {{Priority}}; policy accept;
                meta protocol vmap { arp : jump arp_in, ip : jump ip_in, ip6 : jump ip6_in } comment "{{CommentPrefix}}{{interfaceIndex}}, rules {{digest}}"
              }
              chain egress {
                type filter hook egress device "{{device}}" priority {{Priority}}; policy accept;
                meta protocol vmap { arp : jump arp_out, ip : jump ip_out, ip6 : jump ip6_out }
              }
              chain arp_in {
                arp daddr ip @managed4 arp daddr ip != @held4 drop
                arp daddr ip @held4 meta iif != @fence drop
              }
              chain arp_out {
                arp saddr ip @managed4 arp saddr ip != @held4 drop
                arp saddr ip @held4 meta oif != @fence drop
                arp operation reply arp saddr ip @macvlan4 arp saddr ip . ether saddr != @macvlanmac4 drop
              }
              chain ip_in {
                ip daddr @managed4 ip daddr != @held4 drop
                ip daddr @held4 meta iif != @fence drop
              }
              chain ip_out {
                ip saddr @managed4 ip saddr != @held4 drop
                ip saddr @held4 meta oif != @fence drop
              }
              chain ip6_in {
                @nh,192,128 @managed6 @nh,192,128 != @held6 drop
                @nh,192,128 @held6 meta iif != @fence drop
                icmpv6 type nd-neighbor-solicit @th,64,128 @managed6 @th,64,128 != @held6 drop
                icmpv6 type nd-neighbor-solicit @th,64,128 @held6 meta iif != @fence drop
              }
              chain ip6_out {
                @nh,64,128 @managed6 @nh,64,128 != @held6 drop
                @nh,64,128 @held6 meta oif != @fence drop
                icmpv6 type nd-neighbor-advert @th,64,128 @managed6 @th,64,128 != @held6 drop
                icmpv6 type nd-neighbor-advert @th,64,128 @held6 meta oif != @fence drop
              }
            }

            """);

    /// <summary>Deletes the table if it exists.</summary>
    public static string Uninstall(string table) => $"table netdev {table}\ndelete table netdev {table}\n";

    /// <summary>Adds the addresses to the sets named <paramref name="role"/>4 / <paramref name="role"/>6.</summary>
    public static void AddElements(StringBuilder text, string table, string role, IReadOnlyCollection<IPAddress> addresses)
    {
        foreach (var (suffix, elements) in ByFamily(addresses))
            text.Append(CultureInfo.InvariantCulture, $"add element netdev {table} {role}{suffix} {{ {elements} }}\n");
    }

    /// <summary>
    /// Adds (or deletes) VIPs carried by macvlans, each with its macvlan's MAC, to (from) <c>macvlan4</c> and
    /// <c>macvlanmac4</c>. IPv4 only: DHCP leases are IPv4.
    /// </summary>
    public static string MacvlanElements(string table, bool add, IReadOnlyCollection<(IPAddress Address, PhysicalAddress Mac)> vips)
    {
        var text = new StringBuilder();
        var v4 = vips.Where(v => v.Address.AddressFamily == AddressFamily.InterNetwork).ToList();
        if (v4.Count == 0) return "";
        var addresses = string.Join(", ", v4.Select(v => v.Address));
        var pairs = string.Join(", ", v4.Select(v => $"{v.Address} . {EtherText(v.Mac)}"));
        // A delete of an absent element fails the transaction (nft 1.0.6 has no "destroy"): add, then delete.
        foreach (var verb in add ? ["add"] : new[] { "add", "delete" })
        {
            text.Append(CultureInfo.InvariantCulture, $"{verb} element netdev {table} macvlan4 {{ {addresses} }}\n");
            text.Append(CultureInfo.InvariantCulture, $"{verb} element netdev {table} macvlanmac4 {{ {pairs} }}\n");
        }
        return text.ToString();
    }

    private static string EtherText(PhysicalAddress mac) => string.Join(":", mac.GetAddressBytes().Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));

    /// <summary>An IPv6 address as the 128-bit integer the IPv6 sets hold.</summary>
    public static string Ipv6Element(IPAddress address) => "0x" + Convert.ToHexStringLower(address.GetAddressBytes());

    private static IEnumerable<(string Suffix, string Elements)> ByFamily(IReadOnlyCollection<IPAddress> addresses)
    {
        var v4 = addresses.Where(a => a.AddressFamily == AddressFamily.InterNetwork).Select(a => a.ToString()).ToList();
        var v6 = addresses.Where(a => a.AddressFamily == AddressFamily.InterNetworkV6).Select(Ipv6Element).ToList();
        if (v4.Count > 0) yield return ("4", string.Join(", ", v4));
        if (v6.Count > 0) yield return ("6", string.Join(", ", v6));
    }
}
