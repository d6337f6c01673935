/// Model-based properties of the ownership protocol (docs/PROTOCOL.md): FsCheck generates fault schedules,
/// Simulation runs N agents (the real Protocol.step, driven as the shell drives it) against a simulated API
/// server, LAN and kernels, and the properties check the whole timeline.
///
/// A failure prints the shrunk Scenario and the end of its timeline. The simulation is deterministic:
/// `Simulation.run scenario true` reproduces it with the full timeline in Outcome.Trace.
module Hybrid.Properties.ProtocolProperties

open System
open System.Collections.Concurrent
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Simulation

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Generators: every kind of fault is built directly, with durations chosen around the protocol's
// thresholds (shorter than R_L, between R_L and D_L, longer than D_L, longer than D_A).
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private timing = (config { Nodes = 1; Election = true; Services = []; Drifts = [ 0 ]; Faults = []; ChaosEnd = 0L; Horizon = 0L; Seed = 0UL } "node-0").Timing
let private chooseL (lo: int64) (hi: int64) = Gen.choose (int lo, int hi) |> Gen.map int64

/// Durations around the thresholds of the LAN and API fences.
let private around =
    Gen.frequency
        [ 2, chooseL 20L timing.LanRenewDeadline
          3, chooseL timing.LanRenewDeadline (2L * timing.LanLeaseDuration)
          3, chooseL (2L * timing.LanLeaseDuration) (timing.ApiLeaseDuration + 1000L)
          1, chooseL (timing.ApiLeaseDuration + 1000L) 10_000L ]

/// When the chaos starts: after the cluster formed.
let ChaosStart = 3000L
let ChaosLength = 8000L
/// After the last fault ends, every group with a live eligible node is answered within this bound:
/// a restart and a relist, a deposition (D_L plus its writes), an API fence waited out (D_A), a claim pause
/// after an unacknowledged claim (10·D_L), staggered successors.
let LivenessBound = timing.ApiLeaseDuration + 12L * timing.LanLeaseDuration + 3000L

let private genEndpoints nodes =
    Gen.frequency
        [ 6, gen {
                 let! first = Gen.choose (0, nodes - 1)
                 let! more = Gen.subListOf [ 0 .. nodes - 1 ]
                 return List.distinct (first :: more) |> List.sort
             }
          1, Gen.constant [] ]

let private genService nodes ips id =
    gen {
        let! ip = Gen.choose (0, ips - 1)
        let! local = Gen.frequency [ 3, Gen.constant false; 1, Gen.constant true ]
        let! endpoints = genEndpoints nodes
        return { Id = id; Ip = ip; Local = local; Port = 8000 + id; Endpoints = endpoints }
    }

let private genScope nodes = Gen.frequency [ 1, Gen.constant AllNodes; 2, Gen.choose (0, nodes - 1) |> Gen.map OneNode ]

let private genFault nodes nextService : Gen<Fault list> =
    let node = Gen.choose (0, nodes - 1)
    let single f = Gen.map List.singleton f
    Gen.frequency
        [ 4, single (Gen.map2 (fun s d -> ApiOutage(s, d)) (genScope nodes) (chooseL 200L 30_000L))
          3, single (Gen.map3 (fun s d l -> ApiLatency(s, d, l)) (genScope nodes) around (chooseL 100L 10_000L))
          2, single (Gen.map2 (fun n d -> WatchStall(n, d)) node around)
          // One-way, symmetric, or isolating one node from every other.
          3, Gen.map3 (fun a b d -> if a = b then [] else [ LanLoss(a, b, d) ]) node node around
          2, Gen.map3 (fun a b d -> if a = b then [] else [ LanLoss(a, b, d); LanLoss(b, a, d) ]) node node around
          2, Gen.map2 (fun a d -> [ for b in 0 .. nodes - 1 do if b <> a then LanLoss(a, b, d); LanLoss(b, a, d) ]) node around
          2, Gen.map2 (fun a d -> [ for b in 0 .. nodes - 1 do if b <> a then LanLoss(b, a, d) ]) node around
          3, single (Gen.map2 (fun n d -> Freeze(n, d)) node (chooseL 0L 10_000L))
          4, single (Gen.map2 (fun n d -> Crash(n, d)) node around)
          3, single (Gen.map2 (fun n d -> GracefulStop(n, d)) node around)
          2, single (Gen.map2 (fun n d -> LinkDown(n, d)) node around)
          2, single (Gen.map3 (fun n d m -> SlowKernel(n, d, m)) node around (chooseL 0L 200L))
          1, single (Gen.map DeleteRegistration node)
          1, single (Gen.choose (0, 3) |> Gen.map DeleteGroupLease)
          2, single (Gen.map2 (fun s ns -> MoveEndpoints(s, ns)) (Gen.choose (0, 5)) (genEndpoints nodes))
          2, single (genService nodes 4 nextService |> Gen.map CreateService)
          1, single (Gen.choose (0, 5) |> Gen.map DeleteService) ]

/// A node deposed and re-registering while its peers' watches stall: it goes silent on the LAN (so it is
/// deposed), its peers' watches stall, it comes back.
let private genDepositionEpisode nodes : Gen<(int64 * Fault) list> =
    gen {
        let! victim = Gen.choose (0, nodes - 1)
        let! silence = chooseL (timing.LanLeaseDuration + 200L) 4000L
        let! stall = chooseL 200L 4000L
        let peers = [ 0 .. nodes - 1 ] |> List.filter ((<>) victim)
        return
            [ for p in peers do
                  0L, LanLoss(victim, p, silence)
                  0L, LanLoss(p, victim, silence)
                  silence / 2L, WatchStall(p, stall) ]
    }

let private genScenario : Gen<Scenario> =
    gen {
        let! nodes = Gen.choose (1, 5)
        let! election = Gen.frequency [ 3, Gen.constant true; 1, Gen.constant false ]
        let! count = Gen.choose (1, 6)
        let! services = [ for id in 0 .. count - 1 -> genService nodes 3 id ] |> Gen.sequenceToList
        let! drifts = Gen.listOfLength nodes (Gen.choose (-1000, 1000))
        let! faultCount = Gen.choose (1, 6)
        let! faults =
            [ for i in 0 .. faultCount - 1 ->
                  gen {
                      let! at = chooseL ChaosStart (ChaosStart + ChaosLength)
                      let! fs = genFault nodes (100 + i)
                      return fs |> List.map (fun f -> { At = at; Fault = f })
                  } ]
            |> Gen.sequenceToList
        let! episode =
            Gen.frequency
                [ 4, Gen.constant []
                  1,
                  gen {
                      let! at = chooseL ChaosStart (ChaosStart + ChaosLength)
                      let! e = genDepositionEpisode nodes
                      return e |> List.map (fun (offset, f) -> { At = at + offset; Fault = f })
                  } ]
        let! seed = Gen.choose (0, Int32.MaxValue)
        let all = List.concat faults @ episode
        let ends =
            all
            |> List.map (fun f ->
                f.At
                + match f.Fault with
                  | ApiOutage(_, d) | ApiLatency(_, d, _) | WatchStall(_, d) | LanLoss(_, _, d) | Freeze(_, d)
                  | Crash(_, d) | GracefulStop(_, d) | LinkDown(_, d) | SlowKernel(_, d, _) -> d
                  | _ -> 0L)
        let chaosEnd = List.fold max (ChaosStart + ChaosLength) ends
        return
            { Nodes = nodes
              Election = election
              Services = services
              Drifts = drifts
              Faults = all |> List.sortBy _.At
              ChaosEnd = chaosEnd
              Horizon = chaosEnd + LivenessBound
              Seed = uint64 seed }
    }

let private faultName (f: Fault) =
    match f with
    | ApiOutage(AllNodes, _) -> "global API outage"
    | ApiOutage _ -> "node API outage"
    | ApiLatency _ -> "API latency"
    | WatchStall _ -> "watch stall"
    | LanLoss _ -> "LAN loss"
    | Freeze _ -> "freeze"
    | Crash _ -> "crash"
    | GracefulStop _ -> "graceful stop"
    | LinkDown _ -> "link down"
    | SlowKernel _ -> "slow kernel"
    | DeleteRegistration _ -> "registration deleted"
    | DeleteGroupLease _ -> "group Lease deleted"
    | MoveEndpoints _ -> "endpoints moved"
    | CreateService _ -> "service created"
    | DeleteService _ -> "service deleted"

/// Reports how often each fault occurred among the generated schedules.
let private classified (scenario: Scenario) (property: Property) =
    scenario.Faults
    |> List.map (fun f -> faultName f.Fault)
    |> List.distinct
    |> List.fold (fun p name -> Prop.classify true name p) property

/// Each chaos schedule is run once; the safety and liveness properties read the same outcome.
let private outcomes = ConcurrentDictionary<Scenario, Lazy<Outcome>>()
let private outcomeOf (scenario: Scenario) = outcomes.GetOrAdd(scenario, fun s -> lazy (run s false)).Value

let private explain (scenario: Scenario) (what: string) =
    let traced = run scenario true
    sprintf "%s\nscenario: %A\ntimeline (last 150 lines, fence refreshes left out):\n%s" what scenario (traced.Trace |> List.filter (fun l -> not (l.Contains "kernel fence until")) |> List.rev |> List.truncate 150 |> List.rev |> String.concat "\n")

[<Property(MaxTest = 500)>]
let ``never two kernels answer for one VIP at one instant`` () =
    Prop.forAll (Arb.fromGen genScenario) (fun scenario ->
        let outcome = outcomeOf scenario
        let ok = outcome.Violations.IsEmpty
        classified scenario (Prop.label (if ok then "" else explain scenario (sprintf "violations: %A" outcome.Violations)) ok))

[<Property(MaxTest = 500)>]
let ``after the faults end every group with a live eligible node is answered by exactly one node within the bound`` () =
    Prop.forAll (Arb.fromGen genScenario) (fun scenario ->
        let outcome = outcomeOf scenario
        let wrong =
            outcome.ExpectedAtEnd
            |> List.filter (fun ip -> (outcome.AnsweringAtEnd.TryFind ip |> Option.defaultValue []).Length <> 1)
        let ok = wrong.IsEmpty
        classified scenario (Prop.label (if ok then "" else explain scenario (sprintf "not answered by exactly one node at the end: %A (answering %A)" wrong outcome.AnsweringAtEnd)) ok))

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Availability: an API outage of any length, with the LAN healthy and every member up, withdraws nothing
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private genOutageScenario : Gen<Scenario> =
    gen {
        let! nodes = Gen.choose (1, 5)
        let! election = Gen.frequency [ 3, Gen.constant true; 1, Gen.constant false ]
        let! count = Gen.choose (1, 6)
        let! services = [ for id in 0 .. count - 1 -> genService nodes 3 id ] |> Gen.sequenceToList
        let services = services |> List.map (fun s -> if s.Endpoints.IsEmpty then { s with Endpoints = [ 0 ] } else s)
        let! drifts = Gen.listOfLength nodes (Gen.choose (-1000, 1000))
        let! outage = Gen.frequency [ 3, chooseL 200L 5000L; 2, chooseL 5000L 30_000L; 1, chooseL 30_000L 120_000L ]
        let! latency = Gen.frequency [ 2, Gen.constant []; 1, chooseL 100L 10_000L |> Gen.map (fun l -> [ ApiLatency(AllNodes, 2000L, l) ]) ]
        let! seed = Gen.choose (0, Int32.MaxValue)
        let start = 4000L
        let faults =
            (latency |> List.map (fun f -> { At = start - 2000L; Fault = f })) @ [ { At = start; Fault = ApiOutage(AllNodes, outage) } ]
        return
            { Nodes = nodes
              Election = election
              Services = services
              Drifts = drifts
              Faults = faults
              ChaosEnd = start + outage
              Horizon = start + outage + 1000L
              Seed = uint64 seed }
    }

[<Property(MaxTest = 500)>]
let ``a global API outage of any length with the LAN healthy and all members up withdraws no VIP`` () =
    Prop.forAll (Arb.fromGen genOutageScenario) (fun scenario ->
        let outcome = run scenario false
        let outage = scenario.Faults |> List.pick (fun f -> match f.Fault with ApiOutage(_, d) -> Some(f.At, f.At + d) | _ -> None)
        let gapsInOutage =
            outcome.Gaps
            |> List.filter (fun g -> g.From >= fst outage && g.From < snd outage)
        let ok = gapsInOutage.IsEmpty && outcome.Violations.IsEmpty
        Prop.label (if ok then "" else explain scenario (sprintf "gaps during the outage %A: %A" outage gapsInOutage)) ok
        |> Prop.classify (snd outage - fst outage > 30_000L) "outage over 30 s"
        |> Prop.classify (scenario.Nodes = 1) "one node")

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// A node whose own LAN fails one way deposes nobody: it cannot tell its fault from theirs
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Three to five nodes; some time after the cluster formed, one of them stops hearing every other member
/// (deaf) or stops being heard by every other member (mute), all at the same instant.
/// What the focused scenarios below share: 3–5 nodes (mostly svc_election), 1–4 Services, clock drifts, one
/// victim, an instant soon after the cluster formed, and a seed.
let private genFocused =
    gen {
        let! nodes = Gen.choose (3, 5)
        let! election = Gen.frequency [ 3, Gen.constant true; 1, Gen.constant false ]
        let! count = Gen.choose (1, 4)
        let! services = [ for id in 0 .. count - 1 -> genService nodes 3 id ] |> Gen.sequenceToList
        let! drifts = Gen.listOfLength nodes (Gen.choose (-1000, 1000))
        let! victim = Gen.choose (0, nodes - 1)
        let! at = chooseL ChaosStart (ChaosStart + 1000L)
        let! seed = Gen.choose (0, Int32.MaxValue)
        return nodes, election, services, drifts, victim, at, seed
    }

let private genOneSidedScenario : Gen<Scenario * int * bool> =
    gen {
        let! nodes, election, services, drifts, victim, at, seed = genFocused
        let! deaf = Gen.elements [ true; false ]
        let! length = chooseL (2L * timing.LanLeaseDuration) 8000L
        let faults =
            [ for other in 0 .. nodes - 1 do
                  if other <> victim then
                      { At = at; Fault = (if deaf then LanLoss(other, victim, length) else LanLoss(victim, other, length)) } ]
        let scenario =
            { Nodes = nodes
              Election = election
              Services = services
              Drifts = drifts
              Faults = faults
              ChaosEnd = at + length
              Horizon = at + length
              Seed = uint64 seed }
        return scenario, victim, deaf
    }

[<Property(MaxTest = 300)>]
let ``a node that stops hearing every member, or being heard by any, at one instant deposes none of them`` () =
    Prop.forAll (Arb.fromGen genOneSidedScenario) (fun (scenario, victim, deaf) ->
        let outcome = run scenario false
        let start = (List.head scenario.Faults).At
        let byVictim = outcome.Depositions |> List.filter (fun d -> d.By = victim && d.At >= start)
        let ok = byVictim.IsEmpty && outcome.Violations.IsEmpty
        Prop.label (if ok then "" else explain scenario (sprintf "node-%d (%s) deposed %A; violations %A" victim (if deaf then "deaf" else "mute") byVictim outcome.Violations)) ok
        |> Prop.classify deaf "deaf"
        |> Prop.classify (not deaf) "mute"
        |> Prop.classify (scenario.Nodes = 3) "three nodes")

/// Three to five nodes, no fault but one graceful stop some time after the cluster formed.
let private genGracefulStopScenario : Gen<Scenario * int> =
    gen {
        let! nodes, election, services, drifts, victim, at, seed = genFocused
        let scenario =
            { Nodes = nodes
              Election = election
              Services = services
              Drifts = drifts
              Faults = [ { At = at; Fault = GracefulStop(victim, 60_000L) } ]
              ChaosEnd = at + 1L
              Horizon = at + 3L * timing.LanLeaseDuration
              Seed = uint64 seed }
        return scenario, victim
    }

[<Property(MaxTest = 200)>]
let ``when a holder stops, only the first successor of each of its groups claims it, at once`` () =
    Prop.forAll (Arb.fromGen genGracefulStopScenario) (fun (scenario, victim) ->
        let outcome = run scenario false
        let stop = (List.head scenario.Faults).At
        // The second successor's turn comes D_L after it learnt the holder left: nobody else claims before.
        let early = outcome.Claims |> List.filter (fun c -> c.At >= stop && c.At < stop + timing.LanLeaseDuration)
        let twice = early |> List.countBy _.Lease |> List.filter (fun (_, n) -> n > 1)
        let late = early |> List.filter (fun c -> c.At - stop > timing.LanLeaseDuration / 2L)
        let ok = twice.IsEmpty && late.IsEmpty && (early |> List.forall _.Won) && outcome.Violations.IsEmpty
        Prop.label
            (if ok then ""
             else explain scenario (sprintf "node-%d stopped at %d; claims within D_L %A; claimed twice %A; violations %A" victim stop early twice outcome.Violations))
            ok
        |> Prop.classify early.IsEmpty "the stopped node held nothing"
        |> Prop.classify (early.Length > 1) "several groups moved"
        |> Prop.classify (not scenario.Election) "svc_election=false")
