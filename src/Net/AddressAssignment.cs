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
