// Address policy: which requested addresses may be announced, and which nodes may hold VIPs.
namespace Hybrid.Domain

open System
open System.Collections.Generic

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// The network, as far as addresses nobody may take are concerned
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// An address of a node's VIP interface with its prefix length, as `ip addr` shows it.
type AddressOnInterface = { Address: Ip; PrefixLength: int }

/// What a node's agent reads from its VIP interface through netlink: the interface's own addresses (not the
/// VIPs Hybrid added, told apart by their netlink protocol mark) and the default gateways reached through it.
/// Each agent publishes its own in its registration, so that every node refuses the same addresses.
type InterfaceFacts =
    { Addresses: AddressOnInterface list
      Gateways: Ip list }

/// A Node object, reduced to what the address policy reads.
type NodeObject =
    { Name: string
      /// status.addresses that are IP addresses (InternalIP, ExternalIP; host names are left out).
      Addresses: Ip list
      Labels: Map<string, string> }

/// One node's addresses that no Service may take. The shell fills it from the Node object and from what
/// each node publishes about its VIP interface.
type NodeNetwork =
    { Node: string
      /// The Node object's status.addresses that are IP addresses (InternalIP, ExternalIP).
      StatusAddresses: Ip list
      /// The VIP interface's own addresses, without the VIPs Hybrid added (the shell tells those apart by
      /// their netlink protocol mark): otherwise every VIP would refuse itself.
      InterfaceAddresses: AddressOnInterface list
      /// Default gateways reached through the VIP interface.
      Gateways: Ip list }

/// Why an address belongs to the network rather than to a Service. Announcing it would take traffic from
/// a node, the router or the whole subnet.
[<RequireQualifiedAccess>]
type ReservedAddress =
    | NodeAddress of node: string
    | InterfaceAddress of node: string
    | Gateway of node: string
    /// The first address of the VIP interface's subnet (IPv4 network address; IPv6 subnet-router anycast).
    | SubnetNetwork of node: string * subnet: Cidr
    /// The last address of the VIP interface's IPv4 subnet.
    | SubnetBroadcast of node: string * subnet: Cidr

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Verdicts on requested addresses
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Why a requested address is not announced.
[<RequireQualifiedAccess>]
type AddressRefusal =
    /// Always refused, whatever the pools, even when it was announced before.
    | Reserved of ReservedAddress
    /// Pools are configured and none applies to the Service's namespace.
    | NoPoolForNamespace
    /// The address is not in the pool the namespace uses.
    | OutsidePool of PoolScope
    /// The Service asks for DHCP and its namespace's pool does not hand out DHCP (0.0.0.0/32).
    | DhcpNotInPool of PoolScope
    /// An earlier Service of another namespace has the address, and allow-share is not set for both.
    | SharedAcrossNamespaces of earlier: ServiceKey

/// The fate of one requested address.
type AddressVerdict =
    | AddressAllowed
    /// Refused by a pool or sharing rule, but announced before that rule refused it: it stays, with a
    /// Warning, so that configuring pools never takes a running Service off the network.
    | AddressKept of AddressRefusal
    /// Not announced.
    | AddressRefused of AddressRefusal

/// A Service's requested addresses with their verdicts (IPv4 first, as Addresses.requested lists them).
type ServiceAddressVerdicts =
    { Service: ServiceKey
      Verdicts: (AddressRequest * AddressVerdict) list }

/// Whether a node may hold VIPs.
type NodeVipEligibility =
    | MayHoldVips
    | ExcludedByLabel

[<RequireQualifiedAccess>]
module NodeExclusion =
    /// The well-known label (Kubernetes' service controller and MetalLB read it): present with any value,
    /// it keeps external load balancers off the node.
    let Label = "node.kubernetes.io/exclude-from-external-load-balancers"

    let eligibility (policy: ExclusionLabelPolicy) (labels: Map<string, string>) : NodeVipEligibility =
        match policy with
        | HonourExclusionLabel when labels.ContainsKey Label -> ExcludedByLabel
        | _ -> MayHoldVips

[<RequireQualifiedAccess>]
module InterfaceFacts =
    let none: InterfaceFacts = { Addresses = []; Gateways = [] }

    /// In a canonical order, so that two readings of the same interface compare equal.
    let normalise (facts: InterfaceFacts) : InterfaceFacts =
        { Addresses = facts.Addresses |> List.distinct |> List.sortWith (fun a b -> match Ip.Order(a.Address, b.Address) with 0 -> compare a.PrefixLength b.PrefixLength | c -> c)
          Gateways = facts.Gateways |> List.distinct |> List.sortWith (fun a b -> Ip.Order(a, b)) }

    /// `198.18.0.11/24,fd48:5942::11/64`: how a registration records the addresses.
    let addressesText (facts: InterfaceFacts) =
        facts.Addresses |> List.map (fun a -> Ip.format a.Address + "/" + string a.PrefixLength) |> String.concat ","

    /// `198.18.0.1`: how a registration records the gateways.
    let gatewaysText (facts: InterfaceFacts) = facts.Gateways |> List.map Ip.format |> String.concat ","

    let private items (text: string) = text.Split ',' |> Array.map _.Trim() |> Array.filter (fun t -> t <> "") |> List.ofArray

    /// Reads what `addressesText` and `gatewaysText` wrote; None when an item is not what they write.
    let parse (addresses: string) (gateways: string) : InterfaceFacts option =
        let address (item: string) =
            match item.Split '/' with
            | [| ip; prefix |] ->
                match Ip.tryParse ip, Int32.TryParse(prefix, Globalization.NumberStyles.None, Globalization.CultureInfo.InvariantCulture) with
                | Some a, (true, p) when p <= Ip.hostPrefix (Ip.family a) -> Some { Address = a; PrefixLength = p }
                | _ -> None
            | _ -> None
        let parsedAddresses = items addresses |> List.map address
        let parsedGateways = items gateways |> List.map Ip.tryParse
        if List.forall Option.isSome parsedAddresses && List.forall Option.isSome parsedGateways then
            Some(normalise { Addresses = List.choose id parsedAddresses; Gateways = List.choose id parsedGateways })
        else None

[<RequireQualifiedAccess>]
module AddressPolicy =
    /// Every node's reserved addresses: the Node objects' status.addresses and what each agent read from its
    /// VIP interface (published in its registration), for every node known by either.
    let network (nodes: NodeObject list) (interfaces: Map<string, InterfaceFacts>) : NodeNetwork list =
        let byName = nodes |> List.map (fun n -> n.Name, n) |> Map.ofList
        let names = Set.union (Set.ofSeq byName.Keys) (Set.ofSeq interfaces.Keys)
        [ for name in names ->
              let facts = interfaces.TryFind name |> Option.defaultValue InterfaceFacts.none
              { Node = name
                StatusAddresses = byName.TryFind name |> Option.map _.Addresses |> Option.defaultValue []
                InterfaceAddresses = facts.Addresses
                Gateways = facts.Gateways } ]

    // ── Addresses that belong to the network ────────────────────────────────────────────────────────

    /// Every reserved address with the first reason that reserves it: node addresses, then interface
    /// addresses, gateways, subnet network and broadcast addresses; nodes by name within each.
    let reservations (network: NodeNetwork list) : IReadOnlyDictionary<Ip, ReservedAddress> =
        let nodes = network |> List.sortBy _.Node
        let subnets (n: NodeNetwork) =
            n.InterfaceAddresses |> List.choose (fun a -> Cidr.containing a.Address a.PrefixLength)
        // RFC 3021 (/31) and RFC 6164 (/127) links have no network or broadcast address.
        let networkAddresses (n: NodeNetwork) =
            subnets n
            |> List.filter (fun c -> c.Length < Ip.hostPrefix (Cidr.family c) - 1)
            |> List.map (fun c -> c.Network, ReservedAddress.SubnetNetwork(n.Node, c))
        let broadcastAddresses (n: NodeNetwork) =
            subnets n
            |> List.filter (fun c -> Cidr.family c = IPv4 && c.Length <= 30)
            |> List.map (fun c -> Cidr.last c, ReservedAddress.SubnetBroadcast(n.Node, c))
        let byRule =
            [ for n in nodes do for a in n.StatusAddresses -> a, ReservedAddress.NodeAddress n.Node
              for n in nodes do for a in n.InterfaceAddresses -> a.Address, ReservedAddress.InterfaceAddress n.Node
              for n in nodes do for g in n.Gateways -> g, ReservedAddress.Gateway n.Node
              for n in nodes do yield! networkAddresses n
              for n in nodes do yield! broadcastAddresses n ]
        let table = Dictionary<Ip, ReservedAddress>()
        for ip, why in byRule do
            table.TryAdd(ip, why) |> ignore
        table :> IReadOnlyDictionary<Ip, ReservedAddress>

    // ── Addresses Services refer to ─────────────────────────────────────────────────────────────────

    let private addressesIn (text: string) =
        text.Split ',' |> Seq.choose (fun t -> Ip.tryParse (t.Trim())) |> Seq.filter (fun ip -> Ip.unusable ip <> Some Unspecified)

    /// The addresses in a Service's status.loadBalancer.ingress. Only a load balancer writes status (it is
    /// a subresource tenants are not granted), so this is the record of what was announced for it.
    let announced (service: Service) : Ip list =
        service.Ingress |> List.collect (fun e -> addressesIn e.Ip |> List.ofSeq) |> List.distinct

    /// Every address a LoadBalancer Service refers to, whoever's it is and whether or not it is valid: the
    /// requested ones (kube-vip.io/loadbalancerIPs, else spec.loadBalancerIP, item by item), a DHCP lease
    /// (kube-vip.io/requestedIP) and its status. None of them may be handed to another Service. A Service
    /// that is no longer a LoadBalancer, or is gone, refers to nothing: that is how addresses are released.
    let claimedBy (service: Service) : Ip list =
        if service.Type <> "LoadBalancer" then []
        else
            let requested =
                match service.Annotations.TryFind Annotations.LoadBalancerIPs with
                | Some v when not (String.IsNullOrWhiteSpace v) -> v
                | _ -> defaultArg service.LoadBalancerIP ""
            let leased = service.Annotations.TryFind Annotations.RequestedIP |> Option.defaultValue ""
            [ yield! addressesIn requested; yield! addressesIn leased; yield! announced service ] |> List.distinct

    // ── Rules ───────────────────────────────────────────────────────────────────────────────────────

    /// The pool rule for one request, when pools are configured.
    let private poolRule (pools: PoolConfig) (ns: string) (request: AddressRequest) : AddressRefusal option =
        if not (Pools.configured pools) then None
        else
            match Pools.poolFor pools ns, request with
            | None, _ -> Some AddressRefusal.NoPoolForNamespace
            | Some pool, Static ip when not (Pools.offers pool ip) -> Some(AddressRefusal.OutsidePool pool.Scope)
            | Some pool, Dhcp(family, _) when Pools.familyPool pool family <> Some ViaDhcp -> Some(AddressRefusal.DhcpNotInPool pool.Scope)
            | Some _, _ -> None

    /// The sharing rule: every earlier holder of the address in another namespace must allow sharing, and
    /// so must this namespace. Sharing within one namespace is left to the port rules (Sharing).
    let private sharingRule (pools: PoolConfig) (ns: string) (holders: ServiceKey list) : AddressRefusal option =
        let shares n = Pools.sharingFor pools n = SharingAllowed
        holders
        |> List.tryFind (fun earlier -> earlier.Namespace <> ns && not (shares ns && shares earlier.Namespace))
        |> Option.map AddressRefusal.SharedAcrossNamespaces

    let private addressOf (request: AddressRequest) =
        match request with
        | Static ip -> Some ip
        | Dhcp(_, leased) -> leased

    /// Judges every requested address of every Service of ours, oldest Service first (creationTimestamp,
    /// then namespace/name, as Sharing orders), so that an earlier Service never loses to a later one and
    /// the result does not depend on the order Services are listed.
    /// - Reserved addresses (a node's, its VIP interface's, the gateway, the subnet's network/broadcast)
    ///   are refused whatever the pools, even when announced before.
    /// - When pools are configured, an address outside the namespace's pool, or DHCP where the pool has
    ///   none, is refused; sharing an address with an earlier Service of another namespace needs
    ///   allow-share for both namespaces (whatever the pools, so no tenant can join another's address).
    ///   These two refusals are Kept instead when the Service's status already lists the address.
    /// Services of another class, or ignored, get no verdict but their addresses still count as held.
    let verdicts (config: Config) (pools: PoolConfig) (network: NodeNetwork list) (services: Service list) : ServiceAddressVerdicts list =
        let reserved = reservations network
        let holders = Dictionary<Ip, ServiceKey list>()
        let holdersOf ip =
            match holders.TryGetValue ip with
            | true, keys -> keys
            | _ -> []
        let hold (key: ServiceKey) ip = holders[ip] <- holdersOf ip @ [ key ]
        let judge (service: Service) (request: AddressRequest) =
            let ns = service.Key.Namespace
            let ip = addressOf request
            let reservedWhy = ip |> Option.bind (fun a -> match reserved.TryGetValue a with | true, why -> Some why | _ -> None)
            match reservedWhy with
            | Some why -> AddressRefused(AddressRefusal.Reserved why)
            | None ->
                let refusal =
                    poolRule pools ns request
                    |> Option.orElse (ip |> Option.bind (fun a -> sharingRule pools ns (holdersOf a)))
                match refusal, ip with
                | None, _ -> AddressAllowed
                | Some why, Some a when List.contains a (announced service) -> AddressKept why
                | Some why, _ -> AddressRefused why
        services
        |> List.sortWith Sharing.compareOrder
        |> List.choose (fun service ->
            match Admission.interest config service, Addresses.requested service with
            | Interested, Requested requests ->
                let judged = requests |> List.map (fun r -> r, judge service r)
                for request, verdict in judged do
                    match addressOf request, verdict with
                    | Some ip, (AddressAllowed | AddressKept _) -> hold service.Key ip
                    | _ -> ()
                Some { Service = service.Key; Verdicts = judged }
            | Interested, _ -> None
            | NotInterested _, _ ->
                for ip in claimedBy service do
                    hold service.Key ip
                None)

    /// The addresses of a Service's verdicts that may be announced (allowed or kept).
    let announceable (verdicts: ServiceAddressVerdicts) : Ip list =
        verdicts.Verdicts
        |> List.choose (fun (request, verdict) ->
            match verdict with
            | AddressAllowed
            | AddressKept _ -> addressOf request
            | AddressRefused _ -> None)
