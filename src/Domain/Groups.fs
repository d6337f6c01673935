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

/// VIPs that move together: one IP with all the Services sharing it (svc_election=true), or every VIP
/// (svc_election=false, the single leader group). Services sharing an IP can therefore never split.
type Group =
    { Id: GroupId
      /// The addresses announced while the group is held (IPv4 first).
      Addresses: Ip list
      Members: ServiceKey list
      Eligibility: Eligibility
      /// When this node last saw a member change (used to date a group that has no Lease yet).
      ChangedSeenAt: Instant }

/// Everything the cluster wants, independent of which node looks at it.
type Desired =
    { States: Map<ServiceKey, ServiceState>
      Groups: Group list
      GroupOf: Map<Ip, GroupId>
      /// Per-service eligibility of the members (for explanations and warnings).
      ServiceEligibility: Map<ServiceKey, Eligibility> }

[<RequireQualifiedAccess>]
module LeaseNames =
    let VipPrefix = "hybrid-vip-"
    let HeartbeatPrefix = "hybrid-node-"

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
    let heartbeat (node: string) = bounded (HeartbeatPrefix + node)

[<RequireQualifiedAccess>]
module Desired =
    let private prefixOf (config: Config) ip =
        match Ip.family ip with
        | IPv4 -> config.PrefixV4
        | IPv6 -> config.PrefixV6

    /// The prefix length a VIP is added with (vip_subnet).
    let prefix = prefixOf

    /// Admission, addresses, sharing, eligibility and grouping of every Service.
    let compute (config: Config) (services: Service list) (slices: EndpointSlice list) : Desired =
        let byKey = services |> List.map (fun s -> s.Key, s) |> Map.ofList
        let early =
            services
            |> List.map (fun s ->
                match Admission.interest config s with
                | NotInterested reason -> s.Key, Choice1Of2(Skipped reason)
                | Interested ->
                    match Addresses.requested s with
                    | NoAddressYet -> s.Key, Choice1Of2(AwaitingAddress [])
                    | Unusable(text, problem) -> s.Key, Choice1Of2(Skipped(InvalidAddress(text, problem)))
                    | Requested requests ->
                        let pending = requests |> List.choose (function Dhcp(f, None) -> Some f | _ -> None)
                        match Addresses.advertised requests with
                        | [] -> s.Key, Choice1Of2(AwaitingAddress pending)
                        | ips -> s.Key, Choice2Of2(ips, pending))
        let candidates =
            early |> List.choose (fun (k, c) -> match c with Choice2Of2(ips, _) -> Some(byKey[k], ips) | _ -> None)
        let verdicts = Sharing.resolve candidates
        let states =
            early
            |> List.map (fun (k, c) ->
                match c with
                | Choice1Of2 state -> k, state
                | Choice2Of2(ips, pending) ->
                    match verdicts[k] with
                    | Admitted -> k, Member(ips, pending)
                    | Rejected reason -> k, Skipped reason)
            |> Map.ofList
        let slicesOf = slices |> List.groupBy _.Service |> Map.ofList
        let members =
            services
            |> List.sortBy Sharing.order
            |> List.choose (fun s ->
                match states[s.Key] with
                | Member(ips, _) -> Some(s, ips)
                | _ -> None)
        let eligibility =
            members
            |> List.map (fun (s, _) -> s.Key, Eligibility.ofService config.Election s (defaultArg (slicesOf.TryFind s.Key) []))
            |> Map.ofList
        let perIp =
            members
            |> List.collect (fun (s, ips) -> ips |> List.map (fun ip -> ip, s))
            |> List.groupBy fst
            |> List.map (fun (ip, pairs) -> ip, pairs |> List.map snd)
            |> List.sortBy fst
        let changedAt (ss: Service list) = ss |> List.map _.ChangedSeenAt |> List.fold max 0L
        let groups, groupOf =
            if config.Election then
                let groups =
                    perIp
                    |> List.map (fun (ip, ss) ->
                        { Id = LeaseNames.group ip
                          Addresses = [ ip ]
                          Members = ss |> List.map _.Key
                          Eligibility = ss |> List.map (fun s -> eligibility[s.Key]) |> Eligibility.combine
                          ChangedSeenAt = changedAt ss })
                groups, perIp |> List.map (fun (ip, _) -> ip, LeaseNames.group ip) |> Map.ofList
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
                    ChangedSeenAt = changedAt all } ],
                perIp |> List.map (fun (ip, _) -> ip, config.LeaseName) |> Map.ofList
        { States = states
          Groups = groups
          GroupOf = groupOf
          ServiceEligibility = eligibility }
