/// The numbers the metrics endpoint reports (Gauges.fs, HoldChanges.fs), checked against what the single-node
/// world's own kernel model answers for, not against the node's state.
module Hybrid.Properties.GaugeProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private addresses = [ "192.168.0.220"; "192.168.0.221"; "192.168.0.222" ]

/// 1–4 Services, each asking for one of three addresses (so some share one) on a port of its own, each with a
/// serving endpoint on the node or none; one leader for all, or one holder per address.
let private genCase =
    gen {
        let! election = Gen.elements [ false; true ]
        let! count = Gen.choose (1, 4)
        let! picks = Gen.listOfLength count (Gen.zip (Gen.elements addresses) (Gen.elements [ true; false ]))
        let services =
            picks
            |> List.mapi (fun i (address, served) ->
                { service "default" (sprintf "svc-%d" i) with LoadBalancerIP = Some address; Ports = [ tcp (80 + i) ]; CreatedAt = int64 i },
                served)
        return election, services
    }

let private servedOn (node: string) (s: Service) =
    { Service = s.Key; Endpoints = [ { NodeName = Some node; Conditions = { Ready = Some true; Serving = Some true; Terminating = Some false } } ] }

let private run (election: bool) (services: (Service * bool) list) =
    let all = List.map fst services
    let slices = services |> List.filter snd |> List.map (fst >> servedOn "node-a")
    SingleNode.start (configFor "node-a" election) all slices

[<Property>]
let ``the gauges count the VIPs the kernel answers for, the Services on them and the groups held`` () =
    forAll genCase (fun (election, services) ->
        let w = run election services |> SingleNode.runUntil 3000L
        let g = Gauges.ofState w.Node
        let answering = SingleNode.answering w
        let active = services |> List.filter (fun (s, _) -> answering.Contains(ip s.LoadBalancerIP.Value)) |> List.length
        allOf
            [ holds (sprintf "VIPs held %d, answered %A" g.VipsHeld answering) (g.VipsHeld = answering.Count)
              holds (sprintf "active Services %d, expected %d" g.ActiveServices active) (g.ActiveServices = active)
              holds "leads when it holds a group" (g.IsLeader = (g.GroupsHeld > 0))
              holds "a node answering for a VIP leads" (answering.IsEmpty || g.IsLeader)
              (if election then holds (sprintf "one group per answered address: %d" g.GroupsHeld) (g.GroupsHeld = answering.Count)
               else holds (sprintf "one leader group: %d" g.GroupsHeld) (g.GroupsHeld <= 1))
              // Alone, nobody can depose it: the LAN fence is unbounded and the kernel deadline is renewed.
              holds (sprintf "fence %A" g.Fence) (g.Fence = FenceInForce.Lan)
              holds (sprintf "margin %d, kernel until %A at %d" g.FenceMargin w.FenceUntil w.Now)
                  (Some(w.Now + g.FenceMargin) = w.FenceUntil && g.FenceMargin > 0L)
              holds "every drop reason reported, none counted" (g.Dropped |> List.map fst = Gauges.DropReasonNames && g.Dropped |> List.forall (fun (_, n) -> n = 0L)) ]
        |> Prop.classify election "svc_election"
        |> Prop.classify (answering.IsEmpty) "nothing answered"
        |> Prop.classify (answering.Count > 1) "several VIPs")

/// Runs in steps of 10 ms, collecting what changed between consecutive states.
let rec private collect (until: Instant) (w: SingleNode.World) (changes: HoldChange list) =
    if w.Now >= until then w, changes
    else
        let next = SingleNode.runUntil (w.Now + 10L) w
        collect until next (changes @ HoldChanges.between w.Node next.Node)

[<Property>]
let ``each VIP a lone node answers for is counted as begun once and as handed over once when it goes, never as a takeover`` () =
    forAll genCase (fun (election, services) ->
        // Inputs are answered at once in this world: a start or a deletion may change the kernel before any time passes.
        let started = run election services
        let w, changes = collect 3000L started (HoldChanges.between (Protocol.create (configFor "node-a" election)) started.Node)
        let answered = SingleNode.answering w
        let deleted = SingleNode.deliver [ for s, _ in services -> ServiceDeleted(s.Key, w.Now) ] w
        let _, later = collect 6000L deleted (HoldChanges.between w.Node deleted.Node)
        let began = changes |> List.choose (function Began ip -> Some ip | _ -> None)
        let handed = later |> List.choose (function HandedOver ip -> Some ip | _ -> None)
        let tookOver = changes @ later |> List.filter (function TookOver _ -> true | _ -> false)
        allOf
            [ holds (sprintf "began %A, answered %A" began answered) (List.sort began = Set.toList answered)
              holds (sprintf "handed over %A, answered %A" handed answered) (List.sort handed = Set.toList answered)
              holds "nothing else changed before the deletion" (changes.Length = began.Length)
              holds (sprintf "takeovers %A" tookOver) tookOver.IsEmpty
              holds "nothing answered after the deletion" (SingleNode.answering (SingleNode.runUntil 6000L deleted)).IsEmpty ]
        |> Prop.classify election "svc_election"
        |> Prop.classify answered.IsEmpty "nothing answered")

/// Up to 12 addresses of both families, each held before, after, both or neither.
let private genHeldFlags =
    gen {
        let! count = Gen.choose (0, 12)
        let! ips = Gen.listOfLength count (Gen.oneof [ Gen.choose (0, 40) |> Gen.map (fun i -> V4(0xC6120000u + uint32 i)); Gen.choose (0, 40) |> Gen.map (fun i -> V6(0xfd00UL <<< 48, uint64 i)) ])
        let ips = List.distinct ips
        let! flags = Gen.listOfLength ips.Length (Gen.zip (Gen.elements [ false; true ]) (Gen.elements [ false; true ]))
        return List.zip ips flags
    }

[<Property>]
let ``the hold changes between two states are the VIPs whose held flag changed, each once, begun ones first, each part in address order`` () =
    Prop.forAll (Arb.fromGen genHeldFlags) (fun flags ->
        let vip held = { Prefix = 32; Link = VipLink.Parent; Admitted = true; Held = held; Pending = None; AddressWrittenAt = None; Announce = None; TakenFrom = None }
        let state (pick: bool * bool -> bool) =
            let s = Protocol.create (configFor "node-a" false)
            { s with Kernel = { s.Kernel with Vips = flags |> List.map (fun (ip, f) -> ip, vip (pick f)) |> Map.ofList } }
        let changes = HoldChanges.between (state fst) (state snd)
        let began = changes |> List.choose (function Began ip -> Some ip | _ -> None)
        let ended = changes |> List.choose (function HandedOver ip -> Some ip | _ -> None)
        let expectBegan = flags |> List.filter (fun (_, (b, a)) -> not b && a) |> List.map fst |> List.sort
        let expectEnded = flags |> List.filter (fun (_, (b, a)) -> b && not a) |> List.map fst |> List.sort
        (began = expectBegan && ended = expectEnded && changes = (List.map Began began @ List.map HandedOver ended))
        |> Prop.classify (not expectBegan.IsEmpty && not expectEnded.IsEmpty) "VIPs both begun and handed over"
        |> Prop.classify (expectBegan.IsEmpty && expectEnded.IsEmpty) "no change")
