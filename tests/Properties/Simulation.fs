/// A deterministic discrete-event simulation of N agents running the real protocol state machine
/// (`Protocol.step`, nothing re-implemented) against one simulated API server, one simulated LAN and one
/// simulated kernel per node, under a schedule of faults. The simulation plays the C# shell's part exactly as
/// the shell does it: it executes every command, reports every outcome as an input, and applies the
/// fresh-clock rule to the kernel commands that carry a deadline. The same Scenario gives the same Outcome.
///
/// What is modelled:
/// - Time: real time in ms; node i's monotonic clock is offset_i + t·(1 + drift_i), |drift_i| ≤ ρ. Every
///   instant a node sees is on its own clock; the simulation never compares clocks of different nodes.
/// - The API server: Leases (with resourceVersions, create / compare-and-swap / delete, 409 and 404),
///   Services and EndpointSlices. A request travels up, is applied atomically when it arrives, and its answer
///   travels back; legs of 1–5 ms, up to seconds under ApiLatency. A client gives up after RequestTimeout
///   (Failed) although its request may still land later. An outage (all nodes, or one) loses requests and
///   breaks watches; a broken watch relists when the outage ends.
/// - Watches: every change reaches every connected process after 1–5 ms, in order; a stalled watch holds its
///   deliveries until the stall ends.
/// - The LAN: frames reach every other node whose link is up after 0.2–2 ms unless the pair is lossy.
/// - The kernel: the fence element (deadline on the node's own clock), the held and managed sets, addresses
///   with lifetimes, the link. Commands take effect in order, immediately or up to 200 ms late under
///   SlowKernel; a frozen process executes nothing until it resumes. A crashed process's kernel state stays
///   (the fence element expires by itself).
/// - Faults: API outages (global, per node) and latency, watch stalls, LAN loss (one-way per pair), freezes,
///   crashes and graceful stops (each followed by a restart), link down, slow kernel, deletion of
///   registrations and group Leases, endpoint moves, Service creation and deletion.
module Hybrid.Properties.Simulation

open System
open System.Collections.Generic
open Hybrid.Domain

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Scenarios
// ════════════════════════════════════════════════════════════════════════════════════════════════════

type ApiScope =
    | AllNodes
    | OneNode of int

type Fault =
    | ApiOutage of ApiScope * duration: int64
    | ApiLatency of ApiScope * duration: int64 * maxLeg: int64
    | WatchStall of node: int * duration: int64
    /// Frames from one node to another are lost (one direction).
    | LanLoss of from: int * toNode: int * duration: int64
    | Freeze of node: int * duration: int64
    | Crash of node: int * downFor: int64
    | GracefulStop of node: int * downFor: int64
    | LinkDown of node: int * duration: int64
    | SlowKernel of node: int * duration: int64 * maxDelay: int64
    | DeleteRegistration of node: int
    | DeleteGroupLease of ip: int
    | MoveEndpoints of service: int * nodes: int list
    | CreateService of ServiceSpec
    | DeleteService of service: int

and ServiceSpec =
    { Id: int
      Ip: int
      Local: bool
      Port: int
      Endpoints: int list }

type TimedFault = { At: int64; Fault: Fault }

type Scenario =
    { Nodes: int
      Election: bool
      Services: ServiceSpec list
      /// Clock rate difference of each node, in parts per million (|drift| ≤ ρ).
      Drifts: int list
      Faults: TimedFault list
      /// No fault starts after this; every fault has ended by it (the simulation heals what remains).
      ChaosEnd: int64
      /// Where the simulation stops; the liveness check looks at this instant.
      Horizon: int64
      Seed: uint64 }

let nodeName (i: int) = sprintf "node-%d" i
let vipText (i: int) = sprintf "198.18.0.%d" (200 + i)
let vip (i: int) = (Ip.tryParse (vipText i)).Value
let serviceKey (id: int) : ServiceKey = { Namespace = "default"; Name = sprintf "svc-%d" id }

/// A fixed test key: every simulated agent shares it.
let clusterKey = Convert.ToBase64String(Array.init 32 byte)

let config (scenario: Scenario) (node: string) : Config =
    let env =
        [ "vip_nodename", node
          "svc_enable", "true"
          "svc_election", (if scenario.Election then "true" else "false")
          "lan_key", clusterKey ]
    match Config.parse (Map.ofList env) None with
    | Ok c -> c
    | Error e -> failwithf "simulation configuration rejected: %A" e

let serviceOf (spec: ServiceSpec) : Service =
    { Key = serviceKey spec.Id
      Uid = sprintf "uid-%d" spec.Id
      CreatedAt = 1_700_000_000L + int64 spec.Id
      Type = "LoadBalancer"
      Class = None
      Annotations = Map.ofList [ Annotations.LoadBalancerIPs, vipText spec.Ip ]
      LoadBalancerIP = None
      Ports = [ { Protocol = "TCP"; Port = spec.Port } ]
      Policy = (if spec.Local then Local else Cluster)
      Selector = Map.ofList [ "app", sprintf "app-%d" spec.Id ]
      Ingress = []
      ChangedSeenAt = 0L }

let sliceOf (spec: ServiceSpec) : EndpointSlice =
    { Service = serviceKey spec.Id
      Endpoints =
        spec.Endpoints
        |> List.map (fun n -> { NodeName = Some(nodeName n); Conditions = { Ready = Some true; Serving = Some true; Terminating = Some false } }) }

let RequestTimeout = 2000L

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Outcome
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Two kernels answering for one VIP at one instant.
type Violation = { At: int64; Ip: Ip; Nodes: int list }

/// A VIP that stopped being answered by anyone.
type Gap = { Ip: Ip; From: int64; Until: int64 option }

/// A registration the server wrote as Deposed: by which node, whose, when.
type DepositionWritten = { At: int64; By: int; Target: string }

/// A group Lease write naming its writer as the holder, as the server received it: a claim.
type ClaimSent = { At: int64; By: int; Lease: string; Won: bool }

type Outcome =
    { Violations: Violation list
      Gaps: Gap list
      Depositions: DepositionWritten list
      Claims: ClaimSent list
      /// At the horizon: VIP → nodes answering it.
      AnsweringAtEnd: Map<Ip, int list>
      /// VIPs that should be answered at the horizon (a desired group with a live eligible node).
      ExpectedAtEnd: Ip list
      Steps: int
      /// Each live process's final state (for diagnosis).
      FinalStates: NodeState list
      Trace: string list }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Machinery
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// splitmix64: a deterministic random source for the simulation (never for the domain).
type Rng(seed: uint64) =
    let mutable state = seed
    member _.Next() =
        state <- state + 0x9E3779B97F4A7C15UL
        let z = (state ^^^ (state >>> 30)) * 0xBF58476D1CE4E5B9UL
        let z = (z ^^^ (z >>> 27)) * 0x94D049BB133111EBUL
        z ^^^ (z >>> 31)
    member r.Below(n: int64) = if n <= 0L then 0L else int64 (r.Next() % uint64 n)
    member r.Between(lo: int64, hi: int64) = lo + r.Below(hi - lo + 1L)
    member r.Fraction() = float (r.Next() >>> 11) / float (1UL <<< 53)

type private Kernel() =
    member val FenceDeadline: int64 option = None with get, set
    member val Held = HashSet<Ip>()
    member val Managed = HashSet<Ip>()
    /// Address → expiry on the node's clock.
    member val Addresses = Dictionary<Ip, int64>()
    member val LinkUp = true with get, set
    /// When the last queued command takes effect (commands apply in order).
    member val BusyUntil = 0L with get, set

type private Proc(id: int, state: NodeState) =
    member _.Id = id
    member val State = state with get, set
    member val FrozenUntil = 0L with get, set
    member val TickGeneration = 0 with get, set
    /// Deliveries of watch events are kept in order per process.
    member val WatchReadyAt = 0L with get, set
    member val WatchBroken = false with get, set
    member val Stopping = false with get, set
    /// Inputs that arrived since the process last decided: like the shell's inbox, folded into one decision.
    member val Inbox = ResizeArray<Input>()
    member val DecisionScheduled = false with get, set

type private Node(index: int, drift: int64, offset: int64) =
    member _.Index = index
    member _.Name = nodeName index
    /// The node's monotonic clock at real time t.
    member _.Clock(t: int64) = offset + t + t * drift / 1_000_000L
    /// The earliest real time at which the node's clock reads at least `local`.
    member n.RealAt(local: int64) =
        let guess = (local - offset) * 1_000_000L / (1_000_000L + drift)
        let mutable t = guess - 2L
        while n.Clock t < local do
            t <- t + 1L
        t
    member val Kernel = Kernel()
    member val Proc: Proc option = None with get, set
    member val NextProcId = 0 with get, set

/// The API server's objects.
type private ServerObject =
    | LeaseObject of LeaseRecord
    | ServiceObject of Service
    | SliceObject of string * EndpointSlice

type private Change =
    | Upserted of ServerObject
    | LeaseGone of string
    | ServiceGone of ServiceKey
    | SliceGone of string

type private Event =
    | Deliver of node: int * proc: int * make: (int64 -> Input)
    | Tick of node: int * proc: int * generation: int
    | Decide of node: int * proc: int
    | KernelEffect of node: int * proc: int * command: KernelCommand
    | ApiArrive of node: int * proc: int * request: Command * sentAt: int64
    | Relist of node: int * proc: int
    | FaultStart of Fault
    | FaultEnd of Fault
    | Restart of node: int
    | Kill of node: int

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// The run
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private maxEvents = 4_000_000

let run (scenario: Scenario) (trace: bool) : Outcome =
    let rng = Rng(scenario.Seed)
    let queue = PriorityQueue<Event, struct (int64 * int64)>()
    let mutable order = 0L
    let mutable now = 0L
    let schedule (at: int64) (e: Event) =
        order <- order + 1L
        queue.Enqueue(e, struct (max at now, order))
    let log = List<string>()
    let say (text: unit -> string) =
        if trace then log.Add(sprintf "%7d %s" now (Text.RegularExpressions.Regex.Replace(text (), @"\s+", " ")))

    let nodes =
        [| for i in 0 .. scenario.Nodes - 1 ->
               Node(i, int64 (List.item i scenario.Drifts), rng.Between(0L, 1_000_000_000L)) |]
    let configs = nodes |> Array.map (fun n -> config scenario n.Name)
    let timing = configs[0].Timing

    // ── API server ──────────────────────────────────────────────────────────────────────────────
    let leases = Dictionary<string, LeaseRecord>()
    let services = Dictionary<ServiceKey, Service>()
    let slices = Dictionary<string, EndpointSlice>()
    let mutable version = 100L
    for spec in scenario.Services do
        services[serviceKey spec.Id] <- serviceOf spec
        slices[sprintf "svc-%d-slice" spec.Id] <- sliceOf spec
    let outages = List<ApiScope>()
    let latencies = List<ApiScope * int64>()
    // Faults may overlap: each active one is counted, and its end removes only itself.
    let lanLoss = Dictionary<struct (int * int), int>()
    let slowKernel = List<int * int64>()
    let linkDowns = Array.zeroCreate<int> scenario.Nodes
    let lost (a: int) (b: int) =
        match lanLoss.TryGetValue(struct (a, b)) with
        | true, n -> n > 0
        | _ -> false
    let apiDown (node: int) = outages |> Seq.exists (fun s -> s = AllNodes || s = OneNode node)
    let leg (node: int) =
        let extra =
            latencies
            |> Seq.filter (fun (s, _) -> s = AllNodes || s = OneNode node)
            |> Seq.map snd
            |> Seq.fold max 0L
        rng.Between(1L, 5L) + (if extra > 0L then rng.Below extra else 0L)

    let mutable steps = 0
    let violations = List<Violation>()
    let gaps = List<Gap>()
    let depositions = List<DepositionWritten>()
    let claims = List<ClaimSent>()

    // ── Answering ───────────────────────────────────────────────────────────────────────────────
    let answers (n: Node) (ip: Ip) (t: int64) =
        let k = n.Kernel
        let local = n.Clock t
        k.LinkUp
        && k.Held.Contains ip
        && k.Managed.Contains ip
        && (match k.Addresses.TryGetValue ip with
            | true, expiry -> expiry > local
            | _ -> false)
        && (match k.FenceDeadline with
            | Some d -> d > local
            | None -> false)
    let allIps () = nodes |> Seq.collect (fun n -> n.Kernel.Held) |> Seq.distinct |> List.ofSeq
    let checkSafety () =
        for ip in allIps () do
            let answering = nodes |> Array.filter (fun n -> answers n ip now) |> Array.map _.Index |> List.ofArray
            if answering.Length > 1 then
                say (fun () -> sprintf "VIOLATION %s answered by %A" (Ip.format ip) answering)
                violations.Add { At = now; Ip = ip; Nodes = answering }

    // ── Inputs to a process ─────────────────────────────────────────────────────────────────────
    /// An input reaches the process's inbox (stamped with its clock now, as the shell stamps what it posts);
    /// the process decides on everything queued a moment later, as the shell's loop drains its inbox.
    let rec deliver (n: Node) (procId: int) (make: int64 -> Input) =
        match n.Proc with
        | Some p when p.Id = procId ->
            if p.FrozenUntil > now then schedule p.FrozenUntil (Deliver(n.Index, procId, make))
            else
                p.Inbox.Add(make (n.Clock now))
                if not p.DecisionScheduled then
                    p.DecisionScheduled <- true
                    schedule (now + rng.Between(0L, 3L)) (Decide(n.Index, procId))
        | _ -> ()

    and decide (n: Node) (procId: int) =
        match n.Proc with
        | Some p when p.Id = procId ->
            if p.FrozenUntil > now then schedule p.FrozenUntil (Decide(n.Index, procId))
            else
                let inputs = List.ofSeq p.Inbox
                p.Inbox.Clear()
                p.DecisionScheduled <- false
                let state, commands = Protocol.apply p.State inputs

                steps <- steps + 1
                if trace && state.Required <> p.State.Required then say (fun () -> sprintf "%s requires %A" n.Name state.Required)
                p.State <- state
                for c in commands do
                    execute n p c
                p.TickGeneration <- p.TickGeneration + 1
                match state.NextWakeAt with
                | Some w -> schedule (n.RealAt w) (Tick(n.Index, p.Id, p.TickGeneration))
                | None -> ()
        | _ -> ()

    and send (n: Node) (p: Proc) (frame: Frame) =
        for other in nodes do
            if other.Index <> n.Index && n.Kernel.LinkUp && other.Kernel.LinkUp && not (lost n.Index other.Index) then
                match other.Proc with
                | Some q -> schedule (now + rng.Between(0L, 2L)) (Deliver(other.Index, q.Id, fun local -> FrameReceived(frame, local)))
                | None -> ()
        ignore p

    and execute (n: Node) (p: Proc) (command: Command) =
        match command with
        | SendFrame _ | Kernel(Announce _) | Kernel(ExtendFence _) | Kernel(RefreshAddress _) -> ()
        | WriteLease(id, w) -> say (fun () -> sprintf "%s writes %d %s from %A holder %A %A" n.Name id w.Name w.Expected w.Holder (w.Annotations |> Map.filter (fun k _ -> k.EndsWith "state" || k.EndsWith "fence" || k.EndsWith "deposing" || k.EndsWith "incarnation")))
        | c -> say (fun () -> sprintf "%s: %A" n.Name c)
        match command with
        | SendFrame frame -> send n p frame
        | WriteLease _ | DeleteLease _ ->
            let id = match command with WriteLease(id, _) | DeleteLease(id, _, _) -> id | _ -> 0L
            if apiDown n.Index then
                let jitter = rng.Fraction()
                schedule (now + RequestTimeout) (Deliver(n.Index, p.Id, fun local -> WriteCompleted(id, Failed "unreachable", jitter, local)))
            else
                let up = leg n.Index
                schedule (now + up) (ApiArrive(n.Index, p.Id, command, now))
        | ReadLease _ -> if not (apiDown n.Index) then schedule (now + leg n.Index) (ApiArrive(n.Index, p.Id, command, now))
        | Kernel k ->
            let delay =
                slowKernel
                |> Seq.filter (fun (i, _) -> i = n.Index)
                |> Seq.map snd
                |> Seq.fold max -1L
                |> fun maxDelay -> if maxDelay < 0L then 0L else rng.Below(maxDelay + 1L)
            let at = max now n.Kernel.BusyUntil + delay
            n.Kernel.BusyUntil <- at
            schedule at (KernelEffect(n.Index, p.Id, k))
        | WriteStatus _ | Emit _ | EmitPoolConfigEvent _ | AssignAddress _ | StartDhcp _ | StopDhcp _ | RecordDhcpLease _ | Note _ -> ()

    // ── Watches ─────────────────────────────────────────────────────────────────────────────────
    let toInput (change: Change) (local: int64) : Input =
        match change with
        | Upserted(LeaseObject l) -> LeaseUpserted(l, local)
        | Upserted(ServiceObject s) -> ServiceUpserted(s, local)
        | Upserted(SliceObject(name, s)) -> SliceUpserted(name, s, local)
        | LeaseGone name -> LeaseDeleted(name, local)
        | ServiceGone key -> ServiceDeleted(key, local)
        | SliceGone name -> SliceDeleted(name, local)
    let publish (change: Change) =
        for n in nodes do
            match n.Proc with
            | Some p when not p.WatchBroken ->
                let at = max (now + rng.Between(1L, 5L)) p.WatchReadyAt
                p.WatchReadyAt <- at
                schedule at (Deliver(n.Index, p.Id, toInput change))
            | _ -> ()
    let snapshot (n: Node) (p: Proc) =
        let ls = List.ofSeq leases.Values
        let ss = List.ofSeq services.Values
        let sl = slices |> Seq.map (fun kv -> kv.Key, kv.Value) |> List.ofSeq
        let at = max (now + leg n.Index) p.WatchReadyAt
        p.WatchReadyAt <- at
        schedule at (Deliver(n.Index, p.Id, fun local -> ServicesListed(ss, local)))
        schedule at (Deliver(n.Index, p.Id, fun local -> SlicesListed(sl, local)))
        schedule at (Deliver(n.Index, p.Id, fun local -> LeasesListed(ls, local)))
        p.WatchBroken <- false

    // ── API requests ────────────────────────────────────────────────────────────────────────────
    let apply (request: Command) : WriteOutcome * Change option =
        let bump () =
            version <- version + 1L
            string version
        match request with
        | WriteLease(_, w) ->
            let record () =
                { Name = w.Name
                  Version = bump ()
                  Holder = w.Holder
                  Transitions = w.Transitions
                  Labels = w.Labels
                  Annotations = w.Annotations |> Map.toSeq |> Seq.choose (fun (k, v) -> v |> Option.map (fun v -> k, v)) |> Map.ofSeq }
            match w.Expected, leases.TryGetValue w.Name with
            | None, (true, _) -> Conflict, None
            | None, _ ->
                let r = record ()
                leases[w.Name] <- r
                Written(Some r), Some(Upserted(LeaseObject r))
            | Some _, (false, _) -> NotFound, None
            | Some v, (true, current) when current.Version <> v -> Conflict, None
            | Some _, _ ->
                let r = record ()
                leases[w.Name] <- r
                Written(Some r), Some(Upserted(LeaseObject r))
        | DeleteLease(_, name, v) ->
            match leases.TryGetValue name with
            | true, current when current.Version = v ->
                leases.Remove name |> ignore
                Written None, Some(LeaseGone name)
            | true, _ -> Conflict, None
            | _ -> NotFound, None
        | _ -> Written None, None

    // ── Faults ──────────────────────────────────────────────────────────────────────────────────
    let startProcess (n: Node) =
        n.NextProcId <- n.NextProcId + 1
        let p = Proc(n.NextProcId, Protocol.create configs[n.Index])
        n.Proc <- Some p
        n.Kernel.BusyUntil <- now
        let local = n.Clock now
        let existing =
            n.Kernel.Addresses
            |> Seq.filter (fun kv -> kv.Value > local && n.Kernel.Managed.Contains kv.Key)
            |> Seq.map (fun kv -> kv.Key, 32)
            |> List.ofSeq
        let incarnation = Incarnation(rng.Next())
        say (fun () -> sprintf "%s starts (process %d)" n.Name p.Id)
        deliver n p.Id (fun local -> Started(incarnation, existing, n.Kernel.LinkUp, local))
        p.WatchBroken <- true
        if not (apiDown n.Index) then schedule (now + leg n.Index) (Relist(n.Index, p.Id))
    let kill (n: Node) =
        say (fun () -> sprintf "%s process ends" n.Name)
        n.Proc <- None
    let setLink (n: Node) (up: bool) =
        n.Kernel.LinkUp <- up
        match n.Proc with
        | Some p -> schedule (now + 1L) (Deliver(n.Index, p.Id, fun local -> LinkChanged(up, local)))
        | None -> ()
        if up then checkSafety ()
    let healApi () =
        for n in nodes do
            match n.Proc with
            | Some p when p.WatchBroken && not (apiDown n.Index) -> schedule (now + leg n.Index) (Relist(n.Index, p.Id))
            | _ -> ()

    let startFault (fault: Fault) =
        say (fun () -> sprintf "fault %A" fault)
        match fault with
        | ApiOutage(scope, d) ->
            outages.Add scope
            for n in nodes do
                if apiDown n.Index then n.Proc |> Option.iter (fun p -> p.WatchBroken <- true)
            schedule (now + d) (FaultEnd fault)
        | ApiLatency(scope, d, maxLeg) ->
            latencies.Add((scope, maxLeg))
            schedule (now + d) (FaultEnd fault)
        | WatchStall(i, d) ->
            nodes[i].Proc |> Option.iter (fun p -> p.WatchReadyAt <- max p.WatchReadyAt (now + d))
        | LanLoss(a, b, d) ->
            lanLoss[struct (a, b)] <- (match lanLoss.TryGetValue(struct (a, b)) with | true, n -> n + 1 | _ -> 1)
            schedule (now + d) (FaultEnd fault)
        | Freeze(i, d) ->
            nodes[i].Proc |> Option.iter (fun p -> p.FrozenUntil <- max p.FrozenUntil (now + d))
        | Crash(i, down) ->
            if nodes[i].Proc.IsSome then
                kill nodes[i]
                schedule (now + down) (Restart i)
        | GracefulStop(i, down) ->
            match nodes[i].Proc with
            | Some p when not p.Stopping ->
                p.Stopping <- true
                deliver nodes[i] p.Id (fun local -> StopRequested local)
                // The shell's stop budget: the process ends after 2 s whatever it managed to do.
                schedule (now + 2000L) (Kill i)
                schedule (now + down) (Restart i)
            | _ -> ()
        | LinkDown(i, d) ->
            linkDowns[i] <- linkDowns[i] + 1
            setLink nodes[i] false
            schedule (now + d) (FaultEnd fault)
        | SlowKernel(i, d, maxDelay) ->
            slowKernel.Add((i, maxDelay))
            schedule (now + d) (FaultEnd fault)
        | DeleteRegistration i ->
            let name = LeaseNames.registration (nodeName i)
            if leases.Remove name then publish (LeaseGone name)
        | DeleteGroupLease ip ->
            let name = if scenario.Election then LeaseNames.group (vip ip) else configs[0].LeaseName
            if leases.Remove name then publish (LeaseGone name)
        | MoveEndpoints(id, ns) ->
            match scenario.Services |> List.tryFind (fun s -> s.Id = id) with
            | Some spec when services.ContainsKey(serviceKey id) ->
                let name = sprintf "svc-%d-slice" id
                let slice = sliceOf { spec with Endpoints = ns }
                slices[name] <- slice
                publish (Upserted(SliceObject(name, slice)))
            | _ -> ()
        | CreateService spec ->
            let service = serviceOf spec
            services[service.Key] <- service
            publish (Upserted(ServiceObject service))
            let name = sprintf "svc-%d-slice" spec.Id
            slices[name] <- sliceOf spec
            publish (Upserted(SliceObject(name, sliceOf spec)))
        | DeleteService id ->
            let key = serviceKey id
            if services.Remove key then publish (ServiceGone key)
            let name = sprintf "svc-%d-slice" id
            if slices.Remove name then publish (SliceGone name)

    let endFault (fault: Fault) =
        say (fun () -> sprintf "fault over %A" fault)
        match fault with
        | ApiOutage(scope, _) ->
            outages.Remove scope |> ignore
            healApi ()
        | ApiLatency(scope, _, maxLeg) -> latencies.Remove((scope, maxLeg)) |> ignore
        | LanLoss(a, b, _) -> lanLoss[struct (a, b)] <- lanLoss[struct (a, b)] - 1
        | LinkDown(i, _) ->
            linkDowns[i] <- linkDowns[i] - 1
            if linkDowns[i] = 0 then setLink nodes[i] true
        | SlowKernel(i, _, maxDelay) -> slowKernel.Remove((i, maxDelay)) |> ignore
        | _ -> ()

    // ── Kernel effects ──────────────────────────────────────────────────────────────────────────
    let effect (n: Node) (command: KernelCommand) : KernelOutcome =
        let k = n.Kernel
        let local = n.Clock now
        match command with
        | InstallFence managed ->
            k.Held.Clear()
            k.Managed.Clear()
            for ip in managed do
                k.Managed.Add ip |> ignore
            k.FenceDeadline <- None
            Applied
        | ExtendFence deadline ->
            if deadline > local then
                // The transaction after the fresh clock read delays the element's start by up to the slack.
                let endsBy = deadline + rng.Between(0L, Timing.KernelSlack)
                k.FenceDeadline <- Some endsBy
                FenceExtended endsBy
            else
                k.FenceDeadline <- None
                SkippedFenceEnded
        | ExpireFence ->
            k.FenceDeadline <- None
            Applied
        | Admit(vips, lifetime) ->
            for ip, _ in vips do
                k.Managed.Add ip |> ignore
                k.Addresses[ip] <- local + lifetime
            Applied
        | RefreshAddress(ip, _, lifetime, deadline) ->
            if deadline > local then
                k.Addresses[ip] <- local + lifetime
                Applied
            else SkippedFenceEnded
        | Hold ips ->
            k.Held.UnionWith ips
            Applied
        | Unhold ips ->
            k.Held.ExceptWith ips
            Applied
        | Withdraw vips ->
            for ip, _ in vips do
                k.Held.Remove ip |> ignore
                k.Addresses.Remove ip |> ignore
                k.Managed.Remove ip |> ignore
            Applied
        | Announce(_, deadline) -> if deadline > local then Applied else SkippedFenceEnded

    // ── Main loop ───────────────────────────────────────────────────────────────────────────────
    for f in scenario.Faults do
        schedule f.At (FaultStart f.Fault)
    for n in nodes do
        schedule (rng.Between(0L, 200L)) (Restart n.Index)

    let mutable events = 0
    // Gaps: a VIP answered by nobody (tracked at every event, from the first instant it was answered).
    let everAnswered = HashSet<Ip>()
    let openGaps = Dictionary<Ip, int64>()
    let candidates = HashSet<Ip>()
    let trackGaps () =
        candidates.Clear()
        for n in nodes do
            candidates.UnionWith n.Kernel.Held
        candidates.UnionWith everAnswered
        for ip in candidates do
            let answered = nodes |> Array.exists (fun n -> answers n ip now)
            if answered then
                everAnswered.Add ip |> ignore
                match openGaps.TryGetValue ip with
                | true, from ->
                    gaps.Add { Ip = ip; From = from; Until = Some now }
                    openGaps.Remove ip |> ignore
                | _ -> ()
            elif everAnswered.Contains ip && not (openGaps.ContainsKey ip) then
                openGaps[ip] <- now

    while queue.Count > 0 && events < maxEvents do
        let mutable e = Unchecked.defaultof<Event>
        let mutable priority = Unchecked.defaultof<struct (int64 * int64)>
        queue.TryDequeue(&e, &priority) |> ignore
        let struct (at, _) = priority
        if at <= scenario.Horizon then
            now <- at
            events <- events + 1
            // A fence element that expired since the last event shows here, before anything extends it.
            trackGaps ()
            match e with
            | Deliver(i, proc, make) -> deliver nodes[i] proc make
            | Decide(i, proc) -> decide nodes[i] proc
            | Tick(i, proc, generation) ->
                match nodes[i].Proc with
                | Some p when p.Id = proc && p.TickGeneration = generation -> deliver nodes[i] proc (fun local -> Input.Tick local)
                | _ -> ()
            | KernelEffect(i, proc, command) ->
                let n = nodes[i]
                match n.Proc with
                | Some p when p.Id = proc ->
                    if p.FrozenUntil > now then schedule p.FrozenUntil e
                    else
                        let outcome = effect n command
                        match command with
                        | ExtendFence d -> say (fun () -> sprintf "%s kernel fence until %d (local now %d) %A" n.Name d (n.Clock now) outcome)
                        | Hold _ | Unhold _ | ExpireFence | InstallFence _ -> say (fun () -> sprintf "%s kernel %A %A" n.Name command outcome)
                        | _ -> ()
                        checkSafety ()
                        deliver n proc (fun local -> KernelCompleted(command, outcome, [], local))
                | _ -> ()
            | ApiArrive(i, proc, request, sentAt) ->
                if apiDown i then
                    match request with
                    | WriteLease(id, _) | DeleteLease(id, _, _) ->
                        let jitter = rng.Fraction()
                        schedule (sentAt + RequestTimeout) (Deliver(i, proc, fun local -> WriteCompleted(id, Failed "timed out", jitter, local)))
                    | _ -> ()
                else
                    match request with
                    | ReadLease name ->
                        let change =
                            match leases.TryGetValue name with
                            | true, l -> Upserted(LeaseObject l)
                            | _ -> LeaseGone name
                        schedule (now + leg i) (Deliver(i, proc, toInput change))
                    | _ ->
                        let outcome, change = apply request
                        say (fun () -> sprintf "server: %s request %A -> %A" (nodeName i) (match request with WriteLease(id, w) -> sprintf "%d %s" id w.Name | DeleteLease(id, n, _) -> sprintf "delete %d %s" id n | _ -> "") (match outcome with Written(Some r) -> sprintf "written v%s" r.Version | o -> sprintf "%A" o))
                        change |> Option.iter publish
                        match request with
                        | WriteLease(_, w) when not (w.Name.StartsWith LeaseNames.RegistrationPrefix) && w.Holder = Some(nodeName i) ->
                            claims.Add { At = now; By = i; Lease = w.Name; Won = (match outcome with Written _ -> true | _ -> false) }
                        | _ -> ()
                        match outcome with
                        | Written(Some r) when r.Name.StartsWith LeaseNames.RegistrationPrefix && r.Annotations.TryFind LeaseKeys.State = Some "deposed" ->
                            depositions.Add { At = now; By = i; Target = r.Name.Substring LeaseNames.RegistrationPrefix.Length }
                        | _ -> ()
                        let id = match request with WriteLease(id, _) | DeleteLease(id, _, _) -> id | _ -> 0L
                        let back = now + leg i
                        let jitter = rng.Fraction()
                        if back - sentAt > RequestTimeout then
                            schedule (sentAt + RequestTimeout) (Deliver(i, proc, fun local -> WriteCompleted(id, Failed "timed out", jitter, local)))
                        else schedule back (Deliver(i, proc, fun local -> WriteCompleted(id, outcome, jitter, local)))
            | Relist(i, proc) ->
                match nodes[i].Proc with
                | Some p when p.Id = proc && not (apiDown i) -> snapshot nodes[i] p
                | _ -> ()
            | FaultStart f -> startFault f
            | FaultEnd f -> endFault f
            | Restart i ->
                match nodes[i].Proc with
                | None -> startProcess nodes[i]
                // Still stopping (the stop budget has not run out): start once it has.
                | Some p when p.Stopping -> schedule (now + 100L) (Restart i)
                | Some _ -> ()
            | Kill i ->
                match nodes[i].Proc with
                | Some p when p.Stopping -> kill nodes[i]
                | _ -> ()
            trackGaps ()

    now <- scenario.Horizon
    for KeyValue(ip, from) in openGaps do
        gaps.Add { Ip = ip; From = from; Until = None }
    let answeringAtEnd =
        allIps ()
        |> List.map (fun ip -> ip, nodes |> Array.filter (fun n -> answers n ip now) |> Array.map _.Index |> List.ofArray)
        |> Map.ofList
    // What should be answered at the end: every service's VIP with a live eligible node (every node is up
    // and healthy after the chaos).
    let expected =
        let config0 = configs[0]
        let desired = Desired.compute config0 (List.ofSeq services.Values) (List.ofSeq slices.Values)
        desired.Groups
        |> List.filter (fun g -> nodes |> Array.exists (fun n -> Eligibility.allows n.Name g.Eligibility))
        |> List.collect _.Addresses
    { Violations = List.ofSeq violations
      Gaps = List.ofSeq gaps
      Depositions = List.ofSeq depositions
      Claims = List.ofSeq claims
      AnsweringAtEnd = answeringAtEnd
      ExpectedAtEnd = expected
      Steps = steps
      FinalStates = nodes |> Array.choose (fun n -> n.Proc |> Option.map _.State) |> List.ofArray
      Trace = List.ofSeq log }
