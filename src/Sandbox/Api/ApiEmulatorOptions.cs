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

    /// <summary>Changes kept per resource for watch resumption before older ones are compacted away.</summary>
    public int HistoryLimit { get; init; } = 10000;

    /// <summary>How often a watch that allows bookmarks gets a BOOKMARK event.</summary>
    public TimeSpan BookmarkInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Log every request (method, path, status, duration) at Information level.</summary>
    public bool Verbose { get; init; } = false;
}

/// <summary>A Unix-domain-socket listener whose requests are attributed to <paramref name="ClientName"/>.</summary>
internal sealed record UnixListener(string ClientName, string SocketPath);
