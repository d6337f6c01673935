using System.Net;

namespace Hybrid.Net;

/// <summary>
/// A kernel fence table as read back from the kernel (<see cref="KernelFence.Read"/>), e.g. by an agent that
/// restarted and adopts the VIPs its predecessor managed.
/// </summary>
/// <param name="Device">The interface the table's chains are bound to.</param>
/// <param name="InterfaceIndex">The interface index the table was installed for (the fence element's key).</param>
/// <param name="Managed">Every VIP the fence guards (IPv4 and IPv6).</param>
/// <param name="Held">The VIPs answered while the fence element lives.</param>
/// <param name="FenceRemainingMs">Time left on the fence element as the kernel reported it; null when there is none.</param>
internal sealed record InstalledFence(
    string Device,
    int InterfaceIndex,
    IReadOnlySet<IPAddress> Managed,
    IReadOnlySet<IPAddress> Held,
    long? FenceRemainingMs)
{
    public override string ToString() =>
        $"fence on {Device} (ifindex {InterfaceIndex}): managed [{string.Join(", ", Managed)}], held [{string.Join(", ", Held)}], " +
        (FenceRemainingMs is { } left ? $"fence element expires in {left} ms" : "no fence element (fenced)");
}
