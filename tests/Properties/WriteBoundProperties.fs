/// The bound on a node's group Lease writes in flight (Step.fs groupWrites, ProtocolConstants.GroupWritesInFlight),
/// checked from outside: the commands a lone node issues against the answers it has been given.
module Hybrid.Properties.WriteBoundProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

/// A lone node with svc_election and `count` served Services, each on an address (so a group) of its own, and the
/// order in which the API server answers: each pick chooses one of the answers not yet delivered.
let private genCase =
    gen {
        let! count = Gen.oneof [ Gen.choose (1, 20); Gen.choose (65, 80) ]
        let! picks = Gen.arrayOfLength 64 (Gen.choose (0, 1_000_000))
        return count, picks
    }

let private servicesOf count =
    List.init count (fun i ->
        { service "default" (sprintf "svc-%d" i) with
            LoadBalancerIP = Some(sprintf "192.168.0.%d" (1 + i))
            Ports = [ tcp 80 ]
            CreatedAt = int64 i })

let private groupWrite command =
    match command with
    | WriteLease(id, w) when not (w.Name.StartsWith LeaseNames.RegistrationPrefix) -> Some id
    | DeleteLease(id, name, _) when not (name.StartsWith LeaseNames.RegistrationPrefix) -> Some id
    | _ -> None

type private Run = { World: SingleNode.World; InFlight: Set<WriteId>; Peak: int; Answers: Input list; Turn: int }

/// Steps through the inputs; answers to commands wait in `Answers` and are delivered in the order `picks` says,
/// so writes stay in flight across many decisions.
let rec private run (picks: int array) (inputs: Input list) (r: Run) : Run =
    match inputs, r.Answers with
    | [], [] -> r
    | [], answers ->
        let k = picks[r.Turn % picks.Length] % answers.Length
        let answer = answers[k]
        run picks [ answer ] { r with Answers = List.removeAt k answers; Turn = r.Turn + 1 }
    | input :: rest, _ ->
        let inFlight =
            match input with
            | WriteCompleted(id, _, _, _) -> r.InFlight.Remove id
            | _ -> r.InFlight
        let node, commands = Protocol.step r.World.Node input
        let w = { r.World with Node = node }
        let issued = commands |> List.choose groupWrite
        let inFlight = Set.union inFlight (Set.ofList issued)
        let w, answers = commands |> List.fold (fun (w, acc) c -> let w, a = SingleNode.execute w c in w, acc @ a) (w, [])
        run picks rest { r with World = w; InFlight = inFlight; Peak = max r.Peak inFlight.Count; Answers = r.Answers @ answers }

[<Property(MaxTest = 12)>]
let ``a node keeps at most GroupWritesInFlight group Lease writes in flight, and still claims every group`` () =
    forAll genCase (fun (count, picks) ->
        let services = servicesOf count
        let world, inputs = SingleNode.beforeStart (configFor "node-a" true) Set.empty services (services |> List.map (readyOn [ "node-a" ]))
        let rec until (deadline: Instant) (r: Run) =
            if r.World.Now >= deadline then r
            else
                let next = r.World.Now + 100L
                until deadline (run picks [ Tick next ] { r with World = { r.World with Now = next } })
        let r = run picks inputs { World = world; InFlight = Set.empty; Peak = 0; Answers = []; Turn = 0 } |> until 3000L
        let answering = SingleNode.answering r.World
        allOf
            [ holds (sprintf "peak %d group writes in flight" r.Peak) (r.Peak <= ProtocolConstants.GroupWritesInFlight)
              holds (sprintf "answers %d of %d VIPs" answering.Count count) (answering.Count = count)
              holds (sprintf "%d group Leases" (r.World.Leases |> Map.filter (fun n _ -> n.StartsWith LeaseNames.VipPrefix) |> Map.count))
                  (r.World.Leases |> Map.filter (fun n _ -> n.StartsWith LeaseNames.VipPrefix) |> Map.count = count) ]
        |> Prop.classify (count > ProtocolConstants.GroupWritesInFlight) "more groups than writes in flight"
        |> Prop.classify (r.Peak = ProtocolConstants.GroupWritesInFlight) "the bound reached")
