using SharpPcap;
using SharpPcap.LibPcap;

namespace Hybrid.Net;

/// <summary>
/// Opens a libpcap capture/injection device for a network interface of the CALLING THREAD's network
/// namespace. libpcap lists interfaces through getifaddrs (a netlink socket, so per thread, like the
/// AF_PACKET socket pcap_activate creates), and SharpPcap can only build a device from that list, so both
/// the lookup and the open run here, on the caller's thread. A thread that has entered another namespace
/// with setns therefore gets a device inside that namespace; the open socket stays bound there whichever
/// thread uses it later.
/// </summary>
internal static class PcapDeviceOpener
{
    public static LibPcapLiveDevice Open(string interfaceName, DeviceConfiguration configuration)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(interfaceName);
        var interfaces = PcapInterface.GetAllPcapInterfaces();
        var pcapInterface = interfaces.FirstOrDefault(i => i.Name == interfaceName)
            ?? throw new InvalidOperationException(
                $"network interface '{interfaceName}' does not exist in this network namespace (libpcap sees: {string.Join(", ", interfaces.Select(i => i.Name))})");
        var device = new LibPcapLiveDevice(pcapInterface);
        try
        {
            device.Open(configuration);
            return device;
        }
        catch (PcapException e)
        {
            device.Dispose();
            throw new IOException(
                $"cannot open '{interfaceName}' for packet capture/injection (needs CAP_NET_RAW): {e.Message}", e);
        }
    }
}
