// Ownership: rendezvous ranking, heartbeats, fencing, and who holds each group.
namespace Hybrid.Domain

open System

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Rendezvous ranking
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<RequireQualifiedAccess>]
module Rendezvous =
    /// splitmix64's finalizer: spreads FNV's bits so that scores of similar names are independent.
    let private mix (x: uint64) =
        let x = (x ^^^ (x >>> 30)) * 0xbf58476d1ce4e5b9UL
        let x = (x ^^^ (x >>> 27)) * 0x94d049bb133111ebUL
        x ^^^ (x >>> 31)

    /// The score of a node for a key; the highest score is the most preferred node.
    let score (key: string) (node: string) = mix (LeaseNames.fnv1a (key + "\u0000" + node))

    /// Nodes in order of preference for a key (highest score first, name breaks ties).
    let preference (key: string) (nodes: string list) : string list =
        nodes |> List.sortWith (fun a b ->
            match compare (score key b) (score key a) with
            | 0 -> compare a b
            | c -> c)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Ownership: heartbeats, group leases, fencing
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// A node's heartbeat Lease as this node observed it.
type Heartbeat =
    { Node: string
      /// holderIdentity: the node itself while alive; empty after a graceful release.
      Holder: string option
      Version: string
      /// When this node observed the current version (its own monotonic clock).
      ChangedSeenAt: Instant }

/// A group Lease as this node observed it.
type GroupLease =
    { Name: GroupId
      Holder: string option
      Version: string
      ChangedSeenAt: Instant }

/// This node's right to announce: it lasts R from the start of its last successful heartbeat renewal.
/// The epoch changes whenever that right lapsed, which voids every claim made before.
type Fence =
    { Epoch: int64
      LastRenewalStartedAt: Instant option }

/// A group this node has compare-and-swapped to itself during the fence epoch `Epoch`.
type Claim =
    { Epoch: int64
      /// The holder it took the group from, if any (for the TookOver event).
      From: string option }

/// This node's own situation.
type SelfState =
    { Node: string
      Fence: Fence
      Claims: Map<GroupId, Claim>
      /// vip_interface is administratively up and has carrier.
      LinkUp: bool
      ShuttingDown: bool }

/// What this node observed of the cluster's ownership state: the same for every node up to watch delays.
type OwnershipView =
    { Now: Instant
      Timing: Timing
      Heartbeats: Map<string, Heartbeat>
      Leases: Map<GroupId, GroupLease> }

/// A node's liveness as seen by the observer.
type Liveness =
    | Live
    /// Heartbeat released (graceful stop or interface down), observed at the instant given.
    | Released of at: Instant
    /// No heartbeat change for the lease duration; dead since the instant given.
    | Expired of since: Instant
    /// No heartbeat Lease at all.
    | NeverSeen

/// Why no node can take a group.
type NoCandidateReason =
    /// No node may announce it (no serving endpoint, or Local endpoints on no node).
    | NoEligibleNode of Eligibility
    /// Eligible nodes exist, but none of them is live.
    | NoLiveEligibleNode of eligible: string list

/// Who should hold a group, computed from shared observations only, so that every node agrees.
type Assignment =
    /// The Lease names a live, eligible node: it keeps the group (stickiness).
    | HeldBy of holder: string
    /// The Lease names a live node that is no longer eligible: it will release.
    | HolderLeaving of holder: string
    /// Nobody live and eligible holds it. `Successors` are the live eligible nodes in takeover order: the
    /// first may take over from `Since`, the k-th from Since + k·P (a fallback if better ones stay silent).
    | Orphaned of successors: string list * since: Instant * previous: string option * confirm: (string * string) option
    | NoCandidate of NoCandidateReason

/// Why this node releases a group it holds.
type ReleaseReason =
    | NoLongerEligible
    | InterfaceDown
    | ShuttingDown

/// Why this node is waiting instead of taking a group.
type WaitReason =
    | BetterRankedNode of first: string * ownRank: int
    | HolderReleasing of holder: string
    | TakeoverDueAt of Instant
    | NotEntitled of because: string
    | NotACandidate

/// This node's role for one group: what it must do about it now.
type Role =
    /// Holds the group in the current fence epoch: announce its VIPs.
    | Holding
    /// The Lease names this node, but from before a restart or a lapsed fence: compare-and-swap it again
    /// before announcing (a node that took over meanwhile wins the race, never both).
    | Reclaiming of version: string
    /// Take the group: compare-and-swap the Lease (absent → create). When `Confirm` names the previous
    /// holder's heartbeat version, first re-read that heartbeat and give up if it changed (it is alive).
    | Claiming of expected: string option * previous: string option * confirm: (string * string) option
    /// Withdraw the VIPs, then release the Lease.
    | Releasing of version: string * reason: ReleaseReason
    /// The Lease names this node but its fence lapsed: VIPs are withdrawn; the Lease is kept so that, if the
    /// heartbeat recovers before anyone takes over, it can be reclaimed without moving.
    | Fenced
    | Following of holder: string
    | Waiting of WaitReason
    | Unserved of NoCandidateReason

/// What the heartbeat loop must do.
type HeartbeatAction =
    | Renew
    | ReleaseHeartbeat
    /// The agent is stopping: its stop sequence releases the heartbeat itself, before it withdraws and empties
    /// its group Leases (so that others no longer rank it when they see an emptied Lease), and the loop must
    /// not renew it again in between.
    | LeaveToStop

[<RequireQualifiedAccess>]
module Fence =
    let initial = { Epoch = 0L; LastRenewalStartedAt = None }

    /// The node is about to release its heartbeat (interface down, stopping). From the moment the release
    /// lands, others may take its groups without waiting, so the right to announce ends now and every claim
    /// is void: after the link returns, the node must renew and compare-and-swap again before announcing.
    let released (fence: Fence) : Fence = { Epoch = fence.Epoch + 1L; LastRenewalStartedAt = None }

    /// Folds a successful heartbeat renewal (started at `startedAt`, acknowledged at `completedAt`). If the
    /// previous right to announce ran out before this acknowledgement, there was an instant without it: a new
    /// epoch begins and older claims no longer count.
    let renewed (timing: Timing) (fence: Fence) (startedAt: Instant) (completedAt: Instant) : Fence =
        match fence.LastRenewalStartedAt with
        | Some previous when completedAt - previous < timing.RenewDeadline ->
            { fence with LastRenewalStartedAt = Some(max previous startedAt) }
        | _ -> { Epoch = fence.Epoch + 1L; LastRenewalStartedAt = Some startedAt }

    /// The node may announce at `now`.
    let valid (timing: Timing) (fence: Fence) (now: Instant) =
        match fence.LastRenewalStartedAt with
        | Some started -> now - started < timing.RenewDeadline
        | None -> false

    /// The node may write a VIP address (add or refresh its lifetime) at `now`.
    let mayWriteAddress (timing: Timing) (fence: Fence) (now: Instant) =
        match fence.LastRenewalStartedAt with
        | Some started -> now <= Timing.writeDeadline timing started
        | None -> false

[<RequireQualifiedAccess>]
module Heartbeat =
    /// A node whose VIP interface is down must not look live to the others; a stopping node's heartbeat is
    /// released by its stop sequence.
    let decide (linkUp: bool) (shuttingDown: bool) =
        if not linkUp then ReleaseHeartbeat
        elif shuttingDown then LeaveToStop
        else Renew

    /// Whether observing `next` can change a decision at `now`: a node appearing, a holder change (acquired,
    /// released), or a node coming back after it had expired. A renewal of a node that was live only moves its
    /// expiry, which the plan's wake-up time covers; with every node renewing every retry period, planning on
    /// each renewal would cost nodes / P plans per second for nothing.
    let changeMatters (timing: Timing) (previous: Heartbeat option) (next: Heartbeat) (now: Instant) =
        match previous with
        | None -> true
        | Some p when p.Holder <> next.Holder -> true
        | Some p -> now - p.ChangedSeenAt >= timing.LeaseDuration

[<RequireQualifiedAccess>]
module Ownership =
    /// Liveness of a node from this observer's heartbeat observations.
    let liveness (view: OwnershipView) (node: string) : Liveness =
        match view.Heartbeats.TryFind node with
        | None -> NeverSeen
        | Some hb when hb.Holder <> Some node -> Released hb.ChangedSeenAt
        | Some hb when view.Now - hb.ChangedSeenAt < view.Timing.LeaseDuration -> Live
        | Some hb -> Expired(hb.ChangedSeenAt + view.Timing.LeaseDuration)

    let liveNodes (view: OwnershipView) =
        view.Heartbeats |> Map.toList |> List.map fst |> List.filter (fun n -> liveness view n = Live)

    /// Load bound of consistent hashing with bounded loads: the k-th group dealt goes to no node that already
    /// has 1.1 × k / nodes of them.
    let private capacity groups nodes = max 1 ((groups * 11 + nodes * 10 - 1) / (nodes * 10))

    /// Who should hold each group. Depends only on shared observations (never on which node computes it):
    /// live eligible holders keep their groups; each orphaned group goes to its node in the canonical spread.
    ///
    /// The canonical spread deals every servable group, oldest first (creationTimestamp, then name), to its
    /// best-ranked live eligible node below the load bound of its position, ignoring who holds what. It
    /// depends on the Services, endpoints and live nodes only, never on Leases: when many groups appear at
    /// once, every node claims for the same node although each sees the others' claims at a different moment
    /// (loads counted from Leases made nodes disagree, race each other and pile groups onto the fastest
    /// node). Because the bound grows with the position, not with the total, a newer group never changes
    /// where the older ones go: nodes that have seen more or fewer of a burst of new Services still agree.
    let assign (view: OwnershipView) (groups: Group list) : Map<GroupId, Assignment> =
        let live = liveNodes view
        let isLive n = List.contains n live
        let candidatesOf (g: Group) = live |> List.filter (fun n -> Eligibility.allows n g.Eligibility)
        let first =
            groups
            |> List.map (fun g ->
                let lease = view.Leases.TryFind g.Id
                let candidates = candidatesOf g
                let assignment =
                    match lease |> Option.bind _.Holder with
                    | Some h when isLive h && Eligibility.allows h g.Eligibility -> HeldBy h
                    | Some h when isLive h -> HolderLeaving h
                    | holder when candidates.IsEmpty ->
                        ignore holder
                        match g.Eligibility with
                        | NoServingEndpoint -> NoCandidate(NoEligibleNode g.Eligibility)
                        | NodesWithEndpoint nodes when nodes.IsEmpty -> NoCandidate(NoEligibleNode g.Eligibility)
                        | NodesWithEndpoint nodes -> NoCandidate(NoLiveEligibleNode(Set.toList nodes))
                        | AnyNode _ -> NoCandidate(NoLiveEligibleNode [])
                    | holder ->
                        let leaseSeen = lease |> Option.map _.ChangedSeenAt |> Option.defaultValue g.ChangedSeenAt
                        let since, confirm =
                            match holder with
                            | None -> leaseSeen, None
                            | Some h ->
                                match liveness view h with
                                // A released heartbeat does not prove that its node withdrew: the heartbeat loop
                                // releases on its own (interface down) while the reconcile loop may be stuck in a
                                // Lease write with the VIP still on the interface (Fence.released stops new writes
                                // but removes nothing, and the VIP answers again when the link returns); and a
                                // release seen late may belong to an earlier process of a node that has reclaimed
                                // the group since. Only an empty Lease is handed over at once; a Lease naming a
                                // released node is taken like an expired one: D after the release was seen (the
                                // holder's VIP lifetime has run out by then), after re-reading H(h).
                                | Released at -> max leaseSeen (at + view.Timing.LeaseDuration), Some(h, view.Heartbeats[h].Version)
                                | Expired since -> max leaseSeen since, Some(h, view.Heartbeats[h].Version)
                                | NeverSeen -> leaseSeen + view.Timing.LeaseDuration, Some(h, "")
                                | Live -> leaseSeen, None
                        Orphaned(candidates, since, holder, confirm)
                g, assignment)
        // Dealt only when some group is orphaned: in the steady state every group is held and this costs nothing.
        let spread =
            lazy
                (let deal (loads: Map<string, int>, spread: Map<GroupId, string list>, dealt: int) (g: Group, candidates) =
                     let ranked = Rendezvous.preference g.Id candidates
                     let cap = capacity (dealt + 1) live.Length
                     let load n = defaultArg (loads.TryFind n) 0
                     let chosen = ranked |> List.tryFind (fun n -> load n < cap) |> Option.defaultValue ranked.Head
                     loads.Add(chosen, load chosen + 1), spread.Add(g.Id, chosen :: (ranked |> List.filter ((<>) chosen))), dealt + 1
                 let _, spread, _ =
                     groups
                     |> List.map (fun g -> g, candidatesOf g)
                     |> List.filter (fun (_, candidates) -> not candidates.IsEmpty)
                     |> List.sortBy (fun (g, _) -> g.CreatedAt, g.Id)
                     |> List.fold deal (Map.empty, Map.empty, 0)
                 spread)
        first
        |> List.map (fun (g, a) ->
            match a with
            | Orphaned(_, since, previous, confirm) -> g.Id, Orphaned(spread.Value[g.Id], since, previous, confirm)
            | other -> g.Id, other)
        |> Map.ofList

    /// How long a successor waits per better-ranked one before claiming a group nobody holds.
    ///
    /// The first successor claims at once. For a group never claimed, or whose holder is gone, the next one
    /// steps in only a lease duration per rank later: the better-ranked node is live (it renewed within D),
    /// so it claims as soon as its loop gets there, and stepping in earlier only races it (a node busy for a
    /// moment, e.g. with a burst of new Services, would lose its share); a node that stays live but never
    /// claims has a wedged loop, which this still works around. A Lease its holder emptied (a stop, lost
    /// eligibility, a dead link) is a hand-over under way: the former holder may still rank first for a
    /// moment (until its heartbeat release, if any, is seen), so the next one steps in after one retry period.
    let claimStagger (timing: Timing) (lease: GroupLease option) =
        match lease with
        | Some l when l.Holder.IsNone -> timing.RetryPeriod
        | _ -> timing.LeaseDuration

    /// When the successor of this rank claims an orphaned group first seen orphaned at `since`.
    let claimDue (timing: Timing) (lease: GroupLease option) (since: Instant) (rank: int) =
        since + int64 rank * claimStagger timing lease

    /// This node's role for a group, from the shared assignment and its own state.
    let role (view: OwnershipView) (self: SelfState) (assignment: Assignment) (group: Group) : Role =
        let fenceValid = Fence.valid view.Timing self.Fence view.Now
        match view.Leases.TryFind group.Id with
        | Some lease when lease.Holder = Some self.Node ->
            if self.ShuttingDown then Releasing(lease.Version, ShuttingDown)
            elif not self.LinkUp then Releasing(lease.Version, InterfaceDown)
            elif not (Eligibility.allows self.Node group.Eligibility) then Releasing(lease.Version, NoLongerEligible)
            elif not fenceValid then Fenced
            else
                match self.Claims.TryFind group.Id with
                | Some claim when claim.Epoch = self.Fence.Epoch -> Holding
                | _ -> Reclaiming lease.Version
        | lease ->
            match assignment with
            | HeldBy holder -> Following holder
            | HolderLeaving holder -> Waiting(HolderReleasing holder)
            | NoCandidate reason -> Unserved reason
            | Orphaned(successors, since, previous, confirm) ->
                match List.tryFindIndex ((=) self.Node) successors with
                | None -> Waiting NotACandidate
                | Some _ when self.ShuttingDown -> Waiting(NotEntitled "shutting down")
                | Some _ when not self.LinkUp -> Waiting(NotEntitled "the VIP interface is down")
                | Some _ when not fenceValid -> Waiting(NotEntitled "no recent heartbeat renewal")
                | Some rank ->
                    let due = claimDue view.Timing lease since rank
                    if view.Now >= due then Claiming(lease |> Option.map _.Version, previous, confirm)
                    elif rank = 0 then Waiting(TakeoverDueAt due)
                    else Waiting(BetterRankedNode(successors.Head, rank))

    /// The janitor of a key (an orphaned Lease, a Service nobody announces): its best-ranked live node.
    let janitor (view: OwnershipView) (key: string) =
        Rendezvous.preference key (liveNodes view) |> List.tryHead
