using System.Net;

namespace Hybrid.Sandbox.Api;

/// <summary>How to run the emulator.</summary>
internal sealed record ApiEmulatorOptions
{
    /// <summary>TCP endpoint; port 0 picks a free one (see <see cref="ApiEmulator.BaseAddress"/>).</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Loopback, 0);

    /// <summary>Extra Unix-domain-socket listeners. Every request arriving through one is attributed to its
    /// ClientName (for partitions and per-client stats). The lab bridges each node namespace to one of these.</summary>
    public IReadOnlyList<UnixListener> UnixListeners { get; init; } = [];

    /// <summary>Run the in-process controllers and kubelets (see <see cref="WorkloadSimulator"/>).</summary>
    public bool SimulateWorkloads { get; init; } = false;

    /// <summary>Where the simulated node IPAM takes each Node's pod CIDR (a /24) from, for Nodes that have none.
    /// The default is the lab's pod network beside its default LAN (see LabTopology.PodNetwork).</summary>
    public IPNetwork PodNetwork { get; init; } = IPNetwork.Parse("198.18.64.0/18");

    /// <summary>Readiness gates (condition types) the simulator adds to every Pod it creates; the lab's data plane
    /// sets its gate once the Pod answers, so that a Pod is Ready only when it can serve.</summary>
    public IReadOnlyList<string> PodReadinessGates { get; init; } = [];

    /// <summary>Changes kept per resource for watch resumption before older ones are compacted away.</summary>
    public int HistoryLimit { get; init; } = 10000;

    /// <summary>How often a watch that allows bookmarks gets a BOOKMARK event.</summary>
    public TimeSpan BookmarkInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Log every request (method, path, status, duration) at Information level.</summary>
    public bool Verbose { get; init; } = false;
}

/// <summary>A Unix-domain-socket listener whose requests are attributed to <paramref name="ClientName"/>.</summary>
internal sealed record UnixListener(string ClientName, string SocketPath);
