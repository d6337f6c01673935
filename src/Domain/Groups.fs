// Groups: the unit of ownership, and the desired state of the whole cluster.
namespace Hybrid.Domain

open System

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Groups: the unit of ownership
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// The name of a group's Lease.
type GroupId = string

/// Where a Service stands after admission, addresses and sharing.
type ServiceState =
    | Skipped of SkipReason
    /// Ours, but no address to advertise yet (none requested, or a DHCP lease still pending).
    | AwaitingAddress of pendingDhcp: IpFamily list
    /// Ours, with addresses; each address belongs to exactly one group.
    | Member of addresses: Ip list * pendingDhcp: IpFamily list
    /// Ours, and the address policy refuses every address it asks for (Desired.AddressWarnings says why).
    | Refused

/// VIPs that move together: one IP with all the Services sharing it (svc_election=true), or every VIP
/// (svc_election=false, the single leader group). Services sharing an IP can therefore never split.
type Group =
    { Id: GroupId
      /// The addresses announced while the group is held (IPv4 first).
      Addresses: Ip list
      Members: ServiceKey list
      Eligibility: Eligibility
      /// When this node last saw a member change (used to date a group that has no Lease yet).
      ChangedSeenAt: Instant
      /// The creationTimestamp of its oldest member (seconds; the API server's, so every node sees the same).
      CreatedAt: int64
      /// svc_election: the group whose holder this one goes with. A dual-stack Service's IPv6 address follows
      /// the group of its IPv4 address, so that both are announced from one node while each keeps its own
      /// Lease (docs/PROTOCOL.md §4). None for every other group.
      Follows: GroupId option }

/// A Service that asks for DHCPv4 (0.0.0.0) with a usable lease identity: whoever holds `Group` runs its
/// client (docs/DHCP.md). The same on every node, so a successor leases under the same identity.
type DhcpWant =
    { Service: ServiceKey
      Identity: DhcpIdentity
      /// The group whose holder leases: the Service's own (election), or the one leader's.
      Group: GroupId
      /// The address the Service records (kube-vip.io/requestedIP, else status): confirmed first (INIT-REBOOT).
      Known: Ip option }

/// Why a Service that asks for DHCP gets no client.
[<RequireQualifiedAccess>]
type DhcpProblem =
    /// Its annotations cannot form a lease identity (each bad one).
    | BadIdentity of DhcpIdentityError list
    /// `::`: DHCPv6 is not supported yet.
    | V6NotSupported

/// What the address policy judges by: the pools (Pools.none: no pools) and every node's reserved addresses.
type AddressPolicyInputs = { Pools: PoolConfig; Network: NodeNetwork list }

/// Everything the cluster wants, independent of which node looks at it (computed once per change of
/// Services or EndpointSlices, then only read).
type Desired =
    { States: Map<ServiceKey, ServiceState>
      Groups: Group list
      GroupById: Map<GroupId, Group>
      GroupOf: Map<Ip, GroupId>
      /// Per-service eligibility of the members (for explanations and warnings).
      ServiceEligibility: Map<ServiceKey, Eligibility>
      /// The address policy's Warnings per Service: refused addresses, and refused ones kept because they
      /// were announced before (docs/POOLS.md).
      AddressWarnings: Map<ServiceKey, PoolWarning list>
      /// What the address policy judged by.
      Policy: AddressPolicyInputs
      /// Pool assignment for every Service of ours that asks for no address (none without pools).
      AddressAssignments: (ServiceKey * AssignOutcome) list
      /// Services whose group's holder runs a DHCPv4 client for them.
      DhcpWants: Map<ServiceKey, DhcpWant>
      /// Services that ask for DHCP and get no client, and why (Warnings).
      DhcpProblems: Map<ServiceKey, DhcpProblem list> }

[<RequireQualifiedAccess>]
module LeaseNames =
    let VipPrefix = "hybrid-vip-"
    let RegistrationPrefix = "hybrid-node-"

    /// FNV-1a over UTF-16 code units: stable across processes and machines (string.GetHashCode is not).
    let fnv1a (s: string) =
        let mutable h = 14695981039346656037UL
        for c in s do
            h <- (h ^^^ uint64 c) * 1099511628211UL
        h

    /// Keeps a generated name within the 253 characters a Lease name may have, staying unique and a valid DNS
    /// subdomain (a cut right after a '.' would start the hash's label with '-').
    let private bounded (name: string) =
        if name.Length <= 253 then name else name.Substring(0, 236).TrimEnd('.') + "-" + (fnv1a name).ToString "x16"

    let group (ip: Ip) : GroupId = bounded (VipPrefix + Ip.toNameSegment ip)

    let DhcpPrefix = "hybrid-dhcp-"

    /// Whether a Lease is a group's under svc_election (an address's, or a DHCP Service's).
    let isElectionGroup (name: string) = name.StartsWith VipPrefix || name.StartsWith DhcpPrefix

    /// The group of a DHCP Service, named after its UID: it holds no address until a lease is recorded, and
    /// keeps its name (and so its holder) when one is, so that the node running the client is the one that
    /// announces the lease. A UID that is not a DNS label (UIDs are UUIDs) is hashed.
    let dhcp (uid: string) : GroupId =
        let u = uid.ToLowerInvariant()
        let label = u <> "" && u.Length <= 63 && u |> Seq.forall (fun c -> (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c = '-')
        DhcpPrefix + (if label then u else (fnv1a uid).ToString "x16")
    let registration (node: string) = bounded (RegistrationPrefix + node)

[<RequireQualifiedAccess>]
module Desired =
    let private prefixOf (config: Config) ip =
        match Ip.family ip with
        | IPv4 -> config.PrefixV4
        | IPv6 -> config.PrefixV6

    /// The prefix length a VIP is added with (vip_subnet).
    let prefix = prefixOf

    /// The requests the address policy lets through (allowed, or kept because announced before), and the
    /// policy's Warnings, per Service of ours that asks for addresses.
    let private judged (config: Config) (policy: AddressPolicyInputs) (services: Service list) =
        AddressPolicy.verdicts config policy.Pools policy.Network services
        |> List.map (fun v ->
            let passed =
                v.Verdicts
                |> List.choose (fun (request, verdict) ->
                    match verdict with
                    | AddressAllowed | AddressKept _ -> Some request
                    | AddressRefused _ -> None)
            v.Service, (passed, PoolWarning.ofVerdicts v))
        |> Map.ofList

    /// Admission, the address policy, addresses, sharing, eligibility and grouping of every Service. A
    /// refused address is in no group: nobody announces it.
    /// `families`: spec.ipFamilies and spec.ipFamilyPolicy per Service, for assignment (absent: single-stack
    /// with ipFamilies unset).
    let computeWithPolicy (config: Config) (policy: AddressPolicyInputs) (families: Map<ServiceKey, IpFamily list * IpFamilyPolicy>)
        (services: Service list) (slices: EndpointSlice list) : Desired =
        let policyOf = judged config policy services
        let early =
            services
            |> List.map (fun s ->
                match Admission.interest config s with
                | NotInterested reason -> s, Choice1Of2(Skipped reason)
                | Interested ->
                    match Addresses.requested s with
                    | NoAddressYet -> s, Choice1Of2(AwaitingAddress [])
                    | Unusable(text, problem) -> s, Choice1Of2(Skipped(InvalidAddress(text, problem)))
                    | Requested requested ->
                        let requests =
                            match policyOf.TryFind s.Key with
                            | Some(passed, _) -> passed
                            | None -> requested
                        let pending = requests |> List.choose (function Dhcp(f, None) -> Some f | _ -> None)
                        match Addresses.advertised requests with
                        | [] when requests.IsEmpty -> s, Choice1Of2 Refused
                        | [] -> s, Choice1Of2(AwaitingAddress pending)
                        | ips -> s, Choice2Of2(ips, pending))
        // DHCP (docs/DHCP.md): a Service that asks for 0.0.0.0 with a usable lease identity gets a client on its
        // group's holder; a bad annotation or `::` is a Warning for that Service alone.
        let dhcp =
            early
            |> List.choose (fun (s, c) ->
                let requests =
                    match c with
                    | Choice2Of2 _
                    | Choice1Of2(AwaitingAddress _) ->
                        match policyOf.TryFind s.Key, Addresses.requested s with
                        | Some(passed, _), _ -> passed
                        | None, Requested requests -> requests
                        | None, _ -> []
                    | Choice1Of2 _ -> []
                let v4 = requests |> List.exists (function Dhcp(IPv4, _) -> true | _ -> false)
                let v6 = requests |> List.exists (function Dhcp(IPv6, _) -> true | _ -> false)
                let identity = if v4 then Some(DhcpIdentity.ofService s) else None
                let problems =
                    [ match identity with
                      | Some(Error errors) -> DhcpProblem.BadIdentity errors
                      | _ -> ()
                      if v6 then DhcpProblem.V6NotSupported ]
                match identity, problems with
                | None, [] -> None
                | _ -> Some(s, (match identity with Some(Ok i) -> Some i | _ -> None), problems))
        let dhcpIdentity = dhcp |> List.choose (fun (s, i, _) -> i |> Option.map (fun i -> s.Key, i)) |> Map.ofList
        let candidates = early |> List.choose (fun (s, c) -> match c with Choice2Of2(ips, _) -> Some(s, ips) | _ -> None)
        let verdicts = Sharing.verdicts candidates |> Index.ofSeq
        let stateList =
            early
            |> List.map (fun (s, c) ->
                match c with
                | Choice1Of2 state -> s, state
                | Choice2Of2(ips, pending) ->
                    match verdicts[s.Key] with
                    | Admitted -> s, Member(ips, pending)
                    | Rejected reason -> s, Skipped reason)
        let slicesOf = slices |> Index.groupBy _.Service |> Index.ofSeq
        let members =
            stateList
            |> List.choose (fun (s, state) ->
                match state with
                | Member(ips, _) -> Some(s, ips)
                | _ -> None)
            |> List.sortWith (fun (a, _) (b, _) -> Sharing.compareOrder a b)
        // A DHCP Service is eligible somewhere before it has an address: its group's holder leases.
        let awaitingDhcp =
            stateList
            |> List.filter (fun (s, state) -> (match state with AwaitingAddress _ -> true | _ -> false) && dhcpIdentity.ContainsKey s.Key)
            |> List.map fst
        let eligibilityList =
            (members |> List.map fst) @ awaitingDhcp
            |> List.map (fun s ->
                s.Key, Eligibility.ofService config.Election s (Index.tryFind s.Key slicesOf |> Option.defaultValue []))
        let eligibility = Index.ofSeq eligibilityList
        // With svc_election every DHCP Service is a group of its own, named after it: the client's node is the
        // one that announces the lease, however often the lease changes.
        let shared = if config.Election then members |> List.filter (fun (s, _) -> not (dhcpIdentity.ContainsKey s.Key)) else members
        let perIp =
            shared
            |> List.collect (fun (s, ips) -> ips |> List.map (fun ip -> ip, s))
            |> Index.groupBy fst
            |> List.map (fun (ip, pairs) -> ip, pairs |> List.map snd)
            |> List.sortWith (fun (a, _) (b, _) -> Ip.Order(a, b))
        let changedAt (ss: Service list) = ss |> List.map _.ChangedSeenAt |> List.fold max 0L
        let groups, groupOf =
            if config.Election then
                // The group of each Service's first address (IPv4 first) leads the groups of its other address;
                // the oldest Service decides for a group several Services share. A leader never follows: a
                // Service has at most one address per family, so only IPv6 groups follow.
                let leaders =
                    shared
                    |> List.collect (fun (_, ips) ->
                        match ips with
                        | first :: rest -> rest |> List.map (fun ip -> LeaseNames.group ip, LeaseNames.group first)
                        | [] -> [])
                    |> List.filter (fun (g, leader) -> g <> leader)
                    |> List.fold (fun (acc: Map<GroupId, GroupId>) (g, leader) -> if acc.ContainsKey g then acc else acc.Add(g, leader)) Map.empty
                let follows = leaders |> Map.filter (fun _ leader -> not (leaders.ContainsKey leader))
                let groups =
                    perIp
                    |> List.map (fun (ip, ss) ->
                        { Id = LeaseNames.group ip
                          Addresses = [ ip ]
                          Members = ss |> List.map _.Key
                          Eligibility = ss |> List.map (fun s -> eligibility[s.Key]) |> Eligibility.combine
                          ChangedSeenAt = changedAt ss
                          CreatedAt = ss |> List.map _.CreatedAt |> List.min
                          Follows = follows.TryFind(LeaseNames.group ip) })
                let sharedIps = perIp |> List.map fst |> Set.ofList
                let dhcpGroups =
                    (members |> List.filter (fun (s, _) -> dhcpIdentity.ContainsKey s.Key)) @ (awaitingDhcp |> List.map (fun s -> s, []))
                    |> List.sortWith (fun (a, _) (b, _) -> Sharing.compareOrder a b)
                    |> List.map (fun (s, ips) ->
                        { Id = LeaseNames.dhcp s.Uid
                          // An address a static Service announces too stays with the static Service's group.
                          Addresses = ips |> List.filter (sharedIps.Contains >> not)
                          Members = [ s.Key ]
                          Eligibility = eligibility[s.Key]
                          ChangedSeenAt = s.ChangedSeenAt
                          CreatedAt = s.CreatedAt
                          Follows = None })
                groups @ dhcpGroups,
                (perIp |> List.map (fun (ip, _) -> ip, LeaseNames.group ip))
                @ (dhcpGroups |> List.collect (fun g -> g.Addresses |> List.map (fun ip -> ip, g.Id)))
            else
                // One leader holds everything; an IP whose services have no serving endpoint stays unannounced.
                let announced =
                    perIp
                    |> List.filter (fun (_, ss) ->
                        (ss |> List.map (fun s -> eligibility[s.Key]) |> Eligibility.combine) <> NoServingEndpoint)
                    |> List.map fst
                let all = members |> List.map fst
                [ { Id = config.LeaseName
                    Addresses = announced
                    Members = all |> List.map _.Key
                    Eligibility = AnyNode SingleLeaderMode
                    ChangedSeenAt = changedAt all
                    CreatedAt = all |> List.map _.CreatedAt |> List.fold min Int64.MaxValue
                    Follows = None } ],
                perIp |> List.map (fun (ip, _) -> ip, config.LeaseName)
        let states = stateList |> List.map (fun (s, state) -> s.Key, state) |> Map.ofList
        { States = states
          Groups = groups
          GroupById = groups |> List.map (fun g -> g.Id, g) |> Map.ofList
          GroupOf = Map.ofList groupOf
          ServiceEligibility = Map.ofList eligibilityList
          AddressWarnings = policyOf |> Map.map (fun _ (_, warnings) -> warnings) |> Map.filter (fun _ w -> not w.IsEmpty)
          Policy = policy
          AddressAssignments =
            services
            |> List.map (fun s ->
                let fs, familyPolicy = families.TryFind s.Key |> Option.defaultValue ([], SingleStack)
                { Service = s; Families = fs; FamilyPolicy = familyPolicy })
            |> PoolAssignment.assign config policy.Pools policy.Network
          DhcpWants =
            dhcp
            // Not one whose leased address sharing refused (it is Skipped with that reason).
            |> List.filter (fun (s, _, _) -> match states.TryFind s.Key with Some(Member _ | AwaitingAddress _) -> true | _ -> false)
            |> List.choose (fun (s, identity, _) ->
                identity
                |> Option.map (fun identity ->
                    s.Key,
                    { Service = s.Key
                      Identity = identity
                      Group = (if config.Election then LeaseNames.dhcp s.Uid else config.LeaseName)
                      Known = DhcpIdentity.knownAddress s }))
            |> Map.ofList
          DhcpProblems = dhcp |> List.choose (fun (s, _, problems) -> if problems.IsEmpty then None else Some(s.Key, problems)) |> Map.ofList }

    /// No pools and no reserved addresses: only the cross-namespace sharing rule applies.
    let noPolicy = { Pools = Pools.none; Network = [] }

    /// Desired state without pools or reserved addresses (what a node that is fed no policy sources sees).
    let compute (config: Config) (services: Service list) (slices: EndpointSlice list) : Desired =
        computeWithPolicy config noPolicy Map.empty services slices

    let empty =
        { States = Map.empty
          Groups = []
          GroupById = Map.empty
          GroupOf = Map.empty
          ServiceEligibility = Map.empty
          AddressWarnings = Map.empty
          Policy = noPolicy
          AddressAssignments = []
          DhcpWants = Map.empty
          DhcpProblems = Map.empty }
