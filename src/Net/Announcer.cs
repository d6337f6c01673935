using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using SharpPcap;
using SharpPcap.LibPcap;

namespace Hybrid.Net;

/// <summary>
/// Sends ONE layer-2 announcement of a VIP per call on the interface it owns: a gratuitous ARP in both
/// forms for IPv4 (<see cref="GratuitousArp"/>), an unsolicited Neighbour Advertisement for IPv6
/// (<see cref="NeighborAdvertisement"/>). When and how often to announce (the burst at takeover, the
/// repeats, every vip_arpRate) is the F# domain's decision; this class has no timers.
/// <para>
/// It owns one libpcap device opened for injection on the interface, in the network namespace of the
/// thread that calls <see cref="Open"/> (the agent runs inside the node's namespace, so: that one). The
/// MAC is the interface's, read once when the device is opened. Sending is a send(2) of 42 or 86 bytes on
/// a packet socket (microseconds); calls are serialised by a lock, so concurrent callers are safe.
/// A frame the kernel drops on its way out (ENOBUFS: the kernel fence's egress chain drops announcements
/// of a fenced VIP) is reported as <see cref="AnnounceOutcome.Fenced"/>, not as an error. Any other failed
/// send is logged and thrown as <see cref="IOException"/> naming the VIP and interface; the device stays
/// usable (e.g. once a downed link is up again). If the interface is deleted and created again, the socket
/// still points at the old one: dispose and <see cref="Open"/> anew.
/// </para>
/// </summary>
internal sealed partial class Announcer(LibPcapLiveDevice device, ILogger<Announcer> logger) : IAsyncDisposable
{
    private readonly Lock gate = new();
    private readonly byte[] macBytes = ValidMac(device);
    private bool disposed;

    /// <summary>The interface the announcements go out on.</summary>
    public string InterfaceName => device.Name;

    /// <summary>The interface's MAC, announced as the VIP's owner.</summary>
    public PhysicalAddress Mac => new(macBytes);

    /// <summary>
    /// Opens <paramref name="interfaceName"/> of the calling thread's network namespace for injection.
    /// The device captures nothing: a kernel filter rejects every packet, so a busy interface costs no
    /// copies, and the ring buffer is kept small.
    /// </summary>
    public static Announcer Open(string interfaceName, ILogger<Announcer> logger)
    {
        var opened = PcapDeviceOpener.Open(interfaceName, new DeviceConfiguration
        {
            Mode = DeviceModes.None,
            Snaplen = 64,
            BufferSize = 64 * 1024,
            ReadTimeout = 1000,
        });
        try
        {
            opened.Filter = "less 1"; // no frame is that short: the socket filter drops everything in the kernel
            return new Announcer(opened, logger);
        }
        catch
        {
            opened.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Announces <paramref name="vip"/> once: IPv4 → gratuitous ARP request and reply; IPv6 → unsolicited
    /// Neighbour Advertisement. Completes when the frames have been handed to the kernel, with
    /// <see cref="AnnounceOutcome.Sent"/>, or with <see cref="AnnounceOutcome.Fenced"/> when the kernel dropped
    /// them on their way out (then nothing about this VIP left the node).
    /// </summary>
    /// <exception cref="ArgumentException">the address cannot be a VIP (unspecified, multicast, broadcast).</exception>
    /// <exception cref="IOException">the kernel refused a frame (link down, interface gone).</exception>
    /// <exception cref="ObjectDisposedException">after <see cref="DisposeAsync"/>.</exception>
    public ValueTask<AnnounceOutcome> AnnounceAsync(IPAddress vip, CancellationToken cancellationToken) =>
        AnnounceAsync(vip, null, cancellationToken);

    /// <summary>
    /// As <see cref="AnnounceAsync(IPAddress, CancellationToken)"/>, from <paramref name="source"/> when given: the
    /// MAC of a macvlan of this interface that carries the VIP (a macvlan transmits through its parent, so the
    /// frames are the ones the macvlan would send).
    /// </summary>
    public ValueTask<AnnounceOutcome> AnnounceAsync(IPAddress vip, PhysicalAddress? source, CancellationToken cancellationToken)
    {
        var mac = source?.GetAddressBytes() ?? macBytes;
        if (mac.Length != 6) return ValueTask.FromException<AnnounceOutcome>(new ArgumentException($"{source} is not a MAC", nameof(source)));
        ArgumentNullException.ThrowIfNull(vip);
        if (cancellationToken.IsCancellationRequested) return ValueTask.FromCanceled<AnnounceOutcome>(cancellationToken);
        var address = vip.IsIPv4MappedToIPv6 ? vip.MapToIPv4() : vip;
        try
        {
            var outcome = address.AddressFamily switch
            {
                AddressFamily.InterNetwork => SendGratuitousArp(RequireUnicast(address), mac),
                AddressFamily.InterNetworkV6 => SendNeighborAdvertisement(RequireUnicast(address), mac),
                _ => throw new ArgumentException($"{vip} is neither IPv4 nor IPv6", nameof(vip)),
            };
            if (outcome == AnnounceOutcome.Sent) LogAnnounced(address, device.Name);
            else LogFenced(address, device.Name);
            return ValueTask.FromResult(outcome);
        }
        catch (Exception e)
        {
            return ValueTask.FromException<AnnounceOutcome>(e);
        }
    }

    /// <summary>
    /// Builds (and discards) one frame of each kind, so that the first real announcement after a takeover
    /// does not pay for compiling the frame writers.
    /// </summary>
    public void WarmUp()
    {
        Span<byte> arp = stackalloc byte[GratuitousArp.FrameLength];
        Span<byte> na = stackalloc byte[NeighborAdvertisement.FrameLength];
        GratuitousArp.WriteRequest(arp, macBytes, IPAddress.Parse("192.0.2.1"));
        GratuitousArp.WriteReply(arp, macBytes, IPAddress.Parse("192.0.2.1"));
        NeighborAdvertisement.WriteUnsolicited(na, macBytes, IPAddress.Parse("2001:db8::1"));
        _ = RequireUnicast(IPAddress.Parse("192.0.2.1"));
    }

    public ValueTask DisposeAsync()
    {
        lock (gate)
        {
            if (disposed) return ValueTask.CompletedTask;
            disposed = true;
            device.Dispose();
        }
        return ValueTask.CompletedTask;
    }

    private AnnounceOutcome SendGratuitousArp(IPAddress vip, byte[] mac)
    {
        Span<byte> request = stackalloc byte[GratuitousArp.FrameLength];
        Span<byte> reply = stackalloc byte[GratuitousArp.FrameLength];
        GratuitousArp.WriteRequest(request, mac, vip);
        GratuitousArp.WriteReply(reply, mac, vip);
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            // The egress chain that drops the request drops the reply too.
            return Send(request, vip, "gratuitous ARP request") == AnnounceOutcome.Fenced
                ? AnnounceOutcome.Fenced
                : Send(reply, vip, "gratuitous ARP reply");
        }
    }

    private AnnounceOutcome SendNeighborAdvertisement(IPAddress vip, byte[] mac)
    {
        Span<byte> frame = stackalloc byte[NeighborAdvertisement.FrameLength];
        NeighborAdvertisement.WriteUnsolicited(frame, mac, vip);
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            return Send(frame, vip, "unsolicited neighbour advertisement");
        }
    }

    /// <summary>
    /// One send, retried once on failure: when the link goes down the kernel leaves ENETDOWN pending on the
    /// packet socket, and the first send after the link is up again reports that stale error instead of
    /// sending. A link that is really down fails the retry too. ENOBUFS means the kernel dropped the frame
    /// between the socket and the driver: a netdev egress chain (the kernel fence) or a full transmit queue;
    /// sending it again now would meet the same drop, so it is reported, not retried.
    /// </summary>
    private AnnounceOutcome Send(ReadOnlySpan<byte> frame, IPAddress vip, string what)
    {
        var errno = Interop.Pcap.Inject(device, frame);
        if (errno == 0) return AnnounceOutcome.Sent;
        if (errno == Interop.Pcap.ENOBUFS) return AnnounceOutcome.Fenced;
        errno = Interop.Pcap.Inject(device, frame);
        if (errno == 0) return AnnounceOutcome.Sent;
        if (errno == Interop.Pcap.ENOBUFS) return AnnounceOutcome.Fenced;
        var reason = $"{Interop.ErrnoNames.Describe(errno)}{(string.IsNullOrEmpty(device.LastError) ? "" : $"; libpcap: {device.LastError}")}";
        LogSendFailed(what, vip, device.Name, reason);
        throw new IOException($"sending the {what} for {vip} on '{device.Name}' failed: {reason}");
    }

    private static IPAddress RequireUnicast(IPAddress vip)
    {
        var unusable = vip.Equals(IPAddress.Any) || vip.Equals(IPAddress.Broadcast) || vip.Equals(IPAddress.IPv6Any)
            || vip.IsIPv6Multicast || (vip.AddressFamily == AddressFamily.InterNetwork && vip.GetAddressBytes()[0] is >= 224 and <= 239);
        return unusable ? throw new ArgumentException($"{vip} cannot be announced: it is not a unicast address", nameof(vip)) : vip;
    }

    private static byte[] ValidMac(LibPcapLiveDevice device) =>
        device.MacAddress?.GetAddressBytes() is { Length: 6 } bytes && bytes.Any(b => b != 0)
            ? bytes
            : throw new InvalidOperationException($"interface '{device.Name}' has no Ethernet MAC address (found '{device.MacAddress}'); it cannot announce VIPs");

    [LoggerMessage(Level = LogLevel.Debug, Message = "Announced {Vip} on {Interface}")]
    private partial void LogAnnounced(IPAddress vip, string @interface);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Announcement of {Vip} on {Interface} dropped by the kernel on its way out: fenced")]
    private partial void LogFenced(IPAddress vip, string @interface);

    [LoggerMessage(Level = LogLevel.Error, Message = "Sending the {Frame} for {Vip} on {Interface} failed: {Reason}")]
    private partial void LogSendFailed(string frame, IPAddress vip, string @interface, string reason);
}

/// <summary>What became of one announcement.</summary>
internal enum AnnounceOutcome
{
    /// <summary>Every frame was handed to the driver.</summary>
    Sent,

    /// <summary>
    /// The kernel dropped the frame on its way out (ENOBUFS from the packet socket): the kernel fence's egress
    /// chain does that for a VIP that is not held or whose fence has lapsed. (A device with a transmit queue
    /// that is full reports the same errno; either way nothing left the node.)
    /// </summary>
    Fenced,
}
