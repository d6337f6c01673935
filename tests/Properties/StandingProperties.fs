/// How a node stands for an observer's ownership decisions (docs/PROTOCOL.md §4): live while its registration is
/// Joined and in force, it was heard within D_L and its latest frame does not say it stands aside; what the node
/// observed of the registrations and the LAN is all that decides it.
module Hybrid.Properties.StandingProperties

open System
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private t = DefaultTiming
let private Fingerprint = Config.fingerprint DefaultConfig
let private FingerprintValue = UInt64.Parse(Fingerprint, Globalization.NumberStyles.AllowHexSpecifier)

/// A fingerprint that loses every tie against this node's.
let private OtherFingerprint = "ffffffffffffffff"

type private Registered =
    | NotRegistered
    | Deleted
    | Registered of RegistrationState * inForce: bool

/// One other node: its registration, and when it was last heard (ms before now) saying Aside or not.
type private Other = { Node: string; Registered: Registered; Heard: (Instant * bool) option }

let private genOther (node: string) =
    gen {
        let! registered =
            Gen.frequency
                [ 1, Gen.constant NotRegistered
                  1, Gen.constant Deleted
                  1, Gen.constant (Registered(Left, true))
                  1, Gen.constant (Registered(Deposed "node-z", true))
                  1, Gen.constant (Registered(Joined, false))
                  8, Gen.constant (Registered(Joined, true)) ]
        let! heard =
            Gen.frequency
                [ 1, Gen.constant None
                  5, Gen.map2 (fun ago aside -> Some(ago, aside)) (Gen.frequency [ 3, chooseL 0L 449L; 1, chooseL 450L 460L; 1, chooseL 461L 1500L ]) (bool 1 2) ]
        return { Node = node; Registered = registered; Heard = heard }
    }

let private registrationOf (node: string) (state: RegistrationState) (fingerprint: string) : Registration =
    { Node = node
      Incarnation = Incarnation 7UL
      Term = 1L
      State = state
      Fence = LanFence
      Fingerprint = fingerprint
      Members = Map.empty
      Deposing = None
      Interface = InterfaceFacts.none }

let private leaseOf (r: Registration) : LeaseRecord =
    let w = Registration.write (LeaseNames.registration r.Node) None 1 r
    { Name = w.Name
      Version = "3"
      Holder = w.Holder
      Transitions = 0
      Labels = w.Labels
      Annotations = w.Annotations |> Map.toSeq |> Seq.choose (fun (k, v) -> v |> Option.map (fun v -> k, v)) |> Map.ofSeq }

/// Others where this node's fingerprint stays in force: node-b is always a Joined member in force, and at
/// most one other runs other settings (two would outnumber node-b, and their fingerprint would be in force).
let private genCase =
    gen {
        let! b = genOther "node-b"
        let b = { b with Registered = Registered(Joined, true) }
        let! others = [ "node-c"; "node-d"; "node-e" ] |> Gen.collectToList genOther
        let others =
            others
            |> List.mapFold (fun seen o ->
                match o.Registered with
                | Registered(Joined, false) when seen -> { o with Registered = Registered(Joined, true) }, seen
                | Registered(Joined, false) -> o, true
                | _ -> o, seen) false
            |> fst
        return b :: others
    }

[<Property(MaxTest = 60)>]
let ``a node is live when Joined in force and heard within D_L, aside when its latest frame says so, silent when not heard, gone when it left or was deposed`` () =
    forAll genCase (fun others ->
        let now = 5_000L
        let registrations =
            others
            |> List.choose (fun o ->
                match o.Registered with
                | NotRegistered -> None
                | Deleted -> Some(registrationOf o.Node Joined Fingerprint)
                | Registered(state, inForce) -> Some(registrationOf o.Node state (if inForce then Fingerprint else OtherFingerprint)))
        let deletions = others |> List.filter (fun o -> o.Registered = Deleted) |> List.map (fun o -> LeaseDeleted(LeaseNames.registration o.Node, 10L))
        // Every other node sends its frames at its own time; only members' frames count.
        let frames =
            others
            |> List.choose (fun o -> o.Heard |> Option.map (fun (ago, aside) -> o, now - ago, aside))
            |> List.sortBy (fun (_, at, _) -> at)
            |> List.mapi (fun i (o, at, aside) ->
                FrameReceived(
                    { Node = o.Node; Incarnation = Incarnation 7UL; Seq = uint32 (i + 1); Fingerprint = FingerprintValue; Aside = aside
                      Part = 0; Parts = 1; Claims = []; Echoes = [] },
                    at))
        let inputs =
            [ Started(Incarnation 1UL, [], true, 0L); LeasesListed(registrations |> List.map leaseOf, 0L) ]
            @ deletions
            // Ticks every h keep the node listening, as the shell does; frames arrive among them.
            @ ([ for at in 100L .. 100L .. now -> Tick at ] @ frames |> List.sortBy (function Tick at -> at, 1 | FrameReceived(_, at) -> at, 0 | _ -> 0L, 0))
        let s = inputs |> List.fold (fun s input -> fst (Protocol.step s input)) (Protocol.create DefaultConfig)
        let m = Protocol.membership s
        allOf
            [ for o in others do
                  let expected =
                      match o.Registered with
                      | NotRegistered | Deleted -> Unregistered
                      | Registered((Left | Deposed _), _) -> Gone
                      | Registered(Joined, false) -> OutOfForce
                      | Registered(Joined, true) ->
                          match o.Heard with
                          | Some(ago, aside) when ago < t.LanLeaseDuration -> if aside then Aside else Live
                          | _ -> Silent
                  holds (sprintf "%A stands %A" o (Protocol.standing s m o.Node)) (Protocol.standing s m o.Node = expected) ]
        |> Prop.classify (others |> List.exists (fun o -> o.Registered = Registered(Joined, true) && o.Heard |> Option.exists (fun (ago, aside) -> aside && ago < 450L))) "some member aside"
        |> Prop.classify (others |> List.exists (fun o -> o.Registered = Registered(Joined, true) && o.Heard |> Option.exists (fun (ago, aside) -> aside && ago >= 450L))) "said Aside, not heard lately"
        |> Prop.classify (others |> List.exists (fun o -> o.Heard |> Option.exists (fun (ago, _) -> ago >= 450L && ago <= 460L))) "heard about D_L ago")

/// Each other node's Node object: labelled node.kubernetes.io/exclude-from-external-load-balancers or not.
let private genLabelled = Gen.zip genCase (Gen.listOfLength 4 (Gen.elements [ None; Some ""; Some "true"; Some "false" ]))

[<Property(MaxTest = 60)>]
let ``a live member whose Node carries the exclusion label stands excluded, no candidate for any group, unless the label is ignored; a silent one must still be deposed`` () =
    let genPolicy = Gen.elements [ HonourExclusionLabel; IgnoreExclusionLabel ]
    forAll (Gen.zip genLabelled genPolicy) (fun ((others, labels), policy) ->
        let now = 5_000L
        let config = { DefaultConfig with ExclusionLabel = policy }
        // Ignoring the label is a setting every node shares (it is in the fingerprint): the others have it too.
        let fingerprint = Config.fingerprint config
        let fingerprintValue = UInt64.Parse(fingerprint, Globalization.NumberStyles.AllowHexSpecifier)
        let labelled = List.zip (others |> List.map _.Node) labels |> Map.ofList
        let nodeObjects =
            [ for o in others ->
                  { Name = o.Node; Addresses = []
                    Labels = labelled[o.Node] |> Option.map (fun v -> Map [ NodeExclusion.Label, v ]) |> Option.defaultValue Map.empty } ]
        let registrations =
            others
            |> List.choose (fun o ->
                match o.Registered with
                | Registered(state, inForce) -> Some(registrationOf o.Node state (if inForce then fingerprint else OtherFingerprint))
                | NotRegistered | Deleted -> None)
        let frames =
            others
            |> List.choose (fun o -> o.Heard |> Option.map (fun (ago, aside) -> o, now - ago, aside))
            |> List.sortBy (fun (_, at, _) -> at)
            |> List.mapi (fun i (o, at, aside) ->
                FrameReceived(
                    { Node = o.Node; Incarnation = Incarnation 7UL; Seq = uint32 (i + 1); Fingerprint = fingerprintValue; Aside = aside
                      Part = 0; Parts = 1; Claims = []; Echoes = [] },
                    at))
        let inputs =
            [ Started(Incarnation 1UL, [], true, 0L); LeasesListed(registrations |> List.map leaseOf, 0L); NodesListed(nodeObjects, 0L) ]
            @ ([ for at in 100L .. 100L .. now -> Tick at ] @ frames |> List.sortBy (function Tick at -> at, 1 | FrameReceived(_, at) -> at, 0 | _ -> 0L, 0))
        let s = inputs |> List.fold (fun s input -> fst (Protocol.step s input)) (Protocol.create config)
        let m = Protocol.membership s
        let heardLive (o: Other) =
            o.Registered = Registered(Joined, true) && o.Heard |> Option.exists (fun (ago, aside) -> not aside && ago < t.LanLeaseDuration)
        let excludedByLabel (o: Other) = labelled[o.Node].IsSome && policy = HonourExclusionLabel
        allOf
            [ for o in others do
                  let standing = Protocol.standing s m o.Node
                  if heardLive o && excludedByLabel o then holds (sprintf "%A labelled %A stands %A" o labelled[o.Node] standing) (standing = Excluded)
                  elif heardLive o then holds (sprintf "%A labelled %A under %A stands %A" o labelled[o.Node] policy standing) (standing = Live)
                  else holds (sprintf "%A labelled %A stands %A: the label changes nothing for a node not live" o labelled[o.Node] standing) (standing <> Excluded && standing <> Live) ]
        |> Prop.classify (others |> List.exists (fun o -> heardLive o && excludedByLabel o)) "a live member excluded"
        |> Prop.classify (others |> List.exists (fun o -> not (heardLive o) && labelled[o.Node].IsSome && o.Registered = Registered(Joined, true))) "a labelled member not heard"
        |> Prop.classify (policy = IgnoreExclusionLabel && others |> List.exists (fun o -> heardLive o && labelled[o.Node].IsSome)) "label ignored")
