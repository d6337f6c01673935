using System.Diagnostics;
using System.Globalization;
using Hybrid.Net;

namespace Hybrid.Benchmarks;

/// <summary>
/// What LAN heartbeats cost a node: real ProtocolNodes on a <see cref="SimulatedCluster"/> of 10, 50 and 100
/// members (100 Services on 3 of them) exchange their real signed frames; the datagrams each member sends
/// per second and their size are counted, and the wire bytes add the heartbeat socket's framing and the UDP,
/// IP and Ethernet headers. A member receives what every other member sends. (The heartbeat socket tests send
/// and capture these datagrams on a real segment.)
/// </summary>
internal sealed class LanCostBenchmark : IBenchmark
{
    public string Name => "lan-cost";
    public string Description => "LAN heartbeat packets and bytes per second per node at 10, 50 and 100 members, IPv4 and IPv6 (simulated cluster of real ProtocolNodes and frames) [--seconds S]";

    private const int Udp = 8, Ipv4 = 20, Ipv6 = 40, Ethernet = 14;

    public Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        BenchLab.Int(args, "--seconds", 10, out var seconds);
        foreach (var members in new[] { 10, 50, 100 })
        {
            cancellationToken.ThrowIfCancellationRequested();
            var wall = Stopwatch.StartNew();
            const int services = 100, full = 3;
            var (list, slices) = StepCostBenchmark.Workload(services, full);
            var cluster = new SimulatedCluster(members, full, election: true);
            cluster.Settle(list, slices, services, cancellationToken);
            var datagrams = cluster.Datagrams;
            var bytes = cluster.DatagramBytes;
            var from = cluster.Now;
            cluster.Run(seconds * 1000L);
            var s = (cluster.Now - from) / 1000.0;
            var sent = (cluster.Datagrams - datagrams) / s / members;
            var payload = (cluster.DatagramBytes - bytes) / (double)Math.Max(1, cluster.Datagrams - datagrams);
            var framed = payload + HeartbeatSocket.HeaderBytes + Udp;
            string Line(string family, int ip)
            {
                var wire = framed + ip + Ethernet;
                return string.Create(CultureInfo.InvariantCulture,
                    $"{family}: {wire:0} B on the wire each, sends {sent * wire / 1024:0.0} KiB/s, receives {sent * (members - 1):0} packets/s = {sent * (members - 1) * wire / 1024:0.0} KiB/s");
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{members,3} members: each sends {sent:0.0} datagrams/s of {payload:0} B payload; {Line("IPv4", Ipv4)}; {Line("IPv6", Ipv6)} ({wall.Elapsed.TotalSeconds:0} s real)"));
        }
        return Task.CompletedTask;
    }
}
