using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using Hybrid.Net;
using PacketDotNet;
using SharpPcap;
using SharpPcap.LibPcap;

namespace Hybrid.Sandbox.Lab;

/// <summary>One ARP reply to an <see cref="ArpProbe"/>: who claimed the address, and when (kernel timestamp).</summary>
internal sealed record ArpAnswer(PhysicalAddress Mac, IPAddress SenderIp, DateTimeOffset At);

/// <summary>
/// Asks "who has this IPv4 address?" once from an interface of a network namespace and collects EVERY
/// reply during a window, so a test can assert that exactly one MAC answers for a VIP (or catch two nodes
/// answering). Unlike arping, it does not stop at the first answer.
/// <para>
/// The request is a broadcast ARP request from the interface's MAC, sender IP = the interface's first
/// IPv4 address unless one is given. Counted replies are ARP replies whose sender IP is the target and
/// whose target IP is our sender IP (so a gratuitous ARP from an announcer during the window is not an
/// answer). The device is opened in the namespace (<see cref="Hybrid.Net.NetworkNamespace"/>) before the request is
/// sent, so no reply is missed.
/// </para>
/// </summary>
internal static class ArpProbe
{
    public static Task<IReadOnlyList<ArpAnswer>> ResolveAsync(
        string namespaceName, string interfaceName, IPAddress target, TimeSpan window, CancellationToken cancellationToken) =>
        ResolveAsync(namespaceName, interfaceName, target, senderIp: null, window, cancellationToken);

    public static Task<IReadOnlyList<ArpAnswer>> ResolveAsync(
        string namespaceName, string interfaceName, IPAddress target, IPAddress? senderIp, TimeSpan window, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (target.AddressFamily != AddressFamily.InterNetwork) throw new ArgumentException($"ARP resolves IPv4 addresses, not {target}", nameof(target));
        if (senderIp is { AddressFamily: not AddressFamily.InterNetwork }) throw new ArgumentException($"the sender of an ARP request needs an IPv4 address, not {senderIp}", nameof(senderIp));
        if (window <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(window), window, "the answer window must be positive");
        return NetworkNamespace.RunInAsync(namespaceName, () => Resolve(interfaceName, target, senderIp, window, cancellationToken), cancellationToken);
    }

    /// <summary>
    /// Sends a broadcast request for each target every <paramref name="interval"/> until cancelled and returns
    /// how many rounds it sent. It reads nothing: an <see cref="ArpCapture"/> on the same interface sees the requests and their
    /// answers with kernel timestamps, which is what a test of "never two responders" needs.
    /// </summary>
    public static Task<int> RepeatAsync(string namespaceName, string interfaceName, IReadOnlyList<IPAddress> targets, TimeSpan interval, CancellationToken cancellationToken)
    {
        if (targets.Count == 0 || targets.Any(t => t.AddressFamily != AddressFamily.InterNetwork))
            throw new ArgumentException("ARP asks for one or more IPv4 addresses", nameof(targets));
        if (interval <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(interval), interval, "the interval must be positive");
        return NetworkNamespace.RunInAsync(namespaceName, () =>
        {
            using var device = PcapDeviceOpener.Open(interfaceName, new DeviceConfiguration { Mode = DeviceModes.None, Snaplen = 64 });
            var mac = device.MacAddress ?? throw new InvalidOperationException($"interface '{interfaceName}' has no MAC address");
            var sender = device.Addresses.Select(a => a.Addr?.ipAddress).FirstOrDefault(a => a?.AddressFamily == AddressFamily.InterNetwork)
                ?? throw new InvalidOperationException($"interface '{interfaceName}' has no IPv4 address to ask from");
            var requests = targets.Select(t => Request(mac, sender, t)).ToList();
            var sent = 0;
            // Paced, not polled: the wait ends at the next send time or at cancellation, whichever is first.
            var next = Stopwatch.GetTimestamp();
            while (true)
            {
                foreach (var request in requests) device.SendPacket(request);
                sent++;
                next += (long)(interval.TotalSeconds * Stopwatch.Frequency);
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), next);
                if (cancellationToken.WaitHandle.WaitOne(wait > TimeSpan.Zero ? wait : TimeSpan.Zero)) return sent;
            }
        }, cancellationToken);
    }

    private static IReadOnlyList<ArpAnswer> Resolve(string interfaceName, IPAddress target, IPAddress? senderIp, TimeSpan window, CancellationToken cancellationToken)
    {
        using var device = PcapDeviceOpener.Open(interfaceName, new DeviceConfiguration
        {
            Mode = DeviceModes.None,
            Snaplen = 128,
            Immediate = true,
            TimestampResolution = TimestampResolution.Nanosecond,
        });
        device.Filter = "arp and arp[6:2] = 2"; // replies only; our own request would otherwise come back
        var mac = device.MacAddress ?? throw new InvalidOperationException($"interface '{interfaceName}' has no MAC address");
        var sender = senderIp
            ?? device.Addresses.Select(a => a.Addr?.ipAddress).FirstOrDefault(a => a?.AddressFamily == AddressFamily.InterNetwork)
            ?? throw new InvalidOperationException($"interface '{interfaceName}' has no IPv4 address to ask from; pass a sender IP");
        var nanoseconds = device.TimestampResolution == TimestampResolution.Nanosecond;

        // libpcap on Linux ignores the read timeout while no packet arrives (it polls again), so the end of
        // the window, like cancellation, interrupts the wait with pcap_breakloop.
        using var windowEnd = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var wake = windowEnd.Token.Register(() => Interop.Pcap.BreakLoop(device));
        cancellationToken.ThrowIfCancellationRequested();
        device.SendPacket(Request(mac, sender, target));
        windowEnd.CancelAfter(window);

        var answers = new List<ArpAnswer>();
        while (!windowEnd.IsCancellationRequested)
        {
            if (Interop.Pcap.NextEx(device, out var header, out var frame) != Interop.Pcap.PacketRead) continue;
            if (Packet.ParsePacket(LinkLayers.Ethernet, frame.ToArray()).Extract<ArpPacket>() is not { Operation: ArpOperation.Response } reply) continue;
            if (!reply.SenderProtocolAddress.Equals(target) || !reply.TargetProtocolAddress.Equals(sender)) continue;
            var at = DateTimeOffset.FromUnixTimeSeconds(header.Seconds).AddTicks(nanoseconds ? header.Fraction / 100 : header.Fraction * 10);
            answers.Add(new ArpAnswer(reply.SenderHardwareAddress, reply.SenderProtocolAddress, at));
        }
        cancellationToken.ThrowIfCancellationRequested();
        return answers;
    }

    /// <summary>Broadcast ARP request (RFC 826): who-has target, tell sender (our MAC).</summary>
    private static byte[] Request(PhysicalAddress mac, IPAddress sender, IPAddress target)
    {
        var ownMac = mac.GetAddressBytes();
        var frame = new byte[42];
        frame.AsSpan(0, 6).Fill(0xff);
        ownMac.CopyTo(frame, 6);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x0806);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(14), 1);      // Ethernet
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(16), 0x0800); // IPv4
        frame[18] = 6;
        frame[19] = 4;
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(20), 1);      // request
        ownMac.CopyTo(frame, 22);
        sender.TryWriteBytes(frame.AsSpan(28, 4), out _);
        // target MAC (32..37) stays zero: unknown, that is the question
        target.TryWriteBytes(frame.AsSpan(38, 4), out _);
        return frame;
    }
}
