/// Rule 6 (fencing) end to end, in time: two agents with drifting clocks, an API server, watch delays and
/// request latency. Node A holds the VIP; at some instant it is cut off from the API server (or crashes).
/// Each agent plans exactly when the shell would (an observation changed, its NextWakeAt came, or it just
/// executed a non-empty plan) and executes what the domain says. The safety claim of the design: no instant at which both announce, for
/// every timing Timing.create accepts and every clock drift within ClockDriftPerMille.
module Hybrid.Properties.FailoverSimulation

open System
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

type Scenario =
    { Timing: Timing
      /// Local milliseconds per real millisecond of each node's monotonic clock.
      RateA: float
      RateB: float
      OffsetA: int64
      OffsetB: int64
      /// One-way request latency, and how late watch events arrive (real ms).
      Latency: int
      WatchDelay: int
      /// When A is cut off from the API server (or crashes), real ms.
      CutAt: int
      Crash: bool
      /// How late the kernel deletes an expired address, on A's clock.
      KernelSlack: int64 }

type private Agent =
    { Name: string
      Rate: float
      Offset: int64
      mutable Fence: Fence
      mutable Claims: Map<GroupId, Claim>
      mutable Vips: VipState list
      /// When the kernel deletes each address, on this node's clock.
      mutable KernelExpiry: Map<Ip, Instant>
      mutable Heartbeats: Map<string, Heartbeat>
      mutable Lease: GroupLease option
      mutable NextRenewal: Instant
      mutable WakeAt: Instant option
      mutable Dirty: bool
      mutable Running: bool
      mutable CutOff: bool }

let private Vip = ip "192.168.0.220"
let private GroupName = LeaseNames.group Vip

type Outcome =
    { Violation: string option
      /// Real ms from the cut until B announced (None: never within the horizon).
      Failover: int option
      /// The holder lost its VIP before the cut (its refreshes came too late).
      Gap: string option }

let run (sc: Scenario) : Outcome =
    let web = { service "default" "web" with LoadBalancerIP = Some "192.168.0.220" }
    let ready n = { NodeName = Some n; Conditions = { Ready = Some true; Serving = None; Terminating = None } }
    let slices = [ { Service = web.Key; Endpoints = [ ready "node-a"; ready "node-b" ] } ]
    let local (a: Agent) (tau: int) = a.Offset + int64 (Math.Floor(a.Rate * float tau))
    let realOf (a: Agent) (l: Instant) =
        let mutable t = max 0 (int (Math.Ceiling(float (l - a.Offset) / a.Rate)) - 2)
        while local a t < l do
            t <- t + 1
        t
    let agent name rate offset =
        let start = offset
        { Name = name; Rate = rate; Offset = offset
          Fence = { Epoch = 1L; LastRenewalStartedAt = Some start }
          Claims = (if name = "node-a" then Map [ GroupName, ({ Epoch = 1L; From = None }: Claim) ] else Map.empty)
          Vips = []; KernelExpiry = Map.empty
          Heartbeats = Map [ for n in [ "node-a"; "node-b" ] -> n, { Node = n; Holder = Some n; Version = "1"; ChangedSeenAt = start } ]
          Lease = Some { Name = GroupName; Holder = Some "node-a"; Version = "1"; ChangedSeenAt = start }
          NextRenewal = start + sc.Timing.RetryPeriod
          WakeAt = None; Dirty = true; Running = true; CutOff = false }
    let a = agent "node-a" sc.RateA sc.OffsetA
    let b = agent "node-b" sc.RateB sc.OffsetB
    let agents = [ a; b ]
    // The API server.
    let hbVersion = ref (Map [ "node-a", 1; "node-b", 1 ])
    let leaseVersion = ref 1
    let leaseHolder = ref (Some "node-a")
    let events = Collections.Generic.List<int * (unit -> unit)>()
    let at (t: int) (f: unit -> unit) = events.Add(t, f)
    let reaches (x: Agent) (t: int) = not (x.Name = "node-a" && t >= sc.CutAt)
    let watch (tau: int) (deliver: Agent -> int -> unit) =
        for x in agents do
            let t = tau + sc.WatchDelay
            if reaches x t then at t (fun () -> deliver x t; x.Dirty <- true)
    let heartbeatWritten (node: string) (tau: int) =
        hbVersion.Value <- hbVersion.Value.Add(node, hbVersion.Value[node] + 1)
        let v = string hbVersion.Value[node]
        watch tau (fun x t -> x.Heartbeats <- x.Heartbeats.Add(node, { Node = node; Holder = Some node; Version = v; ChangedSeenAt = local x t }))
    let leaseWritten (writer: Agent) (tau: int) =
        let l = { Name = GroupName; Holder = leaseHolder.Value; Version = string leaseVersion.Value; ChangedSeenAt = local writer tau }
        writer.Lease <- Some l
        watch tau (fun x t -> if x.Name <> writer.Name then x.Lease <- Some { l with ChangedSeenAt = local x t })
    let mutable violation = None
    let mutable failover = None
    let mutable hadIt = false
    let mutable gap = None
    let snapshot (x: Agent) (tau: int) : Snapshot =
        { Config = { configFor x.Name true with Timing = sc.Timing; DisableServiceUpdates = true }
          Now = local x tau
          Services = [ web ]
          Slices = slices
          Heartbeats = x.Heartbeats |> Map.toList |> List.map snd
          Leases = Option.toList x.Lease
          Self = { Node = x.Name; Fence = x.Fence; Claims = x.Claims; LinkUp = true; ShuttingDown = false }
          Vips = x.Vips
          EmittedWarnings = Set.empty }
    let execute (x: Agent) (tau: int) (action: Action) =
        let now = local x tau
        let canWrite = reaches x tau
        match action with
        | RemoveVip(v, _) ->
            x.Vips <- x.Vips |> List.filter (fun s -> s.Ip <> v)
            x.KernelExpiry <- x.KernelExpiry.Remove v
        | AddVip(v, prefix, lifetime) ->
            x.Vips <- x.Vips @ [ { Ip = v; Prefix = prefix; ExpiresAt = Some(now + lifetime); Announce = Some { AddedAt = now; Sent = 0; LastSentAt = now } } ]
            x.KernelExpiry <- x.KernelExpiry.Add(v, now + lifetime + sc.KernelSlack)
        | RefreshVip(v, _, lifetime) ->
            x.Vips <- x.Vips |> List.map (fun s -> if s.Ip = v then { s with ExpiresAt = Some(now + lifetime) } else s)
            x.KernelExpiry <- x.KernelExpiry.Add(v, now + lifetime + sc.KernelSlack)
        | Announce v ->
            x.Vips <-
                x.Vips
                |> List.map (fun s ->
                    if s.Ip <> v then s
                    else
                        match s.Announce with
                        | Some st -> { s with Announce = Some { st with Sent = st.Sent + 1; LastSentAt = now } }
                        | None -> { s with Announce = Some { AddedAt = now; Sent = 1; LastSentAt = now } })
        | ClaimLease(_, expected, previous, confirm) ->
            let confirmed =
                match confirm with
                | Some(node, version) -> hbVersion.Value.TryFind node |> Option.map string = (if version = "" then None else Some version)
                | None -> true
            if canWrite && confirmed && expected = Some(string leaseVersion.Value) then
                leaseVersion.Value <- leaseVersion.Value + 1
                leaseHolder.Value <- Some x.Name
                x.Claims <- x.Claims.Add(GroupName, { Epoch = x.Fence.Epoch; From = previous })
                leaseWritten x tau
                x.Dirty <- true
        | ReleaseLease(_, version) ->
            if canWrite && version = string leaseVersion.Value then
                leaseVersion.Value <- leaseVersion.Value + 1
                leaseHolder.Value <- None
                leaseWritten x tau
                x.Dirty <- true
        | DeleteLease _ | WriteStatus _ | Emit _ -> ()
    let horizon = sc.CutAt + 3 * int sc.Timing.LeaseDuration + 3000
    let mutable tau = 0
    while tau <= horizon && violation.IsNone do
        // Observations due now.
        let due = events |> Seq.filter (fun (t, _) -> t <= tau) |> Seq.sortBy fst |> List.ofSeq
        events.RemoveAll(fun (t, _) -> t <= tau) |> ignore
        for (_, f) in due do
            f ()
        if tau >= sc.CutAt then
            a.CutOff <- true
            if sc.Crash then a.Running <- false
        for x in agents do
            let now = local x tau
            // The kernel deletes expired addresses (also on a crashed node); the agent sees it.
            let expired = x.KernelExpiry |> Map.filter (fun _ e -> e <= now)
            if not expired.IsEmpty then
                x.Vips <- x.Vips |> List.filter (fun v -> not (expired.ContainsKey v.Ip))
                x.KernelExpiry <- x.KernelExpiry |> Map.filter (fun _ e -> e > now)
                x.Dirty <- true
            // Heartbeat renewal: request, server write, acknowledgement.
            if x.Running && now >= x.NextRenewal then
                let started = now
                let sent = tau
                x.NextRenewal <- x.NextRenewal + sc.Timing.RetryPeriod
                if reaches x (sent + sc.Latency) then
                    at (sent + sc.Latency) (fun () -> heartbeatWritten x.Name (sent + sc.Latency))
                    if reaches x (sent + 2 * sc.Latency) then
                        at (sent + 2 * sc.Latency) (fun () ->
                            x.Fence <- Fence.renewed sc.Timing x.Fence started (local x (sent + 2 * sc.Latency))
                            x.Dirty <- true)
        // Plan whoever must (A first: a node withdrawing at the same instant as another adds).
        for x in agents do
            let mutable passes = 0
            while x.Running && passes < 6 && (x.Dirty || x.WakeAt |> Option.exists (fun w -> local x tau >= w)) do
                x.Dirty <- false
                passes <- passes + 1
                let plan = Plan.compute (snapshot x tau)
                for action in plan.Actions do
                    execute x tau action
                // After acting, the shell plans again at once; only an empty plan's NextWakeAt is a promise.
                if not plan.Actions.IsEmpty then x.Dirty <- true
                x.WakeAt <- plan.NextWakeAt
            let onA = a.Vips |> List.exists (fun v -> v.Ip = Vip)
            let onB = b.Vips |> List.exists (fun v -> v.Ip = Vip)
            if onA && onB then
                violation <- Some(sprintf "at real %d ms both nodes have %s (A: fence %A at local %d; B: local %d)" tau (Ip.format Vip) a.Fence (local a tau) (local b tau))
            if onB && failover.IsNone && tau >= sc.CutAt then failover <- Some(tau - sc.CutAt)
            // Before the cut, A holds the group: once it has the VIP it keeps it (refreshed in time).
            if onA && not hadIt then hadIt <- true
            if hadIt && not onA && tau < sc.CutAt && gap.IsNone then gap <- Some(sprintf "A lost the VIP at real %d ms while connected" tau)
        // Next instant anything happens.
        let candidates =
            [ yield! events |> Seq.map fst
              for x in agents do
                  if x.Running then yield realOf x x.NextRenewal
                  if x.Running then match x.WakeAt with Some w -> yield realOf x w | None -> ()
                  for KeyValue(_, e) in x.KernelExpiry do yield realOf x e
              yield sc.CutAt ]
            |> List.filter (fun t -> t > tau)
        tau <- if candidates.IsEmpty then horizon + 1 else List.min candidates
    { Violation = violation; Failover = failover; Gap = gap }

let private genRate = Gen.frequency [ 1, Gen.elements [ 0.99; 1.0; 1.01 ]; 2, Gen.choose (990, 1010) |> Gen.map (fun k -> float k / 1000.0) ]

let private genScenario =
    gen {
        let! timing = genAcceptedTiming
        let! rateA = genRate
        let! rateB = genRate
        let! offsetA = Gen.choose (0, 1_000_000)
        let! offsetB = Gen.choose (0, 1_000_000)
        let! latency = Gen.choose (0, 40)
        let! watchDelay = Gen.choose (0, 150)
        let! cut = Gen.choose (200, 3000)
        let! crash = bool 1 1
        let! slack = Gen.choose (0, int Timing.KernelExpirySlack)
        return
            { Timing = timing; RateA = rateA; RateB = rateB; OffsetA = int64 offsetA; OffsetB = int64 offsetB
              Latency = latency; WatchDelay = watchDelay; CutAt = cut; Crash = crash; KernelSlack = int64 slack }
    }

[<Property>]
let ``a holder cut off from the API server or crashed is off the wire before another node announces`` () =
    forAll genScenario (fun sc ->
        let outcome = run sc
        let bound = (float sc.Timing.LeaseDuration + float sc.Timing.RetryPeriod) / 0.99 + float (3 * sc.Latency + sc.WatchDelay) + 10.0
        allOf
            [ holds (defaultArg outcome.Violation "") outcome.Violation.IsNone
              holds (defaultArg outcome.Gap "") outcome.Gap.IsNone
              holds (sprintf "failover %A ms, bound %.0f" outcome.Failover bound) (outcome.Failover |> Option.exists (fun f -> float f <= bound)) ]
        |> Prop.classify sc.Crash "crash"
        |> Prop.classify (not sc.Crash) "cut off"
        |> Prop.classify (sc.RateA > sc.RateB) "holder's clock faster"
        |> Prop.collect (match outcome.Failover with Some f -> sprintf "failover %.1f s" (Math.Round(float f / 500.0) / 2.0) | None -> "no failover"))
