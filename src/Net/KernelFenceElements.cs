using System.Net;
using System.Net.Sockets;

namespace Hybrid.Net;

/// <summary>
/// The kernel fence's element changes (see <see cref="KernelFenceRuleset"/> for the sets) as nf_tables batches:
/// the VIPs of the managed and held sets, and the one fence element. Keys are written as the kernel stores them
/// for each set: ipv4_addr in network order, the 128-bit IPv6 payload as the address's bytes, iface_index in host
/// order.
/// </summary>
internal static class KernelFenceElements
{
    /// <summary>Adds the addresses to the sets named <paramref name="role"/>4 / <paramref name="role"/>6.</summary>
    public static void Add(NftablesElementBatch batch, string role, IReadOnlyCollection<IPAddress> addresses)
    {
        foreach (var (set, keys) in ByFamily(role, addresses)) batch.Add(set, keys);
    }

    /// <summary>
    /// Removes the addresses from the sets named <paramref name="role"/>4 / 6 whether they are there or not:
    /// deleting an absent element fails the whole transaction (and DESTROYSETELEM needs Linux 6.3), so each is
    /// added first (a no-op when present) and then deleted, in the same transaction.
    /// </summary>
    public static void Remove(NftablesElementBatch batch, string role, IReadOnlyCollection<IPAddress> addresses)
    {
        foreach (var (set, keys) in ByFamily(role, addresses))
        {
            batch.Add(set, keys);
            batch.Delete(set, keys);
        }
    }

    /// <summary>
    /// Writes the fence element with a fresh timeout. A plain add of an element that exists keeps its old expiry
    /// (kernels before 6.12 ignore the new timeout; later ones apply it only when it differs from the element's
    /// current timeout), so the element is added (a no-op when present), deleted and added again: the
    /// transaction leaves a new element whatever was there, and packets see the old one until it commits.
    /// </summary>
    public static void Extend(NftablesElementBatch batch, int interfaceIndex, long timeoutMs)
    {
        byte[][] key = [FenceKey(interfaceIndex)];
        batch.Add(KernelFenceRuleset.FenceSet, key, timeoutMs);
        batch.Delete(KernelFenceRuleset.FenceSet, key);
        batch.Add(KernelFenceRuleset.FenceSet, key, timeoutMs);
    }

    /// <summary>Deletes the fence element, whether it exists or not (see <see cref="Remove"/>).</summary>
    public static void Expire(NftablesElementBatch batch, int interfaceIndex)
    {
        byte[][] key = [FenceKey(interfaceIndex)];
        batch.Add(KernelFenceRuleset.FenceSet, key, KernelFence.MinimumTimeoutMs);
        batch.Delete(KernelFenceRuleset.FenceSet, key);
    }

    /// <summary>The fence set's key: an iface_index, a 32-bit integer in host byte order (as meta iif/oif load it).</summary>
    private static byte[] FenceKey(int interfaceIndex) => BitConverter.GetBytes(interfaceIndex);

    private static IEnumerable<(string Set, byte[][] Keys)> ByFamily(string role, IReadOnlyCollection<IPAddress> addresses)
    {
        var v4 = addresses.Where(a => a.AddressFamily == AddressFamily.InterNetwork).Select(a => a.GetAddressBytes()).ToArray();
        var v6 = addresses.Where(a => a.AddressFamily == AddressFamily.InterNetworkV6).Select(a => a.GetAddressBytes()).ToArray();
        if (v4.Length > 0) yield return (role + "4", v4);
        if (v6.Length > 0) yield return (role + "6", v6);
    }
}
