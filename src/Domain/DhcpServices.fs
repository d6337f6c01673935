// DHCP Services on one node (docs/DHCP.md): which DHCP clients this node runs (only for the groups it holds),
// how it stops them (release only when the Service no longer asks for the lease), what a client's outcome
// writes back to the Service, and the Warnings. Pure: the node's protocol step calls it with what it knows.
// Texts are concatenated: printf with numbers is not supported in the native agent.
namespace Hybrid.Domain

/// What a running client reported (the shell turns the client's Leased/Lost commands into these).
[<RequireQualifiedAccess>]
type DhcpOutcome =
    /// A lease was obtained (a new one, or a known address confirmed).
    | Bound of Ip
    /// The lease held was extended (renewal or rebinding).
    | Extended of Ip
    /// The address is no longer the Service's (expired, refused, replaced); the client starts over itself.
    | Lost of Ip * LostReason

/// A DHCP client this node runs for a Service.
type DhcpClient =
    { Want: DhcpWant
      StartedAt: Instant
      /// The address the client holds now.
      Bound: Ip option
      /// The lease this node last recorded on the Service (Some None: it removed the record).
      Recorded: Ip option option
      /// Since when the client has been without a lease (start, or the last loss).
      UnboundSince: Instant
      /// The Warning that no lease came was posted for this stretch without one.
      Warned: bool }

/// Where a DHCP Service's group stands for this node: whether its client runs here.
[<RequireQualifiedAccess>]
type DhcpGroupStanding =
    /// This node holds the group (its claim acknowledged): it runs the client.
    | HeldHere
    /// Nobody may hold it now (no eligible node, or this node is releasing it): a client already running here
    /// keeps the lease alive without announcing it, so the address stays the Service's and a deletion that
    /// comes after its endpoints' still releases it. None is started.
    | Unclaimed
    /// Another node holds or claims it, or this node is stopping: a client here stops without a release.
    | Elsewhere

/// What the node must do about DHCP, in order.
[<RequireQualifiedAccess>]
type DhcpAction =
    /// Create the macvlan (identity's name and MAC) on the VIP interface and run a client on it, confirming
    /// `Known` first.
    | Start of DhcpWant
    /// Stop the client (ReleaseLease: DHCPRELEASE if a lease is held; KeepLease: send nothing, the next holder
    /// renews the same lease) and delete its macvlan.
    | Stop of DhcpWant * StopMode
    /// Patch the Service: kube-vip.io/requestedIP = the address and kube-vip.io/hwaddr = the MAC (Some), or
    /// remove kube-vip.io/requestedIP and empty status.loadBalancer.ingress (None: the lease was lost).
    | Record of service: ServiceKey * address: Ip option * mac: Mac
    | Warn of ServiceEvent

/// The interface that carries a VIP's address on the node that admits it.
[<RequireQualifiedAccess>]
type VipLink =
    /// The VIP interface itself: every VIP but a DHCP lease.
    | Parent
    /// The macvlan of the DHCP Service whose lease the address is: the address goes there as a host address
    /// and is announced with the macvlan's MAC, the one the server leased it to.
    | Macvlan of name: InterfaceName * mac: Mac

[<RequireQualifiedAccess>]
module DhcpServices =
    /// How long a client may go without a lease before its Service gets a Warning (a server that offers
    /// nothing, e.g. an exhausted range, never answers: the client keeps trying, the user should know).
    let NoLeaseWarningAfter: Duration = 10_000L

    let private recordedOn (service: Service option) (want: DhcpWant) =
        match service with
        | Some s ->
            let hw = s.Annotations |> Map.tryFind Annotations.HwAddr |> Option.bind (fun t -> match Mac.parse t with Ok m -> Some m | Error _ -> None)
            DhcpIdentity.knownAddress s, hw
        | None -> want.Known, None

    /// Which interface carries a VIP: the macvlan of the DHCP Service whose recorded lease the address is (the
    /// same name and MAC on every node), else the parent.
    let link (wants: Map<ServiceKey, DhcpWant>) (ip: Ip) : VipLink =
        wants
        |> Map.tryPick (fun _ w -> if w.Known = Some ip then Some(VipLink.Macvlan(w.Identity.Interface, w.Identity.Mac)) else None)
        |> Option.defaultValue VipLink.Parent

    /// The prefix a VIP's address is put on with: a host address on a macvlan (it is the macvlan's alone; the
    /// subnet's route stays the parent's), else what the configuration says for the parent.
    let prefix (link: VipLink) (parentPrefix: Ip -> int) (ip: Ip) : int =
        match link, ip with
        | VipLink.Parent, _ -> parentPrefix ip
        | VipLink.Macvlan _, V4 _ -> 32
        | VipLink.Macvlan _, V6 _ -> 128

    /// The clients this node should run and what to do: a client for every wanted Service whose group this
    /// node holds, kept while the group is unclaimed; a client whose Service no longer wants it (deleted,
    /// another address, another identity) is stopped with ReleaseLease; one whose group is elsewhere with
    /// KeepLease. A Service that still
    /// asks for DHCP after its client released (another identity) loses its record, and a client that replaces
    /// the released one confirms no address. A bound client
    /// whose lease the Service does not record (requestedIP, hwaddr) records it, once per address. A client
    /// without a lease for NoLeaseWarningAfter warns, once per stretch without one.
    let plan (now: Instant) (wants: Map<ServiceKey, DhcpWant>) (standing: GroupId -> DhcpGroupStanding) (services: Map<ServiceKey, Service>)
        (clients: Map<ServiceKey, DhcpClient>) : Map<ServiceKey, DhcpClient> * DhcpAction list =
        let stops, kept =
            clients
            |> Map.toList
            |> List.fold (fun (stops, kept: Map<ServiceKey, DhcpClient>) (key, c) ->
                match wants.TryFind key with
                | Some w when w.Identity = c.Want.Identity && w.Group = c.Want.Group ->
                    match standing w.Group with
                    | DhcpGroupStanding.HeldHere
                    | DhcpGroupStanding.Unclaimed -> stops, kept.Add(key, { c with Want = w })
                    | DhcpGroupStanding.Elsewhere -> stops @ [ DhcpAction.Stop(c.Want, StopMode.KeepLease) ], kept
                | Some w ->
                    // Another identity or group: the released address is nobody's now, so the record goes too.
                    let unrecord =
                        match fst (recordedOn (services.TryFind key) w) with
                        | Some _ -> [ DhcpAction.Record(key, None, w.Identity.Mac) ]
                        | None -> []
                    stops @ DhcpAction.Stop(c.Want, StopMode.ReleaseLease) :: unrecord, kept
                | None -> stops @ [ DhcpAction.Stop(c.Want, StopMode.ReleaseLease) ], kept) ([], Map.empty)
        let released = clients |> Map.filter (fun key _ -> not (kept.ContainsKey key)) |> Map.keys |> Set.ofSeq
        let starts, clients =
            wants
            |> Map.toList
            |> List.fold (fun (starts, all: Map<ServiceKey, DhcpClient>) (key, w) ->
                if all.ContainsKey key || standing w.Group <> DhcpGroupStanding.HeldHere then starts, all
                elif released.Contains key then
                    // Replacing a client that released its lease: confirming that address would wait on a server
                    // that no longer knows it (a non-authoritative one stays silent), so it asks anew.
                    starts @ [ DhcpAction.Start { w with Known = None } ],
                    all.Add(key, { Want = w; StartedAt = now; Bound = None; Recorded = Some None; UnboundSince = now; Warned = false })
                else
                    starts @ [ DhcpAction.Start w ],
                    all.Add(key, { Want = w; StartedAt = now; Bound = None; Recorded = None; UnboundSince = now; Warned = false })) ([], kept)
        let clients, follow =
            clients
            |> Map.toList
            |> List.fold (fun (all: Map<ServiceKey, DhcpClient>, actions) (key, c) ->
                match c.Bound with
                | Some ip ->
                    let address, hw = recordedOn (services.TryFind key) c.Want
                    if (address <> Some ip || hw <> Some c.Want.Identity.Mac) && c.Recorded <> Some(Some ip) then
                        all.Add(key, { c with Recorded = Some(Some ip) }), actions @ [ DhcpAction.Record(key, Some ip, c.Want.Identity.Mac) ]
                    else all, actions
                | None when not c.Warned && now - c.UnboundSince >= NoLeaseWarningAfter ->
                    let message = "no DHCP lease yet after " + string ((now - c.UnboundSince) / 1000L) + " s on " + c.Want.Identity.Interface.Value + " (MAC " + string c.Want.Identity.Mac + "): the server offers nothing or refuses"
                    all.Add(key, { c with Warned = true }),
                    actions @ [ DhcpAction.Warn { Service = key; Type = Warning; Reason = EventReason.DhcpNoLease; Message = EventText.note message } ]
                | None -> all, actions) (clients, [])
        clients, stops @ starts @ follow

    /// A client's outcome. A bound or extended lease is the client's address (plan records it); a lost one is
    /// withdrawn from the Service's record (so every node stops announcing it) with a Warning. A report from a
    /// client this node no longer runs is ignored.
    let report (now: Instant) (key: ServiceKey) (outcome: DhcpOutcome) (clients: Map<ServiceKey, DhcpClient>)
        : Map<ServiceKey, DhcpClient> * DhcpAction list =
        match clients.TryFind key with
        | None -> clients, []
        | Some c ->
            match outcome with
            | DhcpOutcome.Bound ip
            | DhcpOutcome.Extended ip -> clients.Add(key, { c with Bound = Some ip; Warned = false }), []
            | DhcpOutcome.Lost(ip, reason) ->
                let message = "withdrew " + Ip.format ip + ": " + LostReason.describe reason + "; asking the DHCP server again"
                clients.Add(key, { c with Bound = None; Recorded = Some None; UnboundSince = now; Warned = false }),
                [ DhcpAction.Warn { Service = key; Type = Warning; Reason = EventReason.DhcpLeaseLost; Message = EventText.note message }
                  DhcpAction.Record(key, None, c.Want.Identity.Mac) ]

    /// When plan must run again without any input (a client's no-lease Warning).
    let nextDue (clients: Map<ServiceKey, DhcpClient>) : Instant option =
        clients
        |> Map.toList
        |> List.choose (fun (_, c) -> if c.Bound.IsNone && not c.Warned then Some(c.UnboundSince + NoLeaseWarningAfter) else None)
        |> function
            | [] -> None
            | dues -> Some(List.min dues)

    /// The Warnings of Services that ask for DHCP and get no client (posted by each Service's janitor).
    let warnings (problems: Map<ServiceKey, DhcpProblem list>) : ServiceEvent list =
        problems
        |> Map.toList
        |> List.collect (fun (key, ps) ->
            ps
            |> List.map (fun p ->
                match p with
                | DhcpProblem.BadIdentity errors ->
                    { Service = key; Type = Warning; Reason = EventReason.InvalidDhcpAnnotation
                      Message = EventText.note ("no DHCP lease: " + (errors |> List.map DhcpIdentityError.describe |> String.concat "; ")) }
                | DhcpProblem.V6NotSupported ->
                    { Service = key; Type = Warning; Reason = EventReason.DhcpV6NotSupported
                      Message = ":: asks for DHCPv6, which is not supported yet: no IPv6 address is announced" }))
