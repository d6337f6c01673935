/// A deterministic discrete-event model of Hybrid's ownership protocol: N nodes, each running the real domain
/// (Plan.compute, Heartbeat.decide, Fence.renewed) exactly the way the C# shell drives it, against one simulated
/// Kubernetes API server, under a schedule of faults. Pure F#: the same Scenario always gives the same Outcome.
///
/// What is modelled, and how (each point mirrors a file of the shell, named in brackets):
/// - Time. Real (simulation) time in ms. Node i has its own monotonic clock
///   local_i(t) = offset_i + t + ⌊t·ε_i/10⁶⌋ with |ε_i| ≤ ρ = Timing.ClockDriftPerMille (in ppm) and arbitrary
///   offsets; every Instant a node hands to the domain is on its own clock. The model never compares clocks.
/// - API server. Group Leases and heartbeat Leases (holder, resourceVersion), Services, EndpointSlices.
///   A request travels up (latency), is applied atomically when it arrives (linearizable), and its answer
///   travels back. Compare-and-swap fails (409) on a stale version, create fails (409) when the object exists,
///   a precondition on a missing object fails (404). Latencies: 1–10 ms each way; during the chaos phase 3 % of
///   requests (50 % while a SlowApi fault is active) have one leg of 20 ms – R.
/// - Partition. A partitioned node's requests are lost on the way up or down; the client sees the failure when
///   its timeout runs out (heartbeat: R, the shell's CancelAfter; anything else: Scenario.RequestTimeout,
///   standing in for HttpClient's timeout). A request applied before the partition stays applied.
/// - Watches [ResourceWatch, ClusterCache, ObservedStore]. Every server change is delivered to every connected
///   node after a delay (0–50 ms; in chaos 2 % up to +500 ms, plus SlowWatch's extra), in order per resource
///   (Services, EndpointSlices, Leases are three streams, so order ACROSS resources is not kept). The node's
///   store stamps ChangedSeenAt = its local time at delivery when the version differs. A partition closes the
///   streams (pending deliveries are lost); on healing the node relists (a request): every object is delivered
///   again, objects with an unchanged version keep their old stamp, missing ones are dropped; deliveries of
///   changes made after the list are held until the list is in. A fresh process plans only once synced.
/// - Heartbeat [HeartbeatRenewer]. A PeriodicTimer of period P started with the process (a missed tick fires at
///   once when the previous write returns). Each tick: Heartbeat.decide(linkUp, shuttingDown). Renew = one
///   merge patch of H(n) with timeout R (two round trips for a process's first write, which reads the Lease
///   first), startedAt taken before sending; on success Fence.renewed(startedAt, completedAt), and a signal
///   if that began a new epoch or the last plan waits for a renewal (Plan.WaitsForRenewal).
///   ReleaseHeartbeat = Fence.released, then write holder = None (once). LeaveToStop (stopping) = nothing: the
///   stop sequence releases it.
/// - Reconcile loop [ReconcileLoop, GroupLeaseWriter, VipTable, ClaimBook]. One loop per process: it waits for
///   a signal (a delivery that changed the cache — a heartbeat renewal only when Heartbeat.changeMatters —,
///   a heartbeat renewal as above, kernel address expiry, link change, own lease write results) or for
///   min(plan.NextWakeAt, lease retry time) (5 s when neither), then plans with Plan.compute and executes the
///   actions in order; up to 4 rounds while a round changed something (VIP, announcement, Lease). Local actions
///   (RemoveVip, AddVip, Announce) act at once; consecutive RefreshVips are batched and flushed before the next
///   non-refresh action (or at the end), exactly as the shell does. ClaimLease: optional confirm GET of the
///   previous holder's heartbeat (abort if its version moved, then the cache observes it), then create or
///   CAS; success records Claim{Epoch = fence epoch captured when the plan's execution began; From}; 409/404
///   re-reads the Lease (another request). Release/Delete carry version preconditions. A transport failure
///   backs the group off (100 ms … 5 s, full jitter). Signals that arrive while the loop is busy make it plan
///   again as soon as it is done. WriteStatus and Emit are ignored (they decide nothing about ownership).
/// - Checks. After every event: no VIP up on two nodes whose links are up (safety); every address write
///   happens within the write window of the fence its plan was made with (the invariant safety rests on);
///   after the chaos, every group with an eligible node held and announced (liveness).
/// - Interface [netlink]. AddVip/RefreshVip write the address with the lifetime (create-or-replace, so a refresh
///   re-creates a vanished address); the kernel deletes it when the node's OWN clock reaches
///   write + lifetime + slack, slack drawn per write from [0, Timing.KernelExpirySlack] (half of the draws are
///   the maximum). The kernel timer runs on the node's clock, so a slow clock keeps an address longer in real
///   time; this is stricter than measuring the lifetime in real time. A live process forgets a vanished
///   address and plans [LinkWatcher].
/// - Faults. Crash (process gone, interface keeps its addresses until the kernel deletes them); restart (fresh
///   process: Fence.initial, no claims, VipTable adopts the addresses on the interface with their remaining
///   lifetime rounded down to seconds and unknown announce state, empty caches until the first list);
///   graceful stop [NodeAgent]: a plan in flight may finish for 300 ms (then it is cancelled), ShuttingDown,
///   heartbeat release (300 ms), one ReconcileOnce cancelled 1.4 s after the signal, a second heartbeat
///   release if the first did not land, then gone; partition/heal; link
///   down/up (the interface's addresses stay but do not answer while down); slow watch; slow API; faults that
///   strike right after a lease request leaves (partition, crash; a partition right after a request that the
///   plan follows with an address write; a stall of that request plus a link flap of a VIP holder); endpoint
///   moves (also off the current holder); Service create/delete/IP change/policy flip. At the end of the chaos phase every fault is lifted:
///   crashed or stopped nodes restart, partitions heal (relist), links come up, latencies and watch delays
///   return to normal, and a watch still lagging behind (deliveries queued beyond 100 ms) relists.
module Hybrid.Properties.ProtocolModel

open System
open System.Collections.Generic
open Hybrid.Domain

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Scenarios
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// The ownership timings a scenario runs with.
type TimingChoice =
    /// Hybrid's defaults (Timing.DefaultLeaseDuration, DefaultRenewDeadline, DefaultRetryPeriod).
    | Defaults
    /// kube-vip's defaults: D = 5 s, R = 3 s, P = 1 s.
    | KubeVip
    /// The default P with the smallest R that Timing.create accepts (write window W = R − T − slack = P) and
    /// the smallest D that satisfies the drift inequality: every margin at its minimum.
    | Tight

/// Whom a fault hits.
type Target =
    | NodeAt of int
    /// The node that the API server's k-th held group Lease names when the fault starts (else node k).
    | HolderOf of int

/// A LoadBalancer Service of the scenario, with one EndpointSlice.
type ServiceSpec =
    { Id: int
      /// Index into 198.18.0.10, .11, .12, .13.
      Ip: int
      Local: bool
      Port: int
      /// Nodes running a serving endpoint.
      Endpoints: int list
      AllowWithoutEndpoints: bool }

type Fault =
    | CrashFor of Target * downMs: int64
    | StopFor of Target * downMs: int64
    | PartitionFor of Target * ms: int64
    | LinkDownFor of Target * ms: int64
    | SlowWatchFor of Target * extraMs: int64 * ms: int64
    | SlowApiFor of Target * ms: int64
    /// Partition the node right after its next lease request leaves (the request is lost; the reconcile loop
    /// hangs in it for RequestTimeout), for `ms`.
    | PartitionMidWrite of Target * ms: int64
    /// Crash the node right after its next lease request leaves (the request still reaches the server).
    | CrashMidWrite of Target * downMs: int64
    /// Partition the next node that sends a lease request which its plan follows with an address write
    /// (AddVip/RefreshVip decided before the request) right after sending it, for `ms`: the worst moment.
    | PartitionBeforeAddressWrite of ms: int64
    /// The next lease request sent by a node that has a VIP up takes `stallMs` longer on its way to the server
    /// (that node's reconcile loop waits), and the node's link goes down right after sending it, for `downMs`
    /// (its heartbeat loop, which runs on, releases the heartbeat meanwhile).
    | StallAndLinkDownMidWrite of stallMs: int64 * downMs: int64
    | MoveEndpoints of service: int * nodes: int list
    /// Move the endpoints of the k-th Local service (made Local if none is) off the node that holds its
    /// group, onto the other nodes (`keep` of them at least one).
    | MoveEndpointsOffHolder of service: int * keep: int
    | CreateService of ServiceSpec
    | DeleteService of service: int
    | ChangeIp of service: int * ip: int
    | FlipPolicy of service: int

type Scenario =
    { Seed: int
      Nodes: int
      Election: bool
      Timing: TimingChoice
      /// Per node (first Nodes used): clock rate error ε in parts per million, |ε| ≤ ClockDriftPerMille·1000.
      Drift: int list
      /// Per node: clock offset in ms.
      Offsets: int64 list
      /// How long a request of a partitioned node hangs before it fails (heartbeat writes: R).
      RequestTimeout: int64
      Services: ServiceSpec list
      /// (start, fault), start in ms of real time; every fault ends by ChaosEnd at the latest.
      Faults: (int64 * Fault) list
      /// End of the chaos phase: everything is restored (processes restarted, partitions healed, links up,
      /// normal latencies) and no new fault starts.
      ChaosEnd: int64 }

let nodeName (i: int) = sprintf "node-%d" i

let vipText (i: int) = sprintf "198.18.0.%d" (10 + i)

let vip (i: int) = (Ip.tryParse (vipText i)).Value

/// (D, R, P) in ms.
let timingMs (t: TimingChoice) =
    match t with
    | Defaults -> Timing.DefaultLeaseDuration, Timing.DefaultRenewDeadline, Timing.DefaultRetryPeriod
    | KubeVip -> 5000L, 3000L, 1000L
    | Tight ->
        let p = Timing.DefaultRetryPeriod
        let r = p + Timing.KernelExpirySlack + 1000L
        let rho = Timing.ClockDriftPerMille
        r * (1000L + rho) / (1000L - rho) + 1L, r, p

/// The largest clock rate error the protocol assumes, in parts per million.
let maxDriftPpm = int Timing.ClockDriftPerMille * 1000

/// The agent's configuration on one node, parsed from the environment as the agent does.
let config (s: Scenario) (node: string) : Config =
    let seconds (ms: int64) = (float ms / 1000.0).ToString(Globalization.CultureInfo.InvariantCulture)
    let d, r, p = timingMs s.Timing
    let env =
        Map
            [ "svc_enable", "true"
              "vip_nodename", node
              "svc_election", (if s.Election then "true" else "false")
              "vip_leaseduration", seconds d
              "vip_renewdeadline", seconds r
              "vip_retryperiod", seconds p ]
    match Config.parse env with
    | Ok c -> c
    | Error e -> failwithf "scenario configuration rejected: %A" e

let serviceKey (id: int) : ServiceKey = { Namespace = "default"; Name = sprintf "svc-%d" id }

let serviceOf (spec: ServiceSpec) : Service =
    { Key = serviceKey spec.Id
      Uid = sprintf "uid-%d" spec.Id
      CreatedAt = 1_700_000_000L + int64 spec.Id
      Type = "LoadBalancer"
      Class = None
      Annotations =
        Map [ yield Annotations.LoadBalancerIPs, vipText spec.Ip
              if spec.AllowWithoutEndpoints then yield Annotations.AllowWithoutEndpoints, "true" ]
      LoadBalancerIP = None
      Ports = [ { Protocol = "TCP"; Port = spec.Port } ]
      Policy = (if spec.Local then Local else Cluster)
      Selector = Map [ "app", "web" ]
      Ingress = []
      ChangedSeenAt = 0L }

let sliceOf (nodes: int) (spec: ServiceSpec) : EndpointSlice =
    { Service = serviceKey spec.Id
      Endpoints =
        [ for n in spec.Endpoints |> List.filter (fun n -> n >= 0 && n < nodes) |> List.distinct ->
              { NodeName = Some(nodeName n)
                Conditions = { Ready = Some true; Serving = Some true; Terminating = Some false } } ] }

/// Time after the end of chaos by which every group with an eligible node must be held and announced:
///   max(RequestTimeout, R)  a request sent while partitioned (or a slow one) may hang this long after the heal
///                           (heartbeats: R), blocking that node's reconcile loop or heartbeat loop;
/// + 5 s                     a lease write that failed then backs its group off for up to 5 s [Backoff];
/// + P + 3·D                 one heartbeat round to restore every fence, then up to three successor ranks
///                           (Ownership.claimDue: D per rank);
/// + 1 s                     a few round trips, watch deliveries and one write window.
/// No term for D: after the chaos every node renews its heartbeat within the first two terms, so nobody
/// waits for a lease to expire; groups move only by release, reclaim or claim of an empty Lease.
let livenessBound (s: Scenario) =
    let d, r, p = timingMs s.Timing
    max s.RequestTimeout r + 5000L + p + 3L * d + 1000L

/// How long after the liveness bound the simulation keeps checking that the state stays converged.
let stableWindow (s: Scenario) =
    let d, _, _ = timingMs s.Timing
    max 3000L (2L * d)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Simulation state
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// SplitMix64: a small deterministic generator, one per (node, purpose) so that streams stay independent.
type Rng(seed: uint64) =
    let mutable state = seed

    member _.Next() =
        state <- state + 0x9E3779B97F4A7C15UL
        let z = (state ^^^ (state >>> 30)) * 0xBF58476D1CE4E5B9UL
        let z = (z ^^^ (z >>> 27)) * 0x94D049BB133111EBUL
        z ^^^ (z >>> 31)

    /// Uniform in [lo, hi].
    member r.Range(lo: int64, hi: int64) =
        if hi <= lo then lo else lo + int64 (r.Next() % uint64 (hi - lo + 1L))

    member r.Float() = float (r.Next() >>> 11) / float (1UL <<< 53)
    member r.Chance(p: float) = r.Float() < p

/// A VipTable entry [VipTable.Entry].
type VipEntry =
    { Prefix: int
      ExpiresAt: int64 option
      AddedAt: int64 option
      Sent: int
      LastSentAt: int64 }

/// An address on a node's interface: when the kernel deletes it (node clock, and the same in real time).
type IfAddr = { DeadlineLocal: int64; ExpiresReal: int64; Write: int64 }

/// One change on the API server, as a watch event.
type Change =
    | ServiceSet of ServiceKey * string * Service
    | ServiceGone of ServiceKey
    | SliceSet of ServiceKey * string * EndpointSlice
    | SliceGone of ServiceKey
    | HeartbeatSet of node: string * version: string * holder: string option
    | LeaseSet of name: string * version: string * holder: string option
    | LeaseGone of string

let private streamOf c =
    match c with
    | ServiceSet _ | ServiceGone _ -> 0
    | SliceSet _ | SliceGone _ -> 1
    | HeartbeatSet _ | LeaseSet _ | LeaseGone _ -> 2

/// One agent process on a node. Everything in it dies with the process.
type Proc(id: int) =
    member _.Id = id
    member val Dead = false with get, set
    // NodeState
    member val Fence = Fence.initial with get, set
    member val LinkUp = true with get, set
    member val ShuttingDown = false with get, set
    /// The graceful stop sequence has begun: the main loop no longer runs.
    member val Stopping = false with get, set
    // ClaimBook
    member val Claims = Dictionary<string, Claim>(StringComparer.Ordinal)
    // ClusterCache: key -> (resourceVersion, stamped value)
    member val Services = Dictionary<ServiceKey, string * Service>()
    member val Slices = Dictionary<ServiceKey, string * EndpointSlice>()
    member val Heartbeats = Dictionary<string, string * Heartbeat>(StringComparer.Ordinal)
    member val Leases = Dictionary<string, string * GroupLease>(StringComparer.Ordinal)
    member val Synced = false with get, set
    // Watch streams
    member val StreamOpen = false with get, set
    member val StreamEpoch = 0 with get, set
    member val LastDelivery: int64 array = Array.zeroCreate 3
    member val ListToken = 0 with get, set
    member val Listing = false with get, set
    member val ListFailures = 0 with get, set
    member val Held = List<Change>()
    // VipTable
    member val Vips = Dictionary<Ip, VipEntry>()
    // ReconcileLoop
    member val LoopBusy = false with get, set
    member val LoopGen = 0 with get, set
    /// A stop waiting for the plan in flight [ReconcileLoop.RunAsync's stop grace].
    member val AfterLoop: (unit -> unit) option = None with get, set
    member val SignalPending = false with get, set
    member val WakeToken = 0 with get, set
    member val NextWake = -1L with get, set
    member val Emitted = Set.empty<ServiceEvent> with get, set
    member val Backoff = Dictionary<string, int * int64>(StringComparer.Ordinal)
    member val LastRoles = "" with get, set
    /// The action being executed is a lease write followed, in the same plan, by an address write.
    member val AddressWriteFollows = false with get, set
    // HeartbeatRenewer
    member val HbStart = 0L with get, set
    member val HbReleased = false with get, set
    member val HbKnown = false with get, set
    /// NodeState.WaitsForRenewal: the last plan held something back until the next renewal (starts true).
    member val WaitsForRenewal = true with get, set

/// A machine: its clock, its interface, its network situation, and its current agent process.
type NodeSt(index: int, offset: int64, drift: int64) =
    member _.Index = index
    member _.Name = nodeName index
    member _.Offset = offset
    member _.Drift = drift
    member val LinkUp = true with get, set
    member val LinkDowns = 0 with get, set
    member val Partitions = 0 with get, set
    member val SlowWatch = List<int64>()
    member val SlowApi = 0 with get, set
    member val Interface = Dictionary<Ip, IfAddr>()
    member val Proc: Proc option = None with get, set
    /// Last time each kind of fault hit this node (for classifying takeovers).
    member val Faults = Dictionary<string, int64>(StringComparer.Ordinal)
    /// Faults waiting for this node's next lease request.
    member val Armed = List<Fault>()
    /// Extra delay for this node's next request on its way up (StallAndLinkDownMidWrite).
    member val StallNext = 0L with get, set
    member n.Partitioned = n.Partitions > 0

type Server() =
    member val Rev = 0L with get, set
    member val Leases = Dictionary<string, string option * string>(StringComparer.Ordinal)
    /// The last node each group Lease named (kept across releases), for classifying takeovers.
    member val LastHolder = Dictionary<string, string>(StringComparer.Ordinal)
    member val Heartbeats = Dictionary<string, string option * string>(StringComparer.Ordinal)
    member val Services = Dictionary<ServiceKey, string * Service>()
    member val Slices = Dictionary<ServiceKey, string * EndpointSlice>()

    member s.NextVersion() =
        s.Rev <- s.Rev + 1L
        string s.Rev

/// An answer of the API server to a lease write.
type Reply =
    | Written of version: string * holder: string option
    | Deleted
    | Conflict
    | Missing

/// Result of a lease write as the loop sees it [GroupLeaseWriter.Outcome].
type WriteOutcome =
    | Done
    | Lost
    | Failed

type Outcome =
    { /// The first instant at which two nodes had one VIP up, with the details.
      Safety: string option
      /// The first address written after the write deadline of the fence its plan was made with (the
      /// invariant the safety argument rests on: the kernel deletes every address by renewal start + R).
      FenceBreach: string option
      /// Liveness violation: a group with an eligible node not held and announced after the bound.
      Liveness: string option
      /// ms after ChaosEnd at which every group was held and announced for good (None: never).
      ConvergedAfter: int64 option
      Bound: int64
      /// What happened, for coverage (Prop.classify).
      Counts: Map<string, int>
      Events: int
      Trace: string list }

// Names of the coverage counters.
[<RequireQualifiedAccess>]
module Seen =
    let TakeoverAfterCrash = "takeover after a crash"
    let TakeoverAfterPartition = "takeover after a partition"
    let TakeoverAfterStop = "takeover after a graceful stop"
    let TakeoverAfterLinkDown = "takeover after a link down"
    let TakeoverAfterEndpointMove = "takeover after an endpoint move"
    let TakeoverOther = "takeover (other cause)"
    let ClaimAfterServiceChange = "claim or takeover after a service change"
    let ReclaimAfterRestart = "reclaim after a restart"
    let LostRace = "lost a compare-and-swap race"
    let HeartbeatMoved = "takeover aborted: heartbeat moved"
    let FenceLapse = "fence lapse"
    let StopMidPlan = "stop while a plan is in flight (it may finish for 300 ms)"
    let MidWrite = "partition or crash during a lease write"
    let WriteThenAddress = "plan writes a Lease before adding or refreshing a VIP"
    let GracefulStop = "graceful stop"
    let Crash = "crash"
    let Partition = "partition"
    let LinkDown = "link down"
    let ServiceChange = "service change"
    let EndpointMove = "endpoint move"

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// The simulation
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private MaxEvents = 3_000_000

/// Runs one scenario to its end. `trace` records a readable timeline (slower).
let run (sc: Scenario) (trace: bool) : Outcome =
    let n = sc.Nodes
    let configs = Array.init n (fun i -> config sc (nodeName i))
    let timing = configs[0].Timing
    let D, R, P = timing.LeaseDuration, timing.RenewDeadline, timing.RetryPeriod
    let chaosEnd = sc.ChaosEnd
    let bound = livenessBound sc
    let endAt = chaosEnd + bound + stableWindow sc
    let nodes =
        Array.init n (fun i ->
            let drift = List.item i sc.Drift |> max -maxDriftPpm |> min maxDriftPpm |> int64
            NodeSt(i, List.item i sc.Offsets, drift))
    let server = Server()
    let queue = PriorityQueue<unit -> unit, struct (int64 * int * int64)>()
    let mutable now = 0L
    let mutable seqNo = 0L
    let mutable events = 0
    let mutable procIds = 0
    let mutable writes = 0L
    let mutable safety: string option = None
    let mutable failure: string option = None
    let mutable fenceBreach: string option = None
    let mutable interfacesChanged = true
    let lines = List<string>()
    let counts = Dictionary<string, int>(StringComparer.Ordinal)
    let bump (name: string) =
        counts[name] <- (match counts.TryGetValue name with | true, c -> c + 1 | _ -> 1)

    let schedule (t: int64) (priority: int) (f: unit -> unit) =
        seqNo <- seqNo + 1L
        queue.Enqueue(f, struct (max t now, priority, seqNo))

    // ── Clocks ───────────────────────────────────────────────────────────────────────────────────────
    let local i (t: int64) =
        let nd = nodes[i]
        nd.Offset + t + t * nd.Drift / 1_000_000L
    let localNow i = local i now
    /// The first real instant at which node i's clock reads at least `l`.
    let realOf i (l: int64) =
        let nd = nodes[i]
        let mutable r = max 0L ((l - nd.Offset) * 1_000_000L / (1_000_000L + nd.Drift))
        while local i r < l do
            r <- r + 1L
        while r > 0L && local i (r - 1L) >= l do
            r <- r - 1L
        max r now

    let tr (f: unit -> string) =
        if trace then lines.Add(sprintf "%7d  %s" now (f ()))
    let trn i (f: unit -> string) =
        if trace then lines.Add(sprintf "%7d  [%s @%d] %s" now (nodeName i) (localNow i) (f ()))

    // ── Randomness (one stream per node and purpose) ────────────────────────────────────────────────
    let rngs =
        Array.init n (fun i ->
            Array.init 5 (fun s -> Rng(uint64 sc.Seed * 0x100000001B3UL + uint64 (i * 16 + s) * 0x9E3779B97F4A7C15UL)))
    let rng i s : Rng = rngs.[i].[s]
    let inChaos () = now < chaosEnd
    let legs i =
        let r = rng i 0
        let slow = inChaos () && ((nodes[i].SlowApi > 0 && r.Chance 0.5) || r.Chance 0.03)
        if slow then
            let big = r.Range(20L, R)
            if r.Chance 0.5 then big, r.Range(1L, 10L) else r.Range(1L, 10L), big
        else
            r.Range(1L, 10L), r.Range(1L, 10L)
    let watchDelay i =
        let r = rng i 1
        let basic = r.Range(0L, 50L)
        if inChaos () then
            let extra = if r.Chance 0.02 then r.Range(50L, 500L) else 0L
            let slow = if nodes[i].SlowWatch.Count > 0 then Seq.max nodes[i].SlowWatch else 0L
            basic + extra + slow
        else basic
    let kernelSlack i =
        let r = rng i 2
        if r.Chance 0.5 then Timing.KernelExpirySlack else r.Range(0L, Timing.KernelExpirySlack)

    // ── Network: one request with latency, partitions and timeouts ──────────────────────────────────
    /// Sends a request from node i. `apply` runs on the server when (if) it arrives; `k` gets Some answer or
    /// None (transport failure) unless `valid ()` turned false meanwhile (process gone, loop abandoned).
    /// `timeout`: the client's own deadline (local ms); a partitioned request fails after it, or after
    /// RequestTimeout when there is none. `trips` > 1 adds full round trips before the applying one.
    let send i (valid: unit -> bool) (timeout: int64 option) (trips: int) (apply: unit -> 'r) (k: 'r option -> unit) =
        let nd = nodes[i]
        let failAt = realOf i (localNow i + defaultArg timeout sc.RequestTimeout)
        let settled = ref false
        let settle (r: 'r option) =
            if not settled.Value then
                settled.Value <- true
                if valid () then k r
        let lostAfter () = schedule failAt 1 (fun () -> settle None)
        let first, down = legs i
        let mutable up = first + nd.StallNext
        nd.StallNext <- 0L
        for _ in 2..trips do
            let a, b = legs i
            up <- up + a + b
        if nd.Partitioned then lostAfter ()
        else
            schedule (now + up) 1 (fun () ->
                if nd.Partitioned then lostAfter ()
                else
                    let r = apply ()
                    schedule (now + down) 1 (fun () -> if nd.Partitioned then lostAfter () else settle (Some r)))
            if timeout.IsSome then lostAfter ()

    /// Faults armed to strike right after a node's next lease request leaves (see PartitionMidWrite).
    let onLeaseSend = ref (fun (_: int) -> ())
    /// A request of the reconcile loop (GroupLeaseWriter): lease writes and their reads.
    /// Faults waiting for whichever node first sends a lease request at the worst moment.
    let armedForAny = List<Fault>()
    let sendLease i (valid: unit -> bool) (addressWriteFollows: bool) (apply: unit -> 'r) (k: 'r option -> unit) =
        let nd = nodes[i]
        let strikes =
            if inChaos () && armedForAny.Count > 0 then
                let all =
                    armedForAny
                    |> List.ofSeq
                    |> List.filter (function
                        | StallAndLinkDownMidWrite _ -> nd.LinkUp && nd.Interface.Count > 0
                        | PartitionBeforeAddressWrite _ -> addressWriteFollows
                        | _ -> false)
                for f in all do
                    armedForAny.Remove f |> ignore
                all
            else []
        for fault in strikes do
            match fault with
            | StallAndLinkDownMidWrite(stall, _) -> nd.StallNext <- max nd.StallNext stall
            | _ -> ()
        send i valid None 1 apply k
        for fault in strikes do
            nd.Armed.Add fault
        onLeaseSend.Value i

    /// Whether `node` may announce group `g` according to the API server's current Services and slices.
    let eligibleNow (node: string) (g: string) =
        let desired =
            Desired.compute configs[0] [ for kv in server.Services -> snd kv.Value ] [ for kv in server.Slices -> snd kv.Value ]
        match desired.Groups |> List.tryFind (fun x -> x.Id = g) with
        | Some group -> Eligibility.allows node group.Eligibility
        | None -> false

    // ── Interfaces ───────────────────────────────────────────────────────────────────────────────────
    let rec writeAddress i (ip: Ip) (lifetime: int64) =
        let nd = nodes[i]
        let deadline = localNow i + lifetime + kernelSlack i
        let expires = realOf i deadline
        writes <- writes + 1L
        let w = writes
        nd.Interface[ip] <- { DeadlineLocal = deadline; ExpiresReal = expires; Write = w }
        interfacesChanged <- true
        trn i (fun () -> sprintf "address %s written, kernel deletes it at local %d (real %d)" (Ip.format ip) deadline expires)
        schedule expires 0 (fun () ->
            match nd.Interface.TryGetValue ip with
            | true, a when a.Write = w ->
                nd.Interface.Remove ip |> ignore
                interfacesChanged <- true
                trn i (fun () -> sprintf "kernel deleted %s" (Ip.format ip))
                match nd.Proc with
                | Some q when not q.Dead ->
                    if q.Vips.Remove ip then signal i q
                | _ -> ()
            | _ -> ())

    // ── Watches and the cache ────────────────────────────────────────────────────────────────────────
    and observe i (p: Proc) (c: Change) : bool =
        let at = localNow i
        match c with
        | ServiceSet(k, v, s) ->
            match p.Services.TryGetValue k with
            | true, (v0, _) when v0 = v -> false
            | _ ->
                p.Services[k] <- (v, { s with ChangedSeenAt = at })
                true
        | ServiceGone k -> p.Services.Remove k
        | SliceSet(k, v, s) ->
            match p.Slices.TryGetValue k with
            | true, (v0, _) when v0 = v -> false
            | _ ->
                p.Slices[k] <- (v, s)
                true
        | SliceGone k -> p.Slices.Remove k
        | HeartbeatSet(node, v, h) ->
            match p.Heartbeats.TryGetValue node with
            | true, (v0, _) when v0 = v -> false
            | _ ->
                p.Heartbeats[node] <- (v, { Node = node; Holder = h; Version = v; ChangedSeenAt = at })
                true
        | LeaseSet(g, v, h) ->
            match p.Leases.TryGetValue g with
            | true, (v0, _) when v0 = v -> false
            | _ ->
                p.Leases[g] <- (v, { Name = g; Holder = h; Version = v; ChangedSeenAt = at })
                true
        | LeaseGone g -> p.Leases.Remove g

    /// ClusterCache.Observe: a changed object signals the loop, except a heartbeat renewal that cannot change
    /// a decision (Heartbeat.changeMatters).
    and observeAndSignal i (p: Proc) (c: Change) =
        match c with
        | HeartbeatSet(node, _, _) ->
            let previous =
                match p.Heartbeats.TryGetValue node with
                | true, (_, hb) -> Some hb
                | _ -> None
            if observe i p c && Heartbeat.changeMatters timing previous (snd p.Heartbeats[node]) (localNow i) then signal i p
        | _ -> if observe i p c then signal i p

    and deliver i (p: Proc) (c: Change) =
        if p.Listing then p.Held.Add c
        else observeAndSignal i p c

    and broadcast (c: Change) =
        let s = streamOf c
        for j in 0 .. n - 1 do
            match nodes[j].Proc with
            | Some p when not p.Dead && p.StreamOpen && not nodes[j].Partitioned ->
                let t = max (now + watchDelay j) p.LastDelivery[s]
                p.LastDelivery[s] <- t
                let epoch = p.StreamEpoch
                schedule t 1 (fun () -> if not p.Dead && p.StreamOpen && p.StreamEpoch = epoch then deliver j p c)
            | _ -> ()

    /// ObservedStore.ReplaceAll for one store.
    and replaceAll (d: Dictionary<'k, string * 'v>) (items: ('k * string * 'v) list) (stamp: 'v -> 'v) =
        let fresh = Dictionary<'k, string * 'v>()
        for (k, v, x) in items do
            match d.TryGetValue k with
            | true, (v0, old) when v0 = v -> fresh[k] <- (v0, old)
            | _ -> fresh[k] <- (v, stamp x)
        d.Clear()
        for kv in fresh do
            d[kv.Key] <- kv.Value

    and relist i (p: Proc) =
        p.ListToken <- p.ListToken + 1
        let token = p.ListToken
        p.Listing <- true
        p.Held.Clear()
        send i (fun () -> not p.Dead && p.ListToken = token) None 1
            (fun () ->
                // The watch starts from the list's version: later changes follow the list, earlier ones are in it.
                p.StreamEpoch <- p.StreamEpoch + 1
                p.StreamOpen <- true
                p.Held.Clear()
                [ for kv in server.Services -> ServiceSet(kv.Key, fst kv.Value, snd kv.Value) ],
                [ for kv in server.Slices -> SliceSet(kv.Key, fst kv.Value, snd kv.Value) ],
                [ for kv in server.Heartbeats -> HeartbeatSet(kv.Key, snd kv.Value, fst kv.Value) ],
                [ for kv in server.Leases -> LeaseSet(kv.Key, snd kv.Value, fst kv.Value) ])
            (fun answer ->
                match answer with
                | Some(services, slices, heartbeats, leases) ->
                    let at = localNow i
                    replaceAll p.Services
                        [ for c in services do match c with ServiceSet(k, v, s) -> yield k, v, s | _ -> () ]
                        (fun s -> { s with ChangedSeenAt = at })
                    replaceAll p.Slices [ for c in slices do match c with SliceSet(k, v, s) -> yield k, v, s | _ -> () ] id
                    replaceAll p.Heartbeats
                        [ for c in heartbeats do
                              match c with
                              | HeartbeatSet(node, v, h) -> yield node, v, { Node = node; Holder = h; Version = v; ChangedSeenAt = at }
                              | _ -> () ]
                        id
                    replaceAll p.Leases
                        [ for c in leases do
                              match c with
                              | LeaseSet(g, v, h) -> yield g, v, ({ Name = g; Holder = h; Version = v; ChangedSeenAt = at }: GroupLease)
                              | _ -> () ]
                        id
                    p.Synced <- true
                    p.Listing <- false
                    p.ListFailures <- 0
                    trn i (fun () -> "listed everything")
                    for c in List.ofSeq p.Held do
                        observe i p c |> ignore
                    p.Held.Clear()
                    signal i p
                | None ->
                    p.Listing <- false
                    p.StreamOpen <- false
                    let ceiling = min 10000.0 (200.0 * Math.Pow(2.0, float (min p.ListFailures 16)))
                    p.ListFailures <- p.ListFailures + 1
                    let delay = int64 (ceiling / 2.0 + (rng i 3).Float() * ceiling / 2.0)
                    schedule (realOf i (localNow i + delay)) 1 (fun () ->
                        if not p.Dead && p.ListToken = token then relist i p))

    // ── The reconcile loop ───────────────────────────────────────────────────────────────────────────
    and signal i (p: Proc) =
        if not p.Dead && not p.Stopping then
            p.SignalPending <- true
            if not p.LoopBusy then wakeAt i p now

    and wakeAt i (p: Proc) (at: int64) =
        p.WakeToken <- p.WakeToken + 1
        let token = p.WakeToken
        schedule at 1 (fun () ->
            if not p.Dead && not p.Stopping && not p.LoopBusy && p.WakeToken = token then loopWake i p)

    and arm i (p: Proc) =
        if p.SignalPending then wakeAt i p now
        else
            let at = if p.NextWake < 0L then localNow i + 5000L else p.NextWake
            wakeAt i p (realOf i at)

    and loopWake i (p: Proc) =
        p.SignalPending <- false
        if not p.Synced then arm i p
        else
            p.LoopBusy <- true
            reconcileOnce i p (fun next ->
                p.LoopBusy <- false
                match p.AfterLoop with
                | Some stopNow ->
                    p.AfterLoop <- None
                    stopNow ()
                | None ->
                    p.NextWake <- next
                    arm i p)

    and snapshot i (p: Proc) : Snapshot =
        { Config = configs[i]
          Now = localNow i
          Services = [ for kv in p.Services -> snd kv.Value ]
          Slices = [ for kv in p.Slices -> snd kv.Value ]
          Heartbeats = [ for kv in p.Heartbeats -> snd kv.Value ]
          Leases = [ for kv in p.Leases -> snd kv.Value ]
          Self =
            { Node = nodeName i
              Fence = p.Fence
              Claims = p.Claims |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq
              LinkUp = p.LinkUp
              ShuttingDown = p.ShuttingDown }
          Vips =
            [ for kv in p.Vips ->
                  { Ip = kv.Key
                    Prefix = kv.Value.Prefix
                    ExpiresAt = kv.Value.ExpiresAt
                    Announce =
                      kv.Value.AddedAt
                      |> Option.map (fun a -> { AddedAt = a; Sent = kv.Value.Sent; LastSentAt = kv.Value.LastSentAt }) } ]
          EmittedWarnings = p.Emitted }

    /// ReconcileLoop.ReconcileOnceAsync: up to 4 rounds while a round changed something (a VIP, an announcement,
    /// a Lease); `k` gets the next wake-up.
    and reconcileOnce i (p: Proc) (k: int64 -> unit) =
        let gen = p.LoopGen
        let valid () = not p.Dead && p.LoopGen = gen
        let rec round r =
            let fenceAtPlan = p.Fence
            let plan =
                try
                    Some(Plan.compute (snapshot i p))
                with e ->
                    failure <- Some(sprintf "Plan.compute threw on %s at %d: %s" (nodeName i) now e.Message)
                    None
            match plan with
            | None -> ()
            | Some plan ->
                p.Emitted <- plan.ActiveWarnings
                p.WaitsForRenewal <- plan.WaitsForRenewal
                if plan.Roles |> Map.exists (fun _ role -> role = Fenced) then bump Seen.FenceLapse
                let firstWrite =
                    plan.Actions |> List.tryFindIndex (function ClaimLease _ | ReleaseLease _ | DeleteLease _ -> true | _ -> false)
                let lastAddress =
                    plan.Actions |> List.tryFindIndexBack (function AddVip _ | RefreshVip _ -> true | _ -> false)
                match firstWrite, lastAddress with
                | Some w, Some a when w < a -> bump Seen.WriteThenAddress
                | _ -> ()
                if trace then
                    let roles =
                        plan.Roles |> Map.toList |> List.map (fun (g, role) -> sprintf "%s=%A" g role) |> String.concat "; "
                    if roles <> p.LastRoles then
                        p.LastRoles <- roles
                        trn i (fun () -> sprintf "roles (fence %d from %A): %s" p.Fence.Epoch p.Fence.LastRenewalStartedAt roles)
                if trace && not plan.Actions.IsEmpty then
                    trn i (fun () ->
                        plan.Actions
                        |> List.filter (function WriteStatus _ | Emit _ -> false | _ -> true)
                        |> List.map (sprintf "%A")
                        |> String.concat ", "
                        |> sprintf "plan: %s")
                execute i p valid plan.Actions (fun (changed, retryAt) ->
                    // A renewal that landed meanwhile, while this plan waits for one: plan again at once.
                    let changed = changed || (plan.WaitsForRenewal && not (obj.ReferenceEquals(p.Fence, fenceAtPlan)))
                    if not changed then
                        let w = defaultArg plan.NextWakeAt -1L
                        k (if w < 0L then retryAt elif retryAt < 0L then w else min w retryAt)
                    elif r < 3 then round (r + 1)
                    else k (localNow i))
        round 0

    /// ReconcileLoop.ExecuteAsync.
    and execute i (p: Proc) (valid: unit -> bool) (actions: Action list) (k: bool * int64 -> unit) =
        let epoch = p.Fence.Epoch
        // The fence the plan was made with: every address write it decided must happen within its window.
        let planFence = p.Fence
        let withinWindow (ip: Ip) =
            if not (Fence.mayWriteAddress timing planFence (localNow i)) && fenceBreach.IsNone then
                fenceBreach <-
                    Some(
                        sprintf "at real %d ms %s writes %s at local %d, after the write deadline %A of the fence its plan was made with (%A)"
                            now (nodeName i) (Ip.format ip) (localNow i)
                            (planFence.LastRenewalStartedAt |> Option.map (Timing.writeDeadline timing)) planFence)
        let batch = List<Ip * int>()
        let batchLifetime = ref 0L
        let flush () =
            if batch.Count > 0 then
                for (ip, prefix) in batch do
                    withinWindow ip
                    refreshVip i p ip prefix batchLifetime.Value
                batch.Clear()
        let rec go (actions: Action list) (changed: bool) (retryAt: int64) =
            match actions with
            | [] ->
                flush ()
                k (changed, retryAt)
            | a :: rest ->
                (match a with
                 | RefreshVip _ -> ()
                 | _ -> flush ())
                p.AddressWriteFollows <- rest |> List.exists (function AddVip _ | RefreshVip _ -> true | _ -> false)
                let settled g (outcome: WriteOutcome) =
                    let c, r = settle i p g outcome retryAt
                    go rest (changed || c) r
                match a with
                | RemoveVip(ip, _) ->
                    nodes[i].Interface.Remove ip |> ignore
                    p.Vips.Remove ip |> ignore
                    interfacesChanged <- true
                    trn i (fun () -> sprintf "removed %s" (Ip.format ip))
                    go rest changed retryAt
                | AddVip(ip, prefix, lifetime) ->
                    withinWindow ip
                    writeAddress i ip lifetime
                    let at = localNow i
                    p.Vips[ip] <- { Prefix = prefix; ExpiresAt = Some(at + lifetime); AddedAt = Some at; Sent = 0; LastSentAt = at }
                    go rest changed retryAt
                | RefreshVip(ip, prefix, lifetime) ->
                    batch.Add((ip, prefix))
                    batchLifetime.Value <- lifetime
                    go rest changed retryAt
                | Announce ip ->
                    let at = localNow i
                    match p.Vips.TryGetValue ip with
                    | true, e -> p.Vips[ip] <- { e with AddedAt = Some(defaultArg e.AddedAt at); Sent = e.Sent + 1; LastSentAt = at }
                    | _ -> ()
                    go rest changed retryAt
                | ClaimLease(g, _, _, _)
                | ReleaseLease(g, _)
                | DeleteLease(g, _) when throttled i p g ->
                    let at = snd p.Backoff[g]
                    go rest changed (if retryAt < 0L then at else min retryAt at)
                | ClaimLease(g, expected, previous, confirm) -> claim i p valid g expected previous confirm epoch (settled g)
                | ReleaseLease(g, version) -> release i p valid g version (settled g)
                | DeleteLease(g, version) -> delete i p valid g version (settled g)
                | WriteStatus _
                | Emit _ -> go rest changed retryAt
        let localChange = actions |> List.exists (function AddVip _ | RemoveVip _ | RefreshVip _ | Announce _ -> true | _ -> false)
        go actions localChange -1L

    and refreshVip i (p: Proc) (ip: Ip) (prefix: int) (lifetime: int64) =
        writeAddress i ip lifetime
        let at = localNow i
        p.Vips[ip] <-
            match p.Vips.TryGetValue ip with
            | true, e -> { e with ExpiresAt = Some(at + lifetime) }
            | _ -> { Prefix = prefix; ExpiresAt = Some(at + lifetime); AddedAt = None; Sent = 0; LastSentAt = 0L }

    and throttled i (p: Proc) (g: string) =
        match p.Backoff.TryGetValue g with
        | true, (_, at) -> at > localNow i
        | _ -> false

    and settle i (p: Proc) (g: string) (outcome: WriteOutcome) (retryAt: int64) : bool * int64 =
        match outcome with
        | Done
        | Lost ->
            p.Backoff.Remove g |> ignore
            true, retryAt
        | Failed ->
            let failures =
                match p.Backoff.TryGetValue g with
                | true, (f, _) -> f
                | _ -> 0
            let ceiling = min 5000.0 (100.0 * Math.Pow(2.0, float (min failures 16)))
            let at = localNow i + int64 (ceiling / 2.0 + (rng i 3).Float() * ceiling / 2.0)
            p.Backoff[g] <- (failures + 1, at)
            false, (if retryAt < 0L then at else min retryAt at)

    // ── GroupLeaseWriter ─────────────────────────────────────────────────────────────────────────────
    and setLease (g: string) (holder: string option) =
        let v = server.NextVersion()
        server.Leases[g] <- (holder, v)
        holder |> Option.iter (fun h -> server.LastHolder[g] <- h)
        broadcast (LeaseSet(g, v, holder))
        tr (fun () -> sprintf "server: L(%s) = %A v%s" g holder v)
        Written(v, holder)

    and classifyClaim i (g: string) =
        let self = nodeName i
        let window = D + R + 3000L
        let recent (nd: NodeSt) kind =
            match nd.Faults.TryGetValue kind with
            | true, t when now - t <= window -> Some t
            | _ -> None
        match server.LastHolder.TryGetValue g with
        | true, prev when prev = self ->
            match recent nodes[i] Seen.Crash, recent nodes[i] Seen.GracefulStop with
            | None, None -> ()
            | _ -> bump Seen.ReclaimAfterRestart
        | true, prev when not (eligibleNow prev g) ->
            // The previous holder may no longer announce the group: endpoints moved or the service changed.
            let recentGlobal kind =
                match nodes[0].Faults.TryGetValue kind with
                | true, t -> now - t <= window
                | _ -> false
            if recentGlobal Seen.EndpointMove then bump Seen.TakeoverAfterEndpointMove
            elif recentGlobal Seen.ServiceChange then bump Seen.ClaimAfterServiceChange
            else bump Seen.TakeoverOther
        | true, prev ->
            let nd = nodes |> Array.find (fun x -> x.Name = prev)
            let causes =
                [ Seen.Crash, Seen.TakeoverAfterCrash
                  Seen.StopMidPlan, Seen.TakeoverAfterStop
                  Seen.GracefulStop, Seen.TakeoverAfterStop
                  Seen.Partition, Seen.TakeoverAfterPartition
                  Seen.LinkDown, Seen.TakeoverAfterLinkDown ]
                |> List.choose (fun (kind, label) -> recent nd kind |> Option.map (fun t -> t, label))
            match causes with
            | [] ->
                bump Seen.TakeoverOther
                trn i (fun () -> sprintf "takes %s from %s without a recent fault on it" g prev)
            | cs -> bump (cs |> List.maxBy fst |> snd)
        | _ ->
            if nodes[0].Faults.ContainsKey Seen.ServiceChange && now - nodes[0].Faults[Seen.ServiceChange] <= window then
                bump Seen.ClaimAfterServiceChange

    /// GroupLeaseWriter.RefreshAsync: re-read a group Lease after a lost race.
    and reread i (p: Proc) valid (g: string) (k: unit -> unit) =
        sendLease i valid p.AddressWriteFollows
            (fun () ->
                match server.Leases.TryGetValue g with
                | true, (h, v) -> Some(h, v)
                | _ -> None)
            (fun answer ->
                match answer with
                | Some(Some(h, v)) -> if observe i p (LeaseSet(g, v, h)) then signal i p
                | Some None -> p.Leases.Remove g |> ignore
                | None -> ()
                k ())

    and claim i (p: Proc) valid g expected previous confirm epoch (k: WriteOutcome -> unit) =
        let self = nodeName i
        let cas () =
            sendLease i valid p.AddressWriteFollows
                (fun () ->
                    match expected, server.Leases.TryGetValue g with
                    | None, (true, _) -> Conflict
                    | None, _ ->
                        classifyClaim i g
                        setLease g (Some self)
                    | Some _, (false, _) -> Missing
                    | Some v, (true, (_, v0)) when v0 <> v -> Conflict
                    | Some _, _ ->
                        classifyClaim i g
                        setLease g (Some self))
                (fun answer ->
                    match answer with
                    | Some(Written(v, h)) ->
                        p.Claims[g] <- { Epoch = epoch; From = previous }
                        trn i (fun () -> sprintf "claimed %s (epoch %d)" g epoch)
                        if observe i p (LeaseSet(g, v, h)) then signal i p
                        k Done
                    | Some Conflict
                    | Some Missing ->
                        bump Seen.LostRace
                        trn i (fun () -> sprintf "lost the race for %s" g)
                        reread i p valid g (fun () -> k Lost)
                    | Some Deleted -> k Done
                    | None -> k Failed)
        match confirm with
        | None -> cas ()
        | Some(node, version) ->
            sendLease i valid p.AddressWriteFollows
                (fun () ->
                    match server.Heartbeats.TryGetValue node with
                    | true, (h, v) -> Some(h, v)
                    | _ -> None)
                (fun answer ->
                    match answer with
                    | None -> k Failed
                    | Some None -> cas ()
                    | Some(Some(_, v)) when v = version -> cas ()
                    | Some(Some(h, v)) ->
                        bump Seen.HeartbeatMoved
                        trn i (fun () -> sprintf "not taking %s: H(%s) moved to v%s" g node v)
                        observeAndSignal i p (HeartbeatSet(node, v, h))
                        k Lost)

    and release i (p: Proc) valid g version (k: WriteOutcome -> unit) =
        sendLease i valid p.AddressWriteFollows
            (fun () ->
                match server.Leases.TryGetValue g with
                | false, _ -> Missing
                | true, (_, v0) when v0 <> version -> Conflict
                | _ -> setLease g None)
            (fun answer ->
                match answer with
                | Some(Written(v, h)) ->
                    p.Claims.Remove g |> ignore
                    if observe i p (LeaseSet(g, v, h)) then signal i p
                    k Done
                | Some _ ->
                    p.Claims.Remove g |> ignore
                    reread i p valid g (fun () -> k Lost)
                | None -> k Failed)

    and delete i (p: Proc) valid g version (k: WriteOutcome -> unit) =
        sendLease i valid p.AddressWriteFollows
            (fun () ->
                match server.Leases.TryGetValue g with
                | false, _ -> Missing
                | true, (_, v0) when v0 <> version -> Conflict
                | _ ->
                    server.Leases.Remove g |> ignore
                    broadcast (LeaseGone g)
                    tr (fun () -> sprintf "server: L(%s) deleted" g)
                    Deleted)
            (fun answer ->
                match answer with
                | Some Deleted ->
                    p.Claims.Remove g |> ignore
                    p.Leases.Remove g |> ignore
                    k Done
                | Some _ -> reread i p valid g (fun () -> k Lost)
                | None -> k Failed)

    // ── HeartbeatRenewer ─────────────────────────────────────────────────────────────────────────────
    and heartbeatWrite i (p: Proc) (holder: string option) (timeout: int64 option) (k: bool -> unit) =
        // HeartbeatRenewer.ReleaseAsync: NodeState.Releasing() ends the fence before the release is sent.
        if holder.IsNone then p.Fence <- Fence.released p.Fence
        let trips = if p.HbKnown then 1 else 2
        send i (fun () -> not p.Dead) timeout trips
            (fun () ->
                let v = server.NextVersion()
                server.Heartbeats[nodeName i] <- (holder, v)
                broadcast (HeartbeatSet(nodeName i, v, holder))
                v)
            (fun answer ->
                match answer with
                | Some _ ->
                    p.HbKnown <- true
                    k true
                | None -> k false)

    and heartbeatTick i (p: Proc) (tick: int64) =
        if not p.Dead then
            let finish () =
                if not p.Dead then
                    let f = localNow i
                    let next = p.HbStart + ((tick - p.HbStart) / P + 1L) * P
                    if f < next then schedule (realOf i next) 1 (fun () -> heartbeatTick i p next)
                    else
                        let last = p.HbStart + ((f - p.HbStart) / P) * P
                        schedule now 1 (fun () -> heartbeatTick i p last)
            match Heartbeat.decide p.LinkUp p.ShuttingDown with
            | Renew ->
                let started = localNow i
                heartbeatWrite i p (Some(nodeName i)) (Some R) (fun ok ->
                    if ok then
                        p.HbReleased <- false
                        let before = p.Fence
                        p.Fence <- Fence.renewed timing p.Fence started (localNow i)
                        let newEpoch = p.Fence.Epoch <> before.Epoch
                        if newEpoch then
                            if p.Claims.Count > 0 then bump Seen.FenceLapse
                            trn i (fun () -> sprintf "new fence epoch %d (renewal started %d)" p.Fence.Epoch started)
                        if newEpoch || p.WaitsForRenewal then signal i p
                    else trn i (fun () -> sprintf "heartbeat renewal started %d failed" started)
                    finish ())
            | ReleaseHeartbeat when not p.HbReleased ->
                heartbeatWrite i p None None (fun ok ->
                    if ok then
                        p.HbReleased <- true
                        trn i (fun () -> "heartbeat released")
                        signal i p
                    finish ())
            | ReleaseHeartbeat -> finish ()
            // The stop sequence (below) releases the heartbeat after its plan.
            | LeaveToStop -> finish ()

    // ── Processes ────────────────────────────────────────────────────────────────────────────────────
    let kill i =
        match nodes[i].Proc with
        | Some p ->
            p.Dead <- true
            nodes[i].Proc <- None
        | None -> ()

    let start i =
        procIds <- procIds + 1
        let p = Proc(procIds)
        let nd = nodes[i]
        nd.Proc <- Some p
        p.LinkUp <- nd.LinkUp
        let at = localNow i
        // VipTable.AdoptAsync: the kernel reports the remaining valid lifetime in whole seconds.
        for kv in nd.Interface do
            if kv.Value.ExpiresReal > now then
                let remaining = max 0L (kv.Value.DeadlineLocal - at) / 1000L * 1000L
                p.Vips[kv.Key] <- { Prefix = 32; ExpiresAt = Some(at + remaining); AddedAt = None; Sent = 0; LastSentAt = 0L }
        trn i (fun () -> sprintf "process %d starts, adopting %d address(es)" p.Id p.Vips.Count)
        p.HbStart <- at
        schedule now 1 (fun () -> heartbeatTick i p at)
        relist i p
        arm i p

    /// NodeAgent's graceful stop, from the moment ReconcileLoop.RunAsync has returned: heartbeat release first
    /// (timeout 300 ms), then one ReconcileOnce (cancelled 1.4 s after the signal), then, if the first release
    /// did not land, a second one with the rest of the 1.9 s budget.
    let gracefulStop i (p: Proc) (requestedAt: int64) =
        if not p.Dead then
            p.ShuttingDown <- true
            let budget = requestedAt + 1900L
            let finished = ref false
            let finish () =
                if not finished.Value && not p.Dead then
                    finished.Value <- true
                    p.LoopGen <- p.LoopGen + 1
                    if p.HbReleased then
                        trn i (fun () -> "stopped")
                        kill i
                    else
                        let remaining = max 100L (budget - localNow i - 100L)
                        heartbeatWrite i p None (Some remaining) (fun _ ->
                            trn i (fun () -> "stopped")
                            kill i)
                        // The release's own timeout ends the process even when the write never returns.
                        schedule (realOf i (localNow i + remaining)) 1 (fun () -> if not p.Dead then kill i)
            let started = ref false
            let withdraw () =
                if not started.Value && not p.Dead then
                    started.Value <- true
                    schedule (realOf i (localNow i + max 100L (budget - localNow i - 500L))) 1 finish
                    reconcileOnce i p (fun _ -> finish ())
            let first = max 100L (min 300L (budget - localNow i - 900L))
            heartbeatWrite i p None (Some first) (fun ok ->
                if ok && not p.Dead then
                    p.HbReleased <- true
                    trn i (fun () -> "heartbeat released (stop)")
                withdraw ())
            schedule (realOf i (localNow i + first)) 1 withdraw

    /// SIGTERM [NodeAgent, ReconcileLoop.RunAsync]: a plan in progress may finish for 300 ms (then it is
    /// cancelled: requests already sent may still apply), then the graceful stop.
    let stop i =
        match nodes[i].Proc with
        | Some p when not p.Dead && not p.Stopping ->
            let requestedAt = localNow i
            p.Stopping <- true
            if p.LoopBusy then
                bump Seen.StopMidPlan
                nodes[i].Faults[Seen.StopMidPlan] <- now
                trn i (fun () -> "graceful stop while a plan is in flight: it may finish for 300 ms")
                p.AfterLoop <- Some(fun () -> gracefulStop i p requestedAt)
                schedule (realOf i (requestedAt + 300L)) 1 (fun () ->
                    match p.AfterLoop with
                    | Some next when not p.Dead ->
                        trn i (fun () -> "the plan in flight is cancelled")
                        p.AfterLoop <- None
                        p.LoopGen <- p.LoopGen + 1
                        p.LoopBusy <- false
                        next ()
                    | _ -> ())
            else
                bump Seen.GracefulStop
                nodes[i].Faults[Seen.GracefulStop] <- now
                trn i (fun () -> "graceful stop")
                gracefulStop i p requestedAt
        | _ -> ()

    let linkDown i =
        let nd = nodes[i]
        nd.LinkDowns <- nd.LinkDowns + 1
        nd.Faults[Seen.LinkDown] <- now
        if nd.LinkUp then
            bump Seen.LinkDown
            nd.LinkUp <- false
            interfacesChanged <- true
            trn i (fun () -> "link down")
            match nd.Proc with
            | Some p when not p.Dead ->
                p.LinkUp <- false
                signal i p
            | _ -> ()

    let linkUp i =
        let nd = nodes[i]
        nd.LinkDowns <- max 0 (nd.LinkDowns - 1)
        if nd.LinkDowns = 0 && not nd.LinkUp then
            nd.LinkUp <- true
            interfacesChanged <- true
            trn i (fun () -> "link up")
            match nd.Proc with
            | Some p when not p.Dead ->
                p.LinkUp <- true
                signal i p
            | _ -> ()

    let partition i =
        let nd = nodes[i]
        nd.Partitions <- nd.Partitions + 1
        nd.Faults[Seen.Partition] <- now
        if nd.Partitions = 1 then
            bump Seen.Partition
            trn i (fun () -> "partitioned from the API server")
            match nd.Proc with
            | Some p when not p.Dead ->
                p.StreamOpen <- false
                p.StreamEpoch <- p.StreamEpoch + 1
            | _ -> ()

    let heal i =
        let nd = nodes[i]
        if nd.Partitions > 0 then
            nd.Partitions <- nd.Partitions - 1
            if nd.Partitions = 0 then
                trn i (fun () -> "partition healed")
                match nd.Proc with
                | Some p when not p.Dead -> relist i p
                | _ -> ()

    // ── Services ─────────────────────────────────────────────────────────────────────────────────────
    let specs = Dictionary<int, ServiceSpec>()
    let putService (spec: ServiceSpec) =
        specs[spec.Id] <- spec
        let s = serviceOf spec
        let v = server.NextVersion()
        server.Services[s.Key] <- (v, s)
        broadcast (ServiceSet(s.Key, v, s))
        let slice = sliceOf n spec
        let v = server.NextVersion()
        server.Slices[s.Key] <- (v, slice)
        broadcast (SliceSet(s.Key, v, slice))
        tr (fun () -> sprintf "server: service %A" spec)
    let putSlice (spec: ServiceSpec) =
        specs[spec.Id] <- spec
        let slice = sliceOf n spec
        let v = server.NextVersion()
        server.Slices[slice.Service] <- (v, slice)
        broadcast (SliceSet(slice.Service, v, slice))
        tr (fun () -> sprintf "server: endpoints of svc-%d on %A" spec.Id spec.Endpoints)
    let specAt (k: int) =
        if specs.Count = 0 then None
        else
            let ids = specs.Keys |> Seq.sort |> Array.ofSeq
            Some specs[ids[abs k % ids.Length]]
    let serviceChanged () =
        nodes[0].Faults[Seen.ServiceChange] <- now
        bump Seen.ServiceChange

    // ── Faults ───────────────────────────────────────────────────────────────────────────────────────
    let resolve (target: Target) =
        match target with
        | NodeAt k -> abs k % n
        | HolderOf k ->
            let held =
                server.Leases
                |> Seq.choose (fun kv -> fst kv.Value |> Option.map (fun h -> kv.Key, h))
                |> Seq.sortBy fst
                |> Array.ofSeq
            if held.Length = 0 then abs k % n
            else
                let h = snd held[abs k % held.Length]
                nodes |> Array.findIndex (fun x -> x.Name = h)
    let until (start: int64) (ms: int64) (f: unit -> unit) =
        let t = start + max 1L ms
        if t < chaosEnd then schedule t 1 f
    let rec restartWhenStopped i =
        match nodes[i].Proc with
        | None -> start i
        | Some p when p.Stopping -> schedule (now + 50L) 1 (fun () -> restartWhenStopped i)
        | Some _ -> ()
    let rec inject (fault: Fault) =
        tr (fun () -> sprintf "FAULT %A" fault)
        match fault with
        | PartitionMidWrite(target, _)
        | CrashMidWrite(target, _) -> nodes[resolve target].Armed.Add fault
        | PartitionBeforeAddressWrite _
        | StallAndLinkDownMidWrite _ -> armedForAny.Add fault
        | CrashFor(target, down) ->
            let i = resolve target
            match nodes[i].Proc with
            | Some p when not p.Dead ->
                bump Seen.Crash
                nodes[i].Faults[Seen.Crash] <- now
                trn i (fun () -> "crash")
                kill i
                until now down (fun () -> if nodes[i].Proc.IsNone then start i)
            | _ -> ()
        | StopFor(target, down) ->
            let i = resolve target
            stop i
            until now down (fun () -> restartWhenStopped i)
        | PartitionFor(target, ms) ->
            let i = resolve target
            partition i
            until now ms (fun () -> heal i)
        | LinkDownFor(target, ms) ->
            let i = resolve target
            linkDown i
            until now ms (fun () -> linkUp i)
        | SlowWatchFor(target, extra, ms) ->
            let i = resolve target
            nodes[i].SlowWatch.Add extra
            until now ms (fun () -> nodes[i].SlowWatch.Remove extra |> ignore)
        | SlowApiFor(target, ms) ->
            let i = resolve target
            nodes[i].SlowApi <- nodes[i].SlowApi + 1
            until now ms (fun () -> nodes[i].SlowApi <- max 0 (nodes[i].SlowApi - 1))
        | MoveEndpoints(k, ns) ->
            match specAt k with
            | Some spec ->
                nodes[0].Faults[Seen.EndpointMove] <- now
                bump Seen.EndpointMove
                putSlice { spec with Endpoints = ns }
            | None -> ()
        | MoveEndpointsOffHolder(k, keep) ->
            let locals = specs.Values |> Seq.filter _.Local |> Seq.sortBy _.Id |> Array.ofSeq
            let spec =
                if locals.Length > 0 then Some locals[abs k % locals.Length]
                else specAt k |> Option.map (fun s -> { s with Local = true })
            match spec with
            | Some spec ->
                let group = LeaseNames.group (vip spec.Ip)
                let holder =
                    match server.Leases.TryGetValue group with
                    | true, (Some h, _) -> nodes |> Array.findIndex (fun x -> x.Name = h)
                    | _ -> abs k % n
                let others = [ 0 .. n - 1 ] |> List.filter ((<>) holder)
                let moved = { spec with Endpoints = others |> List.truncate (max 1 keep) }
                nodes[0].Faults[Seen.EndpointMove] <- now
                bump Seen.EndpointMove
                if moved.Local <> (specs[spec.Id]).Local then putService moved else putSlice moved
            | None -> ()
        | CreateService spec ->
            if not (specs.ContainsKey spec.Id) then
                serviceChanged ()
                putService spec
        | DeleteService k ->
            match specAt k with
            | Some spec ->
                serviceChanged ()
                specs.Remove spec.Id |> ignore
                let key = serviceKey spec.Id
                server.Services.Remove key |> ignore
                broadcast (ServiceGone key)
                server.Slices.Remove key |> ignore
                broadcast (SliceGone key)
                tr (fun () -> sprintf "server: svc-%d deleted" spec.Id)
            | None -> ()
        | ChangeIp(k, ip) ->
            match specAt k with
            | Some spec when spec.Ip <> ip ->
                serviceChanged ()
                putService { spec with Ip = ip }
            | _ -> ()
        | FlipPolicy k ->
            match specAt k with
            | Some spec ->
                serviceChanged ()
                putService { spec with Local = not spec.Local }
            | None -> ()

    onLeaseSend.Value <-
        fun i ->
            let nd = nodes[i]
            if nd.Armed.Count > 0 && inChaos () then
                let strikes = List.ofSeq nd.Armed
                nd.Armed.Clear()
                for fault in strikes do
                    trn i (fun () -> sprintf "lease request sent: %A strikes" fault)
                    bump Seen.MidWrite
                    match fault with
                    | PartitionMidWrite(_, ms)
                    | PartitionBeforeAddressWrite ms -> schedule now 1 (fun () -> inject (PartitionFor(NodeAt i, ms)))
                    | CrashMidWrite(_, down) -> schedule now 1 (fun () -> inject (CrashFor(NodeAt i, down)))
                    | StallAndLinkDownMidWrite(_, down) -> schedule now 1 (fun () -> inject (LinkDownFor(NodeAt i, down)))
                    | _ -> ()

    /// End of chaos: every node up, connected, link up, normal latencies, a process running.
    let restore () =
        tr (fun () -> "END OF CHAOS")
        armedForAny.Clear()
        for i in 0 .. n - 1 do
            let nd = nodes[i]
            nd.Armed.Clear()
            nd.SlowWatch.Clear()
            nd.SlowApi <- 0
            if nd.LinkDowns > 0 then
                nd.LinkDowns <- 1
                linkUp i
            if nd.Partitions > 0 then
                nd.Partitions <- 1
                heal i
            match nd.Proc with
            | Some p when not p.Dead && not p.Stopping ->
                // A watch still lagging (deliveries queued behind a long delay) is replaced: it relists.
                if not nd.Partitioned && p.LastDelivery |> Array.exists (fun t -> t > now + 100L) then
                    trn i (fun () -> "lagging watch relists")
                    relist i p
            | _ ->
                kill i
                start i

    // ── Checks ───────────────────────────────────────────────────────────────────────────────────────
    let checkSafety () =
        if interfacesChanged && safety.IsNone then
            interfacesChanged <- false
            let seen = Dictionary<Ip, int>()
            for nd in nodes do
                if nd.LinkUp then
                    for kv in nd.Interface do
                        if kv.Value.ExpiresReal > now then
                            match seen.TryGetValue kv.Key with
                            | true, other ->
                                let describe (x: NodeSt) =
                                    let a = x.Interface[kv.Key]
                                    sprintf "%s (local %d, kernel deletes it at local %d = real %d, process %s)" x.Name (local x.Index now)
                                        a.DeadlineLocal a.ExpiresReal
                                        (match x.Proc with
                                         | Some p -> sprintf "%d fence %A" p.Id p.Fence
                                         | None -> "none")
                                safety <-
                                    Some(sprintf "at real %d ms, %s is up on %s and on %s" now (Ip.format kv.Key) (describe nodes[other]) (describe nd))
                            | _ -> seen[kv.Key] <- nd.Index

    let mutable desiredAtEnd: Desired option = None
    let mutable lastUnconverged = -1L
    let mutable unconvergedWhy = ""
    let checkLiveness () =
        let desired =
            match desiredAtEnd with
            | Some d -> d
            | None ->
                let d =
                    Desired.compute configs[0] [ for kv in server.Services -> snd kv.Value ] [ for kv in server.Slices -> snd kv.Value ]
                desiredAtEnd <- Some d
                d
        let problem =
            desired.Groups
            |> List.tryPick (fun g ->
                let eligible = [ 0 .. n - 1 ] |> List.filter (fun j -> Eligibility.allows (nodeName j) g.Eligibility)
                if eligible.IsEmpty then None
                else
                    match server.Leases.TryGetValue g.Id with
                    | true, (Some h, _) ->
                        match eligible |> List.tryFind (fun j -> nodeName j = h) with
                        | Some j ->
                            let nd = nodes[j]
                            let missing =
                                g.Addresses
                                |> List.filter (fun ip ->
                                    not nd.LinkUp
                                    || (match nd.Interface.TryGetValue ip with
                                        | true, a -> a.ExpiresReal <= now
                                        | _ -> true))
                            if missing.IsEmpty then None
                            else Some(sprintf "%s: holder %s does not have %A up" g.Id h (missing |> List.map Ip.format))
                        | None -> Some(sprintf "%s: Lease names %s, which is not eligible (%A)" g.Id h g.Eligibility)
                    | _ -> Some(sprintf "%s: no holder (eligible: %A)" g.Id (eligible |> List.map nodeName)))
        match problem with
        | Some why ->
            lastUnconverged <- now
            unconvergedWhy <- why
        | None -> ()

    // ── Run ──────────────────────────────────────────────────────────────────────────────────────────
    for spec in sc.Services do
        putService spec
    for i in 0 .. n - 1 do
        let delay = (rng i 4).Range(0L, 300L)
        schedule delay 1 (fun () -> start i)
    for (at, fault) in sc.Faults do
        if at < chaosEnd then schedule at 1 (fun () -> inject fault)
    schedule chaosEnd 2 restore
    let mutable running = true
    while running && queue.Count > 0 do
        let mutable f = Unchecked.defaultof<unit -> unit>
        let mutable priority = struct (0L, 0, 0L)
        queue.TryDequeue(&f, &priority) |> ignore
        let struct (t, _, _) = priority
        if t > endAt then running <- false
        else
            now <- t
            f ()
            events <- events + 1
            checkSafety ()
            if now >= chaosEnd then checkLiveness ()
            if failure.IsSome then running <- false
            if events > MaxEvents then
                failure <- Some(sprintf "runaway simulation: more than %d events by real %d ms" MaxEvents now)
                running <- false
    now <- endAt
    checkLiveness ()
    let convergedAfter = if lastUnconverged < 0L then Some 0L else Some(lastUnconverged - chaosEnd + 1L)
    let liveness =
        match failure with
        | Some f -> Some f
        | None when lastUnconverged >= chaosEnd + bound ->
            Some(sprintf "still not converged at real %d ms (chaos ended at %d, bound %d ms): %s" lastUnconverged chaosEnd bound unconvergedWhy)
        | None -> None
    { Safety = (match failure with Some f -> Some f | None -> safety)
      FenceBreach = fenceBreach
      Liveness = liveness
      ConvergedAfter = (if lastUnconverged >= endAt then None else convergedAfter)
      Bound = bound
      Counts = counts |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq
      Events = events
      Trace = List.ofSeq lines }
