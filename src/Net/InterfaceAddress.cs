using System.Net;

namespace Hybrid.Net;

/// <summary>
/// One address on an interface as the kernel reports it (RTM_NEWADDR / RTM_DELADDR). Lifetimes are the time
/// left, in whole seconds, at the moment of the dump; null means forever. <see cref="Protocol"/> is IFA_PROTO
/// (0 when unset); addresses this project adds carry <see cref="AddressTable.HybridProtocol"/>.
/// </summary>
internal sealed record InterfaceAddress(
    int InterfaceIndex,
    IPAddress Address,
    int PrefixLength,
    byte Protocol,
    TimeSpan? ValidLifetime,
    TimeSpan? PreferredLifetime,
    uint Flags)
{
    /// <summary>Added by a Hybrid agent (IFA_PROTO is the Hybrid marker), so a restarted agent may manage it.</summary>
    public bool IsHybrid => Protocol == AddressTable.HybridProtocol;

    /// <summary>IPv6 duplicate address detection still running: the address cannot be used yet.</summary>
    public bool IsTentative => (Flags & InterfaceAddressFlags.Tentative) != 0;

    public override string ToString() =>
        $"{Address}/{PrefixLength} ifindex {InterfaceIndex} proto 0x{Protocol:x2} valid {(ValidLifetime is { } v ? $"{v.TotalSeconds:0}s" : "forever")} flags 0x{Flags:x}";
}

/// <summary>IFA_F_* bits of <see cref="InterfaceAddress.Flags"/> (linux/if_addr.h).</summary>
internal static class InterfaceAddressFlags
{
    public const uint Secondary = 0x01;
    public const uint NoDad = 0x02;
    public const uint Optimistic = 0x04;
    public const uint DadFailed = 0x08;
    public const uint HomeAddress = 0x10;
    public const uint Deprecated = 0x20;
    public const uint Tentative = 0x40;
    public const uint Permanent = 0x80;
    public const uint ManageTemporaryAddress = 0x100;
    public const uint NoPrefixRoute = 0x200;
    public const uint MulticastAutoJoin = 0x400;
    public const uint StablePrivacy = 0x800;
}
