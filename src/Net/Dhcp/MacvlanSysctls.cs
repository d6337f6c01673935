namespace Hybrid.Net.Dhcp;

/// <summary>
/// The per-interface sysctls a DHCP Service's macvlan needs, written under /proc/sys/net for that interface
/// only (the host's own settings stay as they are). Write them while the link is still down, so that it
/// never sends anything unconfigured. /proc/sys/net is the network namespace of the calling thread.
/// <list type="bullet">
/// <item>ipv4 arp_ignore=1: the macvlan answers ARP only for its own address, not for the node's (with the
/// kernel default it answers for every local address with the Service's MAC).</item>
/// <item>ipv4 arp_announce=2: ARP requests it sends name its own address as the sender.</item>
/// <item>ipv4 rp_filter=2 (loose): replies to the leased address arrive on the macvlan while the route back
/// goes out of the parent; strict mode (1, many distributions' default for "all") would drop them. The kernel
/// uses the larger of "all" and the interface's value, so 2 is loose whatever "all" says.</item>
/// <item>ipv6 disable_ipv6=1: no link-local address, router solicitation or SLAAC address under the
/// Service's MAC (DHCPv6 is not supported yet).</item>
/// </list>
/// </summary>
internal static class MacvlanSysctls
{
    /// <summary>(path under /proc/sys/net/, value), in the order they are written.</summary>
    public static IReadOnlyList<(string Key, string Value)> For(string interfaceName) =>
    [
        ($"ipv4/conf/{interfaceName}/arp_ignore", "1"),
        ($"ipv4/conf/{interfaceName}/arp_announce", "2"),
        ($"ipv4/conf/{interfaceName}/rp_filter", "2"),
        ($"ipv6/conf/{interfaceName}/disable_ipv6", "1"),
    ];

    /// <summary>Writes them all; throws naming the first one the kernel refused.</summary>
    public static void Apply(string interfaceName)
    {
        ArgumentException.ThrowIfNullOrEmpty(interfaceName);
        foreach (var (key, value) in For(interfaceName))
        {
            var path = Path.Combine("/proc/sys/net", key);
            if (key.StartsWith("ipv6/", StringComparison.Ordinal) && !Directory.Exists("/proc/sys/net/ipv6"))
                continue; // a kernel booted with ipv6.disable=1 has nothing to switch off
            try
            {
                File.WriteAllText(path, value);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"cannot set {path} to {value}: {e.Message}", e);
            }
        }
    }
}
