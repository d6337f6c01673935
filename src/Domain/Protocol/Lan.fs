// The LAN side of the protocol (docs/PROTOCOL.md §2): what this node heard from each member, what it
// echoes (grants), and the LAN fence those echoes give it.
namespace Hybrid.Domain

/// What this node echoes for a member: the member's sequence it grants and when it received it.
type Grant = { Seq: Seq; ReceivedAt: Instant }

/// One member as heard on the LAN.
type Peer =
    { Node: string
      Incarnation: Incarnation
      LastSeq: Seq
      /// When the latest sequence arrived.
      HeardAt: Instant
      /// The newest sequence of this node's current incarnation that the peer's current incarnation echoed:
      /// its grant to this node.
      EchoOfMe: Seq option
      /// The peer's current incarnation echoed this node: this node is in its required set (proof (a)).
      AckedMe: bool
      /// Its latest echo of this node says it refuses to grant more (so a stale echo is no sign of deafness).
      RefusesMe: bool
      /// Its latest frame says it stands aside and answers for nothing.
      Aside: bool
      /// When its frames began to say Aside (None while they do not).
      AsideSince: Instant option
      /// Groups its latest frame says it claimed and waits to have acknowledged.
      Claims: Set<uint64>
      /// What this node last echoed for it.
      Granted: Grant option }

/// Why a frame was dropped (counted, for metrics and logs).
type DropReason =
    | Undecodable of FrameError
    | OwnFrame
    | WrongFingerprint
    | NotAMember
    | StaleIncarnation
    | Replayed

/// What a fence allows: nothing, until an instant, or for as long as nothing changes.
type FenceBound =
    | Lapsed
    | Until of Instant
    | Unbounded

/// The LAN side of one node's state.
type LanState =
    { NextSeq: Seq
      /// Send times σ(s) of recent sequences, newest first.
      Sent: (Seq * Instant) list
      NextSendAt: Instant
      /// A frame should go out at once (a claim to announce, a claim to acknowledge).
      SendSoon: bool
      /// The Aside flag of the latest frame sent: a change goes out at once.
      SaidAside: bool
      Peers: Map<string, Peer>
      /// Incarnations of a node that a newer one replaced: their frames are never accepted again.
      Superseded: Map<string, Set<Incarnation>>
      /// Members this incarnation has echoed (with their term then): each may depose it.
      Acked: Map<string, int64>
      Dropped: Map<DropReason, int64> }

/// What receiving a frame changed.
type Received =
    { Peer: Peer
      /// Claimed groups this frame lists that the peer did not list before.
      NewClaims: uint64 list
      /// The peer had not been heard for D_L (or never): liveness may have changed.
      Reappeared: bool }

[<RequireQualifiedAccess>]
module FenceBound =
    let later a b =
        match a, b with
        | Unbounded, _ | _, Unbounded -> Unbounded
        | Lapsed, x | x, Lapsed -> x
        | Until x, Until y -> Until(max x y)

    let earlier a b =
        match a, b with
        | Lapsed, _ | _, Lapsed -> Lapsed
        | Unbounded, x | x, Unbounded -> x
        | Until x, Until y -> Until(min x y)

    /// Whether the bound allows answering at `now`.
    let allows (now: Instant) bound =
        match bound with
        | Lapsed -> false
        | Until t -> now < t
        | Unbounded -> true

[<RequireQualifiedAccess>]
module Lan =
    let initial (now: Instant) =
        { NextSeq = 1u
          Sent = []
          NextSendAt = now
          SendSoon = true
          SaidAside = false
          Peers = Map.empty
          Superseded = Map.empty
          Acked = Map.empty
          Dropped = Map.empty }

    let private count reason lan =
        { lan with Dropped = lan.Dropped.Add(reason, 1L + defaultArg (lan.Dropped.TryFind reason) 0L) }

    /// The send time of one of this node's recent sequences.
    let sentAt (lan: LanState) (seq: Seq) = lan.Sent |> List.tryPick (fun (s, at) -> if s = seq then Some at else None)

    /// Accepts a frame from a member, or says why it is dropped. The fingerprint must be the one in force;
    /// the sender must be a member; an incarnation once replaced is never accepted again; sequences never go
    /// back (a later part of the same sequence carries more echoes and is accepted).
    let receive (now: Instant) (timing: Timing) (self: string) (incarnation: Incarnation) (fingerprint: uint64) (membership: Membership)
        (frame: Frame) (lan: LanState) : LanState * Result<Received, DropReason> =
        let drop reason = count reason lan, Error reason
        let registered = membership.Members.TryFind frame.Node
        let superseded = lan.Superseded.TryFind frame.Node |> Option.defaultValue Set.empty
        if frame.Node = self then drop OwnFrame
        elif frame.Fingerprint <> fingerprint then drop WrongFingerprint
        elif registered.IsNone then drop NotAMember
        elif superseded.Contains frame.Incarnation then drop StaleIncarnation
        else
            let mine = NodeHash.ofName self
            let echoesOfMe = frame.Echoes |> List.filter (fun e -> e.Member = mine && e.Incarnation = incarnation.Short)
            let echoOfMe =
                echoesOfMe |> List.filter (fun e -> e.Seq > 0u) |> List.map _.Seq |> List.fold (fun best s -> Some(max s (defaultArg best 0u))) None
            let refusesMe = echoesOfMe |> List.exists _.Refusing
            let fresh () =
                { Node = frame.Node
                  Incarnation = frame.Incarnation
                  LastSeq = 0u
                  HeardAt = now
                  EchoOfMe = None
                  AckedMe = false
                  RefusesMe = false
                  Aside = false
                  AsideSince = None
                  Claims = Set.empty
                  Granted = None }
            let previous, lan =
                match lan.Peers.TryFind frame.Node with
                | Some p when p.Incarnation = frame.Incarnation -> Some p, lan
                | Some p ->
                    // A new incarnation of the node: the old one is over for good.
                    None, { lan with Superseded = lan.Superseded.Add(frame.Node, superseded.Add p.Incarnation) }
                | None -> None, lan
            let peer = defaultArg previous (fresh ())
            let isNewSeq = frame.Seq > peer.LastSeq
            if not isNewSeq && (frame.Seq < peer.LastSeq || frame.Part = 0) then drop Replayed
            else
                // Every part carries the claims and the Aside flag: the first part of a sequence to arrive is read.
                let newClaims =
                    if isNewSeq then frame.Claims |> List.filter (fun c -> not (peer.Claims.Contains c)) else []
                let updated =
                    { peer with
                        LastSeq = max peer.LastSeq frame.Seq
                        HeardAt = (if isNewSeq then now else peer.HeardAt)
                        EchoOfMe =
                          match peer.EchoOfMe, echoOfMe with
                          | Some a, Some b -> Some(max a b)
                          | a, b -> Option.orElse a b
                        AckedMe = peer.AckedMe || not echoesOfMe.IsEmpty
                        RefusesMe = (if echoesOfMe.IsEmpty then peer.RefusesMe else refusesMe)
                        Aside = (if isNewSeq then frame.Aside else peer.Aside)
                        AsideSince =
                          if not isNewSeq then peer.AsideSince
                          elif frame.Aside then Some(defaultArg peer.AsideSince now)
                          else None
                        Claims = (if isNewSeq then Set.ofList frame.Claims else peer.Claims) }
                let reappeared =
                    match previous with
                    | Some p -> isNewSeq && now - p.HeardAt >= timing.LanLeaseDuration
                    | None -> true
                { lan with Peers = lan.Peers.Add(frame.Node, updated) },
                Ok { Peer = updated; NewClaims = newClaims; Reappeared = reappeared }

    /// Whether a peer was heard within `window` and its latest frame says it stands aside.
    let standsAside (now: Instant) (window: Duration) (lan: LanState) (node: string) =
        match lan.Peers.TryFind node with
        | Some p -> p.Aside && now - p.HeardAt < window
        | None -> false

    /// Whether a peer was heard within `window`.
    let hears (now: Instant) (window: Duration) (lan: LanState) (node: string) =
        match lan.Peers.TryFind node with
        | Some p -> now - p.HeardAt < window
        | None -> false

    /// The next frame: the echoes of every member heard (granting its latest sequence, except the `refused`
    /// ones, whose grant stays where it was, and the `capped` ones, granted no further than their cap), the
    /// claims awaiting acknowledgement. Records the send time and the grants.
    let send (now: Instant) (timing: Timing) (self: string) (incarnation: Incarnation) (fingerprint: uint64) (aside: bool)
        (membership: Membership) (refused: Set<string>) (capped: Map<string, Seq>) (claims: uint64 list) (lan: LanState)
        : Frame * LanState =
        let members = Membership.others membership self
        // Members heard lately: echoing an incarnation not heard for D_L grants nothing (its sequence is old) and
        // would acknowledge a member in a term this node never heard.
        let heard =
            lan.Peers |> Map.filter (fun node peer -> members.ContainsKey node && now - peer.HeardAt < timing.LanLeaseDuration)
        // A refused member's grant stays where it was; the others are granted their latest sequence (capped while
        // a withdrawal they asked for is not confirmed).
        let grants =
            heard
            |> Map.map (fun node peer ->
                if refused.Contains node then peer.Granted
                else
                    match capped.TryFind node with
                    | Some cap when cap < peer.LastSeq ->
                        match peer.Granted with
                        | Some g when g.Seq >= cap -> Some g
                        | _ -> Some { Seq = cap; ReceivedAt = now }
                    | _ -> Some { Seq = peer.LastSeq; ReceivedAt = peer.HeardAt })
        // Every member heard is echoed, a refused one too (with its old grant, or none, and the Refusing flag), so
        // that a member this node refuses never takes that for deafness and refuses back.
        let echoes =
            [ for KeyValue(node, grant) in grants ->
                  { Member = NodeHash.ofName node
                    Incarnation = lan.Peers[node].Incarnation.Short
                    Seq = (match grant with Some g -> g.Seq | None -> 0u)
                    Refusing = refused.Contains node } ]
        // An echo acknowledges the member in its current term (a member that re-joined is acknowledged anew).
        let acked = grants |> Map.fold (fun (acked: Map<string, int64>) node _ -> acked.Add(node, members[node].Registration.Term)) lan.Acked
        let keep = now - timing.LanLeaseDuration - timing.LanRenewDeadline
        let frame =
            { Node = self
              Incarnation = incarnation
              Seq = lan.NextSeq
              Fingerprint = fingerprint
              Aside = aside
              Part = 0
              Parts = 1
              Claims = claims
              Echoes = echoes }
        frame,
        { lan with
            NextSeq = lan.NextSeq + 1u
            Sent = (lan.NextSeq, now) :: (lan.Sent |> List.filter (fun (_, at) -> at >= keep))
            NextSendAt = now + timing.HeartbeatInterval
            SendSoon = false
            SaidAside = aside
            Peers = lan.Peers |> Map.map (fun node peer -> match grants.TryFind node with Some g -> { peer with Granted = g } | None -> peer)
            Acked = acked }

    /// The grant a peer gives this node: σ(s) + R_L for the newest sequence s of this incarnation it echoed.
    let grantFrom (timing: Timing) (lan: LanState) (node: string) : FenceBound =
        match lan.Peers.TryFind node |> Option.bind _.EchoOfMe with
        | Some s ->
            match sentAt lan s with
            | Some sigma -> Until(sigma + timing.LanRenewDeadline)
            | None -> Lapsed
        | None -> Lapsed

    /// The LAN fence: the earliest grant of the required set; unbounded when nobody could depose this node.
    let fence (timing: Timing) (lan: LanState) (required: string seq) : FenceBound =
        required |> Seq.fold (fun bound node -> FenceBound.earlier bound (grantFrom timing lan node)) Unbounded

    /// The peer echoes only old sequences of this node (or none) although it hears from it, counts it, and does
    /// not say it refuses it: it is deaf to this node. `since` is when this incarnation could first have been echoed.
    let isDeaf (now: Instant) (timing: Timing) (since: Instant) (lan: LanState) (peer: Peer) =
        let heard = now - peer.HeardAt < timing.LanLeaseDuration
        let echoedRecently =
            match peer.EchoOfMe |> Option.bind (sentAt lan) with
            | Some sigma -> now - sigma < timing.LanLeaseDuration
            | None -> now - since < timing.LanLeaseDuration
        heard && peer.AckedMe && not peer.RefusesMe && not echoedRecently
