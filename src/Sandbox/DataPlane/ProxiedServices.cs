using System.Net;
using System.Net.Sockets;
using k8s.Models;

namespace Hybrid.Sandbox.DataPlane;

internal enum TrafficPolicy
{
    Cluster,
    Local,
}

/// <summary>
/// One port of a Service, as kube-proxy sees it: where traffic is captured (ClusterIP, NodePort, LoadBalancer
/// and external IPs) and which policy picks its endpoints.
/// </summary>
/// <param name="Protocol">Lowercase, as nftables spells it: tcp, udp, sctp.</param>
/// <param name="NodePort">0 when the port has none.</param>
/// <param name="LoadBalancerIps">From status.loadBalancer.ingress (not ipMode Proxy): what the load balancer
/// reported, which for Hybrid is what it announces.</param>
internal sealed record ProxiedPort(
    string Namespace,
    string Service,
    string PortName,
    string Protocol,
    int Port,
    IPAddress ClusterIp,
    int NodePort,
    IReadOnlyList<IPAddress> LoadBalancerIps,
    IReadOnlyList<IPAddress> ExternalIps,
    TrafficPolicy ExternalPolicy,
    TrafficPolicy InternalPolicy)
{
    /// <summary>`namespace/name/protocol/portName`, the part of chain names that says which port they serve.</summary>
    public string Id => $"{Namespace}/{Service}/{Protocol}/{PortName}";

    public bool ExternallyAccessible => NodePort != 0 || LoadBalancerIps.Count > 0 || ExternalIps.Count > 0;

    public bool ExternalPolicyLocal => ExternallyAccessible && ExternalPolicy == TrafficPolicy.Local;

    public bool InternalPolicyLocal => InternalPolicy == TrafficPolicy.Local;

    /// <summary>Cluster endpoints serve internal traffic with a Cluster policy, and every externally reachable port
    /// (traffic from pods and from the node itself to an external address always uses them).</summary>
    public bool UsesClusterEndpoints => !InternalPolicyLocal || ExternallyAccessible;

    public bool UsesLocalEndpoints => InternalPolicyLocal || ExternalPolicyLocal;
}

/// <summary>One address and port behind a Service port, with the EndpointSlice conditions kube-proxy reads.</summary>
internal sealed record ProxiedEndpoint(IPAddress Address, int Port, string? NodeName, bool Ready, bool Serving, bool Terminating)
{
    /// <summary>`ip/port`, the part of an endpoint chain's name that says where it sends traffic.</summary>
    public string Id => $"{Address}/{Port}";
}

/// <summary>A Service port and every endpoint its EndpointSlices list for it.</summary>
internal sealed record ProxiedService(ProxiedPort Port, IReadOnlyList<ProxiedEndpoint> Endpoints);

/// <summary>
/// Reads Services and EndpointSlices the way kube-proxy does, for IPv4: headless, ExternalName and
/// address-less Services are skipped; endpoints come from every IPv4 slice labelled with the Service's name,
/// matched to a Service port by port name and protocol; unset conditions mean ready, serving = ready,
/// not terminating.
/// </summary>
internal static class ProxiedServices
{
    private const string ServiceNameLabel = "kubernetes.io/service-name";

    public static IReadOnlyList<ProxiedService> From(IEnumerable<V1Service> services, IEnumerable<V1EndpointSlice> slices)
    {
        var slicesByService = slices
            .Where(s => s.AddressType == "IPv4" && s.Metadata.Labels?.ContainsKey(ServiceNameLabel) == true)
            .ToLookup(s => (s.Metadata.NamespaceProperty ?? "", s.Metadata.Labels![ServiceNameLabel]));
        var result = new List<ProxiedService>();
        foreach (var service in services)
        {
            var spec = service.Spec;
            if (spec is null || spec.Type == "ExternalName" || !IPAddress.TryParse(spec.ClusterIP, out var clusterIp)
                || clusterIp.AddressFamily != AddressFamily.InterNetwork)
                continue;
            var serviceSlices = slicesByService[(service.Metadata.NamespaceProperty ?? "", service.Metadata.Name)].ToList();
            foreach (var port in spec.Ports ?? [])
            {
                var protocol = (port.Protocol ?? "TCP").ToLowerInvariant();
                var proxied = new ProxiedPort(
                    service.Metadata.NamespaceProperty ?? "default",
                    service.Metadata.Name,
                    port.Name ?? "",
                    protocol,
                    port.Port,
                    clusterIp,
                    port.NodePort ?? 0,
                    Ipv4(service.Status?.LoadBalancer?.Ingress?.Where(i => i.IpMode != "Proxy").Select(i => i.Ip)),
                    Ipv4(spec.ExternalIPs),
                    spec.ExternalTrafficPolicy == "Local" ? TrafficPolicy.Local : TrafficPolicy.Cluster,
                    spec.InternalTrafficPolicy == "Local" ? TrafficPolicy.Local : TrafficPolicy.Cluster);
                result.Add(new ProxiedService(proxied, EndpointsOf(proxied, serviceSlices)));
            }
        }
        return result;
    }

    private static IReadOnlyList<ProxiedEndpoint> EndpointsOf(ProxiedPort port, List<V1EndpointSlice> slices)
    {
        var endpoints = new Dictionary<string, ProxiedEndpoint>(StringComparer.Ordinal);
        foreach (var slice in slices)
        {
            var slicePort = slice.Ports?.FirstOrDefault(p => (p.Name ?? "") == port.PortName && (p.Protocol ?? "TCP").Equals(port.Protocol, StringComparison.OrdinalIgnoreCase));
            if (slicePort?.Port is not { } number) continue;
            foreach (var endpoint in slice.Endpoints ?? [])
            {
                if (endpoint.Addresses is not [var first, ..] || !IPAddress.TryParse(first, out var address)) continue;
                var ready = endpoint.Conditions?.Ready ?? true;
                var proxied = new ProxiedEndpoint(address, number, endpoint.NodeName, ready,
                    endpoint.Conditions?.Serving ?? ready, endpoint.Conditions?.Terminating ?? false);
                endpoints.TryAdd(proxied.Id, proxied);
            }
        }
        return [.. endpoints.Values];
    }

    private static IReadOnlyList<IPAddress> Ipv4(IEnumerable<string>? addresses) =>
        [.. (addresses ?? []).Select(a => IPAddress.TryParse(a, out var ip) ? ip : null)
            .OfType<IPAddress>().Where(ip => ip.AddressFamily == AddressFamily.InterNetwork).Distinct()];
}
