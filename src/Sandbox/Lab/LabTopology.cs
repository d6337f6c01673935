using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Hybrid.Sandbox.Lab;

/// <summary>What the user asks for: `hybrid sandbox --name N --nodes K --subnet S`.</summary>
/// <param name="Name">Prefix of every namespace of the lab: [a-z0-9-], at most 10 characters.</param>
/// <param name="Nodes">Number of node namespaces, 1..50.</param>
/// <param name="Subnet">IPv4 network inside 198.18.0.0/15 (the benchmarking range) with a prefix of at most /28.</param>
/// <param name="Ipv6">Also give every host a ULA address in fd48:5942::/64.</param>
/// <param name="TempRoot">Where the run directory is made; null: the system temp directory.</param>
internal sealed record LabSpec(string Name = "hybrid", int Nodes = 3, string Subnet = "198.18.0.0/24", bool Ipv6 = true, string? TempRoot = null);

/// <summary>
/// One host on the lab's LAN: its own network namespace with `eth0`, whose veth peer (<see cref="BridgePort"/>)
/// sits on the bridge in the LAN namespace.
/// </summary>
/// <param name="Name">`node-3`, `client`, or an extra role such as `dhcp`; also the API client name of its bridge.</param>
/// <param name="Index">Node number 1..N; 0 for the client and extra hosts.</param>
/// <param name="Mac">`eth0`'s MAC, lowercase with colons.</param>
/// <param name="Ipv4">`eth0`'s address; the prefix length is <see cref="LabTopology.PrefixLength"/>.</param>
/// <param name="Ipv6">`eth0`'s ULA (/64), or null when IPv6 is off.</param>
/// <param name="ApiSocketPath">Unix socket the API server listens on for this host's bridge.</param>
internal sealed record LabHost(
    string Name,
    int Index,
    string Namespace,
    string Interface,
    string BridgePort,
    string Mac,
    string BridgePortMac,
    IPAddress Ipv4,
    IPAddress? Ipv6,
    string ApiSocketPath,
    string KubeconfigPath,
    string LogPath);

/// <summary>
/// The lab's whole layout computed from name, node count and subnet: pure data, no effects, the same input
/// always gives the same names, MACs and addresses (so captures and logs of two runs compare line by line).
/// <para>
/// Layout, by offset from the subnet's network address: .1 the router (only with UPnP or DHCP, see <see cref="LabRouter"/>), .2 the client,
/// .3–.10 extra hosts (<see cref="ExtraHost"/>: DHCP server, UPnP gateway), .11 upward the nodes, up to 50
/// addresses below the VIPs (.150–.199 in a /24) that the router's dnsmasq leases, and the last
/// 55 usable addresses (.200–.254 in a /24) advised for VIPs. MACs are locally administered
/// 02:48:59:TT:00:00 ("HY"), TT = node number in decimal digits (node-12 → 12), c1 for the client, e1–e8 for
/// extra hosts; a bridge-side peer has the same MAC ending in :01. IPv6 (optional): fd48:5942::/64 with the
/// same offsets written as hex digits (node at .11 → fd48:5942::11), no DAD.
/// </para>
/// <para>
/// Pods (<see cref="PodNetwork"/>): the lowest /18 of 198.18.0.0/15 that overlaps neither the LAN nor
/// 198.19.0.0/24 (the lab's internet namespace); node K gets its K-th /24 as its pod CIDR, .1 of
/// which is the node's side of every pod link. With the default LAN that is 198.18.64.0/18, node-1 → 198.18.65.0/24.
/// Pod namespaces are `NAME-pK`, K counting up within a run.
/// </para>
/// </summary>
internal sealed partial class LabTopology
{
    public const int MaxNameLength = 10;
    public const int MaxNodes = 50;
    public const int MaxPrefixLength = 28;
    public const string HostInterface = "eth0";
    public const string Bridge = "br0";
    public const string BridgeMac = "02:48:59:b0:00:00";
    public const int ClientOffset = 2;
    public const int FirstExtraOffset = 3;
    public const int MaxExtraHosts = 8;
    public const int FirstNodeOffset = 11;
    /// <summary>How many addresses at the top of the subnet are advised for VIPs (.200–.254 of a /24).</summary>
    public const int VipPoolSize = 55;
    /// <summary>How many addresses just below the VIPs the router's dnsmasq leases at most (.150–.199 of a /24).</summary>
    public const int DhcpPoolSize = 50;

    /// <summary>Prefix length of the pod network, and of each node's pod CIDR within it (room for 63 nodes).</summary>
    public const int PodNetworkPrefixLength = 18;
    public const int PodCidrPrefixLength = 24;

    /// <summary>The lab's internet namespace behind the router at the LAN's .1 (<see cref="LabRouter"/>).</summary>
    public static readonly IPNetwork InternetRange = IPNetwork.Parse("198.19.0.0/24");

    /// <summary>Room for the NUL of sockaddr_un.sun_path (108 bytes on Linux).</summary>
    private const int MaxUnixSocketPath = 107;
    private static readonly IPNetwork Benchmarking = IPNetwork.Parse("198.18.0.0/15");
    private static readonly IPAddress UlaPrefix = IPAddress.Parse("fd48:5942::");

    private readonly uint _network;

    private LabTopology(LabSpec spec, uint network, int prefixLength, uint podNetwork, bool ipv6, string runDirectory)
    {
        _network = network;
        PodNetwork = new IPNetwork(ToAddress(podNetwork), PodNetworkPrefixLength);
        Name = spec.Name;
        PrefixLength = prefixLength;
        Subnet = new IPNetwork(ToAddress(network), prefixLength);
        Ipv6Enabled = ipv6;
        RunDirectory = runDirectory;
        LanNamespace = $"{Name}-lan";
        var size = SubnetSize(prefixLength);
        VipFirst = ToAddress(network + (uint)Math.Max(size - 1 - VipPoolSize, FirstNodeOffset + spec.Nodes));
        VipLast = ToAddress(network + (uint)(size - 2));
        var vipFirst = ToUInt32(VipFirst) - network;
        var dhcpFirst = Math.Max((uint)(FirstNodeOffset + MaxNodes), vipFirst - Math.Min(vipFirst, DhcpPoolSize));
        if (dhcpFirst < vipFirst)
        {
            DhcpFirst = ToAddress(network + dhcpFirst);
            DhcpLast = ToAddress(network + vipFirst - 1);
        }
        Reserved = ToAddress(network + 1);
        Client = MakeHost("client", 0, ClientOffset, 0xc1);
        Nodes = Enumerable.Range(1, spec.Nodes)
            .Select(i => MakeHost($"node-{i}", i, FirstNodeOffset + i - 1, Bcd(i)))
            .ToArray();
    }

    public string Name { get; }
    public int NodeCount => Nodes.Count;
    public IPNetwork Subnet { get; }
    public int PrefixLength { get; }
    public bool Ipv6Enabled { get; }
    public IPNetwork? Ipv6Subnet => Ipv6Enabled ? new IPNetwork(UlaPrefix, 64) : null;

    /// <summary>Per-run directory (mode 0700): API sockets, kubeconfigs, agent logs, the owner file.</summary>
    public string RunDirectory { get; }

    /// <summary>Records which process owns the lab, so that a stale instance never deletes a newer one.</summary>
    public string OwnerFile => Path.Combine(RunDirectory, "owner");

    /// <summary>The namespace holding the bridge; pure L2 (IPv6 disabled, no addresses).</summary>
    public string LanNamespace { get; }

    /// <summary>.1 of the subnet: never a node or VIP: the router's LAN address when the lab has one.</summary>
    public IPAddress Reserved { get; }

    public LabHost Client { get; }
    public IReadOnlyList<LabHost> Nodes { get; }

    /// <summary>The client first, then the nodes in order.</summary>
    public IReadOnlyList<LabHost> Hosts => [Client, .. Nodes];

    /// <summary>Every namespace the lab creates itself: the LAN first, then <see cref="Hosts"/>.</summary>
    public IReadOnlyList<string> Namespaces => [LanNamespace, .. Hosts.Select(h => h.Namespace)];

    /// <summary>Advised VIP range (inclusive), disjoint from every host address.</summary>
    public IPAddress VipFirst { get; }
    public IPAddress VipLast { get; }

    /// <summary>
    /// The range the router's dnsmasq leases (inclusive): up to <see cref="DhcpPoolSize"/> addresses just below
    /// <see cref="VipFirst"/>, above any node's address; null when the subnet has no room (a /26 or smaller).
    /// </summary>
    public IPAddress? DhcpFirst { get; }
    public IPAddress? DhcpLast { get; }

    /// <summary>Where every pod address comes from (see the class comment); disjoint from the LAN.</summary>
    public IPNetwork PodNetwork { get; }

    /// <summary>Node K's pod CIDR: the K-th /24 of <see cref="PodNetwork"/>.</summary>
    /// <exception cref="ArgumentException">Not a node of this lab.</exception>
    public IPNetwork PodCidr(LabHost node)
    {
        if (node.Index < 1 || node.Index > Nodes.Count || Nodes[node.Index - 1] != node)
            throw new ArgumentException($"'{node.Name}' is not a node of lab '{Name}'", nameof(node));
        var first = ToUInt32(PodNetwork.BaseAddress) + ((uint)node.Index << (32 - PodCidrPrefixLength));
        return new IPNetwork(ToAddress(first), PodCidrPrefixLength);
    }

    /// <summary>.1 of the node's pod CIDR: the node's end of each of its pods' links, and their default gateway.</summary>
    public IPAddress PodGateway(LabHost node) => ToAddress(ToUInt32(PodCidr(node).BaseAddress) + 1);

    /// <summary>The namespace of the lab's K-th pod (K ≥ 1): `NAME-pK`.</summary>
    public string PodNamespace(int number) =>
        number >= 1 ? $"{Name}-p{number}" : throw new ArgumentOutOfRangeException(nameof(number), number, "pod numbers start at 1");

    /// <summary>Advised IPv6 VIP range (inclusive), or null when IPv6 is off.</summary>
    public IPAddress? Ipv6VipFirst => Ipv6Enabled ? Ula(200) : null;
    public IPAddress? Ipv6VipLast => Ipv6Enabled ? Ula(254) : null;

    /// <summary>`a.b.c.d/p` of a host's IPv4 address, as `ip addr` prints it.</summary>
    public string Ipv4Cidr(LabHost host) => $"{host.Ipv4}/{PrefixLength}";

    /// <summary>`fd48:5942::x/64` of a host's IPv6 address, or null when IPv6 is off.</summary>
    public static string? Ipv6Cidr(LabHost host) => host.Ipv6 is null ? null : $"{host.Ipv6}/64";

    /// <summary>The host called <paramref name="name"/> (`node-2`, `client`), or its namespace name.</summary>
    /// <exception cref="ArgumentException">No such host.</exception>
    public LabHost Host(string name) =>
        Hosts.FirstOrDefault(h => h.Name == name || h.Namespace == name)
        ?? throw new ArgumentException($"lab '{Name}' has no host '{name}' (hosts: {string.Join(", ", Hosts.Select(h => h.Name))})", nameof(name));

    /// <summary>Node by number, 1..N.</summary>
    public LabHost Node(int index) =>
        index >= 1 && index <= Nodes.Count ? Nodes[index - 1] : throw new ArgumentOutOfRangeException(nameof(index), index, $"lab '{Name}' has nodes 1..{Nodes.Count}");

    /// <summary>
    /// An extra host for a server the tests add (e.g. `dhcp`, `upnp`): namespace `NAME-ROLE`, slot 1..8 →
    /// address offset 2 + slot and MAC 02:48:59:eS:00:00. <see cref="NetnsLab.AddHostAsync"/> wires it to the
    /// bridge; the lab's sweep and dispose remove it like the others.
    /// </summary>
    public LabHost ExtraHost(string role, int slot)
    {
        if (!RoleRegex().IsMatch(role) || role is "lan" or "client" or "node")
            throw new ArgumentException($"extra host role '{role}' must be one lowercase word other than lan, client and node", nameof(role));
        if (slot is < 1 or > MaxExtraHosts)
            throw new ArgumentOutOfRangeException(nameof(slot), slot, $"extra host slots are 1..{MaxExtraHosts}");
        var offset = FirstExtraOffset + slot - 1;
        if (offset >= FirstNodeOffset || (uint)offset >= SubnetSize(PrefixLength) - 1)
            throw new ArgumentOutOfRangeException(nameof(slot), slot, "the subnet has no room for this extra host");
        return MakeHost(role, 0, offset, (byte)(0xe0 + slot));
    }

    /// <summary>
    /// The router (see <see cref="LabRouter"/>): namespace `NAME-router` at the LAN's reserved .1, MAC
    /// 02:48:59:e0:00:00; its other side is the internet namespace <see cref="InternetNamespace"/>.
    /// </summary>
    public LabHost RouterHost() => MakeHost("router", 0, 1, 0xe0);

    /// <summary>The Internet behind the router: one host in <see cref="InternetRange"/>, no route to the LAN.</summary>
    public string InternetNamespace => $"{Name}-internet";

    /// <summary>
    /// True when <paramref name="namespaceName"/> is one the lab called <paramref name="labName"/> creates:
    /// `NAME-lan`, `NAME-client`, `NAME-node-K`, `NAME-pK` (a pod), `NAME-ROLE` (one lowercase word). Matching exactly these forms
    /// keeps the sweep of lab `a` away from the namespaces of lab `a-b` (`a-b-lan` is not `a-` + a role).
    /// </summary>
    public static bool IsLabNamespace(string labName, string namespaceName) =>
        namespaceName.StartsWith(labName + "-", StringComparison.Ordinal)
        && SweepRoleRegex().IsMatch(namespaceName[(labName.Length + 1)..]);

    /// <summary>The run directory a lab of this name uses under <paramref name="tempRoot"/> (null: system temp).</summary>
    public static string RunDirectoryFor(string name, string? tempRoot = null) =>
        Path.Combine(tempRoot ?? Path.GetTempPath(), $"hybrid-lab-{name}");

    /// <summary>Every problem with <paramref name="spec"/>, all at once; empty when it is valid.</summary>
    public static IReadOnlyList<string> Validate(LabSpec spec) => Analyse(spec).Errors;

    /// <summary>The topology, or false with every problem of the spec.</summary>
    public static bool TryCreate(LabSpec spec, out LabTopology? topology, out IReadOnlyList<string> errors)
    {
        var analysis = Analyse(spec);
        errors = analysis.Errors;
        topology = errors.Count == 0
            ? new LabTopology(spec, analysis.Network, analysis.PrefixLength, analysis.PodNetwork, spec.Ipv6, RunDirectoryFor(spec.Name, spec.TempRoot))
            : null;
        return topology is not null;
    }

    /// <summary>The topology of a valid spec.</summary>
    /// <exception cref="ArgumentException">Every problem of the spec, one per line.</exception>
    public static LabTopology Create(LabSpec spec) =>
        TryCreate(spec, out var topology, out var errors)
            ? topology!
            : throw new ArgumentException("invalid lab: " + string.Join("; ", errors), nameof(spec));

    private LabHost MakeHost(string name, int index, int offset, byte tag)
    {
        var run = RunDirectory;
        return new LabHost(
            Name: name,
            Index: index,
            Namespace: $"{Name}-{name}",
            Interface: HostInterface,
            BridgePort: name,
            Mac: Mac(tag, 0),
            BridgePortMac: Mac(tag, 1),
            Ipv4: ToAddress(_network + (uint)offset),
            Ipv6: Ipv6Enabled ? Ula(offset) : null,
            ApiSocketPath: Path.Combine(run, $"api-{name}.sock"),
            KubeconfigPath: Path.Combine(run, $"kubeconfig-{name}.yaml"),
            LogPath: Path.Combine(run, $"{name}.log"));
    }

    private static string Mac(byte tag, byte last) => $"02:48:59:{tag:x2}:00:{last:x2}";

    /// <summary>Decimal digits read as hex, so that node 12 shows as 12 in a MAC.</summary>
    private static byte Bcd(int value) => (byte)(((value / 10) << 4) | (value % 10));

    /// <summary>fd48:5942:: plus the offset written in decimal digits read as hex (offset 11 → ::11).</summary>
    private static IPAddress Ula(int offset)
    {
        var bytes = UlaPrefix.GetAddressBytes();
        var hex = int.Parse(offset.ToString(CultureInfo.InvariantCulture), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(14), (ushort)hex);
        return new IPAddress(bytes);
    }

    private static long SubnetSize(int prefixLength) => 1L << (32 - prefixLength);

    private static uint ToUInt32(IPAddress address) => BinaryPrimitives.ReadUInt32BigEndian(address.GetAddressBytes());

    private static bool Overlaps(IPNetwork a, IPNetwork b) => a.Contains(b.BaseAddress) || b.Contains(a.BaseAddress);

    /// <summary>The lowest /18 of 198.18.0.0/15 clear of the LAN and of the internet range, or null.</summary>
    private static uint? FreePodNetwork(IPNetwork lan)
    {
        var first = ToUInt32(Benchmarking.BaseAddress);
        for (uint block = 0; block < 1u << (PodNetworkPrefixLength - 15); block++)
        {
            var candidate = new IPNetwork(ToAddress(first + (block << (32 - PodNetworkPrefixLength))), PodNetworkPrefixLength);
            if (!Overlaps(candidate, lan) && !Overlaps(candidate, InternetRange)) return ToUInt32(candidate.BaseAddress);
        }
        return null;
    }

    private static IPAddress ToAddress(uint value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        return new IPAddress(bytes);
    }

    private sealed record Analysis(IReadOnlyList<string> Errors, uint Network, int PrefixLength, uint PodNetwork);

    private static Analysis Analyse(LabSpec spec)
    {
        var errors = new List<string>();
        var name = spec.Name ?? "";
        if (name.Length == 0)
            errors.Add("name: must not be empty");
        else
        {
            if (!NameRegex().IsMatch(name))
                errors.Add($"name '{name}': use only a-z, 0-9 and '-', starting and ending with a letter or digit");
            if (name.Length > MaxNameLength)
                errors.Add($"name '{name}': at most {MaxNameLength} characters (it prefixes every namespace name), got {name.Length}");
        }

        if (spec.Nodes is < 1 or > MaxNodes)
            errors.Add($"nodes: must be 1..{MaxNodes}, got {spec.Nodes}");

        uint network = 0;
        uint podNetwork = 0;
        var prefixLength = -1;
        var subnet = spec.Subnet ?? "";
        var slash = subnet.IndexOf('/');
        if (slash < 0
            || !IPAddress.TryParse(subnet[..slash], out var address)
            || !int.TryParse(subnet[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out prefixLength))
        {
            errors.Add($"subnet '{subnet}': expected an IPv4 network such as 198.18.0.0/24");
            prefixLength = -1;
        }
        else if (address.AddressFamily != AddressFamily.InterNetwork)
        {
            errors.Add($"subnet '{subnet}': must be IPv4 (IPv6 addresses come from fd48:5942::/64 with --ipv6)");
            prefixLength = -1;
        }
        else if (prefixLength > 32)
        {
            errors.Add($"subnet '{subnet}': prefix length must be 0..32");
            prefixLength = -1;
        }
        else
        {
            var value = BinaryPrimitives.ReadUInt32BigEndian(address.GetAddressBytes());
            var mask = prefixLength == 0 ? 0u : uint.MaxValue << (32 - prefixLength);
            network = value & mask;
            if (network != value)
                errors.Add($"subnet '{subnet}': host bits are set; the network is {ToAddress(network)}/{prefixLength}");
            if (prefixLength < 15 || !Benchmarking.Contains(ToAddress(network)))
                errors.Add($"subnet '{subnet}': must lie inside 198.18.0.0/15 (the benchmarking range), so nothing can collide with a real network");
            else
            {
                var lan = new IPNetwork(ToAddress(network), prefixLength);
                if (Overlaps(lan, InternetRange))
                    errors.Add($"subnet '{subnet}': overlaps {InternetRange}, which is kept for the lab's internet namespace");
                else if (FreePodNetwork(lan) is { } pods)
                    podNetwork = pods;
                else
                    errors.Add($"subnet '{subnet}': leaves no /{PodNetworkPrefixLength} of 198.18.0.0/15 free for pod addresses; use a smaller subnet");
            }
            if (prefixLength > MaxPrefixLength)
                errors.Add($"subnet '{subnet}': prefix length must be at most /{MaxPrefixLength}, got /{prefixLength}");
            else if (spec.Nodes is >= 1 and <= MaxNodes)
            {
                // Nodes take .11 upward and at least one address above them must stay free for VIPs.
                var maxNodes = SubnetSize(prefixLength) - 2 - FirstNodeOffset;
                if (spec.Nodes > maxNodes)
                    errors.Add($"subnet '{subnet}': a /{prefixLength} holds at most {maxNodes} nodes (nodes start at .{FirstNodeOffset} and one address is kept for VIPs), got {spec.Nodes}");
            }
        }

        if (name.Length > 0)
        {
            var socket = Path.Combine(RunDirectoryFor(name, spec.TempRoot), $"api-node-{MaxNodes}.sock");
            if (System.Text.Encoding.UTF8.GetByteCount(socket) > MaxUnixSocketPath)
                errors.Add($"temp directory: Unix socket paths such as '{socket}' exceed {MaxUnixSocketPath} bytes; use a shorter TMPDIR");
            if (socket.IndexOfAny([',', ':', '!', '"', '\'', '\\', ' ', '{', '}', '[', ']', '%']) >= 0)
                errors.Add($"temp directory: '{socket}' contains characters socat treats as syntax; use a plainer TMPDIR");
        }

        return new Analysis(errors, network, prefixLength, podNetwork);
    }

    [GeneratedRegex("^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
    private static partial Regex NameRegex();

    [GeneratedRegex("^[a-z]+$")]
    private static partial Regex RoleRegex();

    [GeneratedRegex("^(node-[0-9]+|p[0-9]+|[a-z]+)$")]
    private static partial Regex SweepRoleRegex();
}
