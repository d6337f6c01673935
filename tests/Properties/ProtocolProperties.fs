/// Model-based properties of the ownership protocol: FsCheck generates fault schedules, ProtocolModel runs N
/// agents (the real domain, driven like the C# shell) against a simulated API server, and the properties
/// check the whole timeline.
///
/// A failure prints the shrunk Scenario and the end of its timeline. The simulation is deterministic, so
/// `ProtocolModel.run scenario true` (e.g. from `dotnet fsi` with the built Hybrid.Properties.dll referenced)
/// reproduces it with the full timeline in Outcome.Trace; FsCheck's Replay seed re-runs the whole search.
module Hybrid.Properties.ProtocolProperties

open System
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Xunit.Abstractions
open Hybrid.Properties.ProtocolModel

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Generators: every kind of fault is built directly (never by filtering), with durations chosen around the
// protocol's thresholds (shorter than R, between R and D, longer than D).
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private chooseL (lo: int64) (hi: int64) = Gen.choose (int lo, int hi) |> Gen.map int64

let private genEndpoints nodes =
    Gen.frequency
        [ 5, gen {
                 let! first = Gen.choose (0, nodes - 1)
                 let! more = Gen.subListOf [ 0 .. nodes - 1 ]
                 return List.distinct (first :: more) |> List.sort
             }
          1, Gen.constant [] ]

let private genService nodes ips id =
    gen {
        let! ip = Gen.choose (0, ips - 1)
        let! local = Gen.elements [ true; false ]
        let! port = Gen.frequency [ 6, Gen.constant (8000 + id); 1, Gen.elements [ 80; 443 ] ]
        let! endpoints = genEndpoints nodes
        let! allow = Gen.frequency [ 6, Gen.constant false; 1, Gen.constant true ]
        return
            { Id = id
              Ip = ip
              Local = local
              Port = port
              Endpoints = endpoints
              AllowWithoutEndpoints = allow }
    }

let private genTarget nodes =
    Gen.frequency [ 3, Gen.choose (0, 3) |> Gen.map HolderOf; 2, Gen.choose (0, nodes - 1) |> Gen.map NodeAt ]

let private genFault nodes (timing: TimingChoice) (nextId: int) =
    let d, r, p = timingMs timing
    let target = genTarget nodes
    let around =
        Gen.frequency
            [ 2, chooseL 20L (r - p) // fence still valid
              3, chooseL (r - p) (d + r) // fence lapses; others may or may not take over
              2, chooseL (d + r) (4L * d) ] // others take over
    Gen.frequency
        [ 5, Gen.map2 (fun t down -> CrashFor(t, down)) target around
          4, Gen.map2 (fun t down -> StopFor(t, down)) target around
          5, Gen.map2 (fun t ms -> PartitionFor(t, ms)) target around
          4, Gen.map2 (fun t ms -> LinkDownFor(t, ms)) target (chooseL 10L (2L * d))
          2, Gen.map3 (fun t extra ms -> SlowWatchFor(t, extra, ms)) target (chooseL 100L (2L * d)) (chooseL 200L (3L * d))
          3, Gen.map2 (fun t ms -> SlowApiFor(t, ms)) target (chooseL 200L (3L * d))
          3, Gen.map2 (fun t ms -> PartitionMidWrite(t, ms)) target around
          2, Gen.map2 (fun t down -> CrashMidWrite(t, down)) target around
          2, around |> Gen.map PartitionBeforeAddressWrite
          2, Gen.map2 (fun k ns -> MoveEndpoints(k, ns)) (Gen.choose (0, 5)) (genEndpoints nodes)
          4, Gen.map2 (fun k keep -> MoveEndpointsOffHolder(k, keep)) (Gen.choose (0, 5)) (Gen.choose (1, 3))
          // Creates and IP changes may use a fourth address, which no initial service has: a new group.
          6,
          Gen.frequency
              [ 3, genService nodes 4 nextId |> Gen.map CreateService
                1, Gen.choose (0, 5) |> Gen.map DeleteService
                3, Gen.map2 (fun k ip -> ChangeIp(k, ip)) (Gen.choose (0, 5)) (Gen.choose (0, 3))
                2, Gen.choose (0, 5) |> Gen.map FlipPolicy ] ]

/// Faults that only bite together, built as one episode of (offset from its start, fault).
let private genEpisode nodes (timing: TimingChoice) (nextId: int) : Gen<(int64 * Fault) list> =
    let d, r, p = timingMs timing
    let around =
        Gen.frequency [ 2, chooseL 20L (r - p); 3, chooseL (r - p) (d + r); 2, chooseL (d + r) (4L * d) ]
    Gen.frequency
        [ 14, genFault nodes timing nextId |> Gen.map (fun f -> [ 0L, f ])
          // A node's watch lags while the holder stops and comes straight back: the lagging node sees the old
          // release after the new process has reclaimed.
          1,
          gen {
              let! lagging = Gen.choose (0, nodes - 1)
              let! extra = chooseL 1000L (2L * d)
              let! stopAfter = chooseL 300L (d + r)
              let! holder = Gen.choose (0, 3)
              let! down = chooseL 100L 800L
              return [ 0L, SlowWatchFor(NodeAt lagging, extra, 4L * d); stopAfter, StopFor(HolderOf holder, down) ]
          }
          // A holder of several groups stops or crashes; its successors claim them one after another, and a
          // partition strikes a node right after a claim its plan follows with an address write.
          // Slow claims let the next group fall due while one is in flight.
          3,
          gen {
              let! holder = Gen.choose (0, 3)
              let! crash = Gen.elements [ true; false ]
              let! down = chooseL 100L (2L * d)
              let! cut = around
              let! slow = Gen.choose (0, nodes - 1)
              return
                  [ 0L, SlowApiFor(NodeAt slow, 2L * d + 2L * r)
                    0L, (if crash then CrashFor(HolderOf holder, down) else StopFor(HolderOf holder, down))
                    0L, PartitionBeforeAddressWrite cut ]
          }
          // A holder whose reconcile loop is stuck in a slow claim (another node died) has its link flap: its
          // heartbeat loop releases the heartbeat while its VIPs are still on the interface, and the link is
          // back before the claim returns.
          3,
          gen {
              let! dead = Gen.choose (0, nodes - 1)
              let! stall = chooseL 300L r
              let! downFor = chooseL (p + 100L) (max (p + 150L) (stall - 50L))
              return [ 0L, CrashFor(NodeAt dead, 4L * d); 0L, StallAndLinkDownMidWrite(stall, downFor) ]
          } ]

let genScenario: Gen<Scenario> =
    gen {
        let! nodes = Gen.choose (2, 4)
        // svc_election=false has one group: endpoint moves and service changes never move it.
        let! election = Gen.frequency [ 2, Gen.constant true; 1, Gen.constant false ]
        let! timing = Gen.frequency [ 5, Gen.constant Defaults; 3, Gen.constant KubeVip; 2, Gen.constant Tight ]
        let rho = maxDriftPpm
        let! drift =
            Gen.listOfLength 4 (Gen.frequency [ 2, Gen.constant -rho; 2, Gen.constant rho; 3, Gen.choose (-rho, rho) ])
        let! offsets = Gen.listOfLength 4 (Gen.choose (0, 1_000_000_000) |> Gen.map int64)
        let! requestTimeout = Gen.elements [ 1000L; 3000L ]
        // Several groups per node make holders of several groups, whose loss staggers claims.
        let! ips = Gen.frequency [ 1, Gen.constant 1; 2, Gen.constant 2; 3, Gen.constant 3 ]
        let! serviceCount = Gen.choose (ips, 4)
        let! services =
            [ for id in 0 .. serviceCount - 1 ->
                  genService nodes ips id |> Gen.map (fun spec -> if id < ips then { spec with Ip = id } else spec) ]
            |> Gen.sequenceToList
        let d, _, _ = timingMs timing
        let! chaosEnd = chooseL (2L * d + 1000L) (max 15000L (5L * d))
        let! faultCount = Gen.choose (1, 8)
        let! episodes =
            [ for k in 0 .. faultCount - 1 ->
                  Gen.map2 (fun at faults -> faults |> List.map (fun (offset, f) -> at + offset, f))
                      (chooseL 300L (chaosEnd - 200L)) (genEpisode nodes timing (10 + k)) ]
            |> Gen.sequenceToList
        let faults = List.concat episodes |> List.filter (fun (at, _) -> at < chaosEnd)
        let! seed = Gen.choose (0, Int32.MaxValue)
        return
            { Seed = seed
              Nodes = nodes
              Election = election
              Timing = timing
              Drift = drift
              Offsets = offsets
              RequestTimeout = requestTimeout
              Services = services
              Faults = faults |> List.sortBy fst
              ChaosEnd = chaosEnd }
    }

/// Smaller schedules first: fewer faults, fewer services, fewer nodes, no drift, a shorter chaos phase.
let shrinkScenario (s: Scenario) : seq<Scenario> =
    seq {
        for i in 0 .. s.Faults.Length - 1 do
            yield { s with Faults = List.removeAt i s.Faults }
        if s.Services.Length > 1 then
            for i in 0 .. s.Services.Length - 1 do
                yield { s with Services = List.removeAt i s.Services }
        if s.Nodes > 2 then yield { s with Nodes = s.Nodes - 1 }
        if s.Drift |> List.exists ((<>) 0) then yield { s with Drift = s.Drift |> List.map (fun _ -> 0) }
        let last = s.Faults |> List.fold (fun m (at, _) -> max m at) 0L
        if s.ChaosEnd - last > 1000L then yield { s with ChaosEnd = last + 1000L }
    }

type Schedules =
    static member Scenario() : Arbitrary<Scenario> = Arb.fromGenShrink (genScenario, shrinkScenario)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Coverage
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// What the coverage report counts, in the order it prints them.
let private categories =
    [ Seen.TakeoverAfterCrash
      Seen.TakeoverAfterPartition
      Seen.TakeoverAfterStop
      Seen.TakeoverAfterLinkDown
      Seen.TakeoverAfterEndpointMove
      Seen.ClaimAfterServiceChange
      Seen.ReclaimAfterRestart
      Seen.LostRace
      Seen.HeartbeatMoved
      Seen.FenceLapse
      Seen.MidWrite
      Seen.StopMidPlan ]

/// Prop.classify per category (FsCheck prints every combination that occurred) and Prop.collect of one value.
let private covered (o: Outcome) (collected: string) (prop: Property) : Property =
    categories
    |> List.fold (fun p name -> Prop.classify (o.Counts.ContainsKey name) name p) prop
    |> Prop.collect collected

/// Counts, per category, the schedules in which it happened, and prints the table once `total` schedules ran
/// (FsCheck's own table lists combinations, which hides how often each case occurs).
type private Tally(output: ITestOutputHelper, title: string, total: int) =
    let counts = Collections.Generic.Dictionary<string, int>()
    let extra = Collections.Generic.Dictionary<string, int>()
    let mutable runs = 0
    let mutable events = 0L
    let clock = Diagnostics.Stopwatch.StartNew()
    let add (d: Collections.Generic.Dictionary<string, int>) key =
        d[key] <- (match d.TryGetValue key with | true, c -> c + 1 | _ -> 1)

    member _.Add(s: Scenario, o: Outcome, extraKey: string) =
        lock counts (fun () ->
            runs <- runs + 1
            events <- events + int64 o.Events
            for name in categories do
                if o.Counts.ContainsKey name then add counts name
            add extra (sprintf "svc_election=%b, %A timing" s.Election s.Timing)
            add extra extraKey
            if runs = total then
                output.WriteLine(sprintf "%s: %d schedules, %d simulated events, %.1f s" title runs events clock.Elapsed.TotalSeconds)
                for name in categories do
                    let c = match counts.TryGetValue name with | true, c -> c | _ -> 0
                    output.WriteLine(sprintf "  %5.1f%%  %4d  %s" (100.0 * float c / float runs) c name)
                for kv in extra |> Seq.sortBy _.Key do
                    output.WriteLine(sprintf "  %5.1f%%  %4d  %s" (100.0 * float kv.Value / float runs) kv.Value kv.Key))

let private explain (s: Scenario) (headline: string) =
    // Re-run with the timeline recorded (same scenario, same outcome) to show what led there.
    let traced = run s true
    let tail = traced.Trace |> List.rev |> List.truncate 160 |> List.rev
    sprintf "%s\n--- last %d events of the timeline (real ms) ---\n%s" headline tail.Length (String.concat "\n" tail)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Properties (one class each, so that xunit runs them in parallel)
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<Literal>]
let SchedulesPerProperty = 500

/// SAFETY: at every instant of simulated real time, for every VIP, at most one node has it on an interface
/// that is up (added and neither removed nor deleted by the kernel; a crashed node's addresses count until the
/// kernel deletes them; a node's addresses do not count while its link is down). Also checked: the invariant
/// this rests on, that every address write happens within the write window of the fence its plan used.
type ProtocolSafety(output: ITestOutputHelper) =
    let tally = Tally(output, "safety", SchedulesPerProperty)

    [<Property(MaxTest = SchedulesPerProperty, Arbitrary = [| typeof<Schedules> |])>]
    member _.``no two nodes may answer for one VIP at the same instant``(s: Scenario) =
        let o = run s false
        tally.Add(s, o, sprintf "%d nodes" s.Nodes)
        let verdict =
            match o.Safety, o.FenceBreach with
            | None, None -> Prop.ofTestable true
            | Some violation, _ -> Prop.label (explain s violation) false
            | None, Some breach -> Prop.label (explain s ("fence invariant broken: " + breach)) false
        covered o (sprintf "%A timing, %d nodes" s.Timing s.Nodes) verdict

/// LIVENESS: once the chaos ends (all processes running, partitions healed, links up, no more faults), within
/// ProtocolModel.livenessBound every group with an eligible node has exactly one holder, the node its Lease
/// names, which has every VIP of the group up; and this stays so until the end of the run.
type ProtocolLiveness(output: ITestOutputHelper) =
    let tally = Tally(output, "liveness", SchedulesPerProperty)

    [<Property(MaxTest = SchedulesPerProperty, Arbitrary = [| typeof<Schedules> |])>]
    member _.``every group with a live eligible node eventually gets a holder``(s: Scenario) =
        let o = run s false
        let converged =
            match o.ConvergedAfter with
            | Some 0L -> "converged at the end of chaos"
            | Some ms -> sprintf "converged %d-%d s after the end of chaos" ((ms - 1L) / 1000L) ((ms - 1L) / 1000L + 1L)
            | None -> "never converged"
        tally.Add(s, o, converged)
        let verdict =
            match o.Liveness with
            | None -> Prop.ofTestable true
            | Some problem -> Prop.label (explain s problem) false
        covered o converged verdict
