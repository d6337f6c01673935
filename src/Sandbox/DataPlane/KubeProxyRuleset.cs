using System.Globalization;
using System.Net;
using System.Text;

namespace Hybrid.Sandbox.DataPlane;

/// <summary>
/// The lab's kube-proxy for one node, as an nftables script: one transaction that replaces table
/// `ip hybrid-kube-proxy` (and nothing else) with the rules for the Services it is given. The rules follow
/// kube-proxy's nftables mode:
/// <list type="bullet">
/// <item>nat prerouting/output look up (address, protocol, port) in `service-ips` (ClusterIPs, LoadBalancer and
/// external IPs) and, for a local destination address, (protocol, port) in `service-nodeports`;</item>
/// <item>a port's policy chain picks one endpoint at random (numgen) and its endpoint chain DNATs to it;</item>
/// <item>external traffic (LoadBalancer, external IP, NodePort) with policy Cluster is marked and masqueraded
/// on the way out, so the pod sees a node address; with Local it goes to this node's endpoints only and keeps
/// the client's address, except traffic from pods and from the node itself, which takes the Cluster set
/// masqueraded (kube-proxy's short circuits);</item>
/// <item>traffic to a ClusterIP from outside the pod network is masqueraded; an endpoint reaching itself
/// through its Service is masqueraded (hairpin);</item>
/// <item>filter hooks (before DNAT) check new connections against `no-endpoint-services` /
/// `no-endpoint-nodeports`: a port with no usable endpoint anywhere is rejected; external traffic to a Local
/// port with no endpoint on this node is dropped.</item>
/// </list>
/// Not emulated: session affinity, loadBalancerSourceRanges, topology hints, health-check node ports, IPv6.
/// </summary>
internal static class KubeProxyRuleset
{
    public const string Family = "ip";
    public const string Table = "hybrid-kube-proxy";

    /// <summary>kube-proxy's default masquerade bit (--masquerade-bit=14).</summary>
    private const string MasqueradeMark = "0x4000";

    private const string Services = "services";
    private const string ServiceIps = "service-ips";
    private const string ServiceNodePorts = "service-nodeports";
    private const string EndpointsCheck = "endpoints-check";
    private const string NoEndpointServices = "no-endpoint-services";
    private const string NoEndpointNodePorts = "no-endpoint-nodeports";
    private const string RejectChain = "reject-chain";
    private const string MarkForMasquerade = "mark-for-masquerade";
    private const string Masquerading = "masquerading";

    /// <summary>The whole script for <paramref name="node"/>, deterministic for the same input.</summary>
    /// <param name="podNetwork">Addresses of every pod in the cluster (kube-proxy's --cluster-cidr).</param>
    public static string Render(string node, IPNetwork podNetwork, IReadOnlyList<ProxiedService> services)
    {
        var script = new Script();
        DeclareBase(script, node);
        foreach (var service in services.OrderBy(s => s.Port.Id, StringComparer.Ordinal).ThenBy(s => s.Port.Port))
            AddServicePort(script, service, EndpointSelection.For(service, node), podNetwork);
        return script.ToString();
    }

    /// <summary>The transaction that removes the table (nothing if it is absent).</summary>
    public static string Removal() => $"add table {Family} {Table}\ndelete table {Family} {Table}\n";

    private static void DeclareBase(Script s, string node)
    {
        s.Header($"comment \"the lab's kube-proxy on {node}\";");
        // Priorities as numbers (nft accepts the names dstnat/srcnat on some hooks only): DNAT at -100, SNAT at
        // 100, and the filter hooks just before DNAT (-110), as kube-proxy orders them.
        s.BaseChain("filter-input", "filter", "input", "-110");
        s.BaseChain("filter-forward", "filter", "forward", "-110");
        s.BaseChain("filter-output", "filter", "output", "-110");
        s.BaseChain("nat-prerouting", "nat", "prerouting", "-100");
        s.BaseChain("nat-output", "nat", "output", "-100");
        s.BaseChain("nat-postrouting", "nat", "postrouting", "100");
        foreach (var chain in new[] { Services, EndpointsCheck, RejectChain, MarkForMasquerade, Masquerading })
            s.Chain(chain);
        s.Map(ServiceIps, "ipv4_addr . inet_proto . inet_service : verdict", "ClusterIP, external IP and LoadBalancer IP traffic");
        s.Map(ServiceNodePorts, "inet_proto . inet_service : verdict", "NodePort traffic");
        s.Map(NoEndpointServices, "ipv4_addr . inet_proto . inet_service : verdict", "drop or reject: no endpoints");
        s.Map(NoEndpointNodePorts, "inet_proto . inet_service : verdict", "drop or reject: no endpoints (NodePorts)");

        foreach (var hook in new[] { "filter-input", "filter-forward", "filter-output" })
            s.Rule(hook, $"ct state new jump {EndpointsCheck}");
        s.Rule("nat-prerouting", $"jump {Services}");
        s.Rule("nat-output", $"jump {Services}");
        s.Rule("nat-postrouting", $"jump {Masquerading}");
        s.Rule(EndpointsCheck, $"ip daddr . meta l4proto . th dport vmap @{NoEndpointServices}");
        s.Rule(EndpointsCheck, $"fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{NoEndpointNodePorts}");
        s.Rule(Services, $"ip daddr . meta l4proto . th dport vmap @{ServiceIps}");
        s.Rule(Services, $"fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{ServiceNodePorts}");
        s.Rule(RejectChain, "reject");
        s.Rule(MarkForMasquerade, $"mark set mark or {MasqueradeMark}");
        s.Rule(Masquerading, $"mark and {MasqueradeMark} == 0 return");
        s.Rule(Masquerading, $"mark set mark xor {MasqueradeMark}");
        s.Rule(Masquerading, "masquerade fully-random");
    }

    private static void AddServicePort(Script s, ProxiedService service, EndpointSelection selection, IPNetwork podNetwork)
    {
        var port = service.Port;
        var clusterChain = "service-" + port.Id;
        var localChain = "local-" + port.Id;
        var externalChain = "external-" + port.Id;
        var usesClusterChain = selection.Cluster.Count > 0 && port.UsesClusterEndpoints;
        var usesLocalChain = selection.Local.Count > 0 && port.UsesLocalEndpoints;
        var internalChain = port.InternalPolicyLocal ? localChain : clusterChain;
        var hasInternal = selection.AnyUsable && (!port.InternalPolicyLocal || selection.Local.Count > 0);
        var externalPolicyChain = port.ExternalPolicyLocal ? localChain : clusterChain;
        var hasExternal = selection.AnyUsable && (!port.ExternalPolicyLocal || selection.Local.Count > 0);
        var usesExternalChain = selection.AnyUsable && port.ExternallyAccessible;
        // No endpoint anywhere: reject. Endpoints elsewhere only, under a Local policy: drop.
        var internalVerdict = selection.AnyUsable ? "drop" : $"goto {RejectChain}";
        var externalVerdict = internalVerdict;
        var target = $"{port.Protocol} . {port.Port}";

        if (usesClusterChain) s.Chain(clusterChain);
        if (usesLocalChain) s.Chain(localChain);
        if (usesExternalChain) s.Chain(externalChain);
        foreach (var endpoint in selection.Reachable) s.Chain(EndpointChain(port, endpoint));

        // Verdicts that name no chain of the port say whose they are in a comment, for whoever reads `nft list`.
        var whose = $"comment \"{port.Id}\"";
        if (hasInternal) s.Element(ServiceIps, $"{port.ClusterIp} . {target}", $": goto {internalChain}");
        else s.Element(NoEndpointServices, $"{port.ClusterIp} . {target}", $"{whose} : {internalVerdict}");
        foreach (var ip in port.ExternalIps.Concat(port.LoadBalancerIps).Distinct())
        {
            if (usesExternalChain) s.Element(ServiceIps, $"{ip} . {target}", $": goto {externalChain}");
            if (!hasExternal) s.Element(NoEndpointServices, $"{ip} . {target}", $"{whose} : {externalVerdict}");
        }
        if (port.NodePort != 0)
        {
            var nodePort = $"{port.Protocol} . {port.NodePort}";
            if (usesExternalChain) s.Element(ServiceNodePorts, nodePort, $": goto {externalChain}");
            if (!hasExternal) s.Element(NoEndpointNodePorts, nodePort, $"{whose} : {externalVerdict}");
        }

        if (hasInternal)
            s.Rule(internalChain, $"ip daddr {port.ClusterIp} {port.Protocol} dport {port.Port} ip saddr != {podNetwork} jump {MarkForMasquerade}");
        if (usesExternalChain)
        {
            if (!port.ExternalPolicyLocal)
            {
                // The endpoint may be on another node: its reply must come back through this one.
                s.Rule(externalChain, $"jump {MarkForMasquerade}");
            }
            else
            {
                s.Rule(externalChain, $"ip saddr {podNetwork} goto {clusterChain} comment \"short-circuit pod traffic\"");
                s.Rule(externalChain, $"fib saddr type local jump {MarkForMasquerade} comment \"masquerade local traffic\"");
                s.Rule(externalChain, $"fib saddr type local goto {clusterChain} comment \"short-circuit local traffic\"");
            }
            if (hasExternal) s.Rule(externalChain, $"goto {externalPolicyChain}");
        }
        if (usesClusterChain) LoadBalance(s, clusterChain, port, selection.Cluster);
        if (usesLocalChain) LoadBalance(s, localChain, port, selection.Local);
        foreach (var endpoint in selection.Reachable)
        {
            var chain = EndpointChain(port, endpoint);
            s.Rule(chain, $"ip saddr {endpoint.Address} jump {MarkForMasquerade}");
            s.Rule(chain, $"meta l4proto {port.Protocol} dnat to {endpoint.Address}:{endpoint.Port}");
        }
    }

    private static void LoadBalance(Script s, string chain, ProxiedPort port, IReadOnlyList<ProxiedEndpoint> endpoints)
    {
        var choices = string.Join(", ", endpoints.Select((e, i) => $"{i} : goto {EndpointChain(port, e)}"));
        s.Rule(chain, $"numgen random mod {endpoints.Count} vmap {{ {choices} }}");
    }

    private static string EndpointChain(ProxiedPort port, ProxiedEndpoint endpoint) => $"endpoint-{port.Id}__{endpoint.Id}";

    /// <summary>
    /// Accumulates the transaction in the order nft needs: table, chains and maps first, then the rules and
    /// elements that refer to them. The table is added, deleted and added again so that the script is the same
    /// whether or not the table exists, and replaces it whole, atomically.
    /// </summary>
    private sealed class Script
    {
        private readonly StringBuilder _declarations = new();
        private readonly StringBuilder _rules = new();
        private readonly StringBuilder _elements = new();
        private readonly HashSet<string> _chains = new(StringComparer.Ordinal);
        private readonly HashSet<string> _keys = new(StringComparer.Ordinal);

        public void Header(string body)
        {
            _declarations.Append(Removal());
            _declarations.Append(CultureInfo.InvariantCulture, $"add table {Family} {Table} {{ {body} }}\n");
        }

        public void BaseChain(string name, string type, string hook, string priority)
        {
            _chains.Add(name);
            _declarations.Append(CultureInfo.InvariantCulture,
                $"add chain {Family} {Table} {name} {{ type {type} hook {hook} priority {priority}; policy accept; }}\n");
        }

        public void Chain(string name)
        {
            if (_chains.Add(name)) _declarations.Append(CultureInfo.InvariantCulture, $"add chain {Family} {Table} {name}\n");
        }

        public void Map(string name, string type, string comment) =>
            _declarations.Append(CultureInfo.InvariantCulture, $"add map {Family} {Table} {name} {{ type {type}; comment \"{comment}\"; }}\n");

        public void Rule(string chain, string rule) =>
            _rules.Append(CultureInfo.InvariantCulture, $"add rule {Family} {Table} {chain} {rule}\n");

        /// <summary>Adds `key value` to a map unless the key is there already: two Services claiming one external
        /// address and port (nothing stops a user from writing that) must not fail the whole transaction; the
        /// first in the order of <see cref="Render"/> wins.</summary>
        public void Element(string map, string key, string value)
        {
            if (_keys.Add($"{map} {key}"))
                _elements.Append(CultureInfo.InvariantCulture, $"add element {Family} {Table} {map} {{ {key} {value} }}\n");
        }

        public override string ToString() => _declarations.ToString() + _rules + _elements;
    }
}
