namespace Hybrid.Net;

/// <summary>A change the kernel announced on the rtnetlink multicast groups (see <see cref="NetlinkMonitor"/>).</summary>
internal abstract record NetlinkEvent;

/// <summary>RTM_NEWLINK: a link appeared or changed (flags, carrier, operstate, MTU, name, address, …).</summary>
internal sealed record LinkChanged(LinkInfo Link) : NetlinkEvent;

/// <summary>RTM_DELLINK: a link was deleted (or moved to another namespace).</summary>
internal sealed record LinkRemoved(int Index, string Name) : NetlinkEvent;

/// <summary>RTM_NEWADDR: an address was added, or an existing one changed (a lifetime refresh counts too).</summary>
internal sealed record AddressAdded(InterfaceAddress Address) : NetlinkEvent;

/// <summary>RTM_DELADDR: an address was removed (by someone, or by the kernel when its lifetime ran out).</summary>
internal sealed record AddressRemoved(InterfaceAddress Address) : NetlinkEvent;

/// <summary>
/// The kernel dropped notifications because the receive queue was full (ENOBUFS): the listener's picture is
/// stale and must be rebuilt from a fresh dump.
/// </summary>
internal sealed record Overrun : NetlinkEvent;
