/// The LAN side of the protocol (docs/PROTOCOL.md §2): which frames count, what a node echoes, the grants those
/// echoes give, the LAN fence they add up to, deafness; and how fence bounds combine.
module Hybrid.Properties.LanProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private t = DefaultTiming
let private Self = "node-a"
let private MyIncarnation = Incarnation 0xA1A1_0000_0000_00A1UL
let private Fingerprint = 0x77UL
let private Peers = [ "node-b"; "node-c"; "node-d"; "node-e" ]

let private membershipOf (nodes: string list) : Membership =
    let observed n =
        { Registration =
            { Node = n
              Incarnation = Incarnation 1UL
              Term = int64 (n.Length + int n[n.Length - 1])
              State = Joined
              Fence = LanFence
              Fingerprint = "0000000000000077"
              Members = Map.empty
              Deposing = None
              Interface = InterfaceFacts.none }
          Version = "1"
          ChangedSeenAt = 0L }
    { InForce = Some "0000000000000077"; Members = (Self :: nodes) |> List.map (fun n -> n, observed n) |> Map.ofList }

let private frame (node: string) (incarnation: uint64) (seq: Seq) : Frame =
    { Node = node
      Incarnation = Incarnation incarnation
      Seq = seq
      Fingerprint = Fingerprint
      Aside = false
      Part = 0
      Parts = 1
      Claims = []
      Echoes = [] }

let private echoOfMe (seq: Seq) = { Member = NodeHash.ofName Self; Incarnation = MyIncarnation.Short; Seq = seq; Refusing = false }

let private receive now membership f lan = Lan.receive now t Self MyIncarnation Fingerprint membership f lan

// ── Which frames count ──────────────────────────────────────────────────────────────────────────────

type private FrameKind =
    | Own
    | WrongFingerprint
    | NonMember
    | FromReplacedIncarnation
    | Replay
    | LaterPart
    | Fresh

/// Members, the frames they sent so far (each node's incarnations in order, sequences growing), and one more
/// frame of a chosen kind.
let private genReceiveCase =
    gen {
        let! members = someOf 1 4 Peers
        let! histories =
            members
            |> Gen.collectToList (fun n ->
                gen {
                    let! restarted = bool 1 2
                    let! firsts = Gen.choose (1, 3)
                    let! seconds = Gen.choose (1, 3)
                    let incarnations = if restarted then [ 1UL, firsts; 2UL, seconds ] else [ 1UL, firsts ]
                    return n, incarnations
                })
        let history = [ for (n, incs) in histories do for (inc, count) in incs do for s in 1..count -> frame n inc (uint32 s) ]
        let! kind = Gen.elements [ Own; WrongFingerprint; NonMember; FromReplacedIncarnation; Replay; LaterPart; Fresh ]
        let! n, incs = Gen.elements histories
        let inc, last = List.last incs
        let! aside = bool 1 2
        let! claims = someOf 0 2 [ 11UL; 12UL; 13UL ]
        let! echoed = Gen.listOf (Gen.choose (1, 50) |> Gen.map uint32)
        let! replaySeq = Gen.choose (1, last)
        let! ahead = Gen.choose (1, 5)
        let! fp = genUInt64 |> Gen.map (fun f -> if f = Fingerprint then f + 1UL else f)
        let current = { frame n inc (uint32 last) with Aside = aside; Claims = claims; Echoes = echoed |> List.map echoOfMe }
        let test, kind =
            match kind with
            | Own -> { current with Node = Self }, Own
            | WrongFingerprint -> { current with Fingerprint = fp }, WrongFingerprint
            | NonMember -> { current with Node = "node-x" }, NonMember
            | FromReplacedIncarnation when incs.Length = 2 -> { current with Incarnation = Incarnation 1UL; Seq = uint32 (last + ahead) }, FromReplacedIncarnation
            | Replay when replaySeq < last -> { current with Seq = uint32 replaySeq; Part = 0 }, Replay
            | Replay -> { current with Part = 0 }, Replay
            | LaterPart -> { current with Part = 1; Parts = 2; Claims = [] }, LaterPart
            | _ -> { current with Seq = uint32 (last + ahead) }, Fresh
        return members, history, test, kind
    }

[<Property(MaxTest = 300)>]
let ``a frame counts only from a member in force, in its latest incarnation, with a sequence not seen before; every drop is counted`` () =
    forAll genReceiveCase (fun (members, history, test, kind) ->
        let m = membershipOf members
        let afterHistory, verdicts =
            history |> List.indexed |> List.mapFold (fun lan (i, f) -> let lan, v = receive (int64 i * 10L) m f lan in v, lan) (Lan.initial 0L) |> fun (vs, lan) -> lan, vs
        let now = 10_000L
        let lan, verdict = receive now m test afterHistory
        let expected =
            match kind with
            | Own -> Some OwnFrame
            | WrongFingerprint -> Some DropReason.WrongFingerprint
            | NonMember -> Some NotAMember
            | FromReplacedIncarnation -> Some StaleIncarnation
            | Replay -> Some Replayed
            | LaterPart | Fresh -> None
        let counts (l: LanState) reason = defaultArg (l.Dropped.TryFind reason) 0L
        allOf
            [ holds "every frame of the history counted" (verdicts |> List.forall Result.isOk)
              match expected, verdict with
              | Some reason, Error r ->
                  holds (sprintf "dropped as %A, expected %A" r reason) (r = reason)
                  holds "counted once" (counts lan reason = counts afterHistory reason + 1L)
                  holds "nothing else counted" (lan.Dropped |> Map.forall (fun r n -> r = reason || n = counts afterHistory r))
                  holds "peers unchanged" (lan.Peers = afterHistory.Peers && lan.Superseded = afterHistory.Superseded)
              | None, Ok received ->
                  let peer = lan.Peers[test.Node]
                  holds "the peer is the frame's sender" (received.Peer = peer && peer.Incarnation = test.Incarnation)
                  holds "nothing counted as dropped" (lan.Dropped = afterHistory.Dropped)
                  if kind = Fresh then
                      holds (sprintf "heard now at sequence %d" peer.LastSeq) (peer.LastSeq = test.Seq && peer.HeardAt = now)
                      holds "claims as listed" (peer.Claims = Set.ofList test.Claims && Set.ofList received.NewClaims = Set.ofList test.Claims)
                      holds "aside as said" (Lan.standsAside now t.LanLeaseDuration lan test.Node = test.Aside)
                      holds "reappeared after a silence of D_L or more" received.Reappeared
                  else holds "a later part keeps the time it was first heard" (peer.HeardAt = afterHistory.Peers[test.Node].HeardAt && received.NewClaims.IsEmpty)
                  let echoed = test.Echoes |> List.map _.Seq
                  if not echoed.IsEmpty then
                      holds (sprintf "echo of me %A from %A" peer.EchoOfMe echoed) (peer.EchoOfMe = Some(List.max echoed) && peer.AckedMe)
              | e, v -> holds (sprintf "expected %A, got %A" e v) false ]
        |> Prop.collect kind)

[<Property>]
let ``an incarnation once replaced is never heard again, whatever its sequence`` () =
    let genCase = Gen.map2 (fun a b -> a, b) (Gen.listOf (Gen.choose (1, 1000))) (Gen.choose (1, 10))
    forAll genCase (fun (seqs, newCount) ->
        let m = membershipOf [ "node-b" ]
        let lan = Lan.initial 0L
        let lan, _ = receive 10L m (frame "node-b" 1UL 5u) lan
        let lan, _ = receive 20L m (frame "node-b" 2UL (uint32 newCount)) lan
        let verdicts = seqs |> List.scan (fun (lan, _) s -> receive 30L m (frame "node-b" 1UL (uint32 s)) lan) (lan, Ok Unchecked.defaultof<Received>) |> List.tail
        allOf [ for (_, v) in verdicts -> holds (sprintf "%A" v) (v = Error StaleIncarnation) ])

// ── Grants and the LAN fence ────────────────────────────────────────────────────────────────────────

/// This node sends frames at increasing instants (gaps of about h, sometimes long); returns the LAN state and
/// the send time of each sequence.
let private genSends =
    gen {
        let! gaps = Gen.choose (1, 12) |> Gen.bind (fun n -> Gen.listOfLength n (Gen.frequency [ 6, chooseL 1L 150L; 1, chooseL 150L 2000L ]))
        let m = membershipOf Peers
        let sent, lan, _ =
            gaps
            |> List.fold
                (fun (sent, lan, now) gap ->
                    let now = now + gap
                    let f, lan = Lan.send now t Self MyIncarnation Fingerprint false m Set.empty Map.empty [] lan
                    sent @ [ f.Seq, now ], lan, now)
                ([], Lan.initial 0L, 1000L)
        return sent, lan
    }

/// A peer's frames after the sends: echoes of some of this node's sequences (or none), among echoes that are not
/// grants to it (another member, an earlier incarnation of this node).
let private genPeerEchoes (sent: (Seq * Instant) list) =
    gen {
        let! echoes = someOf 0 3 (sent |> List.map fst)
        let! noise =
            Gen.listOf (
                Gen.oneof
                    [ Gen.map (fun s -> { echoOfMe s with Member = NodeHash.ofName "node-x" }) (Gen.choose (1, 20) |> Gen.map uint32)
                      Gen.map (fun s -> { echoOfMe s with Incarnation = MyIncarnation.Short + 1u }) (Gen.choose (1, 20) |> Gen.map uint32) ])
        return echoes, noise
    }

let private hear (now: Instant) (peer: string) (echoes: Seq list, noise: Echo list) (lan: LanState) =
    let m = membershipOf Peers
    // One frame per echoed sequence, in the order the peer heard them (then the noise).
    let frames = [ for i, s in List.indexed echoes -> { frame peer 1UL (uint32 (i + 1)) with Echoes = [ echoOfMe s ] } ]
    let frames = frames @ [ { frame peer 1UL (uint32 (echoes.Length + 1)) with Echoes = noise } ]
    frames |> List.fold (fun lan f -> fst (receive now m f lan)) lan

[<Property>]
let ``a peer's grant lasts R_L from when this node sent the newest sequence the peer echoed`` () =
    let genCase = genSends |> Gen.bind (fun (sent, lan) -> genPeerEchoes sent |> Gen.map (fun e -> sent, lan, e))
    forAll genCase (fun (sent, lan, ((echoes, _) as heard)) ->
        let now = snd (List.last sent)
        let lan = hear now "node-b" heard lan
        let grant = Lan.grantFrom t lan "node-b"
        match echoes with
        | [] -> holds (sprintf "%A without an echo" grant) (grant = Lapsed) |> Prop.classify true "no echo"
        | _ ->
            let newest = List.max echoes
            let sigma = sent |> List.find (fun (s, _) -> s = newest) |> snd
            // A sequence sent long ago may be forgotten: its grant has ended either way.
            let expectedAllows = now < sigma + t.LanRenewDeadline
            allOf
                [ holds (sprintf "grant %A, sent at %d" grant sigma) (grant = Until(sigma + t.LanRenewDeadline) || (grant = Lapsed && not expectedAllows))
                  holds "allows now exactly while σ + R_L lies ahead" (FenceBound.allows now grant = expectedAllows) ]
            |> Prop.classify (echoes.Length > 1) "several echoes"
            |> Prop.classify (newest <> List.last echoes) "an older sequence echoed last"
            |> Prop.classify (not expectedAllows) "grant ended")

[<Property>]
let ``the LAN fence allows exactly what every required member's grant allows, and is unbounded when none is required`` () =
    let genCase =
        gen {
            let! sent, lan = genSends
            let! heard = Peers |> Gen.collectToList (fun p -> genPeerEchoes sent |> Gen.map (fun e -> p, e))
            let! required = someOf 0 4 (Peers @ [ "node-f" ])
            return sent, lan, heard, required
        }
    forAll genCase (fun (sent, lan, heard, required) ->
        let now = snd (List.last sent)
        let lan = heard |> List.fold (fun lan (p, e) -> hear now p e lan) lan
        let fence = Lan.fence t lan required
        let grants = required |> List.map (Lan.grantFrom t lan)
        let instants = [ for g in grants do match g with Until d -> yield! [ d - 1L; d; d + 1L ] | _ -> () ] @ [ now; now + 10_000L ]
        allOf
            [ if required.IsEmpty then holds (sprintf "%A alone" fence) (fence = Unbounded)
              else holds "bounded" (fence <> Unbounded)
              for at in instants do
                  holds (sprintf "at %d: fence %A, grants %A" at fence grants)
                      (FenceBound.allows at fence = (grants |> List.forall (FenceBound.allows at)))
              if grants |> List.contains Lapsed then holds "a required member that granted nothing ends it" (fence = Lapsed) ]
        |> Prop.classify required.IsEmpty "alone"
        |> Prop.classify (required |> List.contains "node-f") "a required member never heard"
        |> Prop.classify (FenceBound.allows now fence) "fence holds now")

// ── What a node echoes ──────────────────────────────────────────────────────────────────────────────

/// How a peer was heard before the frame under test: sequences 1..j long ago, then j+1..k lately (or nothing more).
type private Heard = { Peer: string; Early: int; Lately: (int * Instant) option }

[<Property>]
let ``a frame echoes every member heard within D_L with its latest sequence, a refused one with its old grant, a capped one no further than its cap`` () =
    let now = 10_000L
    let genCase =
        gen {
            let! heard =
                Peers
                |> Gen.collectToList (fun p ->
                    gen {
                        let! early = Gen.choose (1, 4)
                        let! lately = Gen.frequency [ 1, Gen.constant None; 3, Gen.map2 (fun n age -> Some(n, now - age)) (Gen.choose (1, 3)) (chooseL 0L 399L) ]
                        return { Peer = p; Early = early; Lately = lately }
                    })
            let! refused = someOf 0 2 Peers
            // A cap comes from a claim frame newer than what was granted before: at least the early sequences.
            let! capped =
                someOf 0 2 heard
                |> Gen.bind (Gen.collectToList (fun h ->
                    let k = h.Early + (h.Lately |> Option.map fst |> Option.defaultValue 0)
                    Gen.choose (h.Early, k) |> Gen.map (fun c -> h.Peer, uint32 c)))
            let! grantedBefore = bool 1 1
            return heard, Set.ofList refused, Map.ofList capped, grantedBefore
        }
    forAll genCase (fun (heard, refused, capped, grantedBefore) ->
        let m = membershipOf Peers
        let lan = heard |> List.fold (fun lan h -> [ 1 .. h.Early ] |> List.fold (fun lan s -> fst (receive (now - 500L) m (frame h.Peer 1UL (uint32 s)) lan)) lan) (Lan.initial 0L)
        let lan =
            if grantedBefore then snd (Lan.send (now - 400L) t Self MyIncarnation Fingerprint false m Set.empty Map.empty [] lan) else lan
        let lan =
            heard
            |> List.fold (fun lan h ->
                match h.Lately with
                | Some(n, at) -> [ h.Early + 1 .. h.Early + n ] |> List.fold (fun lan s -> fst (receive at m (frame h.Peer 1UL (uint32 s)) lan)) lan
                | None -> lan) lan
        let f, after = Lan.send now t Self MyIncarnation Fingerprint false m refused capped [ 99UL ] lan
        let echoOf p = f.Echoes |> List.tryFind (fun e -> e.Member = NodeHash.ofName p)
        allOf
            [ holds "its own sequence, claims and send time" (f.Seq = lan.NextSeq && f.Claims = [ 99UL ] && Lan.sentAt after f.Seq = Some now && f.Node = Self)
              for h in heard do
                  match h.Lately, echoOf h.Peer with
                  | None, e -> holds (sprintf "%s last heard 500 ms ago echoed %A" h.Peer e) e.IsNone
                  | Some _, None -> holds (sprintf "%s heard lately, not echoed" h.Peer) false
                  | Some(n, _), Some e ->
                      let latest = uint32 (h.Early + n)
                      let expected =
                          if refused.Contains h.Peer then (if grantedBefore then uint32 h.Early else 0u)
                          else
                              match capped.TryFind h.Peer with
                              | Some cap when cap < latest -> cap
                              | _ -> latest
                      holds (sprintf "%s (latest %d): %A, expected %d" h.Peer latest e expected)
                          (e.Incarnation = (Incarnation 1UL).Short && e.Refusing = refused.Contains h.Peer && e.Seq = expected)
                      holds (sprintf "%s acknowledged in its term" h.Peer) (after.Acked.TryFind h.Peer = Some m.Members[h.Peer].Registration.Term) ]
        |> Prop.classify (heard |> List.exists (fun h -> h.Lately.IsNone)) "a member not heard lately"
        |> Prop.classify (heard |> List.exists (fun h -> h.Lately.IsSome && refused.Contains h.Peer)) "refusing"
        |> Prop.classify (heard |> List.exists (fun h -> h.Lately.IsSome && not (refused.Contains h.Peer) && capped.ContainsKey h.Peer)) "capped")

// ── Deafness ────────────────────────────────────────────────────────────────────────────────────────

[<Property>]
let ``a member is deaf to this node when it hears it, acknowledged it, refuses nothing, yet echoes only sequences sent D_L ago or more`` () =
    let genCase =
        gen {
            let! heardAgo = Gen.frequency [ 4, chooseL 0L 449L; 1, chooseL 450L 2000L ]
            let! acked = bool 4 1
            let! refuses = bool 1 4
            let! echoAgo = Gen.frequency [ 2, Gen.constant None; 5, Gen.frequency [ 1, chooseL 0L 449L; 1, chooseL 450L 740L ] |> Gen.map Some ]
            let! startedAgo = Gen.frequency [ 1, chooseL 0L 449L; 1, chooseL 450L 5000L ]
            return heardAgo, acked, refuses, echoAgo, startedAgo
        }
    forAll genCase (fun (heardAgo, acked, refuses, echoAgo, startedAgo) ->
        let now = 100_000L
        // This incarnation started `startedAgo` ms ago, at or before any sequence it sent.
        let startedAgo = match echoAgo with Some a -> max startedAgo a | None -> startedAgo
        let lan = { Lan.initial (now - startedAgo) with Sent = [ 7u, now - defaultArg echoAgo 0L ] }
        let peer =
            { Node = "node-b"
              Incarnation = Incarnation 1UL
              LastSeq = 3u
              HeardAt = now - heardAgo
              EchoOfMe = echoAgo |> Option.map (fun _ -> 7u)
              AckedMe = acked
              RefusesMe = refuses
              AsideSince = None
              Aside = false
              Claims = Set.empty
              Granted = None }
        let staleEchoes =
            match echoAgo with
            | Some ago -> ago >= t.LanLeaseDuration
            | None -> startedAgo >= t.LanLeaseDuration
        let expected = heardAgo < t.LanLeaseDuration && acked && not refuses && staleEchoes
        holds (sprintf "heard %d ms ago, acked %b, refuses %b, echo %A, started %d ms ago" heardAgo acked refuses echoAgo startedAgo)
            (Lan.isDeaf now t (now - startedAgo) lan peer = expected)
        |> Prop.classify expected "deaf"
        |> Prop.classify (heardAgo >= t.LanLeaseDuration) "not heard lately"
        |> Prop.classify (refuses && staleEchoes) "refusing, not deaf"
        |> Prop.classify (echoAgo.IsNone) "never echoed")

// ── Fence bounds ────────────────────────────────────────────────────────────────────────────────────

let private genBound = Gen.frequency [ 1, Gen.constant Lapsed; 1, Gen.constant Unbounded; 4, chooseL 0L 100L |> Gen.map Until ]

[<Property>]
let ``the later of two fences allows whatever either allows, the earlier only what both allow`` () =
    forAll (Gen.zip (Gen.three genBound) (chooseL (-10L) 110L)) (fun ((a, b, c), at) ->
        let allows = FenceBound.allows at
        allOf
            [ holds "later" (allows (FenceBound.later a b) = (allows a || allows b))
              holds "earlier" (allows (FenceBound.earlier a b) = (allows a && allows b))
              holds "commutative" (FenceBound.later a b = FenceBound.later b a && FenceBound.earlier a b = FenceBound.earlier b a)
              holds "associative"
                  (FenceBound.later a (FenceBound.later b c) = FenceBound.later (FenceBound.later a b) c
                   && FenceBound.earlier a (FenceBound.earlier b c) = FenceBound.earlier (FenceBound.earlier a b) c)
              holds "Lapsed adds nothing to a later, Unbounded nothing to an earlier"
                  (FenceBound.later Lapsed a = a && FenceBound.earlier Unbounded a = a)
              holds "Unbounded absorbs a later, Lapsed an earlier" (FenceBound.later Unbounded a = Unbounded && FenceBound.earlier Lapsed a = Lapsed)
              holds "Until allows strictly before its instant" (match a with Until d -> allows a = (at < d) | Lapsed -> not (allows a) | Unbounded -> allows a) ])

// ── Claims in split frames ──────────────────────────────────────────────────────────────────────────

/// The parts of one sequence of node-b, each carrying `claims`, in `order` of arrival.
[<Property(MaxTest = 200)>]
let ``a claim is read from whichever part of its sequence arrives first, so an echo of that sequence means it was seen`` () =
    let genCase =
        gen {
            let! parts = Gen.choose (2, 4)
            let! order = Gen.shuffle [ 0 .. parts - 1 ]
            let! claims = Gen.listOfLength 3 (Gen.choose (1, 1_000_000) |> Gen.map uint64)
            let! lost = Gen.choose (0, parts - 1)
            return parts, List.ofArray order |> List.filter ((<>) lost), claims |> List.distinct
        }
    forAll genCase (fun (parts, order, claims) ->
        let m = membershipOf Peers
        let arrive (lan, seen) part =
            let f = { frame "node-b" 1UL 5u with Part = part; Parts = parts; Claims = claims }
            let lan, verdict = receive 1000L m f lan
            lan, (match verdict with Ok r -> seen @ r.NewClaims | Error _ -> seen)
        let lan, seen = order |> List.fold arrive (Lan.initial 0L, [])
        let heardSeq = lan.Peers.TryFind "node-b" |> Option.map _.LastSeq
        // Whatever part came first and whichever was lost, the sequence this node now echoes carries the claims seen.
        holds (sprintf "parts %A of %d: seen %A, echoing %A" order parts seen heardSeq)
            (heardSeq = Some 5u && List.sort seen = List.sort claims)
        |> Prop.classify (order.Head <> 0) "a later part arrived first"
        |> Prop.classify (not (List.contains 0 order)) "part 0 lost")

// ── Standing aside and reappearing ──────────────────────────────────────────────────────────────────

/// One frame of node-b as it arrives: after `gap` ms, a new sequence (its first part, or a later part only) or
/// another part of the sequence last heard, saying Aside or not.
type private Arrival = { Gap: Instant; NewSeq: bool; Part: int; Aside: bool }

let private genArrivals =
    let genArrival =
        gen {
            let! gap = Gen.frequency [ 6, chooseL 0L 150L; 1, chooseL 400L 600L ]
            let! newSeq = bool 4 1
            let! part = if newSeq then Gen.frequency [ 5, Gen.constant 0; 1, Gen.constant 1 ] else Gen.constant 1
            let! aside = bool 1 1
            return { Gap = gap; NewSeq = newSeq; Part = part; Aside = aside }
        }
    Gen.choose (1, 8) |> Gen.bind (fun n -> Gen.listOfLength n genArrival)

[<Property(MaxTest = 200)>]
let ``a peer stands aside while it was heard within the window and the first part of its latest sequence to arrive said so`` () =
    let genCase = Gen.map2 (fun a w -> a, w) genArrivals (chooseL 0L 700L)
    forAll genCase (fun (arrivals, wait) ->
        let m = membershipOf Peers
        // The model: a new sequence is hearing the peer; the first part of a new sequence to arrive says whether it stands aside.
        let step (lan, seq, now, heardAt, aside) (a: Arrival) =
            let now = now + a.Gap
            // Sequences start at 1: a later part before anything was heard is of a new sequence.
            let a = if seq = 0u then { a with NewSeq = true } else a
            let seq = if a.NewSeq then seq + 1u else seq
            let f = { frame "node-b" 1UL seq with Aside = a.Aside; Part = a.Part; Parts = 2 }
            let lan, _ = receive now m f lan
            let heardAt = if a.NewSeq then Some now else heardAt
            let aside = if a.NewSeq then a.Aside else aside
            lan, seq, now, heardAt, aside
        let lan, _, last, heardAt, aside = arrivals |> List.fold step (Lan.initial 0L, 0u, 1000L, None, false)
        let now = last + wait
        let heard = heardAt |> Option.exists (fun at -> now - at < t.LanLeaseDuration)
        let expected = heard && aside
        holds (sprintf "at %d (heard %A, aside %b): %b" now heardAt aside (Lan.standsAside now t.LanLeaseDuration lan "node-b"))
            (Lan.standsAside now t.LanLeaseDuration lan "node-b" = expected
             && Lan.hears now t.LanLeaseDuration lan "node-b" = heard
             && not (Lan.standsAside now t.LanLeaseDuration lan "node-c"))
        |> Prop.classify expected "stands aside"
        |> Prop.classify (aside && not heard) "said Aside, not heard lately"
        |> Prop.classify (arrivals |> List.exists (fun a -> not a.NewSeq && a.Aside <> aside)) "a later part said otherwise")

[<Property(MaxTest = 200)>]
let ``a peer reappears when it is first heard, or heard again after a silence of D_L or more`` () =
    forAll genArrivals (fun arrivals ->
        let m = membershipOf Peers
        let results, _ =
            arrivals
            |> List.mapFold
                (fun (lan, seq, now, heardAt: Instant option) (a: Arrival) ->
                    let now = now + a.Gap
                    // Sequences start at 1: a later part before anything was heard is of a new sequence.
                    let a = if seq = 0u then { a with NewSeq = true } else a
                    let seq = if a.NewSeq then seq + 1u else seq
                    let lan, verdict = receive now m { frame "node-b" 1UL seq with Part = a.Part; Parts = 2 } lan
                    let expected = a.NewSeq && (heardAt |> Option.forall (fun at -> now - at >= t.LanLeaseDuration))
                    (a, heardAt, now, verdict, expected), (lan, seq, now, (if a.NewSeq then Some now else heardAt)))
                (Lan.initial 0L, 0u, 1000L, None)
        allOf
            [ for (a, heardAt, now, verdict, expected) in results do
                  match verdict with
                  | Ok r -> holds (sprintf "%A at %d, last heard %A: reappeared %b" a now heardAt r.Reappeared) (r.Reappeared = expected)
                  | Error e -> holds (sprintf "%A dropped: %A" a e) false ]
        |> Prop.classify (results |> List.exists (fun (a, h, now, _, _) -> a.NewSeq && h |> Option.exists (fun at -> now - at >= t.LanLeaseDuration))) "heard again after a silence")
