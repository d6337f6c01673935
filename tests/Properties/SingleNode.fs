/// One agent alone against an in-memory API server and kernel, for the seed's single-node examples: it runs
/// the real `Protocol.step` and plays the shell's part in the simplest world (answers at once, nothing fails,
/// no other node on the LAN). The model-based test (Simulation.fs) covers many nodes and faults.
module Hybrid.Properties.SingleNode

open Hybrid.Domain

type World =
    { Node: NodeState
      Now: Instant
      Leases: Map<string, LeaseRecord>
      NextVersion: int
      Services: Map<ServiceKey, Service>
      /// VIPs the kernel answers for (held, with the fence element alive).
      Held: Set<Ip>
      FenceUntil: Instant option
      Addresses: Set<Ip>
      /// Addresses somebody else put on the interface: Admit finds them there (AddressNotOurs); a Withdraw
      /// would delete them.
      Foreign: Set<Ip>
      Events: ServiceEvent list
      /// Lease and status writes so far.
      Writes: int
      /// Status writes that emptied an ingress list that had entries.
      IngressCleared: int
      /// What each step asked for, newest first.
      Decisions: Command list list
      /// The DHCP clients the node runs (StartDhcp until StopDhcp), and every stop in order.
      DhcpClients: Map<ServiceKey, DhcpWant>
      DhcpStops: (ServiceKey * StopMode) list }

let private record (w: World) (write: LeaseWrite) (previous: LeaseRecord option) : LeaseRecord =
    let kept = previous |> Option.map _.Annotations |> Option.defaultValue Map.empty
    { Name = write.Name
      Version = string w.NextVersion
      Holder = write.Holder
      Transitions = write.Transitions
      Labels = write.Labels
      Annotations =
        write.Annotations
        |> Map.fold (fun (acc: Map<string, string>) k v -> match v with Some v -> acc.Add(k, v) | None -> acc.Remove k) kept }

/// Executes one command; returns the world and the inputs it reports (answers and watch events).
let execute (w: World) (command: Command) : World * Input list =
    let now = w.Now
    match command with
    | WriteLease(id, write) ->
        let existing = w.Leases.TryFind write.Name
        let outcome =
            match write.Expected, existing with
            | None, Some _ -> Error Conflict
            | Some _, None -> Error NotFound
            | Some v, Some l when l.Version <> v -> Error Conflict
            | _ -> Ok(record w write existing)
        match outcome with
        | Ok r ->
            { w with Leases = w.Leases.Add(r.Name, r); NextVersion = w.NextVersion + 1; Writes = w.Writes + 1 },
            [ WriteCompleted(id, Written(Some r), 0.5, now); LeaseUpserted(r, now) ]
        | Error e -> w, [ WriteCompleted(id, e, 0.5, now) ]
    | DeleteLease(id, name, version) ->
        match w.Leases.TryFind name with
        | Some l when l.Version = version ->
            { w with Leases = w.Leases.Remove name; Writes = w.Writes + 1 }, [ WriteCompleted(id, Written None, 0.5, now); LeaseDeleted(name, now) ]
        | Some _ -> w, [ WriteCompleted(id, Conflict, 0.5, now) ]
        | None -> w, [ WriteCompleted(id, NotFound, 0.5, now) ]
    | ReadLease name ->
        match w.Leases.TryFind name with
        | Some l -> w, [ LeaseUpserted(l, now) ]
        | None -> w, [ LeaseDeleted(name, now) ]
    | Kernel k ->
        // The fresh-clock rule: what extends the right to answer is skipped once the fence has ended.
        let alive = w.FenceUntil |> Option.exists (fun t -> now < t)
        let w, outcome, except =
            match k with
            | InstallFence _ -> w, Applied, []
            | ExtendFence deadline -> { w with FenceUntil = (if deadline > now then Some deadline else None) }, Applied, []
            | ExpireFence -> { w with FenceUntil = None }, Applied, []
            | Admit(vips, _) ->
                let foreign, ours = vips |> List.map fst |> List.partition w.Foreign.Contains
                { w with Addresses = Set.union w.Addresses (Set.ofList ours) }, Applied, foreign |> List.map (fun ip -> ip, AddressNotOurs)
            | RefreshAddress _ | Announce _ when not alive -> w, SkippedFenceEnded, []
            | RefreshAddress _ | Announce _ -> w, Applied, []
            | Hold ips -> { w with Held = Set.union w.Held (Set.ofList ips) }, Applied, []
            | Unhold ips -> { w with Held = Set.difference w.Held (Set.ofList ips) }, Applied, []
            | Withdraw vips ->
                let ips = vips |> List.map fst |> Set.ofList
                { w with Held = Set.difference w.Held ips; Addresses = Set.difference w.Addresses ips; Foreign = Set.difference w.Foreign ips }, Applied, []
        w, [ KernelCompleted(k, outcome, except, now) ]
    | WriteStatus(key, ingress, vipHost) ->
        match w.Services.TryFind key with
        | Some s ->
            let cleared = match ingress with Some [] when not s.Ingress.IsEmpty -> 1 | _ -> 0
            let s = match ingress with Some entries -> { s with Ingress = entries } | None -> s
            let s =
                match vipHost with
                | Some(Some h) -> { s with Annotations = s.Annotations.Add(Annotations.VipHost, h) }
                | Some None -> { s with Annotations = s.Annotations.Remove Annotations.VipHost }
                | None -> s
            { w with Services = w.Services.Add(key, s); Writes = w.Writes + 1; IngressCleared = w.IngressCleared + cleared },
            [ ServiceUpserted(s, now) ]
        | None -> w, []
    | Emit e -> { w with Events = w.Events @ [ e ] }, []
    | StartDhcp want -> { w with DhcpClients = w.DhcpClients.Add(want.Service, want) }, []
    | StopDhcp(want, mode) -> { w with DhcpClients = w.DhcpClients.Remove want.Service; DhcpStops = w.DhcpStops @ [ want.Service, mode ] }, []
    | RecordDhcpLease(key, address, mac) ->
        match w.Services.TryFind key with
        | Some s ->
            let s =
                match address with
                | Some ip ->
                    { s with Annotations = s.Annotations.Add(Annotations.RequestedIP, Ip.format ip).Add(Annotations.HwAddr, string mac) }
                | None -> { s with Annotations = s.Annotations.Remove Annotations.RequestedIP; Ingress = [] }
            { w with Services = w.Services.Add(key, s); Writes = w.Writes + 1 }, [ ServiceUpserted(s, now) ]
        | None -> w, []
    // No pools are configured here, so the node assigns no address and reports no pool ConfigMap entry.
    | SendFrame _ | AssignAddress _ | EmitPoolConfigEvent _ | Note _ -> w, []

/// Feeds inputs one by one, executing what each step asks (answers are queued behind the inputs).
let rec private drain (w: World) (inbox: Input list) : World =
    match inbox with
    | [] -> w
    | input :: rest ->
        let node, commands = Protocol.step w.Node input
        let w = { w with Node = node; Decisions = commands :: w.Decisions }
        let w, replies = commands |> List.fold (fun (w, acc) c -> let w, r = execute w c in w, acc @ r) (w, [])
        drain w (rest @ replies)

/// Like drain, but stops at the first decision `pick` chooses something from: the node as that decision left it,
/// with the decision's commands not carried out (the inputs still queued behind it are dropped).
let rec private drainUntil (pick: Command list -> 'a option) (w: World) (inbox: Input list) : Choice<World, World * 'a> =
    match inbox with
    | [] -> Choice1Of2 w
    | input :: rest ->
        let node, commands = Protocol.step w.Node input
        let w = { w with Node = node; Decisions = commands :: w.Decisions }
        match pick commands with
        | Some picked -> Choice2Of2(w, picked)
        | None ->
            let w, replies = commands |> List.fold (fun (w, acc) c -> let w, r = execute w c in w, acc @ r) (w, [])
            drainUntil pick w (rest @ replies)

/// Delivers `inputs`, then runs as runUntil does, until a decision `pick` chooses something from (see drainUntil)
/// or `until`.
let rec runUntilDecision (pick: Command list -> 'a option) (until: Instant) (inputs: Input list) (w: World) : (World * 'a) option =
    match drainUntil pick w inputs with
    | Choice2Of2 found -> Some found
    | Choice1Of2 w when w.Now >= until -> None
    | Choice1Of2 w ->
        let next = min until (min (w.Now + 100L) (defaultArg w.Node.NextWakeAt (w.Now + 100L) |> max (w.Now + 1L)))
        runUntilDecision pick until [ Tick next ] { w with Now = next }

/// Reports these inputs (stamped by the caller) and everything they cause, at the world's current instant.
let deliver (inputs: Input list) (w: World) : World = drain w inputs

/// Runs until `until` (ms on the node's clock), waking when the node asks (at least every 100 ms).
let rec runUntil (until: Instant) (w: World) : World =
    if w.Now >= until then w
    else
        let next = min until (min (w.Now + 100L) (defaultArg w.Node.NextWakeAt (w.Now + 100L) |> max (w.Now + 1L)))
        let w = { w with Now = next }
        runUntil until (drain w [ Tick next ])

/// A node of `config` about to start at 0 ms on an empty cluster with these Services and EndpointSlices, on an
/// interface that already carries `foreign` (put there by somebody else): the world and its first inputs.
let beforeStart (config: Config) (foreign: Set<Ip>) (services: Service list) (slices: EndpointSlice list) : World * Input list =
    { Node = Protocol.create config
      Now = 0L
      Leases = Map.empty
      NextVersion = 1
      Services = services |> List.map (fun s -> s.Key, s) |> Map.ofList
      Held = Set.empty
      FenceUntil = None
      Addresses = Set.empty
      Foreign = foreign
      Events = []
      Writes = 0
      IngressCleared = 0
      Decisions = []
      DhcpClients = Map.empty
      DhcpStops = [] },
    [ Started(Incarnation 0x5eed_0001UL, [], true, 0L)
      ServicesListed(services, 0L)
      SlicesListed(slices |> List.mapi (fun i s -> sprintf "%s/slice-%d" s.Service.Namespace i, s), 0L)
      LeasesListed([], 0L) ]

/// A node of `config` starting at 0 ms on an empty cluster with these Services and EndpointSlices, on an
/// interface that already carries `foreign` (put there by somebody else).
let startWithForeign (config: Config) (foreign: Set<Ip>) (services: Service list) (slices: EndpointSlice list) : World =
    beforeStart config foreign services slices ||> drain

/// A node of `config` starting at 0 ms on an empty cluster with these Services and EndpointSlices.
let start (config: Config) (services: Service list) (slices: EndpointSlice list) : World =
    startWithForeign config Set.empty services slices

/// The VIPs the node's kernel answers for now.
let answering (w: World) = w.Held |> Set.filter (fun _ -> w.FenceUntil |> Option.exists (fun t -> w.Now < t))
