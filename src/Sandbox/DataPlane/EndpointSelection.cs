namespace Hybrid.Sandbox.DataPlane;

/// <summary>
/// Which endpoints one node's kube-proxy uses for a Service port, by kube-proxy's rules: the Cluster set is
/// every ready endpoint, or when there is none anywhere, every one still serving while it terminates; the
/// Local set is the same choice made among this node's endpoints only. <see cref="AnyUsable"/> says whether
/// the port has an endpoint to send anything to at all (if not, its traffic is rejected). Topology hints are
/// not followed.
/// </summary>
internal sealed record EndpointSelection(IReadOnlyList<ProxiedEndpoint> Cluster, IReadOnlyList<ProxiedEndpoint> Local, bool AnyUsable)
{
    /// <summary>Every endpoint some rule of this node may send to (each once).</summary>
    public IReadOnlyList<ProxiedEndpoint> Reachable => [.. Cluster.Concat(Local).DistinctBy(e => e.Id)];

    public static EndpointSelection For(ProxiedService service, string node)
    {
        var port = service.Port;
        var endpoints = service.Endpoints.OrderBy(e => e.Address.GetAddressBytes(), ByteOrder.Instance).ThenBy(e => e.Port).ToList();
        static bool ServingWhileTerminating(ProxiedEndpoint e) => e.Serving && e.Terminating;
        var anyUsable = endpoints.Any(e => e.Ready || ServingWhileTerminating(e));
        IReadOnlyList<ProxiedEndpoint> PreferReady(IEnumerable<ProxiedEndpoint> candidates)
        {
            var list = candidates.ToList();
            var ready = list.Where(e => e.Ready).ToList();
            return ready.Count > 0 ? ready : list.Where(ServingWhileTerminating).ToList();
        }
        var cluster = port.UsesClusterEndpoints ? PreferReady(endpoints) : [];
        var local = port.UsesLocalEndpoints ? PreferReady(endpoints.Where(e => e.NodeName == node)) : [];
        return new EndpointSelection(cluster, local, anyUsable);
    }

    private sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();

        public int Compare(byte[]? x, byte[]? y) => ((ReadOnlySpan<byte>)x).SequenceCompareTo(y);
    }
}
