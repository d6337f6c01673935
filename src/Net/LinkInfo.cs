using System.Net.NetworkInformation;

namespace Hybrid.Net;

/// <summary>
/// One network interface as the kernel reports it (RTM_NEWLINK). <see cref="AdministrativelyUp"/> is IFF_UP
/// (`ip link set up`), <see cref="LowerUp"/> is IFF_LOWER_UP (carrier), <see cref="OperState"/> is IFLA_OPERSTATE
/// (RFC 2863). The hardware address is empty for interfaces without one.
/// </summary>
internal sealed record LinkInfo(
    int Index,
    string Name,
    PhysicalAddress HardwareAddress,
    bool AdministrativelyUp,
    bool LowerUp,
    OperationalState OperState,
    int Mtu)
{
    public override string ToString() =>
        $"{Index}: {Name} {(AdministrativelyUp ? "UP" : "DOWN")}{(LowerUp ? ",LOWER_UP" : "")} state {OperState} mtu {Mtu} link {HardwareAddress}";
}

/// <summary>IF_OPER_* values of IFLA_OPERSTATE (linux/if.h, RFC 2863).</summary>
internal enum OperationalState : byte
{
    Unknown = 0,
    NotPresent = 1,
    Down = 2,
    LowerLayerDown = 3,
    Testing = 4,
    Dormant = 5,
    Up = 6,
}
