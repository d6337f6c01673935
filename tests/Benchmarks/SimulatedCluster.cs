using System.Diagnostics;
using System.Globalization;
using Hybrid.Facade;

namespace Hybrid.Benchmarks;

/// <summary>
/// ProtocolNodes on a simulated clock, for measuring the domain alone: an in-memory Lease store with
/// compare-and-swap and a watch that tells every node of every change, a LAN that delivers every datagram to
/// every other node, a kernel that applies every action, and Service status written back to the Services.
/// Each node has an inbox like the agent's ProtocolInbox: a node takes a turn when something arrived or its
/// wake time has come, as ProtocolLoop does: what arrived is applied, then Tick and Decide.
/// <para>
/// "Full" nodes see the Services and EndpointSlices; the others ("light") see none (so 100 members do not
/// need 100 copies of 10,000 Services in one process). With externalTrafficPolicy Local and endpoints only
/// on full nodes, light nodes are members that echo, acknowledge and count for fences but are eligible for
/// no group, which is what a node without the Services' pods is.
/// </para>
/// </summary>
internal sealed class SimulatedCluster
{
    public sealed class Member(string name, ProtocolNode node, bool full)
    {
        public string Name { get; } = name;
        public ProtocolNode Node { get; } = node;
        public bool Full { get; } = full;
        public List<Action<ProtocolNode>> Inbox { get; } = [];
    }

    private readonly Dictionary<string, LeaseInput> _leases = new(StringComparer.Ordinal);
    private readonly Dictionary<(string, string), ServiceInput> _services = [];
    private readonly Random _random = new(42);
    private long _version = 1;

    public SimulatedCluster(int members, int fullMembers, bool election)
    {
        var key = Convert.ToBase64String(new byte[32].Select((_, i) => (byte)i).ToArray());
        for (var i = 1; i <= members; i++)
        {
            var name = "node-" + i.ToString(CultureInfo.InvariantCulture);
            var environment = new Dictionary<string, string>
            {
                ["vip_nodename"] = name,
                ["svc_enable"] = "true",
                ["svc_election"] = election ? "true" : "false",
                ["vip_interface"] = "eth0",
                ["vip_arp"] = "true",
                ["lan_key"] = key,
            };
            var settings = Configuration.Parse(environment, null, null) switch
            {
                SettingsOutcome.Valid v => v.Settings,
                SettingsOutcome.Invalid bad => throw new InvalidOperationException(string.Join("; ", bad.Errors.Select(e => e.Message))),
                _ => throw new InvalidOperationException("unexpected settings outcome"),
            };
            Members.Add(new Member(name, new ProtocolNode(settings), i <= fullMembers));
        }
        foreach (var m in Members)
        {
            var incarnation = (ulong)_random.NextInt64();
            m.Inbox.Add(n =>
            {
                n.Start(incarnation, [], true, Now);
                n.ServicesListed([], Now);
                n.SlicesListed([], Now);
                n.LeasesListed(_leases.Values.ToArray(), Now);
                // The address policy's facts, as the agent's shell reports them: no pool ConfigMap, no Node
                // objects, an interface without VIPs or gateways (the node decides nothing before all three).
                n.PoolConfigObserved(null, Now);
                n.NodesListed([], Now);
                n.InterfaceRead([], [], Now);
            });
        }
    }

    /// <summary>Creates Services and their slices at once, as watch events to the full nodes.</summary>
    public void Create(IReadOnlyList<ServiceInput> services, IReadOnlyList<SliceInput> slices)
    {
        var now = Now;
        foreach (var s in services)
        {
            _services[(s.Namespace, s.Name)] = s;
            Broadcast(n => n.ServiceUpserted(s, now), fullOnly: true);
        }
        foreach (var s in slices) Broadcast(n => n.SliceUpserted(s, now), fullOnly: true);
    }

    /// <summary>Landed writes per Lease name (to see what a cluster that is not quiet keeps writing).</summary>
    public Dictionary<string, int> WritesByLease { get; } = new(StringComparer.Ordinal);

    public List<Member> Members { get; } = [];

    /// <summary>Print every Lease write (HYBRID_BENCH_TRACE=1): to see why a cluster is not quiet.</summary>
    public static readonly bool Trace = Environment.GetEnvironmentVariable("HYBRID_BENCH_TRACE") == "1";

    /// <summary>The simulated monotonic clock (ms); starts well above 0 like a real uptime.</summary>
    public long Now { get; private set; } = 1_000_000;

    /// <summary>Lease writes (creates, CAS, deletes) that landed, since the start.</summary>
    public long LeaseWrites { get; private set; }

    public long StatusWrites { get; private set; }

    public long Datagrams { get; private set; }

    public long DatagramBytes { get; private set; }

    /// <summary>How far the clock moves per <see cref="Step"/>: the loop's wake-up resolution.</summary>
    public const long Resolution = 5;

    /// <summary>
    /// Every node whose inbox holds something or whose wake time has come takes its turn, in order; then the
    /// clock moves on by <see cref="Resolution"/>. What a turn sends reaches the others' inboxes at once.
    /// </summary>
    public void Step(Member? measured = null)
    {
        foreach (var m in Members)
        {
            if (m.Inbox.Count == 0 && !(m.Node.NextWakeAt is { } wake && wake <= Now)) continue;
            var bytes = GC.GetAllocatedBytesForCurrentThread();
            var start = Stopwatch.GetTimestamp();
            foreach (var input in m.Inbox) input(m.Node);
            m.Inbox.Clear();
            m.Node.Tick(Now);
            var deciding = Stopwatch.GetTimestamp();
            var commands = m.Node.Decide();
            if (m == measured)
            {
                var end = Stopwatch.GetTimestamp();
                Turns.Add(new Turn(Stopwatch.GetElapsedTime(start, end).TotalMicroseconds,
                    Stopwatch.GetElapsedTime(deciding, end).TotalMicroseconds, GC.GetAllocatedBytesForCurrentThread() - bytes));
            }
            Execute(m, commands);
        }
        Now += Resolution;
    }

    /// <summary>One measured turn: all of it and Decide alone (µs), and the bytes it allocated.</summary>
    public readonly record struct Turn(double Micros, double DecideMicros, long Allocated);

    public List<Turn> Turns { get; } = [];

    /// <summary>Steps until <paramref name="ms"/> of simulated time have passed.</summary>
    public void Run(long ms, Member? measured = null)
    {
        var until = Now + ms;
        while (Now < until) Step(measured);
    }

    /// <summary>
    /// Lets the members join (3 s), then creates the Services (groups spread over the nodes as in a running
    /// cluster, rather than all going to whichever node decided first) and runs until steady: every VIP held
    /// and no Lease written for 10 s of simulated time.
    /// </summary>
    public void Settle(IReadOnlyList<ServiceInput> services, IReadOnlyList<SliceInput> slices, int expectedVips, CancellationToken cancellationToken)
    {
        var started = Now;
        Run(3_000);
        Create(services, slices);
        var quietSince = Now;
        var lastWrites = -1L;
        while (Now - quietSince < 10_000)
        {
            cancellationToken.ThrowIfCancellationRequested();
            Run(100);
            if (LeaseWrites != lastWrites || HeldVips != expectedVips) quietSince = Now;
            lastWrites = LeaseWrites;
            if (Now - started > 600_000)
                throw new TimeoutException($"no steady state after 600 s simulated: {HeldVips} of {expectedVips} VIPs held, {LeaseWrites} Lease writes");
        }
    }

    /// <summary>Each full node's held groups and whether everyone is joined: for waiting on a steady state.</summary>
    public int HeldVips => Members.Sum(m => m.Node.Summary.HeldVips);

    /// <summary>Watch events delivered to nodes so far (one per node per Lease or Service change it watches).</summary>
    public long WatchEvents { get; private set; }

    private void Broadcast(Action<ProtocolNode> input, bool fullOnly = false)
    {
        foreach (var m in Members)
            if (!fullOnly || m.Full)
            {
                m.Inbox.Add(input);
                WatchEvents++;
            }
    }

    private void Execute(Member from, ShellCommand[] commands)
    {
        var now = Now;
        foreach (var command in commands)
        {
            switch (command)
            {
                case ShellCommand.SendDatagrams send:
                    foreach (var datagram in send.Datagrams)
                    {
                        Datagrams++;
                        DatagramBytes += datagram.Length;
                        foreach (var m in Members)
                            if (m != from) m.Inbox.Add(n => n.DatagramReceived(datagram, now));
                    }
                    break;
                case ShellCommand.WriteLease w:
                {
                    var (result, lease) = Write(w.Write);
                    var jitter = _random.NextDouble();
                    from.Inbox.Add(n => n.WriteCompleted(w.Id, result, lease, null, jitter, now));
                    if (lease is not null) Broadcast(n => n.LeaseUpserted(lease, now));
                    break;
                }
                case ShellCommand.DeleteLease d:
                {
                    var result = !_leases.TryGetValue(d.Name, out var current) ? WriteResult.NotFound
                        : current.Version != d.Version ? WriteResult.Conflict : WriteResult.Done;
                    if (result == WriteResult.Done)
                    {
                        _leases.Remove(d.Name);
                        LeaseWrites++;
                        WritesByLease[d.Name] = WritesByLease.GetValueOrDefault(d.Name) + 1;
                        Broadcast(n => n.LeaseDeleted(d.Name, now));
                    }
                    var jitter = _random.NextDouble();
                    from.Inbox.Add(n => n.WriteCompleted(d.Id, result, null, null, jitter, now));
                    break;
                }
                case ShellCommand.ReadLease r:
                    if (_leases.TryGetValue(r.Name, out var read)) from.Inbox.Add(n => n.LeaseUpserted(read, now));
                    else from.Inbox.Add(n => n.LeaseDeleted(r.Name, now));
                    break;
                case ShellCommand.Kernel k:
                    from.Inbox.Add(k.Action switch
                    {
                        KernelAction.ExtendFence e when e.DeadlineMs > now => n => n.FenceExtended(k.Id, e.DeadlineMs, now),
                        KernelAction.ExtendFence => n => n.KernelCompleted(k.Id, KernelResult.FenceEnded, null, now),
                        KernelAction.RefreshAddress r when r.FenceDeadlineMs <= now => n => n.KernelCompleted(k.Id, KernelResult.FenceEnded, null, now),
                        KernelAction.Announce a when a.FenceDeadlineMs <= now => n => n.KernelCompleted(k.Id, KernelResult.FenceEnded, null, now),
                        _ => n => n.KernelCompleted(k.Id, KernelResult.Applied, null, now),
                    });
                    break;
                case ShellCommand.WriteStatus s:
                    if (_services.TryGetValue((s.Namespace, s.Name), out var service))
                    {
                        var annotations = new Dictionary<string, string>(service.Annotations);
                        if (s.SetVipHost)
                        {
                            if (s.VipHost is null) annotations.Remove(Configuration.VipHostAnnotation);
                            else annotations[Configuration.VipHostAnnotation] = s.VipHost;
                        }
                        var updated = new ServiceInput
                        {
                            Namespace = service.Namespace, Name = service.Name, Uid = service.Uid,
                            CreatedAtUnixSeconds = service.CreatedAtUnixSeconds, Type = service.Type,
                            LoadBalancerClass = service.LoadBalancerClass, Annotations = annotations,
                            LoadBalancerIP = service.LoadBalancerIP, Ports = service.Ports,
                            ExternalTrafficPolicy = service.ExternalTrafficPolicy, Selector = service.Selector,
                            Ingress = s.Ingress ?? service.Ingress,
                        };
                        _services[(s.Namespace, s.Name)] = updated;
                        StatusWrites++;
                        Broadcast(n => n.ServiceUpserted(updated, now), fullOnly: true);
                    }
                    break;
            }
        }
    }

    private (WriteResult, LeaseInput?) Write(LeaseWriteOutput write)
    {
        _leases.TryGetValue(write.Name, out var current);
        if (write.ExpectedVersion is null && current is not null) return (WriteResult.Conflict, null);
        if (write.ExpectedVersion is not null && current is null) return (WriteResult.NotFound, null);
        if (write.ExpectedVersion is not null && current!.Version != write.ExpectedVersion) return (WriteResult.Conflict, null);
        // A create sets what it names; a CAS is a merge patch: labels and annotations merge, null removes.
        var labels = new Dictionary<string, string>(current?.Labels ?? new Dictionary<string, string>(), StringComparer.Ordinal);
        foreach (var (k, v) in write.Labels) labels[k] = v;
        var annotations = new Dictionary<string, string>(current?.Annotations ?? new Dictionary<string, string>(), StringComparer.Ordinal);
        foreach (var (k, v) in write.Annotations)
            if (v is null) annotations.Remove(k);
            else annotations[k] = v;
        var lease = new LeaseInput
        {
            Name = write.Name,
            Version = (++_version).ToString(CultureInfo.InvariantCulture),
            Holder = write.Holder,
            Transitions = write.Transitions,
            Labels = labels,
            Annotations = annotations,
        };
        _leases[write.Name] = lease;
        LeaseWrites++;
        WritesByLease[write.Name] = WritesByLease.GetValueOrDefault(write.Name) + 1;
        if (Trace) Console.WriteLine($"  {Now / 1000.0:0.000} {write.Name} holder={write.Holder} {string.Join(" ", write.Annotations.Select(a => $"{a.Key.Split('/')[^1]}={a.Value}"))}");
        return (WriteResult.Done, lease);
    }
}
