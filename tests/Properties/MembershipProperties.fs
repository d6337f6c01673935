/// Membership (docs/PROTOCOL.md §2, §6): the fingerprint in force, who is a member, when a membership ends,
/// and who is pinned by an intent; how the registration view follows the Lease namespace.
module Hybrid.Properties.MembershipProperties

open System
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

/// Three fingerprints, so that majorities and ties are both common.
let private Fingerprints = [ "00000000000000aa"; "00000000000000bb"; "00000000000000cc" ]

let private registration (node: string) (state: RegistrationState) (fingerprint: string) (term: int64) (incarnation: uint64) : Registration =
    { Node = node
      Incarnation = Incarnation incarnation
      Term = term
      State = state
      Fence = LanFence
      Fingerprint = fingerprint
      Members = Map.empty
      Deposing = None
      Interface = InterfaceFacts.none }

let private genState = Gen.frequency [ 5, Gen.constant Joined; 1, Gen.constant Left; 1, Gen.elements NodePool |> Gen.map Deposed ]

/// The registrations one node sees: some nodes, each with a state, a fingerprint, a term, maybe an intent.
let private genView =
    gen {
        let! nodes = someOf 0 NodePool.Length NodePool
        let! entries =
            nodes
            |> Gen.collectToList (fun n ->
                gen {
                    let! state = genState
                    let! fp = Gen.elements Fingerprints
                    let! term = chooseL 1L 4L
                    let! inc = Gen.choose (1, 3)
                    let! intent =
                        Gen.frequency
                            [ 3, Gen.constant None
                              1, Gen.map2 (fun t i -> Some { Target = t; Incarnation = Incarnation(uint64 i) }) (Gen.elements NodePool) (Gen.choose (1, 3)) ]
                    let! seenAt = chooseL 0L 5000L
                    return
                        n,
                        { Registration = { registration n state fp term (uint64 inc) with Deposing = intent }
                          Version = sprintf "v%d" term
                          ChangedSeenAt = seenAt }
                })
        return { RegistrationView.empty with Known = Map.ofList entries }
    }

let private joinedCount (view: RegistrationView) fp =
    view.Known |> Map.filter (fun _ o -> o.Registration.State = Joined && o.Registration.Fingerprint = fp) |> Map.count

[<Property>]
let ``the fingerprint in force is the one most Joined registrations carry, ties going to the smaller`` () =
    forAll genView (fun view ->
        let counts = Fingerprints |> List.map (fun fp -> fp, joinedCount view fp)
        match Membership.inForce view with
        | None -> holds (sprintf "none in force with %A" counts) (counts |> List.forall (fun (_, c) -> c = 0))
        | Some fp ->
            let mine = joinedCount view fp
            allOf
                [ holds "carried by a Joined registration" (mine > 0)
                  for (other, c) in counts do
                      holds (sprintf "%s (%d) vs %s (%d)" fp mine other c) (c < mine || (c = mine && String.CompareOrdinal(fp, other) <= 0)) ]
        |> Prop.classify (counts |> List.filter (fun (_, c) -> c > 0) |> List.map snd |> fun cs -> cs.Length > 1 && cs |> List.distinct |> List.length < cs.Length) "a tie"
        |> Prop.classify (view.Known |> Map.exists (fun _ o -> o.Registration.State <> Joined)) "some not Joined")

[<Property>]
let ``members are exactly the Joined registrations with the fingerprint in force`` () =
    forAll genView (fun view ->
        let m = Membership.ofView view
        allOf
            [ holds "in force" (m.InForce = Membership.inForce view)
              for KeyValue(node, o) in view.Known do
                  let expected = o.Registration.State = Joined && Some o.Registration.Fingerprint = m.InForce
                  holds (sprintf "%s: %A" node o.Registration) (Membership.isMember m node = expected)
              for KeyValue(node, _) in m.Members do
                  holds (sprintf "%s is not among the others of itself" node) (not ((Membership.others m node).ContainsKey node)) ]
        |> Prop.classify (m.Members.Count < (view.Known |> Map.filter (fun _ o -> o.Registration.State = Joined) |> Map.count)) "a Joined node out of force")

[<Property>]
let ``a membership ends when its node leaves, is deposed or joins with another term, and not when it is merely absent`` () =
    let genCase =
        gen {
            let! view = genView
            let! node = Gen.elements ("node-x" :: NodePool)
            let! term = chooseL 1L 4L
            return view, node, term
        }
    forAll genCase (fun (view, node, term) ->
        let expected =
            match view.Known.TryFind node with
            | None -> false
            | Some o -> o.Registration.Term <> term || o.Registration.State <> Joined
        holds (sprintf "%s at term %d: %A" node term (view.Known.TryFind node)) (Membership.ended view node term = expected)
        |> Prop.classify (view.Known.ContainsKey node |> not) "not registered"
        |> Prop.classify expected "ended")

[<Property>]
let ``a node recording an intent against this incarnation is pinned until its membership ended and this node wrote since`` () =
    let genCase =
        gen {
            let! view = genView
            let intents = view.Known |> Map.toList |> List.choose (fun (_, o) -> o.Registration.Deposing)
            // Mostly the target of some intent (at its incarnation or another), so that pins are common.
            let! target = if intents.IsEmpty then Gen.constant None else Gen.frequency [ 1, Gen.constant None; 3, Gen.elements intents |> Gen.map Some ]
            let! self = Gen.elements NodePool
            let! inc = Gen.choose (1, 3)
            let self, incarnation =
                match target with
                | Some i -> i.Target, (if inc = 3 then Incarnation(uint64 inc) else i.Incarnation)
                | None -> self, Incarnation(uint64 inc)
            // This node's last registration write: none yet, or around when it saw some deposer's registration change
            // (just before, at, just after), or anywhere.
            let seen = view.Known |> Map.toList |> List.map (fun (_, o) -> o.ChangedSeenAt)
            let! lastWrite =
                Gen.frequency
                    [ 1, Gen.constant None
                      1, chooseL 0L 6000L |> Gen.map Some
                      (if seen.IsEmpty then 0 else 3), Gen.map2 (fun at d -> Some(at + d)) (Gen.elements (0L :: seen)) (Gen.elements [ -1L; 0L; 1L ]) ]
            return view, self, incarnation, lastWrite
        }
    forAll genCase (fun (view, self, incarnation, lastWrite) ->
        let pinned = Membership.pinnedAgainst view self incarnation lastWrite |> Set.ofList
        let recording =
            view.Known |> Map.filter (fun _ o -> o.Registration.Deposing = Some { Target = self; Incarnation = incarnation })
        // Released: the deposer left or was deposed, and this node wrote its registration after it saw that.
        let released (o: ObservedRegistration) =
            let ended = match o.Registration.State with Left | Deposed _ -> true | Joined -> false
            let wroteSince = match lastWrite with Some t -> t > o.ChangedSeenAt | None -> false
            ended && wroteSince
        let expected = recording |> Map.filter (fun _ o -> not (released o)) |> Map.keys |> Set.ofSeq
        let intentsAtOthers =
            view.Known |> Map.exists (fun _ o -> o.Registration.Deposing |> Option.exists (fun i -> i.Target = self && i.Incarnation <> incarnation))
        let endedRecording = recording |> Map.filter (fun _ o -> o.Registration.State <> Joined)
        holds (sprintf "pinned %A, expected %A (last write %A, recording %A)" pinned expected lastWrite recording) (pinned = expected)
        |> Prop.classify (not pinned.IsEmpty) "some pinned"
        |> Prop.classify intentsAtOthers "an intent against another incarnation"
        |> Prop.classify (endedRecording |> Map.exists (fun _ o -> lastWrite = Some o.ChangedSeenAt)) "ended deposer, written at the instant it was seen"
        |> Prop.classify (endedRecording |> Map.exists (fun _ o -> released o)) "ended deposer released"
        |> Prop.classify (endedRecording |> Map.exists (fun _ o -> not (released o))) "ended deposer still pinned")

[<Property>]
let ``a pin of a Joined deposer never ends, whatever this node writes`` () =
    // Its (b) may still be in flight: only the end of its membership makes that CAS unable to land.
    let genCase =
        gen {
            let! view = genView
            let! deposer = Gen.elements NodePool
            let! inc = Gen.choose (1, 3)
            let! seenAt = chooseL 0L 5000L
            let! lastWrite = Gen.oneof [ Gen.constant None; chooseL 0L 10_000L |> Gen.map Some ]
            let intent = { Target = "node-self"; Incarnation = Incarnation(uint64 inc) }
            let o =
                { Registration = { registration deposer Joined "00000000000000aa" 1L 1UL with Deposing = Some intent }
                  Version = "v9"
                  ChangedSeenAt = seenAt }
            return { view with Known = view.Known.Add(deposer, o) }, deposer, intent, lastWrite
        }
    forAll genCase (fun (view, deposer, intent, lastWrite) ->
        let pinned = Membership.pinnedAgainst view intent.Target intent.Incarnation lastWrite
        holds (sprintf "%A with last write %A" pinned lastWrite) (List.contains deposer pinned)
        |> Prop.classify (lastWrite |> Option.exists (fun t -> t > view.Known[deposer].ChangedSeenAt)) "written since")

// ── The registration view ───────────────────────────────────────────────────────────────────────────

let private record (r: Registration) (version: string) =
    { Name = LeaseNames.registration r.Node; Version = version; Holder = Some r.Node; Transitions = 0; Labels = Map.empty; Annotations = Map.empty }

[<Property>]
let ``a registration is dated from when this node saw its version change, and a deletion makes it absent from then`` () =
    let genEvents =
        Gen.listOf (
            Gen.frequency
                [ 4, Gen.map2 (fun n v -> Choice1Of2(n, v)) (Gen.elements [ "node-a"; "node-b" ]) (Gen.elements [ "1"; "2"; "3" ])
                  1, Gen.elements [ "node-a"; "node-b" ] |> Gen.map Choice2Of2 ])
    forAll genEvents (fun events ->
        // Replays the events at 10 ms intervals; the oracle remembers, per node, the version and when it last changed.
        let final, expected, _ =
            events
            |> List.fold
                (fun (view, (expected: Map<string, Choice<string * Instant, Instant>>), now) event ->
                    match event with
                    | Choice1Of2(node, version) ->
                        let r = registration node Joined "00000000000000aa" 1L 1UL
                        let since =
                            match expected.TryFind node with
                            | Some(Choice1Of2(v, at)) when v = version -> at
                            | _ -> now
                        RegistrationView.observe now (record r version) r view, expected.Add(node, Choice1Of2(version, since)), now + 10L
                    | Choice2Of2 node ->
                        let expected =
                            match expected.TryFind node with
                            | Some(Choice1Of2 _) -> expected.Add(node, Choice2Of2 now)
                            | _ -> expected
                        RegistrationView.deleted now node view, expected, now + 10L)
                (RegistrationView.empty, Map.empty, 0L)
        allOf
            [ for KeyValue(node, e) in expected do
                  match e with
                  | Choice1Of2(version, since) ->
                      holds (sprintf "%s: %A" node (final.Known.TryFind node))
                          (final.Known.TryFind node |> Option.exists (fun o -> o.Version = version && o.ChangedSeenAt = since) && not (final.Absent.ContainsKey node))
                  | Choice2Of2 at ->
                      holds (sprintf "%s absent: %A" node (final.Absent.TryFind node))
                          (not (final.Known.ContainsKey node) && final.Absent.TryFind node |> Option.exists (fun a -> a.Since = at)) ]
        |> Prop.classify (events |> List.exists (function Choice2Of2 _ -> true | _ -> false)) "some deletion")

[<Property>]
let ``a node deposed less than the janitor grace ago keeps its janitor duties, every member has them, and nobody else`` () =
    // The view's changes are seen between 0 and 5 s; "now" is 5 s, the grace 4.5 s: some depositions are recent.
    let now, grace = 5000L, ProtocolConstants.janitorGrace DefaultTiming
    forAll genView (fun view ->
        let m = Membership.ofView view
        let janitors = Membership.janitors now grace m view |> Set.ofList
        let due = Membership.janitorsChangeAt now grace view
        allOf
            [ for KeyValue(node, o) in view.Known do
                  let recentlyDeposed = (match o.Registration.State with Deposed _ -> true | _ -> false) && o.ChangedSeenAt > now - grace
                  holds (sprintf "%s (%A, seen %d ms ago): janitor %b" node o.Registration.State (now - o.ChangedSeenAt) (janitors.Contains node))
                      (janitors.Contains node = (Membership.isMember m node || recentlyDeposed))
                  if recentlyDeposed then
                      holds (sprintf "%s's grace ends at %d, the wake is %A" node (o.ChangedSeenAt + grace) due)
                          (due |> Option.exists (fun d -> d > now && d <= o.ChangedSeenAt + grace)) ]
        |> Prop.classify (view.Known |> Map.exists (fun _ o -> (match o.Registration.State with Deposed _ -> true | _ -> false) && o.ChangedSeenAt > now - grace)) "recently deposed"
        |> Prop.classify (view.Known |> Map.exists (fun _ o -> (match o.Registration.State with Deposed _ -> true | _ -> false) && o.ChangedSeenAt <= now - grace)) "deposed long ago")
