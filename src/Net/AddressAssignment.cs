using System.Net;

namespace Hybrid.Net;

/// <summary>
/// An address to put on (or take off) an interface: the identity the kernel matches on is (interface, address,
/// prefix length). <see cref="Lifetime"/> is the valid = preferred lifetime, rounded up to whole seconds; null is
/// forever; it is ignored when removing.
/// </summary>
internal sealed record AddressAssignment(int InterfaceIndex, IPAddress Address, int PrefixLength, TimeSpan? Lifetime = null)
{
    public override string ToString() => $"{Address}/{PrefixLength} on ifindex {InterfaceIndex}";
}

/// <summary>One request of a batch that the kernel refused.</summary>
internal sealed record AddressFailure(AddressAssignment Assignment, NetlinkException Error);

/// <summary>What <see cref="AddressTable.AddManyAsync"/> did with one address: <see cref="Outcome"/>, or why it could not (<see cref="Error"/>).</summary>
internal sealed record AddressAddResult(AddressAssignment Assignment, AddressAddOutcome? Outcome, NetlinkException? Error = null);

/// <summary>What <see cref="AddressTable.AddAsync"/> did.</summary>
internal enum AddressAddOutcome
{
    /// <summary>The address was not there; it is now, marked as Hybrid's.</summary>
    Added,
    /// <summary>It was there already, added by Hybrid: its lifetime was restarted.</summary>
    Refreshed,
    /// <summary>It was there already, added by somebody else: left untouched.</summary>
    NotOurs,
}
