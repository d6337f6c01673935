// Ownership (docs/PROTOCOL.md §4): who should hold each group, from shared observations, and this node's role.
namespace Hybrid.Domain

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
        nodes
        |> List.sortWith (fun a b ->
            match compare (score key b) (score key a) with
            | 0 -> compare a b
            | c -> c)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Standing, assignment, role
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// How one node stands, for the ownership decisions of an observer.
type Standing =
    /// Joined with the fingerprint in force and heard on the LAN within D_L (itself: entitled to hold).
    | Live
    /// Joined and in force, but not heard for D_L: it must be deposed before its groups move.
    | Silent
    /// Joined and heard, but its frames say it stands aside and answers for nothing: its groups may be taken.
    | Aside
    /// Live, but its Node is labelled node.kubernetes.io/exclude-from-external-load-balancers: it is no
    /// candidate for any group and hands over those it holds itself (it still vouches for others on the LAN).
    | Excluded
    /// Its registration says Left or Deposed: it answers nothing any more.
    | Gone
    /// Registered with another fingerprint: it hands its groups over itself.
    | OutOfForce
    /// No readable registration (never seen, deleted, unreadable).
    | Unregistered

/// A group Lease as this node observed it.
type ObservedGroupLease =
    { Holder: GroupHolder option
      Version: string
      Transitions: int
      ChangedSeenAt: Instant }

/// A group Lease observed deleted: since when, and whom it named.
type AbsentGroupLease =
    { Since: Instant
      LastHolder: GroupHolder option }

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
    /// The Lease names a node that will hand it over itself (no longer eligible, other settings).
    | HolderLeaving of holder: string
    /// The Lease names a silent node: it must be deposed first.
    | HolderSilent of holder: string
    /// Nobody may still answer for it. Successors in takeover order: the first claims from `Since`, the
    /// k-th from Since + k·D_L (a fallback should better-ranked ones stay silent).
    | Orphaned of successors: string list * since: Instant * previous: string option
    | NoCandidate of NoCandidateReason

/// Why this node releases a group it holds.
type ReleaseReason =
    | NoLongerEligible
    /// Its Node got the exclusion label (NodeExclusion.Label).
    | NowExcludedFromLoadBalancers
    | InterfaceDown
    | StoodAside of StandAsideReason
    /// Its claim was not acknowledged on the LAN within D_L.
    | AcknowledgementMissing of members: string list

/// Why this node may not claim now.
type NotEntitledReason =
    | AgentStopping
    | InterfaceIsDown
    | NotYetJoined
    /// Its Node carries the exclusion label (NodeExclusion.Label) and the label is honoured.
    | ExcludedFromLoadBalancers
    | StandsAside of StandAsideReason
    /// Neither its LAN fence nor an API fence is valid.
    | NoFence
    /// A claim of it went unacknowledged recently; others take their turn.
    | ClaimsPausedUntil of Instant

/// Why this node waits instead of taking a group.
type WaitReason =
    | BetterRankedNode of first: string * ownRank: int
    | HolderReleasing of holder: string
    | DepositionPending of holder: string
    | TakeoverDueAt of Instant
    | NotEntitled of NotEntitledReason
    | NotACandidate

/// This node's role for one group: what it must do about it now.
type Role =
    /// Holds it, the claim acknowledged: its VIPs are answered (while the fence lasts).
    | Holding
    /// Holds the Lease; waits for every member to acknowledge the claim before answering.
    | Acknowledging
    /// The Lease names this node from an earlier incarnation, is missing, or another member claimed it on
    /// the LAN: compare-and-swap (or create) it again.
    | Reclaiming of version: string option
    /// Take it: compare-and-swap the Lease from `expected` (None: create it).
    | Claiming of expected: string option * previous: string option
    /// Withdraw its VIPs, then empty the Lease.
    | Releasing of version: string * reason: ReleaseReason
    | Following of holder: string
    | Waiting of WaitReason
    | Unserved of NoCandidateReason

[<RequireQualifiedAccess>]
module Ownership =
    /// Load bound of consistent hashing with bounded loads: the k-th group dealt goes to no node that
    /// already has 1.1 × k / nodes of them.
    let private capacity groups nodes = max 1 ((groups * 11 + nodes * 10 - 1) / (nodes * 10))

    /// The canonical spread: every servable group, oldest first (creationTimestamp, then name), dealt to its
    /// best-ranked live eligible node below the load bound of its position, ignoring who holds what. It
    /// depends on Services, endpoints and live nodes only, so every node names the same target even while
    /// claims are in flight; a newer group never changes where older ones go. Returns successors per group.
    let spread (live: string list) (groups: Group list) : Map<GroupId, string list> =
        let deal (loads: Map<string, int>, spread: Map<GroupId, string list>, dealt: int) (g: Group, candidates) =
            let ranked = Rendezvous.preference g.Id candidates
            let cap = capacity (dealt + 1) live.Length
            let load n = defaultArg (loads.TryFind n) 0
            let chosen = ranked |> List.tryFind (fun n -> load n < cap) |> Option.defaultValue ranked.Head
            loads.Add(chosen, load chosen + 1), spread.Add(g.Id, chosen :: (ranked |> List.filter ((<>) chosen))), dealt + 1
        let leading, following =
            groups
            |> List.map (fun g -> g, live |> List.filter (fun n -> Eligibility.allows n g.Eligibility))
            |> List.filter (fun (_, candidates) -> not candidates.IsEmpty)
            |> List.partition (fun (g, _) -> g.Follows.IsNone)
        let _, result, _ =
            leading
            |> List.sortBy (fun (g, _) -> g.CreatedAt, g.Id)
            |> List.fold deal (Map.empty, Map.empty, 0)
        // A follower takes its leader's successors (those eligible for it) ahead of its own ranking, and
        // counts towards no load: it moves with its leader.
        following
        |> List.fold
            (fun (acc: Map<GroupId, string list>) (g, candidates) ->
                let led =
                    g.Follows |> Option.bind result.TryFind |> Option.defaultValue [] |> List.filter (fun n -> List.contains n candidates)
                acc.Add(g.Id, led @ (Rendezvous.preference g.Id candidates |> List.filter (fun n -> not (List.contains n led)))))
            result

    let private noCandidate (g: Group) =
        match g.Eligibility with
        | NoServingEndpoint -> NoCandidate(NoEligibleNode g.Eligibility)
        | NodesWithEndpoint nodes when nodes.IsEmpty -> NoCandidate(NoEligibleNode g.Eligibility)
        | NodesWithEndpoint nodes -> NoCandidate(NoLiveEligibleNode(Set.toList nodes))
        | AnyNode _ -> NoCandidate(NoLiveEligibleNode [])

    /// Who should hold each group (see Assignment). `standing` and `live` come from the observer's view.
    let assign (now: Instant) (timing: Timing) (standing: string -> Standing) (live: string list)
        (leases: Map<GroupId, ObservedGroupLease>) (absent: Map<GroupId, AbsentGroupLease>) (groups: Group list)
        : Map<GroupId, Assignment> =
        let successors = lazy (spread live groups)
        // An orphaned follower goes to whoever holds its leader, when that node is live and eligible for it.
        let leaderHolder (g: Group) =
            g.Follows
            |> Option.bind leases.TryFind
            |> Option.bind _.Holder
            |> Option.map _.Node
            |> Option.filter (fun h -> standing h = Live && Eligibility.allows h g.Eligibility && List.contains h live)
        let orphaned (g: Group) since previous =
            match successors.Value.TryFind g.Id, leaderHolder g with
            | Some s, Some h -> Orphaned(h :: List.filter ((<>) h) s, since, previous)
            | Some s, None -> Orphaned(s, since, previous)
            | None, _ -> noCandidate g
        let byHolder (g: Group) (holder: string) since =
            match standing holder with
            | Live when Eligibility.allows holder g.Eligibility -> HeldBy holder
            | Live -> HolderLeaving holder
            | OutOfForce | Excluded -> HolderLeaving holder
            | Silent | Unregistered -> HolderSilent holder
            | Gone | Aside -> orphaned g since (Some holder)
        groups
        |> List.map (fun g ->
            let assignment =
                match leases.TryFind g.Id, absent.TryFind g.Id with
                | Some lease, _ ->
                    match lease.Holder with
                    | Some h -> byHolder g h.Node lease.ChangedSeenAt
                    | None -> orphaned g lease.ChangedSeenAt None
                | None, Some gone ->
                    // A deleted Lease: its last live holder gets D_L to create it again.
                    match gone.LastHolder with
                    | Some h when standing h.Node = Live && Eligibility.allows h.Node g.Eligibility
                                  && now < gone.Since + timing.LanLeaseDuration ->
                        HeldBy h.Node
                    | last -> orphaned g (gone.Since + timing.LanLeaseDuration) (last |> Option.map _.Node)
                | None, None -> orphaned g g.ChangedSeenAt None
            g.Id, assignment)
        |> Map.ofList

    /// Gross imbalance repaired once the cluster is still. Stickiness keeps groups where they are, so a node
    /// that took far more than its share while its peers were slow to claim what they were dealt (a loaded
    /// machine), or a node that joined late, would stay so for good. When a live holder holds more than 1.5
    /// times the mean, or some live node holds less than half of it while a holder is above the load bound
    /// (1.1 times the mean, rounded up, as the spread deals), the groups of holders above the bound go to the
    /// best-ranked other live eligible node below the bound (so that afterwards nobody is above it): by
    /// compare-and-swap from the holder, announced on the LAN and answered only once the holder withdrew and
    /// acknowledged (docs/PROTOCOL.md §4), so a move costs one hand-over and an API outage stops it without a
    /// gap. The mild imbalance a failover leaves moves nothing (only the dead node's groups move). "Still":
    /// the live set and the group's Lease have not changed for `settle`. Newest groups first, at most each
    /// holder's excess over the bound and each taker's room under it. Returns the moves (group → from, to) and
    /// when a move that waits only for stillness falls due. Every node computes the same from the same view.
    let rebalance (now: Instant) (settle: Duration) (liveSince: Instant) (live: string list)
        (leases: Map<GroupId, ObservedGroupLease>) (groups: Group list) (assignments: Map<GroupId, Assignment>)
        : Map<GroupId, string * string> * Instant option =
        let heldBy =
            groups
            |> List.choose (fun g -> match assignments.TryFind g.Id with Some(HeldBy h) -> Some(g, h) | _ -> None)
        let loads = heldBy |> List.countBy snd |> Map.ofList
        let load n = defaultArg (loads.TryFind n) 0
        // Every group held by a live eligible node is servable, so the held ones bound the servable ones from
        // below: with no node above the bound over them, nobody is above the real one (and the eligible nodes of each group are not listed).
        if live.Length < 2 || not (loads |> Map.exists (fun _ n -> n > capacity heldBy.Length live.Length)) then Map.empty, None
        else
            let eligible (g: Group) = live |> List.filter (fun n -> Eligibility.allows n g.Eligibility)
            let servable = groups |> List.filter (fun g -> not (eligible g).IsEmpty) |> List.length
            let cap = capacity servable live.Length
            // In whole numbers: load > 1.5 · servable / nodes, and load < servable / (2 · nodes).
            let far n = 2 * live.Length * n > 3 * servable
            let starved = live |> List.exists (fun n -> 2 * live.Length * load n < servable)
            let gross = loads |> Map.exists (fun _ n -> far n) || (starved && loads |> Map.exists (fun _ n -> n > cap))
            if not gross then Map.empty, None
            else
                let stillAt (g: Group) =
                    let leaseAt = leases.TryFind g.Id |> Option.map _.ChangedSeenAt |> Option.defaultValue g.ChangedSeenAt
                    max liveSince leaseAt + settle
                // A follower never moves alone: it follows its leader (follow).
                let candidates =
                    heldBy |> List.filter (fun (g, h) -> g.Follows.IsNone && load h > cap) |> List.sortBy (fun (g, _) -> -g.CreatedAt, g.Id)
                let moves, _, _, waiting =
                    candidates
                    |> List.fold
                        (fun (moves: Map<GroupId, string * string>, given: Map<string, int>, taken: Map<string, int>, waiting) (g, h) ->
                            let gave = defaultArg (given.TryFind h) 0
                            let took n = defaultArg (taken.TryFind n) 0
                            let target =
                                Rendezvous.preference g.Id (eligible g) |> List.tryFind (fun n -> n <> h && load n + took n < cap)
                            match target with
                            | _ when load h - gave <= cap -> moves, given, taken, waiting
                            | None -> moves, given, taken, waiting
                            | Some _ when now < stillAt g -> moves, given, taken, stillAt g :: waiting
                            | Some t -> moves.Add(g.Id, (h, t)), given.Add(h, gave + 1), taken.Add(t, took t + 1), waiting)
                        (Map.empty, Map.empty, Map.empty, [])
                moves, (if waiting.IsEmpty then None else Some(List.min waiting))

    /// A follower held apart from its leader (both were claimed while a node failed, say) goes to the leader's
    /// holder once both Leases and the live set have been still for `settle`: that node claims it, as a
    /// rebalancing move. Returns the moves (group → holder, taker) and when the next one may become due.
    let follow (now: Instant) (settle: Duration) (liveSince: Instant) (leases: Map<GroupId, ObservedGroupLease>)
        (groups: Group list) (assignments: Map<GroupId, Assignment>) : Map<GroupId, string * string> * Instant option =
        let heldBy id = match assignments.TryFind id with Some(HeldBy h) -> Some h | _ -> None
        let changed (g: Group) id = leases.TryFind id |> Option.map _.ChangedSeenAt |> Option.defaultValue g.ChangedSeenAt
        let apart =
            groups
            |> List.choose (fun g ->
                match g.Follows, g.Follows |> Option.bind heldBy, heldBy g.Id with
                | Some leaderId, Some leader, Some holder when leader <> holder && Eligibility.allows leader g.Eligibility ->
                    Some(g, holder, leader, max liveSince (max (changed g g.Id) (changed g leaderId)) + settle)
                | _ -> None)
        let ready, waiting = apart |> List.partition (fun (_, _, _, stillAt) -> now >= stillAt)
        ready |> List.map (fun (g, holder, leader, _) -> g.Id, (holder, leader)) |> Map.ofList,
        (match waiting with
         | [] -> None
         | w -> Some(w |> List.map (fun (_, _, _, stillAt) -> stillAt) |> List.min))

    /// Why a node releases a group, as Events and logs say it.
    let describeRelease (reason: ReleaseReason) =
        match reason with
        | NoLongerEligible -> "this node is no longer eligible"
        | NowExcludedFromLoadBalancers -> sprintf "this node is labelled %s" NodeExclusion.Label
        | InterfaceDown -> "the VIP interface is down"
        | StoodAside(FingerprintNotInForce(mine, inForce)) ->
            sprintf "this node's settings (fingerprint %s) are not the ones in force (%s)" mine inForce
        | StoodAside(Isolated silent) -> sprintf "this node hears none of %s on the LAN" (String.concat ", " silent)
        | AcknowledgementMissing members -> sprintf "its claim was not acknowledged on the LAN by %s" (String.concat ", " members)

    /// When the successor of this rank claims an orphaned group: the first at once, the k-th D_L·k later.
    let claimDue (timing: Timing) (since: Instant) (rank: int) = since + int64 rank * timing.LanLeaseDuration

    /// The janitor of a key (a Lease nobody holds any more, a Service nobody announces): its best-ranked
    /// live node.
    let janitor (live: string list) (key: string) = Rendezvous.preference key live |> List.tryHead
