// The protocol as a state machine: `Protocol.step : NodeState -> Input -> NodeState * Command list`.
// `evolve` folds an input into the state; `decide` runs the stages below and returns what must happen.
// The shell executes the commands and reports their outcomes as further inputs; the model-based test
// drives this same function through faults.
namespace Hybrid.Domain

open System

/// Exponential backoff with equal jitter (half fixed, half random), so that agents retrying after the same
/// API outage do not return in lockstep.
[<RequireQualifiedAccess>]
module RetryDelay =
    /// The delay before retry number `attempts` + 1: `initial` doubling up to `cap`; `jitter` in [0, 1] comes
    /// from the shell's random source.
    let after (initial: Duration) (cap: Duration) (attempts: int) (jitter: float) : Duration =
        let ceiling = min cap (initial <<< min (max attempts 0) 16)
        ceiling / 2L + int64 (float (ceiling / 2L) * (max 0.0 (min 1.0 jitter)))

/// How long each watch of the API lasts. The client asks the server to end a watch after a timeout spread
/// over a range, so that many agents do not reconnect together; a connection that stays silent past that
/// timeout and an allowance is taken for dead (a half-open TCP connection never ends by itself).
[<RequireQualifiedAccess>]
module WatchTiming =
    let ShortestTimeout: Duration = 240_000L
    let TimeoutSpread: Duration = 120_000L
    let SilenceAllowance: Duration = 30_000L

    /// The timeout the next watch asks the server for, in whole seconds (the API takes seconds); `jitter`
    /// in [0, 1] from the shell's random source.
    let serverTimeout (jitter: float) : Duration =
        let spread = int64 (float TimeoutSpread * max 0.0 (min 1.0 jitter))
        (ShortestTimeout + spread) / 1000L * 1000L

    /// How long the client waits for a watch with that timeout to end before it gives the connection up.
    let silenceLimit (serverTimeout: Duration) : Duration = serverTimeout + SilenceAllowance

    /// An HTTP/2 connection with requests in flight is pinged after this much silence and given up when a
    /// ping goes unanswered this long: a dead server is noticed by every request on it (Lease writes share
    /// the watches' connection), not only when a watch's silence limit or TCP's retransmissions end it.
    let PingAfter: Duration = 180_000L
    let PingTimeout: Duration = 30_000L

/// Protocol constants that are not configuration (docs/PROTOCOL.md §2–§4).
[<RequireQualifiedAccess>]
module ProtocolConstants =
    /// Arm the API fence when the LAN fence has less than this left. Between echoes the LAN fence falls to
    /// R_L − 2h at worst (the echoed sequence is up to one interval old, the echo up to one more), so half of
    /// that margin is the alarm: normal jitter does not reach it, and a member that died leaves this long to arm.
    let armLead (timing: Timing) = (timing.LanRenewDeadline - 2L * timing.HeartbeatInterval) / 2L

    /// Disarm only after the LAN fence has been healthy this long (no flapping between fences).
    let DisarmAfter: Duration = 1000L

    /// Rewrite the kernel fence element when the deadline moved by at least this much.
    let fenceStep (timing: Timing) = max 5L (timing.HeartbeatInterval / 4L)

    /// A claim unacknowledged this long by a member that is heard (so not about to be deposed) is released,
    /// and this node pauses its claims for ClaimPause.
    let claimAckTimeout (timing: Timing) = timing.LanLeaseDuration
    let claimPause (timing: Timing) = 10L * timing.LanLeaseDuration
    /// How long the live set and a group's Lease must be still before the group moves to restore bounded
    /// loads: as long as a claim pause, so a node that paused its claims gets its share back afterwards.
    let rebalanceSettle (timing: Timing) = claimPause timing
    /// How long a deposed node keeps its janitor duties (Membership.janitors): long enough to rejoin.
    let janitorGrace (timing: Timing) = claimPause timing

    /// Group Lease writes (claims, releases, deletes) one node keeps in flight at once: a takeover of 1,000
    /// groups goes out in turns of this many instead of 1,000 requests at once (each with its buffers in the
    /// agent, and a burst the API server's fairness would queue anyway).
    let GroupWritesInFlight = 64

    /// Backoff of failed Lease writes: 100 ms doubling to 5 s, equal jitter.
    let BackoffBase: Duration = 100L
    let BackoffCap: Duration = 5000L

    let backoff (attempts: int) (jitter: float) : Duration = RetryDelay.after BackoffBase BackoffCap attempts jitter

    /// Backoff of the shell's other API calls (watches, status patches, Events): 200 ms doubling to 10 s.
    let ApiRetryBase: Duration = 200L
    let ApiRetryCap: Duration = 10_000L

    /// An address assignment this node wrote and has not seen on the Service after this long (the write
    /// failed or lost a race) is decided again.
    let AssignmentSettle: Duration = 5000L

    /// The janitor key of the pool ConfigMap: its janitor reports the ConfigMap's bad entries and is the one
    /// node that assigns addresses.
    let AssignerKey = Pools.ConfigMapNamespace + "/" + Pools.ConfigMapName

    /// Depositions of one silent node by several deposers are staggered by rank.
    let depositionStagger (timing: Timing) = timing.HeartbeatInterval

/// What the node wants of one VIP in its kernel.
type private VipWant =
    | WantHeld
    | WantAdmitted
    | WantUnheld
    | WantAbsent

[<RequireQualifiedAccess>]
module Protocol =
    // ════════════════════════════════════════════════════════════════════════════════════════════════
    // Construction
    // ════════════════════════════════════════════════════════════════════════════════════════════════

    let private fingerprintValue (fingerprint: string) =
        match UInt64.TryParse(fingerprint, Globalization.NumberStyles.AllowHexSpecifier, Globalization.CultureInfo.InvariantCulture) with
        | true, v -> v
        | _ -> 0UL

    /// A node before its first input (Started).
    let create (config: Config) : NodeState =
        let fingerprint = Config.fingerprint config
        { Config = config
          Self = config.NodeName
          Fingerprint = fingerprint
          FingerprintValue = fingerprintValue fingerprint
          Incarnation = Incarnation 0UL
          IncarnationStartedAt = 0L
          Now = 0L
          Phase = Starting
          LinkUp = true
          View =
            { ServicesSynced = false
              SlicesSynced = false
              LeasesSynced = false
              Services = Map.empty
              Slices = Map.empty
              Registrations = RegistrationView.empty
              Groups = Map.empty
              GroupsAbsent = Map.empty
              PoolsSynced = true
              NodesSynced = true
              InterfaceKnown = true
              Pools = { Config = Pools.none; Errors = [] }
              Nodes = Map.empty
              Families = Map.empty
              Interface = InterfaceFacts.none }
          Membership = { InForce = None; Members = Map.empty }
          Required = []
          DerivedStale = true
          Desired = Desired.empty
          DesiredStale = true
          Registration =
            { Term = 0L
              Written = None
              Version = None
              Known = false
              Pending = None
              LastWriteStartedAt = None
              Retry = None
              Depositions = 0
              RejoinNotBefore = 0L }
          ApiFence = { ValidUntil = None; LastRenewalStart = None; LanHealthySince = None; ArmedAt = None }
          Lan = Lan.initial 0L
          LastGrantAt = Map.empty
          ListeningSince = 0L
          Depositions = Map.empty
          Claims = Map.empty
          Contests = Map.empty
          GroupWrites = Map.empty
          GroupRetries = Map.empty
          ClaimsPausedUntil = 0L
          Kernel = { Installed = false; FenceWritten = None; FencePending = None; Vips = Map.empty; Foreign = Set.empty }
          StandAside = None
          EmittedWarnings = Set.empty
          EmittedPoolErrors = Set.empty
          Assigning = Map.empty
          ForwardWants = Upnp.wants config []
          Forwarding = Upnp.noReport
          Dhcp = Map.empty
          Transitions = []
          NextWriteId = 1L
          Assignments = Map.empty
          Roles = Map.empty
          OwnershipStale = true
          OwnershipDueAt = None
          LiveSetSince = 0L
          OwnershipSignature = { Live = []; Entitled = false; Fenced = false; Vips = MayHoldVips }
          MaintenanceDueAt = None
          NextWakeAt = None }

    /// A node whose shell watches the pool ConfigMap and the Nodes and reads its VIP interface: it decides
    /// nothing about Services before all three are in, so that no refused address is ever announced for
    /// want of the facts that refuse it.
    let awaitingAddressPolicy (s: NodeState) : NodeState =
        { s with View = { s.View with PoolsSynced = false; NodesSynced = false; InterfaceKnown = false } }

    // ════════════════════════════════════════════════════════════════════════════════════════════════
    // Derived facts (pure functions of the state)
    // ════════════════════════════════════════════════════════════════════════════════════════════════

    let membership (s: NodeState) = s.Membership

    let private timing (s: NodeState) = s.Config.Timing

    /// This incarnation's registration is written and says Joined.
    let joined (s: NodeState) =
        match s.Registration.Written with
        | Some r -> r.State = Joined && r.Incarnation = s.Incarnation
        | None -> false

    let private running (s: NodeState) =
        match s.Phase with
        | Running -> true
        | _ -> false

    let private stopping (s: NodeState) =
        match s.Phase with
        | Stopping _ | Stopped -> true
        | _ -> false

    let private inForce (s: NodeState) (m: Membership) =
        match m.InForce with
        | Some fp -> fp = s.Fingerprint
        | None -> true

    /// Every node that could depose this one (docs/PROTOCOL.md §2): those it acknowledged, those it recorded,
    /// those pinned by an intent against it — less those whose membership ended since.
    let private computeRequired (s: NodeState) : string list =
        let view = s.View.Registrations
        let recorded = s.Registration.Written |> Option.map _.Members |> Option.defaultValue Map.empty
        let add (acc: Set<string>) (node: string) (term: int64) =
            if node <> s.Self && not (Membership.ended view node term) then acc.Add node else acc
        let counted = Map.fold add (Map.fold add Set.empty s.Lan.Acked) recorded
        Membership.pinnedAgainst view s.Self s.Incarnation s.Registration.LastWriteStartedAt
        |> List.fold (fun (acc: Set<string>) n -> acc.Add n) counted
        |> Set.toList

    let required (s: NodeState) : string list = s.Required

    /// Recomputes the cached membership and required set when an input changed what they derive from.
    let private refreshDerived (s: NodeState) =
        if not s.DerivedStale then s
        else
            let s = { s with Membership = Membership.ofView s.View.Registrations; DerivedStale = false }
            { s with Required = computeRequired s }

    /// This node has listened to the LAN for D_L (since its start, or since it last stood aside as isolated),
    /// so its view of who is live is whole: only then does it act as a janitor (one janitor per key, not one
    /// per node that has not heard the others yet).
    let private listenedLongEnough (s: NodeState) =
        s.Now - max s.IncarnationStartedAt s.ListeningSince >= (timing s).LanLeaseDuration

    /// Whether this node is the janitor of `key` among the `live` nodes.
    let private isJanitor (s: NodeState) (live: string list) (key: string) =
        listenedLongEnough s && Ownership.janitor live key = Some s.Self

    /// The members this node hears, to tell whether it is isolated.
    let private hearsAnyOf (s: NodeState) (nodes: string list) =
        nodes |> List.exists (Lan.hears s.Now (timing s).LanLeaseDuration s.Lan)

    /// Why this node must hold nothing although it runs, if it must.
    let standAside (s: NodeState) (m: Membership) : StandAsideReason option =
        match m.InForce with
        | Some fp when fp <> s.Fingerprint && joined s -> Some(FingerprintNotInForce(s.Fingerprint, fp))
        | _ ->
            let needed = required s
            if needed.Length >= 2 && listenedLongEnough s && not (hearsAnyOf s needed) then
                Some(Isolated needed)
            else None

    let lanFence (s: NodeState) = Lan.fence (timing s) s.Lan (required s)

    let apiFence (s: NodeState) =
        match s.ApiFence.ValidUntil with
        | Some t -> Until t
        | None -> Lapsed

    /// The node's fence: the later of its LAN and API fences, while it is a joined member in force.
    let fence (s: NodeState) (m: Membership) : FenceBound =
        if running s && joined s && inForce s m then FenceBound.later (lanFence s) (apiFence s) else Lapsed

    /// The deadline to write into the kernel for a bound (an unbounded fence is refreshed every R_L).
    let private kernelDeadline (s: NodeState) bound =
        match bound with
        | Until t when t > s.Now -> Some t
        | Unbounded -> Some(s.Now + (timing s).LanRenewDeadline)
        | _ -> None

    /// When this node learnt that `holder` holds nothing any more: its frames began to say Aside, or its
    /// registration was seen Left or Deposed (the earlier of the two).
    let private goneSince (s: NodeState) (holder: string) : Instant option =
        let aside = s.Lan.Peers.TryFind holder |> Option.bind _.AsideSince
        let left =
            match s.View.Registrations.Known.TryFind holder with
            | Some o when o.Registration.State <> Joined -> Some o.ChangedSeenAt
            | _ -> None
        match aside, left with
        | Some a, Some l -> Some(min a l)
        | a, l -> Option.orElse a l

    /// The instant the successors' stagger counts from: the group's orphaning, or, when its previous holder
    /// left or stood aside after that, the moment this node learnt so. Otherwise every successor of a group
    /// whose Lease has not changed for a while would claim at once when its holder leaves (docs/PROTOCOL.md §4).
    let private orphanedSince (s: NodeState) (since: Instant) (previous: string option) : Instant =
        match previous |> Option.bind (goneSince s) with
        | Some gone -> max since gone
        | None -> since

    /// Whether the node's Node object carries the exclusion label and this node honours it (docs/POOLS.md).
    let excludedByLabel (s: NodeState) (node: string) =
        s.View.Nodes.TryFind node
        |> Option.exists (fun n -> NodeExclusion.eligibility s.Config.ExclusionLabel n.Labels = ExcludedByLabel)

    /// How a node stands for ownership decisions, in this node's view.
    let standing (s: NodeState) (m: Membership) (node: string) : Standing =
        let liveUnlessExcluded () = if excludedByLabel s node then Excluded else Live
        if node = s.Self then
            if running s && joined s && inForce s m && s.LinkUp && s.StandAside.IsNone then liveUnlessExcluded () else Silent
        else
            match s.View.Registrations.Known.TryFind node with
            | Some o when o.Registration.State = Joined ->
                if Some o.Registration.Fingerprint <> m.InForce then OutOfForce
                elif Lan.standsAside s.Now (timing s).LanLeaseDuration s.Lan node then Aside
                elif Lan.hears s.Now (timing s).LanLeaseDuration s.Lan node then liveUnlessExcluded ()
                else Silent
            | Some _ -> Gone
            | None -> Unregistered

    // ════════════════════════════════════════════════════════════════════════════════════════════════
    // Evolve: fold one input into the state
    // ════════════════════════════════════════════════════════════════════════════════════════════════

    let private nextId (s: NodeState) = s.NextWriteId, { s with NextWriteId = s.NextWriteId + 1L }

    let private retry (previous: Retry option) (jitter: float) (now: Instant) : Retry =
        let attempts = previous |> Option.map _.Attempts |> Option.defaultValue 0
        { Attempts = attempts + 1; At = now + ProtocolConstants.backoff attempts jitter }

    let private isGroupName (s: NodeState) (name: string) =
        LeaseNames.isElectionGroup name || name = s.Config.LeaseName

    let private stale (s: NodeState) = { s with OwnershipStale = true }
    let private derivedStale (s: NodeState) = { s with DerivedStale = true; OwnershipStale = true }

    /// A new incarnation, derived from the previous one (the domain has no randomness; the first one is random).
    let private nextIncarnation (Incarnation v) =
        let x = v + 0x9E3779B97F4A7C15UL
        let x = (x ^^^ (x >>> 30)) * 0xbf58476d1ce4e5b9UL
        let x = (x ^^^ (x >>> 27)) * 0x94d049bb133111ebUL
        Incarnation(x ^^^ (x >>> 31))

    /// Deposed, or its registration deleted: everything this incarnation held is withdrawn by its successor
    /// incarnation, which joins under a new term (docs/PROTOCOL.md §3). The kernel commands come from decide
    /// (every VIP unwanted).
    let private restartIncarnation (why: Notice) (s: NodeState) =
        { s with
            Incarnation = nextIncarnation s.Incarnation
            IncarnationStartedAt = s.Now
            // A write still in flight (from the deposed incarnation) must settle before the next one: two writes
            // of one registration in flight could land in either order.
            Registration =
                { s.Registration with
                    Term = s.Registration.Term + 1L
                    Written = None
                    LastWriteStartedAt = None
                    Retry = None
                    Depositions = s.Registration.Depositions + 1
                    // Deposed again and again (an isolated node): join again later each time, up to D_A.
                    RejoinNotBefore =
                        s.Now + min s.Config.Timing.ApiLeaseDuration ((s.Config.Timing.LanLeaseDuration <<< min s.Registration.Depositions 6) - s.Config.Timing.LanLeaseDuration) }
            ApiFence = { ValidUntil = None; LastRenewalStart = None; LanHealthySince = None; ArmedAt = None }
            Lan = { Lan.initial s.Now with Superseded = s.Lan.Superseded }
            Depositions = Map.empty
            Claims = Map.empty
            Contests = Map.empty
            OwnershipStale = true
            DerivedStale = true },
        [ Note why ]

    /// My own registration as observed: a deposition of this incarnation, or the version to write from.
    let private observeOwn (lease: LeaseRecord) (r: Registration) (s: NodeState) =
        let s = { s with Registration = { s.Registration with Known = true } }
        match r.State with
        | Deposed by when r.Incarnation = s.Incarnation && joined s ->
            restartIncarnation (DeposedBy by) { s with Registration = { s.Registration with Version = Some lease.Version } }
        | _ when r.Incarnation = s.Incarnation || s.Registration.Written.IsNone ->
            { s with Registration = { s.Registration with Version = Some lease.Version } }, []
        | _ -> s, []

    let private observeLease (now: Instant) (lease: LeaseRecord) (s: NodeState) : NodeState * Command list =
        match LeaseKind.ofRecord (isGroupName s) lease with
        | RegistrationLease r ->
            let s = { s with View = { s.View with Registrations = RegistrationView.observe now lease r s.View.Registrations } }
            let s = derivedStale s
            if r.Node = s.Self then observeOwn lease r s else s, []
        | UnreadableRegistration(name, problem) ->
            { s with View = { s.View with Registrations = RegistrationView.unreadable name problem s.View.Registrations } },
            [ Note(RegistrationProblem(name, problem)) ]
        | GroupLease holder ->
            let seen =
                match s.View.Groups.TryFind lease.Name with
                | Some g when g.Version = lease.Version -> g.ChangedSeenAt
                | _ -> now
            let observed = { Holder = holder; Version = lease.Version; Transitions = lease.Transitions; ChangedSeenAt = seen }
            // A Lease naming this incarnation is this node's claim even if the write's answer was lost.
            let claims =
                match holder with
                | Some h when h.Node = s.Self && h.Incarnation = Some s.Incarnation && not (s.Claims.ContainsKey lease.Name) ->
                    s.Claims.Add(lease.Name, { Version = lease.Version; Seq = None; StartedAt = now; AcknowledgedAt = None; From = None })
                | _ -> s.Claims
            stale
                { s with
                    Claims = claims
                    View = { s.View with Groups = s.View.Groups.Add(lease.Name, observed); GroupsAbsent = s.View.GroupsAbsent.Remove lease.Name } },
            []
        | OtherLease -> s, []

    let private forgetLease (now: Instant) (name: string) (s: NodeState) : NodeState * Command list =
        match s.View.Groups.TryFind name with
        | Some g ->
            stale
                { s with
                    Claims = s.Claims.Remove name
                    View =
                        { s.View with
                            Groups = s.View.Groups.Remove name
                            GroupsAbsent = s.View.GroupsAbsent.Add(name, { Since = now; LastHolder = g.Holder }) } },
            []
        | None ->
            let view = s.View.Registrations
            match view.Known |> Map.tryPick (fun node _ -> if LeaseNames.registration node = name then Some node else None) with
            | Some node ->
                let s = derivedStale { s with View = { s.View with Registrations = RegistrationView.deleted now node view } }
                if node <> s.Self then s, []
                else
                    let s = { s with Registration = { s.Registration with Version = None } }
                    // Others count a member whose registration is gone as silent D_L later and may take its groups:
                    // a joined node whose registration was deleted starts over, as if deposed.
                    match s.Phase with
                    | Starting | Running when joined s -> restartIncarnation RegistrationDeleted s
                    | _ -> s, []
            | None -> s, []

    let private listLeases (now: Instant) (leases: LeaseRecord list) (s: NodeState) =
        let present = leases |> List.map _.Name |> Set.ofList
        let gone =
            Seq.append (s.View.Groups |> Map.keys) (s.View.Registrations.Known |> Map.keys |> Seq.map LeaseNames.registration)
            |> Seq.filter (fun name -> not (present.Contains name))
            |> List.ofSeq
        let s, c1 = gone |> List.fold (fun (s, cs) name -> let s, c = forgetLease now name s in s, cs @ c) (s, [])
        let s =
            if present.Contains(LeaseNames.registration s.Self) then s
            else { s with Registration = { s.Registration with Version = None; Known = true } }
        let s, c2 = leases |> List.fold (fun (s, cs) l -> let s, c = observeLease now l s in s, cs @ c) (s, [])
        { s with View = { s.View with LeasesSynced = true }; Registration = { s.Registration with Known = true } }, c1 @ c2

    /// A claim of a group this node holds (or is acknowledging) arrived on the LAN: withdraw it first.
    let private contest (by: string) (claimSeq: Seq) (claimed: uint64 list) (s: NodeState) =
        let mine =
            s.Desired.Groups
            |> List.filter (fun g ->
                List.contains (GroupHash.ofGroup g.Id) claimed
                && (s.Claims.ContainsKey g.Id || g.Addresses |> List.exists (fun ip -> s.Kernel.Vips.ContainsKey ip)))
        mine
        |> List.fold
            (fun (s: NodeState, notes) g ->
                let held = g.Addresses |> List.exists (fun ip -> s.Kernel.Vips.TryFind ip |> Option.exists _.Held)
                let contest =
                    { By = by
                      ClaimSeq = claimSeq
                      Withdrawn = not held
                      BelievedVersion = s.View.Groups.TryFind g.Id |> Option.map _.Version }
                stale { s with Contests = s.Contests.Add(g.Id, contest); Claims = s.Claims.Remove g.Id },
                Note(ContestedClaim(g.Id, by)) :: notes)
            (s, [])

    let private receiveFrame (now: Instant) (frame: Frame) (s: NodeState) =
        let m = membership s
        let lan, verdict = Lan.receive now (timing s) s.Self s.Incarnation s.FingerprintValue m frame s.Lan
        let s = { s with Lan = lan }
        match verdict with
        | Error _ -> s, []
        | Ok received ->
            let s, notes =
                if received.NewClaims.IsEmpty then s, []
                else contest frame.Node frame.Seq received.NewClaims { s with Lan = { s.Lan with SendSoon = true } }
            // A claim of this node may now be acknowledged; a member reappearing changes liveness.
            let acksPending = s.Claims |> Map.exists (fun _ c -> c.AcknowledgedAt.IsNone)
            let s = if acksPending || received.Reappeared then stale s else s
            s, notes

    let private completeRegistrationWrite (id: WriteId) (outcome: WriteOutcome) (jitter: float) (s: NodeState) =
        match s.Registration.Pending with
        | Some(pending, _, content, _) when pending = id && content.Incarnation <> s.Incarnation ->
            let version =
                match outcome with
                | Written(Some record) -> Some record.Version
                | _ -> s.Registration.Version
            { s with Registration = { s.Registration with Pending = None; Version = version; Known = (match outcome with Conflict -> false | _ -> s.Registration.Known) } },
            (match outcome with Conflict -> [ ReadLease(LeaseNames.registration s.Self) ] | _ -> [])
        | Some(pending, change, content, startedAt) when pending = id ->
            let reg = { s.Registration with Pending = None }
            match outcome with
            | Written(Some record) ->
                let api =
                    match change, content.Fence with
                    | Arm, ApiFence ->
                        { s.ApiFence with
                            ValidUntil = Some(startedAt + (timing s).ApiRenewDeadline)
                            LastRenewalStart = Some startedAt
                            ArmedAt = Some startedAt }
                    | Renew, ApiFence ->
                        { s.ApiFence with ValidUntil = Some(startedAt + (timing s).ApiRenewDeadline); LastRenewalStart = Some startedAt }
                    | _, LanFence -> { s.ApiFence with ValidUntil = None; LastRenewalStart = None }
                    | _ -> s.ApiFence
                let s =
                    { s with
                        Registration =
                            { reg with
                                Written = Some content
                                Version = Some record.Version
                                Retry = None
                                Term = content.Term
                                LastWriteStartedAt = Some startedAt }
                        ApiFence = api
                        View = { s.View with Registrations = RegistrationView.observe s.Now record content s.View.Registrations } }
                let notes =
                    match change with
                    | Join -> [ Note(JoinedCluster(content.Term, content.Incarnation)) ]
                    | Arm -> [ Note(ApiFenceArmed(lanFence s)) ]
                    | Disarm -> [ Note ApiFenceDisarmed ]
                    | Leave -> [ Note LeftCluster ]
                    | _ -> []
                derivedStale s, notes
            | Written None -> { s with Registration = reg }, []
            | Conflict -> { s with Registration = { reg with Known = false } }, [ ReadLease(LeaseNames.registration s.Self) ]
            | NotFound -> { s with Registration = { reg with Version = None } }, []
            | Failed _ -> { s with Registration = { reg with Retry = Some(retry reg.Retry jitter s.Now) } }, []
        | _ -> s, []

    let private completeDeposition (id: WriteId) (outcome: WriteOutcome) (jitter: float) (s: NodeState) =
        match s.Depositions |> Map.tryPick (fun node d -> match d.Stage with Deposing w when w = id -> Some(node, d) | _ -> None) with
        | Some(node, d) ->
            match outcome with
            | Written(Some record) ->
                let s =
                    match LeaseKind.ofRecord (isGroupName s) record with
                    | RegistrationLease r ->
                        { s with View = { s.View with Registrations = RegistrationView.observe s.Now record r s.View.Registrations } }
                    | _ -> s
                derivedStale { s with Depositions = s.Depositions.Add(node, { d with Stage = DepositionDone }) }, [ Note(NodeDeposed node) ]
            | Written None -> { s with Depositions = s.Depositions.Remove node }, []
            | Conflict | NotFound ->
                // The target armed, renewed, re-registered or was deposed by someone else: look again.
                { s with Depositions = s.Depositions.Remove node }, [ ReadLease(LeaseNames.registration node) ]
            | Failed _ -> { s with Depositions = s.Depositions.Add(node, { d with Stage = Uncertain; Retry = Some(retry d.Retry jitter s.Now) }) }, []
        | None -> s, []

    let private completeGroupWrite (id: WriteId) (outcome: WriteOutcome) (jitter: float) (s: NodeState) =
        match s.GroupWrites |> Map.tryPick (fun g w -> if w.Id = id then Some(g, w) else None) with
        | Some(group, write) ->
            let s = stale { s with GroupWrites = s.GroupWrites.Remove group }
            match outcome with
            | Written record ->
                let s = { s with GroupRetries = s.GroupRetries.Remove group }
                let s, c =
                    match record with
                    | Some r -> observeLease s.Now r s
                    | None -> forgetLease s.Now group s
                match write.Kind, record with
                | ClaimWrite(_, previous), Some r ->
                    { s with
                        Claims = s.Claims.Add(group, { Version = r.Version; Seq = None; StartedAt = s.Now; AcknowledgedAt = None; From = previous })
                        Contests = s.Contests.Remove group
                        Lan = { s.Lan with SendSoon = true } },
                    c
                | ReleaseWrite, _ | DeleteWrite, _ -> { s with Claims = s.Claims.Remove group }, c
                | _ -> s, c
            | Conflict | NotFound -> s, [ ReadLease group ]
            | Failed _ ->
                { s with GroupRetries = s.GroupRetries.Add(group, retry (s.GroupRetries.TryFind group) jitter s.Now) }, []
        | None -> s, []

    let private applied (outcome: KernelOutcome) =
        match outcome with
        | Applied | FenceExtended _ -> true
        | SkippedFenceEnded | AddressNotOurs | KernelFailed _ -> false

    /// One VIP's part of a kernel command done: `outcome` is that VIP's.
    let private completeVip (step: VipStep) (ip: Ip) (outcome: KernelOutcome) (s: NodeState) =
        let k = s.Kernel
        let setVip (f: VipKernel -> VipKernel) =
            match k.Vips.TryFind ip with
            | Some v -> { k with Vips = k.Vips.Add(ip, f { v with Pending = None }) }
            | None -> k
        let applied = applied outcome
        match step with
        | VipStep.Admitting ->
            match outcome with
            | _ when applied -> { s with Kernel = setVip (fun v -> { v with Admitted = true; AddressWrittenAt = Some s.Now }) }
            | AddressNotOurs ->
                { s with
                    Kernel = { k with Vips = k.Vips.Remove ip; Foreign = k.Foreign.Add ip }
                    Transitions = NowRefusedByKernel ip :: s.Transitions }
            | _ -> { s with Kernel = { k with Vips = k.Vips.Remove ip } }
        | VipStep.Refreshing -> { s with Kernel = setVip (fun v -> if applied then { v with AddressWrittenAt = Some s.Now } else v) }
        | VipStep.Holding ->
            if applied then
                let taken = k.Vips.TryFind ip |> Option.bind _.TakenFrom
                { s with
                    Kernel = setVip (fun v -> { v with Held = true; Announce = Some { HeldAt = s.Now; Sent = 0; LastSentAt = s.Now } })
                    Transitions = NowHeld(ip, taken) :: s.Transitions }
            else { s with Kernel = setVip id }
        | VipStep.Unholding -> { s with Kernel = setVip (fun v -> if applied then { v with Held = false; Announce = None } else v) }
        | VipStep.Withdrawing -> if applied then { s with Kernel = { k with Vips = k.Vips.Remove ip } } else { s with Kernel = setVip id }
        | VipStep.Announcing ->
            match outcome with
            | Applied ->
                { s with
                    Kernel =
                        setVip (fun v -> { v with Announce = v.Announce |> Option.map (fun a -> { a with Sent = a.Sent + 1; LastSentAt = s.Now }) }) }
            | _ -> { s with Kernel = setVip id }

    /// A contest is withdrawn once an Unhold left no address of its group held.
    let private contestsWithdrawn (s: NodeState) =
        let stillHeld gid =
            s.Desired.GroupById.TryFind gid
            |> Option.exists (fun g -> g.Addresses |> List.exists (fun a -> s.Kernel.Vips.TryFind a |> Option.exists _.Held))
        { s with Contests = s.Contests |> Map.map (fun gid c -> if c.Withdrawn || stillHeld gid then c else { c with Withdrawn = true }) }

    let private completeKernel (command: KernelCommand) (outcome: KernelOutcome) (except: (Ip * KernelOutcome) list) (s: NodeState) =
        let k = s.Kernel
        let exceptions = Map.ofList except
        let outcomeOf ip = exceptions.TryFind ip |> Option.defaultValue outcome
        let each step (ips: Ip list) (s: NodeState) = ips |> List.fold (fun s ip -> completeVip step ip (outcomeOf ip) s) s
        let s =
            match command with
            | InstallFence _ -> { s with Kernel = { k with Installed = applied outcome; FencePending = None } }
            | ExtendFence deadline ->
                // A write that overran the kernel slack is recorded as answering until its real end: being later
                // than the fence deadline, it is written again at once (fenceStage), with a fresh clock.
                let written =
                    match outcome with
                    | FenceExtended endsBy when endsBy > deadline + Timing.KernelSlack -> Some endsBy
                    | _ when applied outcome -> Some deadline
                    | _ -> None
                { s with Kernel = { k with FencePending = None; FenceWritten = written } }
            | ExpireFence -> { s with Kernel = { k with FencePending = None; FenceWritten = (if applied outcome then None else k.FenceWritten) } }
            | Admit(vips, _) -> each VipStep.Admitting (List.map fst vips) s
            | RefreshAddress(ip, _, _, _) -> each VipStep.Refreshing [ ip ] s
            | Hold ips -> each VipStep.Holding ips s
            | Unhold ips ->
                let s = each VipStep.Unholding ips s
                if ips |> List.exists (outcomeOf >> applied) then contestsWithdrawn s else s
            | Withdraw vips -> each VipStep.Withdrawing (List.map fst vips) s
            | Announce(ip, _) -> each VipStep.Announcing [ ip ] s
        // A fence write that took effect changes no role (the fence stage follows the deadline it recorded);
        // re-running the ownership pass for each one, every few milliseconds, would cost it all its CPU.
        match command, outcome with
        | (ExtendFence _ | ExpireFence), (Applied | FenceExtended _) -> s
        | (RefreshAddress _ | Announce _), _ -> { s with MaintenanceDueAt = Some s.Now }
        | _ -> stale { s with MaintenanceDueAt = Some s.Now }

    /// A Service as observed, with the instant this node saw it change (kept when nothing changed).
    let private stampService (now: Instant) (s: NodeState) (service: Service) =
        match s.View.Services.TryFind service.Key with
        | Some known when { known with ChangedSeenAt = 0L } = { service with ChangedSeenAt = 0L } -> known
        | _ -> { service with ChangedSeenAt = now }

    let private dhcpCommand (action: DhcpAction) : Command =
        match action with
        | DhcpAction.Start want -> StartDhcp want
        | DhcpAction.Stop(want, mode) -> StopDhcp(want, mode)
        | DhcpAction.Record(service, address, mac) -> RecordDhcpLease(service, address, mac)
        | DhcpAction.Warn event -> Emit event

    let private evolve (input: Input) (s: NodeState) : NodeState * Command list =
        match input with
        | Started(incarnation, existing, linkUp, now) ->
            let vips =
                existing
                |> List.map (fun (ip, prefix) ->
                    ip,
                    { Prefix = prefix
                      Link = VipLink.Parent
                      Admitted = true
                      Held = false
                      Pending = None
                      AddressWrittenAt = None
                      Announce = None
                      TakenFrom = None })
                |> Map.ofList
            { s with
                Incarnation = incarnation
                IncarnationStartedAt = now
                Now = now
                LinkUp = linkUp
                Lan = Lan.initial now
                DerivedStale = true
                Kernel = { s.Kernel with Vips = vips; FencePending = Some(InstallFence(List.map fst existing)) } },
            [ Kernel(InstallFence(List.map fst existing)) ]
        | Tick now -> { s with Now = now }, []
        | ServicesListed(services, now) ->
            let stamped = services |> List.map (fun v -> v.Key, stampService now s v) |> Map.ofList
            stale { s with Now = now; View = { s.View with ServicesSynced = true; Services = stamped }; DesiredStale = true }, []
        | ServiceUpserted(service, now) ->
            stale
                { s with
                    Now = now
                    View = { s.View with Services = s.View.Services.Add(service.Key, stampService now s service) }
                    DesiredStale = true },
            []
        | ServiceDeleted(key, now) ->
            stale
                { s with
                    Now = now
                    View = { s.View with Services = s.View.Services.Remove key; Families = s.View.Families.Remove key }
                    DesiredStale = true },
            []
        | ServiceFamiliesObserved(entries, listed, now) ->
            let start = if listed then Map.empty else s.View.Families
            let families = entries |> List.fold (fun (acc: Map<_, _>) (key, fs, policy) -> acc.Add(key, (fs, policy))) start
            if families = s.View.Families then { s with Now = now }, []
            else stale { s with Now = now; View = { s.View with Families = families }; DesiredStale = true }, []
        | SlicesListed(slices, now) ->
            stale { s with Now = now; View = { s.View with SlicesSynced = true; Slices = Map.ofList slices }; DesiredStale = true }, []
        | SliceUpserted(name, slice, now) ->
            stale { s with Now = now; View = { s.View with Slices = s.View.Slices.Add(name, slice) }; DesiredStale = true }, []
        | SliceDeleted(name, now) ->
            stale { s with Now = now; View = { s.View with Slices = s.View.Slices.Remove name }; DesiredStale = true }, []
        | LeasesListed(leases, now) -> listLeases now leases { s with Now = now }
        | LeaseUpserted(lease, now) -> observeLease now lease { s with Now = now }
        | LeaseDeleted(name, now) -> forgetLease now name { s with Now = now }
        | FrameReceived(frame, now) -> receiveFrame now frame { s with Now = now }
        | FrameDropped(error, now) ->
            { s with Now = now; Lan = { s.Lan with Dropped = s.Lan.Dropped.Add(Undecodable error, 1L + defaultArg (s.Lan.Dropped.TryFind(Undecodable error)) 0L) } }, []
        | WriteCompleted(id, outcome, jitter, now) ->
            let s = { s with Now = now }
            let s, c1 = completeRegistrationWrite id outcome jitter s
            let s, c2 = completeDeposition id outcome jitter s
            let s, c3 = completeGroupWrite id outcome jitter s
            s, c1 @ c2 @ c3
        | KernelCompleted(command, outcome, except, now) -> completeKernel command outcome except { s with Now = now }, []
        | LinkChanged(up, now) -> stale { s with Now = now; LinkUp = up }, []
        | PoolConfigObserved(data, now) ->
            let read = data |> Option.map Pools.read |> Option.defaultValue { Config = Pools.none; Errors = [] }
            stale { s with Now = now; View = { s.View with PoolsSynced = true; Pools = read }; DesiredStale = true }, []
        | NodesListed(nodes, now) ->
            let byName = nodes |> List.map (fun n -> n.Name, n) |> Map.ofList
            stale { s with Now = now; View = { s.View with NodesSynced = true; Nodes = byName }; DesiredStale = true }, []
        | NodeUpserted(node, now) ->
            stale { s with Now = now; View = { s.View with Nodes = s.View.Nodes.Add(node.Name, node) }; DesiredStale = true }, []
        | NodeDeleted(name, now) ->
            stale { s with Now = now; View = { s.View with Nodes = s.View.Nodes.Remove name }; DesiredStale = true }, []
        | InterfaceRead(facts, now) ->
            let facts = InterfaceFacts.normalise facts
            if s.View.InterfaceKnown && facts = s.View.Interface then { s with Now = now }, []
            else
                stale
                    { s with
                        Now = now
                        View = { s.View with InterfaceKnown = true; Interface = facts }
                        Kernel = { s.Kernel with Foreign = Set.empty }
                        DesiredStale = true },
                []
        | StopRequested now ->
            match s.Phase with
            | Stopping _ | Stopped -> { s with Now = now }, []
            | _ -> stale { s with Now = now; Phase = Stopping now }, []
        | ForwardingReported(report, now) ->
            // Status and Events follow the report in the next ownership pass.
            if report = s.Forwarding then { s with Now = now }, [] else stale { s with Now = now; Forwarding = report }, []
        | DhcpReported(service, outcome, now) ->
            let clients, actions = DhcpServices.report now service outcome s.Dhcp
            { s with Now = now; Dhcp = clients }, actions |> List.map dhcpCommand

    // ════════════════════════════════════════════════════════════════════════════════════════════════
    // Decide, stage 1: the node's own registration (join, fence mode, intent, leave)
    // ════════════════════════════════════════════════════════════════════════════════════════════════

    /// The intent this node's registration must record: the deposition in progress, or an earlier one whose
    /// target incarnation is still a Joined member in this view.
    let private intent (s: NodeState) : Intent option =
        let active =
            s.Depositions
            |> Map.toList
            |> List.tryPick (fun (node, d) ->
                match d.Stage with
                | RecordingIntent | Deposing _ | Uncertain -> Some { Target = node; Incarnation = d.Incarnation }
                | DepositionDone -> None)
        let lingering () =
            s.Registration.Written
            |> Option.bind _.Deposing
            |> Option.filter (fun i ->
                match s.View.Registrations.Known.TryFind i.Target with
                | Some o -> o.Registration.State = Joined && o.Registration.Incarnation = i.Incarnation
                | None -> false)
        active |> Option.orElseWith lingering

    /// Whether this node needs a fence beyond this instant: it holds, or wants to hold, a VIP.
    let private needsFence (s: NodeState) =
        not s.Claims.IsEmpty
        || s.Kernel.Vips |> Map.exists (fun _ v -> v.Held || v.Admitted)
        || s.Roles
           |> Map.exists (fun _ r ->
               match r with
               | Holding | Acknowledging | Claiming _ | Reclaiming _ -> true
               | Waiting(NotEntitled NoFence) | Waiting(TakeoverDueAt _) -> true
               | _ -> false)

    let private lanAtRisk (s: NodeState) =
        match lanFence s with
        | Lapsed -> true
        | Until t -> t - s.Now < ProtocolConstants.armLead (timing s)
        | Unbounded -> false

    let private desiredFenceMode (s: NodeState) =
        let armed = s.Registration.Written |> Option.exists (fun r -> r.Fence = ApiFence)
        let possible = running s && s.StandAside.IsNone
        let wanted = possible && needsFence s
        let held (since: Instant option) = since |> Option.exists (fun t -> s.Now - t < ProtocolConstants.DisarmAfter)
        // A node that answers for nothing yet gives its LAN fence D_L to form (its peers' first echoes) before
        // it writes an API fence only to claim: a cluster starting up then arms nothing.
        let answersSomething = s.Kernel.Vips |> Map.exists (fun _ v -> v.Held || v.Admitted)
        if wanted && lanAtRisk s && (answersSomething || listenedLongEnough s) then ApiFence
        elif armed && possible then
            // Once armed, the fence stays a while: the LAN must have been healthy for DisarmAfter, and a fence
            // no longer needed is still kept DisarmAfter from arming (needs come and go with roles).
            let lanHealthyLongEnough = s.ApiFence.LanHealthySince |> Option.exists (fun t -> s.Now - t >= ProtocolConstants.DisarmAfter)
            if wanted && not lanHealthyLongEnough then ApiFence
            elif not wanted && held s.ApiFence.ArmedAt then ApiFence
            else LanFence
        else LanFence

    /// The term to join with: the same after a crash (still Joined with these settings), one more otherwise.
    let private joinTerm (s: NodeState) =
        match s.View.Registrations.Known.TryFind s.Self with
        | Some o when o.Registration.Incarnation = s.Incarnation -> o.Registration.Term
        | Some o when o.Registration.State = Joined && o.Registration.Fingerprint = s.Fingerprint -> max o.Registration.Term s.Registration.Term
        | Some o -> max (o.Registration.Term + 1L) s.Registration.Term
        | None ->
            match s.View.Registrations.Absent.TryFind s.Self with
            | Some a -> max (a.Last.Registration.Term + 1L) s.Registration.Term
            | None -> max 1L s.Registration.Term

    let private registrationStage (m: Membership) (s: NodeState) : NodeState * Command list =
        let reg = s.Registration
        let waiting = reg.Pending.IsSome || not reg.Known || not s.View.LeasesSynced || (reg.Retry |> Option.exists (fun r -> s.Now < r.At))
        if waiting then s, []
        else
            let allWithdrawn () = s.Kernel.Vips |> Map.forall (fun _ v -> not v.Held && v.Pending.IsNone)
            // What the write records: every node that may depose this one (at join, every member seen).
            let recorded () =
                if joined s then required s |> List.choose (fun n -> Membership.termOf s.View.Registrations n |> Option.map (fun t -> n, t))
                else Membership.others m s.Self |> Map.toList |> List.map (fun (n, o) -> n, o.Registration.Term)
            let desired state fence term deposing =
                { Node = s.Self
                  Incarnation = s.Incarnation
                  Term = term
                  State = state
                  Fence = fence
                  Fingerprint = s.Fingerprint
                  Members = Map.ofList (recorded ())
                  Deposing = deposing
                  Interface = s.View.Interface }
            let write change (content: Registration) =
                let id, s = nextId s
                let durationSeconds = int ((timing s).LanLeaseDuration + 999L) / 1000
                let s =
                    { s with
                        Registration = { s.Registration with Pending = Some(id, change, content, s.Now) }
                        // From the moment a disarm may land, others may depose without waiting D_A.
                        ApiFence = (if content.Fence = LanFence then { s.ApiFence with ValidUntil = None } else s.ApiFence) }
                s, [ WriteLease(id, Registration.write (LeaseNames.registration s.Self) reg.Version durationSeconds content) ]
            match s.Phase, reg.Written with
            | Stopped, _ -> s, []
            | Stopping _, Some written when written.State = Joined && allWithdrawn () ->
                write Leave { written with State = Left; Fence = LanFence; Members = Map.ofList (recorded ()) }
            | Stopping _, _ -> s, []
            // A node joins with its VIP interface read, so that the join already publishes it.
            | _, None when s.View.LeasesSynced && s.View.InterfaceKnown && s.Now >= reg.RejoinNotBefore ->
                write Join (desired Joined LanFence (joinTerm s) (intent s))
            | _, None -> s, []
            | _, Some written ->
                let fence = desiredFenceMode s
                let deposing = intent s
                let wanted () = desired Joined fence written.Term deposing
                let newIntent = deposing.IsSome && deposing <> written.Deposing
                if fence = ApiFence && written.Fence = LanFence then write Arm (wanted ())
                elif fence = LanFence && written.Fence = ApiFence then write Disarm (wanted ())
                elif newIntent then write RecordIntent (wanted ())
                elif s.View.InterfaceKnown && written.Interface <> s.View.Interface then write Refresh (wanted ())
                elif written.Fence = ApiFence
                     && s.ApiFence.LastRenewalStart |> Option.forall (fun t -> s.Now >= t + (timing s).ApiRetryPeriod) then
                    write Renew (wanted ())
                else s, []

    // ════════════════════════════════════════════════════════════════════════════════════════════════
    // Decide, stage 2: the LAN (frames) and the fences (kernel element)
    // ════════════════════════════════════════════════════════════════════════════════════════════════

    /// Members this node stops granting: deaf to it, or the target of its own intent.
    let private refused (s: NodeState) (m: Membership) : Set<string> =
        // A deposition whose (b) may still land: never grant its target again (docs/PROTOCOL.md §3).
        let intents =
            s.Depositions |> Map.toList |> List.map (fun (node, d) -> { Target = node; Incarnation = d.Incarnation })
        let recordsMe (node: string) =
            match m.Members.TryFind node with
            | Some o -> o.Registration.Members.TryFind s.Self = Some s.Registration.Term
            | None -> false
        s.Lan.Peers
        |> Map.filter (fun node peer ->
            intents |> List.exists (fun i -> i.Target = node && i.Incarnation = peer.Incarnation)
            || (Lan.isDeaf s.Now (timing s) s.IncarnationStartedAt s.Lan { peer with AckedMe = peer.AckedMe || recordsMe node }))
        |> Map.keys
        |> Set.ofSeq

    let private lanStage (m: Membership) (s: NodeState) : NodeState * Command list =
        // Aside once the kernel answers for nothing, standing aside or stopping: others then take this node's
        // groups without its acknowledgement, and a stopping node's successors need not wait for its Left
        // registration to reach them through the API. A change of the flag goes out at once.
        let aside =
            (s.StandAside.IsSome || stopping s)
            && s.Kernel.Vips |> Map.forall (fun _ v -> not v.Held && v.Pending <> Some VipStep.Holding)
        let due = s.Now >= s.Lan.NextSendAt || s.Lan.SendSoon || aside <> s.Lan.SaidAside
        match s.Phase with
        | Stopped -> s, []
        | _ when not due || s.Incarnation = Incarnation 0UL -> s, []
        | _ ->
            let capped =
                s.Contests
                |> Map.toList
                |> List.filter (fun (_, c) -> not c.Withdrawn)
                |> List.map (fun (_, c) -> c.By, c.ClaimSeq - 1u)
                |> List.groupBy fst
                |> List.map (fun (node, caps) -> node, caps |> List.map snd |> List.min)
                |> Map.ofList
            let claims =
                s.Claims |> Map.toList |> List.filter (fun (_, c) -> c.AcknowledgedAt.IsNone) |> List.map (fst >> GroupHash.ofGroup)
            let frame, lan = Lan.send s.Now (timing s) s.Self s.Incarnation s.FingerprintValue aside m (refused s m) capped claims s.Lan
            let lastGrant =
                lan.Peers
                |> Map.fold (fun (acc: Map<string, Instant>) node peer ->
                    match peer.Granted with
                    | Some g -> acc.Add(node, max g.ReceivedAt (defaultArg (acc.TryFind node) g.ReceivedAt))
                    | None -> acc) s.LastGrantAt
            let claimsWithSeq =
                s.Claims |> Map.map (fun _ c -> if c.Seq.IsNone && c.AcknowledgedAt.IsNone then { c with Seq = Some frame.Seq } else c)
            let ackedMore = lan.Acked <> s.Lan.Acked
            let s = { s with Lan = lan; LastGrantAt = lastGrant; Claims = claimsWithSeq }
            // A member acknowledged for the first time joins the required set.
            let s = if ackedMore then refreshDerived { s with DerivedStale = true } else s
            s, [ SendFrame frame ]

    let private fenceStage (m: Membership) (s: NodeState) : NodeState * Command list =
        let lan = lanFence s
        let healthy =
            match lan with
            | Unbounded -> true
            | Until t -> t - s.Now >= ProtocolConstants.armLead (timing s)
            | Lapsed -> false
        let s =
            { s with
                ApiFence =
                    { s.ApiFence with
                        LanHealthySince = (if healthy then Some(defaultArg s.ApiFence.LanHealthySince s.Now) else None)
                        ValidUntil = s.ApiFence.ValidUntil |> Option.filter (fun t -> t > s.Now) }
                // A healthy LAN fence ends a run of depositions (and its rejoin backoff).
                Registration =
                    if healthy && joined s && s.Registration.Depositions > 0 then { s.Registration with Depositions = 0 }
                    else s.Registration }
        let k = s.Kernel
        if not k.Installed || k.FencePending.IsSome then s, []
        else
            match kernelDeadline s (fence s m), k.FenceWritten with
            | None, Some written when written > s.Now ->
                { s with Kernel = { k with FencePending = Some ExpireFence } }, [ Kernel ExpireFence ]
            | None, _ -> s, []
            | Some target, written ->
                let step = ProtocolConstants.fenceStep (timing s)
                let rewrite =
                    match written with
                    | None -> true
                    | Some w -> w <= s.Now || target < w || target - w >= step
                if rewrite then
                    let command = ExtendFence target
                    { s with Kernel = { k with FencePending = Some command } }, [ Kernel command ]
                else s, []

    // ════════════════════════════════════════════════════════════════════════════════════════════════
    // Decide, stage 3: depositions (docs/PROTOCOL.md §3)
    // ════════════════════════════════════════════════════════════════════════════════════════════════

    /// Since when this node has not granted `node`: its last grant, its own start if it never granted it, or
    /// the last change of the node's registration if later (a node that just registered is not silent yet),
    /// or when this node last heard again after being isolated (it was deaf, not they silent).
    let private silentSince (s: NodeState) (node: string) (o: ObservedRegistration) =
        max (defaultArg (s.LastGrantAt.TryFind node) s.IncarnationStartedAt) o.ChangedSeenAt |> max s.ListeningSince

    /// This node still hears the LAN: some other member it ever heard was heard at least D_L/2 after `node`
    /// fell silent. A node that goes deaf stops hearing every member within about one interval of each other,
    /// so the first silence it notices must not be taken for that member's fault (it would depose its healthy
    /// peers one by one, each deposition shrinking its required set below the two that make it isolated).
    /// With no other member heard, nothing can tell (docs/PROTOCOL.md §3).
    let private stillHears (s: NodeState) (node: string) (silentFrom: Instant) =
        let others = s.Lan.Peers |> Map.filter (fun n _ -> n <> s.Self && n <> node && s.Membership.Members.ContainsKey n)
        others.IsEmpty || others |> Map.exists (fun _ p -> p.HeardAt >= silentFrom + (timing s).LanLeaseDuration / 2L)

    /// Whether this node may depose `node` now: the conditions of §3, from its own view.
    let private mayDepose (s: NodeState) (node: string) (o: ObservedRegistration) =
        let t = timing s
        let r = o.Registration
        let proofA =
            match s.Lan.Peers.TryFind node with
            | Some p -> p.Incarnation = r.Incarnation && p.AckedMe
            | None -> false
        let proofB = r.Members.TryFind s.Self = Some s.Registration.Term
        let silentFrom = silentSince s node o
        let silentEnough = s.Now - silentFrom >= t.LanLeaseDuration && stillHears s node silentFrom
        let apiFenceOver =
            match r.Fence with
            | LanFence -> true
            | ApiFence -> s.Now - o.ChangedSeenAt >= t.ApiLeaseDuration
        r.State = Joined && (proofA || proofB) && silentEnough && apiFenceOver

    /// The (b) write of a deposition: the target's registration, Deposed by this node, from the version the
    /// deposition was decided on (it keeps the target's own intent, if any).
    let private deposeWrite (s: NodeState) (d: Deposition) (o: ObservedRegistration) =
        let id, s = nextId s
        let content = { o.Registration with State = Deposed s.Self }
        let durationSeconds = int (((timing s).LanLeaseDuration + 999L) / 1000L)
        { s with Depositions = s.Depositions.Add(d.Target, { d with Stage = Deposing id }) },
        [ Note(DeposingNode(d.Target, s.Now - (defaultArg (s.LastGrantAt.TryFind d.Target) s.IncarnationStartedAt)))
          WriteLease(id, Registration.write (LeaseNames.registration d.Target) (Some d.Expected) durationSeconds content) ]

    /// Continues the deposition in progress: (b) once (a) is recorded; gives up while (b) cannot have landed.
    let private continueDeposition (entitled: bool) (d: Deposition) (s: NodeState) =
        let observed = s.View.Registrations.Known.TryFind d.Target
        let moved = observed |> Option.forall (fun o -> o.Version <> d.Expected)
        let retryWait = d.Retry |> Option.exists (fun r -> s.Now < r.At)
        match d.Stage, observed with
        | RecordingIntent, Some o when not (mayDepose s d.Target o) || not entitled || moved ->
            // Heard again, changed, or this node may no longer act: no (b) was sent, so give up.
            { s with Depositions = s.Depositions.Remove d.Target }, []
        | RecordingIntent, Some o ->
            let recorded = s.Registration.Written |> Option.bind _.Deposing = Some { Target = d.Target; Incarnation = d.Incarnation }
            if recorded && not retryWait then deposeWrite s d o else s, []
        | RecordingIntent, None -> { s with Depositions = s.Depositions.Remove d.Target }, []
        | Uncertain, _ when moved ->
            // The target's registration moved on: an earlier (b) either landed (the view shows it) or never will.
            match observed with
            | Some o when o.Registration.State = Deposed s.Self && o.Registration.Incarnation = d.Incarnation ->
                { s with Depositions = s.Depositions.Add(d.Target, { d with Stage = DepositionDone }) }, []
            | _ -> { s with Depositions = s.Depositions.Remove d.Target }, []
        | Uncertain, Some o when not retryWait -> deposeWrite s d o
        | _ -> s, []

    let private depositionStage (m: Membership) (s: NodeState) : NodeState * Command list =
        let entitled = running s && joined s && inForce s m && s.StandAside.IsNone && s.LinkUp
        // Finished depositions are forgotten once the view shows their target gone.
        let s =
            { s with
                Depositions =
                    s.Depositions
                    |> Map.filter (fun node d ->
                        match d.Stage with
                        | DepositionDone ->
                            match s.View.Registrations.Known.TryFind node with
                            | Some o -> o.Registration.State = Joined && o.Registration.Incarnation = d.Incarnation
                            | None -> false
                        | _ -> true) }
        match s.Depositions |> Map.tryPick (fun _ d -> match d.Stage with DepositionDone -> None | _ -> Some d) with
        | Some d -> continueDeposition entitled d s
        | None when entitled ->
            let silent =
                m.Members
                |> Map.filter (fun node o -> node <> s.Self && standing s m node = Silent && mayDepose s node o)
                |> Map.toList
            if silent.IsEmpty then s, []
            else
                // An excluded node holds nothing but deposes like any live member.
                let live = m.Members |> Map.filter (fun n _ -> standing s m n = Live || standing s m n = Excluded) |> Map.keys |> List.ofSeq
                let candidate =
                    silent
                    |> List.tryFind (fun (node, o) ->
                        // Staggered by rank among the live members, so that one of them deposes and the rest see it.
                        let rank = Rendezvous.preference node live |> List.tryFindIndex ((=) s.Self) |> Option.defaultValue 0
                        s.Now >= silentSince s node o + (timing s).LanLeaseDuration + int64 rank * ProtocolConstants.depositionStagger (timing s))
                match candidate with
                | Some(node, o) ->
                    let d =
                        { Target = node
                          Incarnation = o.Registration.Incarnation
                          Expected = o.Version
                          Stage = RecordingIntent
                          StartedAt = s.Now
                          Retry = None }
                    stale { s with Depositions = s.Depositions.Add(node, d) }, []
                | None -> s, []
        | None -> s, []

    // ════════════════════════════════════════════════════════════════════════════════════════════════
    // Decide, stage 4: ownership — roles, group Lease writes, VIPs, status, Events
    // ════════════════════════════════════════════════════════════════════════════════════════════════

    /// The claims that every member has acknowledged (or whose missing members are gone). A member whose frames
    /// say it stands aside answers for nothing and claims again before it does: its acknowledgement is not needed.
    let private acknowledge (s: NodeState) (m: Membership) : NodeState =
        let others = Membership.others m s.Self
        let acked (c: Claim) =
            match c.Seq with
            | None -> false
            | Some seq ->
                others
                |> Map.forall (fun node _ ->
                    Lan.standsAside s.Now (timing s).LanLeaseDuration s.Lan node
                    || match s.Lan.Peers.TryFind node with
                       | Some p -> p.EchoOfMe |> Option.exists (fun e -> e >= seq)
                       | None -> false)
        { s with Claims = s.Claims |> Map.map (fun _ c -> if c.AcknowledgedAt.IsNone && acked c then { c with AcknowledgedAt = Some s.Now } else c) }

    /// Members heard recently that have not acknowledged a claim.
    let private missingAcks (s: NodeState) (m: Membership) (c: Claim) : string list =
        match c.Seq with
        | None -> []
        | Some seq ->
            Membership.others m s.Self
            |> Map.toList
            |> List.map fst
            |> List.filter (fun node ->
                not (Lan.standsAside s.Now (timing s).LanLeaseDuration s.Lan node)
                && match s.Lan.Peers.TryFind node with
                   | Some p -> not (p.EchoOfMe |> Option.exists (fun e -> e >= seq))
                   | None -> true)

    let private entitlement (s: NodeState) (m: Membership) : Result<unit, NotEntitledReason> =
        match s.Phase with
        | Stopping _ | Stopped -> Error AgentStopping
        | _ when not s.LinkUp -> Error InterfaceIsDown
        | _ when not (joined s) -> Error NotYetJoined
        | _ when s.StandAside.IsSome -> Error(StandsAside s.StandAside.Value)
        | _ when excludedByLabel s s.Self -> Error ExcludedFromLoadBalancers
        | _ when s.Now < s.ClaimsPausedUntil -> Error(ClaimsPausedUntil s.ClaimsPausedUntil)
        | _ when not (FenceBound.allows s.Now (fence s m)) -> Error NoFence
        | _ -> Ok()

    let private releaseReason (s: NodeState) : ReleaseReason option =
        if not s.LinkUp then Some InterfaceDown
        elif s.StandAside.IsSome then s.StandAside |> Option.map StoodAside
        elif excludedByLabel s s.Self then Some NowExcludedFromLoadBalancers
        else None

    let private role (s: NodeState) (m: Membership) (entitled: Result<unit, NotEntitledReason>)
        (moves: Map<GroupId, string * string>) (assignment: Assignment) (g: Group) : Role =
        let t = timing s
        let lease = s.View.Groups.TryFind g.Id
        let mine (h: GroupHolder) = h.Node = s.Self
        let reclaim version =
            match entitled with
            | Ok() -> Reclaiming version
            | Error reason -> Waiting(NotEntitled reason)
        match lease with
        | Some l when l.Holder |> Option.exists mine ->
            let h = l.Holder.Value
            match releaseReason s with
            | Some reason -> Releasing(l.Version, reason)
            | None when stopping s -> Waiting(NotEntitled AgentStopping)
            | None when not (Eligibility.allows s.Self g.Eligibility) -> Releasing(l.Version, NoLongerEligible)
            | None when h.Incarnation <> Some s.Incarnation || s.Contests.ContainsKey g.Id -> reclaim (Some l.Version)
            | None ->
                match s.Claims.TryFind g.Id with
                | Some c when c.AcknowledgedAt.IsSome -> Holding
                | Some c ->
                    let missing = missingAcks s m c |> List.filter (Lan.hears s.Now t.LanLeaseDuration s.Lan)
                    if s.Now - c.StartedAt >= ProtocolConstants.claimAckTimeout t && not missing.IsEmpty then
                        Releasing(l.Version, AcknowledgementMissing missing)
                    else Acknowledging
                | None -> reclaim (Some l.Version)
        | None when (s.View.GroupsAbsent.TryFind g.Id |> Option.bind _.LastHolder |> Option.exists (fun h -> mine h && h.Incarnation = Some s.Incarnation))
                    && releaseReason s = None && not (stopping s) && Eligibility.allows s.Self g.Eligibility ->
            reclaim None
        | _ ->
            match assignment with
            | HeldBy holder when holder = s.Self -> Waiting(NotEntitled NotYetJoined)
            | HeldBy holder when moves.TryFind g.Id = Some(holder, s.Self) && entitled = Ok() ->
                Claiming(lease |> Option.map _.Version, Some holder)
            | HeldBy holder -> Following holder
            | HolderLeaving holder -> Waiting(HolderReleasing holder)
            | HolderSilent holder -> Waiting(DepositionPending holder)
            | NoCandidate reason -> Unserved reason
            | Orphaned(successors, since, previous) ->
                match List.tryFindIndex ((=) s.Self) successors with
                | None -> Waiting NotACandidate
                | Some rank ->
                    match entitled with
                    | Error reason -> Waiting(NotEntitled reason)
                    | Ok() ->
                        let due = Ownership.claimDue t (orphanedSince s since previous) rank
                        if s.Now >= due then Claiming(lease |> Option.map _.Version, previous)
                        elif rank = 0 then Waiting(TakeoverDueAt due)
                        else Waiting(BetterRankedNode(successors.Head, rank))

    /// Which group Lease writes go first when more are due than may be in flight: releases (they hand
    /// groups on), then re-claims of groups this node answers for, then claims.
    let private writeUrgency role =
        match role with
        | Releasing _ -> 0
        | Reclaiming _ -> 1
        | _ -> 2

    /// Group Lease writes for the roles (one in flight per group, at most GroupWritesInFlight in all, the
    /// most urgent first; failed ones wait for their retry).
    let private groupWrites (s: NodeState) (roles: Map<GroupId, Role>) : NodeState * Command list =
        let heldIn (g: Group) = g.Addresses |> List.exists (fun ip -> s.Kernel.Vips.TryFind ip |> Option.exists (fun v -> v.Held || v.Pending.IsSome))
        let groupsById = s.Desired.GroupById
        let free gid =
            not (s.GroupWrites.ContainsKey gid) && (s.GroupRetries.TryFind gid |> Option.forall (fun r -> s.Now >= r.At))
        let writes gid role =
            match role with
            | Claiming _
            | Reclaiming _ -> true
            | Releasing _ -> not (heldIn groupsById[gid])
            | _ -> false
        let transitionsOf gid = s.View.Groups.TryFind gid |> Option.map _.Transitions |> Option.defaultValue 0
        let me = Some { Node = s.Self; Incarnation = Some s.Incarnation }
        let room = max 0 (ProtocolConstants.GroupWritesInFlight - s.GroupWrites.Count)
        roles
        |> Map.toList
        |> List.filter (fun (gid, role) -> free gid && writes gid role)
        |> List.sortBy (fun (_, role) -> writeUrgency role)
        |> List.truncate room
        |> List.fold
            (fun (s: NodeState, commands) (gid, role) ->
                let issue (s: NodeState) kind (write: LeaseWrite) =
                    let id, s = nextId s
                    { s with GroupWrites = s.GroupWrites.Add(gid, { Id = id; Kind = kind; StartedAt = s.Now }) },
                    WriteLease(id, write) :: commands
                match role with
                | Claiming(expected, previous) ->
                    issue s (ClaimWrite(expected, previous)) (GroupLeases.write gid expected (transitionsOf gid + 1) me)
                | Reclaiming expected ->
                    issue s (ClaimWrite(expected, Some s.Self)) (GroupLeases.write gid expected (transitionsOf gid) me)
                | Releasing(version, reason) ->
                    let paused =
                        match reason with
                        | AcknowledgementMissing _ -> { s with ClaimsPausedUntil = s.Now + ProtocolConstants.claimPause (timing s) }
                        | _ -> s
                    issue paused ReleaseWrite (GroupLeases.write gid (Some version) (transitionsOf gid) None)
                | _ -> s, commands)
            (s, [])
        |> fun (s, reversed) -> s, List.rev reversed

    /// Leases of groups no Service wants any more: their holder deletes them once withdrawn; a Lease nobody
    /// may still answer for is deleted by the janitor. Deletes share the room left by the claims and releases.
    let private staleLeases (s: NodeState) (m: Membership) (live: string list) : NodeState * Command list =
        let wanted = s.Desired.Groups |> List.map _.Id |> Set.ofList
        s.View.Groups
        |> Map.toList
        |> List.filter (fun (gid, _) -> LeaseNames.isElectionGroup gid && not (wanted.Contains gid) && not (s.GroupWrites.ContainsKey gid))
        |> List.filter (fun (gid, _) -> s.GroupRetries.TryFind gid |> Option.forall (fun r -> s.Now >= r.At))
        |> List.fold
            (fun (s: NodeState, commands, room) (gid, lease) ->
                let deleter =
                    match lease.Holder with
                    | Some h when h.Node = s.Self ->
                        let stillHeld = s.Kernel.Vips |> Map.exists (fun ip v -> v.Held && LeaseNames.group ip = gid)
                        if stillHeld then None else Some s.Self
                    | Some h ->
                        match standing s m h.Node with
                        | Gone | OutOfForce -> Ownership.janitor live gid
                        | _ -> None
                    | None -> Ownership.janitor live gid
                if room > 0 && deleter = Some s.Self && (lease.Holder |> Option.exists (fun h -> h.Node = s.Self) || listenedLongEnough s) then
                    let id, s = nextId s
                    { s with GroupWrites = s.GroupWrites.Add(gid, { Id = id; Kind = DeleteWrite; StartedAt = s.Now }) },
                    DeleteLease(id, gid, lease.Version) :: commands,
                    room - 1
                else s, commands, room)
            (s, [], ProtocolConstants.GroupWritesInFlight - s.GroupWrites.Count)
        |> fun (s, reversed, _) -> s, List.rev reversed

    /// What each VIP should be in the kernel, from the roles.
    let private vipWants (s: NodeState) (roles: Map<GroupId, Role>) : Map<Ip, VipWant * Group> =
        s.Desired.Groups
        |> List.collect (fun g ->
            let want =
                match roles.TryFind g.Id with
                | Some Holding -> WantHeld
                | Some Acknowledging -> WantAdmitted
                | Some(Reclaiming _) when not (s.Contests.ContainsKey g.Id) ->
                    // The Lease went missing while this node held it: it keeps answering while it re-creates
                    // it (any other claimer needs its acknowledgement first).
                    if g.Addresses |> List.exists (fun ip -> s.Kernel.Vips.TryFind ip |> Option.exists _.Held) then WantHeld
                    else WantAdmitted
                | Some(Reclaiming _) -> WantAdmitted
                | Some(Releasing _) -> WantUnheld
                | _ -> WantAbsent
            g.Addresses |> List.map (fun ip -> ip, (want, g)))
        |> Map.ofList

    /// The kernel commands that bring every VIP to what the roles want: one command per kind of step, each over
    /// every VIP that takes that step now (one nftables transaction however many VIPs change). Stops go first:
    /// peers may be waiting for them (a contested claim, a release), and an address is withdrawn before others
    /// are admitted, so that a VIP admitted into the subnet of one being withdrawn becomes the subnet's primary
    /// address instead of a secondary the kernel would delete with it. A VIP takes one step at a time.
    let private vipCommands (s: NodeState) (m: Membership) (roles: Map<GroupId, Role>) : NodeState * Command list =
        let t = timing s
        let k = s.Kernel
        if not k.Installed then s, []
        else
            let wants = vipWants s roles
            let bound = fence s m
            let lifetime = t.AddressLifetime
            let linkOf ip = DhcpServices.link s.Desired.DhcpWants ip
            let prefixOf ip = DhcpServices.prefix (linkOf ip) (Desired.prefix s.Config) ip
            let ips = Map.fold (fun (acc: Ip list) ip _ -> if wants.ContainsKey ip then acc else ip :: acc) (List.ofSeq (Map.keys wants)) k.Vips
            let stepFor (ip: Ip) : (VipStep * int) option =
                let want = wants.TryFind ip |> Option.map fst |> Option.defaultValue WantAbsent
                match want, k.Vips.TryFind ip with
                | _, Some v when v.Pending.IsSome -> None
                | _, None when k.Foreign.Contains ip -> None
                | (WantHeld | WantAdmitted), None -> Some(VipStep.Admitting, prefixOf ip)
                | (WantHeld | WantAdmitted), Some v when not v.Admitted -> Some(VipStep.Admitting, v.Prefix)
                | WantHeld, Some v when not v.Held -> if FenceBound.allows s.Now bound then Some(VipStep.Holding, v.Prefix) else None
                | WantHeld, Some _ -> None
                | WantAdmitted, Some v when v.Held -> Some(VipStep.Unholding, v.Prefix)
                | WantAdmitted, Some _ -> None
                // A VIP no Service wants any more stays while the forwarder deletes its mappings from it (within
                // the fence; the group's Lease is deleted only once it is withdrawn, so nobody else holds it).
                | WantAbsent, Some v when v.Held && not (wants.ContainsKey ip) && s.Forwarding.Sources.Contains ip
                                         && FenceBound.allows s.Now bound && not (stopping s) && s.LinkUp -> None
                | (WantUnheld | WantAbsent), Some v when v.Held -> Some(VipStep.Unholding, v.Prefix)
                | WantUnheld, Some _ -> None
                | WantAbsent, Some v -> Some(VipStep.Withdrawing, v.Prefix)
                | (WantUnheld | WantAbsent), None -> None
            let takenFrom ip =
                wants.TryFind ip
                |> Option.bind (fun (_, g) -> s.Claims.TryFind g.Id)
                |> Option.bind _.From
            let why ip =
                match wants.TryFind ip with
                | Some(WantUnheld, g) ->
                    match roles.TryFind g.Id with
                    | Some(Releasing(_, reason)) -> Some(Ownership.describeRelease reason)
                    | _ -> None
                | Some(WantAdmitted, g) when s.Contests.ContainsKey g.Id -> Some(sprintf "node %s claimed it" s.Contests[g.Id].By)
                | Some(WantAbsent, g) ->
                    match roles.TryFind g.Id with
                    | Some(Following h) -> Some(sprintf "node %s holds it now" h)
                    | _ -> Some "this node no longer holds it"
                | Some _ -> None
                | None -> Some "no service uses it any more"
            // Each VIP's step, newest first (reversed below).
            let s, steps =
                ips
                |> List.fold
                    (fun (s: NodeState, steps) ip ->
                        match stepFor ip with
                        | Some(step, prefix) ->
                            let entry =
                                match s.Kernel.Vips.TryFind ip with
                                | Some v -> { v with Pending = Some step }
                                | None ->
                                    { Prefix = prefix
                                      Link = linkOf ip
                                      Admitted = false
                                      Held = false
                                      Pending = Some step
                                      AddressWrittenAt = None
                                      Announce = None
                                      TakenFrom = None }
                            let entry = if step = VipStep.Holding then { entry with TakenFrom = takenFrom ip } else entry
                            let transitions =
                                match step, why ip with
                                | VipStep.Unholding, Some w -> NowWithdrawn(ip, w) :: s.Transitions
                                | _ -> s.Transitions
                            { s with Kernel = { s.Kernel with Vips = s.Kernel.Vips.Add(ip, entry) }; Transitions = transitions },
                            (step, ip, prefix) :: steps
                        | None -> s, steps)
                    (s, [])
            let steps = List.rev steps
            let taking step = steps |> List.filter (fun (st, _, _) -> st = step)
            let ipsOf step = taking step |> List.map (fun (_, ip, _) -> ip)
            let vipsOf step = taking step |> List.map (fun (_, ip, prefix) -> ip, prefix)
            let command (make: 'a list -> KernelCommand) (items: 'a list) = if items.IsEmpty then [] else [ Kernel(make items) ]
            let held = ipsOf VipStep.Holding
            // The first announcements go right behind the Hold, not a turn later: the kernel fence drops them on
            // the wire if the Hold did not take effect (docs/KERNEL-FENCE.md).
            let announce =
                match kernelDeadline s bound with
                | Some d when s.Config.Arp -> held |> List.map (fun ip -> Kernel(Announce(ip, d)))
                | _ -> []
            s,
            command Unhold (ipsOf VipStep.Unholding)
            @ command Withdraw (vipsOf VipStep.Withdrawing)
            @ command (fun vips -> Admit(vips, lifetime)) (vipsOf VipStep.Admitting)
            @ command Hold held
            @ announce

    /// Status of every Service: written by the holder of its first address's group; cleared by its janitor
    /// when nobody can hold it or it is no longer Hybrid's.
    let private statusWrites (s: NodeState) (roles: Map<GroupId, Role>) (live: string list) : Command list =
        if s.Config.DisableServiceUpdates then []
        else
            let stateOf = s.Desired.States
            let groupOf = s.Desired.GroupOf
            let announcedBy =
                s.Desired.Groups
                |> List.collect (fun g ->
                    let holder =
                        match roles.TryFind g.Id with
                        | Some Holding -> Some s.Self
                        | Some(Following h) -> Some h
                        | _ -> None
                    match holder with
                    | Some h -> g.Addresses |> List.map (fun ip -> ip, h)
                    | None -> [])
                |> Map.ofList
            let iAmJanitor (key: ServiceKey) = isJanitor s live (string key)
            s.View.Services
            |> Map.toList
            |> List.choose (fun (key, service) ->
                let write ingress host =
                    match Status.changes service ingress host with
                    | None, None -> None
                    | ingress, host -> Some(WriteStatus(key, ingress, host))
                let clear () =
                    if service.Annotations.ContainsKey Annotations.VipHost && iAmJanitor key then write [] None else None
                match stateOf.TryFind key with
                | Some(Member(ips, _)) ->
                    match groupOf.TryFind ips.Head |> Option.bind roles.TryFind with
                    | Some Holding ->
                        let ingress =
                            ips
                            |> List.filter (fun ip -> announcedBy.ContainsKey ip && (s.Kernel.Vips.TryFind ip |> Option.exists _.Held || announcedBy[ip] <> s.Self))
                            |> List.map (Status.entry service)
                        // Until this node answers for an address of the group, the status stays as the previous
                        // holder left it: clearing it for the moment of a takeover would tell clients it is gone.
                        if ingress.IsEmpty then None else write (ingress @ Forwarding.ingress s service) (Some s.Self)
                    | Some(Unserved _) -> clear ()
                    | _ -> None
                | Some(Skipped _)
                | Some Refused
                | Some(AwaitingAddress _) -> clear ()
                | None -> None)

    /// The address policy's Warnings (refused and kept addresses) and those of Services waiting for an
    /// address from the pools.
    /// Bad entries of the pool ConfigMap, reported once each by its janitor (a node that becomes the janitor
    /// reports what is bad then, as for the Services' Warnings).
    let private poolConfigEvents (s: NodeState) (live: string list) : NodeState * Command list =
        let errors = Set.ofList s.View.Pools.Errors
        if not (isJanitor s live ProtocolConstants.AssignerKey) then { s with EmittedPoolErrors = Set.empty }, []
        else
            let fresh = Set.difference errors s.EmittedPoolErrors |> Set.toList
            { s with EmittedPoolErrors = errors },
            fresh |> List.map (fun e -> EmitPoolConfigEvent(EventReason.InvalidAddressPool, PoolWarning.message None (PoolEntryInvalid e)))

    /// Pool assignment (docs/POOLS.md): one node, the janitor of the pool ConfigMap among the live nodes,
    /// writes the addresses of every Service of ours that asks for none, all decided in one pass, and
    /// writes nothing more until it has seen them on the Services (or AssignmentSettle passed): a later pass
    /// then counts them as used.
    let private assignmentStage (s: NodeState) (m: Membership) (live: string list) : NodeState * Command list =
        let unaddressed (key: ServiceKey) =
            s.View.Services.TryFind key |> Option.exists (fun svc -> Addresses.requested svc = NoAddressYet)
        let assigning =
            s.Assigning |> Map.filter (fun key at -> unaddressed key && s.Now - at < ProtocolConstants.AssignmentSettle)
        let s = { s with Assigning = assigning }
        let entitled = entitlement s m = Ok()
        if not assigning.IsEmpty || not entitled || not (isJanitor s live ProtocolConstants.AssignerKey) then s, []
        else
            let writes =
                s.Desired.AddressAssignments
                |> List.choose (fun (key, outcome) ->
                    match outcome with
                    | AssignAddresses a when unaddressed key -> Some a
                    | _ -> None)
            { s with Assigning = writes |> List.fold (fun acc a -> acc.Add(a.Service, s.Now)) assigning },
            writes |> List.map AssignAddress

    /// Warnings that apply now (emitted once each, by each Service's janitor among the registered members) and Normal Events for the
    /// VIPs this node started or stopped answering since the last pass.
    let private events (s: NodeState) (roles: Map<GroupId, Role>) (members: string list) : NodeState * Command list =
        let stateOf = s.Desired.States
        let groupOf = s.Desired.GroupOf
        let groupById = s.Desired.GroupById
        let announced = s.Desired.Groups |> List.collect _.Addresses |> Set.ofList
        let iAmJanitor (key: ServiceKey) = isJanitor s members (string key)
        let unservedBy ip =
            match groupOf.TryFind ip |> Option.bind roles.TryFind with
            | Some(Unserved reason) -> Some reason
            | _ -> None
        let warnings =
            s.View.Services
            |> Map.toList
            |> List.collect (fun (_, service) ->
                ServiceWarnings.ofState s.Config s.Desired announced unservedBy (s.Now - service.ChangedSeenAt >= ServiceWarnings.EndpointGrace) service)
            |> List.append (ServiceWarnings.ofAddresses s.Desired None)
            |> List.append (DhcpServices.warnings s.Desired.DhcpProblems)
            |> List.filter (fun w -> iAmJanitor w.Service)
            |> Set.ofList
            |> Set.union (Forwarding.warnings s)
        let fresh = Set.difference warnings s.EmittedWarnings |> Set.toList |> List.map Emit
        let membersUsing (ip: Ip) =
            match groupOf.TryFind ip |> Option.bind groupById.TryFind with
            | Some g ->
                g.Members
                |> List.filter (fun key ->
                    match stateOf.TryFind key with
                    | Some(Member(ips, _)) -> List.contains ip ips
                    | _ -> false)
            | None -> []
        let transitions =
            s.Transitions
            |> List.rev
            |> List.collect (fun transition ->
                match transition with
                | NowHeld(ip, Some previous) when previous <> s.Self ->
                    membersUsing ip
                    |> List.map (fun key ->
                        Emit { Service = key; Type = Normal; Reason = EventReason.TookOver; Message = sprintf "took over %s from node %s" (Ip.format ip) previous })
                | NowHeld(ip, _) ->
                    membersUsing ip
                    |> List.map (fun key ->
                        Emit { Service = key; Type = Normal; Reason = EventReason.Announced; Message = sprintf "announcing %s from node %s" (Ip.format ip) s.Self })
                | NowWithdrawn(ip, why) ->
                    membersUsing ip
                    |> List.map (fun key ->
                        Emit { Service = key; Type = Normal; Reason = EventReason.Withdrawn; Message = sprintf "withdrew %s: %s" (Ip.format ip) why })
                | NowRefusedByKernel ip ->
                    membersUsing ip
                    |> List.map (fun key ->
                        Emit
                            { Service = key; Type = Warning; Reason = EventReason.AddressInUseOnInterface
                              Message = ServiceWarnings.addressInUse ip s.Self }))
        { s with EmittedWarnings = warnings; Transitions = [] }, transitions @ fresh

    /// The instants at which the ownership decisions may change without any input.
    let private ownershipDue (s: NodeState) (assignments: Map<GroupId, Assignment>) : Instant option =
        let t = timing s
        [ for KeyValue(_, a) in assignments do
              match a with
              | Orphaned(successors, since, previous) ->
                  match List.tryFindIndex ((=) s.Self) successors with
                  | Some rank -> Ownership.claimDue t (orphanedSince s since previous) rank
                  | None -> ()
              | _ -> ()
          for KeyValue(_, c) in s.Claims do
              if c.AcknowledgedAt.IsNone then c.StartedAt + ProtocolConstants.claimAckTimeout t
          for KeyValue(_, a) in s.View.GroupsAbsent do
              a.Since + t.LanLeaseDuration
          for KeyValue(_, service) in s.View.Services do
              service.ChangedSeenAt + ServiceWarnings.EndpointGrace
          for KeyValue(_, r) in s.GroupRetries do
              r.At
          for KeyValue(_, at) in s.Assigning do
              at + ProtocolConstants.AssignmentSettle
          max s.IncarnationStartedAt s.ListeningSince + t.LanLeaseDuration
          s.ClaimsPausedUntil ]
        |> List.filter (fun at -> at > s.Now)
        |> function
            | [] -> None
            | ats -> Some(List.min ats)

    /// The address policy's inputs as this node knows them now: the pools, the Node objects, and every
    /// node's VIP interface (as its registration records it; this node's own reading for itself).
    let private policyInputs (s: NodeState) : AddressPolicyInputs =
        let published = s.View.Registrations.Known |> Map.map (fun _ o -> o.Registration.Interface)
        { Pools = s.View.Pools.Config
          Network = AddressPolicy.network (List.ofSeq s.View.Nodes.Values) (published.Add(s.Self, s.View.Interface)) }

    let private signature (s: NodeState) (m: Membership) : OwnershipSignature =
        { Live = m.Members |> Map.filter (fun n _ -> standing s m n = Live) |> Map.keys |> List.ofSeq
          Entitled = (entitlement s m = Ok())
          Fenced = FenceBound.allows s.Now (fence s m)
          Vips = (if excludedByLabel s s.Self then ExcludedByLabel else MayHoldVips) }

    let private ownershipStage (m: Membership) (s: NodeState) : NodeState * Command list =
        let view = s.View
        let synced =
            view.ServicesSynced && view.SlicesSynced && view.LeasesSynced && s.Kernel.Installed
            && view.PoolsSynced && view.NodesSynced && view.InterfaceKnown
        let signed = signature s m
        let exclusion = if signed.Vips = s.OwnershipSignature.Vips then [] else [ Note(VipEligibilityChanged signed.Vips) ]
        let s =
            if signed = s.OwnershipSignature then s
            else
                let liveSince = if signed.Live <> s.OwnershipSignature.Live then s.Now else s.LiveSetSince
                { s with OwnershipStale = true; OwnershipSignature = signed; LiveSetSince = liveSince }
        let due = s.OwnershipStale || (s.OwnershipDueAt |> Option.exists (fun at -> s.Now >= at))
        if not synced || not due then s, exclusion
        else
            let policy = policyInputs s
            let s =
                if s.DesiredStale || policy <> s.Desired.Policy then
                    { s with
                        Desired =
                            Desired.computeWithPolicy s.Config policy s.View.Families (Map.values s.View.Services |> List.ofSeq) (Map.values s.View.Slices |> List.ofSeq)
                        DesiredStale = false }
                else s
            let s = acknowledge s m
            let live = signed.Live
            let assignments =
                Ownership.assign s.Now (timing s) (standing s m) live s.View.Groups s.View.GroupsAbsent s.Desired.Groups
            let entitled = entitlement s m
            let settle = ProtocolConstants.rebalanceSettle (timing s)
            let balancing, rebalanceDue = Ownership.rebalance s.Now settle s.LiveSetSince live s.View.Groups s.Desired.Groups assignments
            let following, followDue = Ownership.follow s.Now settle s.LiveSetSince s.View.Groups s.Desired.Groups assignments
            let moves = following |> Map.fold (fun (acc: Map<GroupId, string * string>) g move -> acc.Add(g, move)) balancing
            let rebalanceDue = [ rebalanceDue; followDue ] |> List.choose id |> function [] -> None | due -> Some(List.min due)
            let roles = s.Desired.Groups |> List.map (fun g -> g.Id, role s m entitled moves assignments[g.Id] g) |> Map.ofList
            let s = { s with Assignments = assignments; Roles = roles }
            let s = { s with ForwardWants = Forwarding.wants s roles }
            let s, writes = groupWrites s roles
            let s, deletes = staleLeases s m live
            let s, kernel = vipCommands s m roles
            let status = statusWrites s roles live
            // Warnings come from each Service's janitor among the registered members, not the members heard:
            // a node that misses a few heartbeats (a stall) must not hand the warnings to another node, which
            // would post them again; nor, for a grace, a node deposed for such a stall.
            let grace = ProtocolConstants.janitorGrace (timing s)
            let s, emits = events s roles (Membership.janitors s.Now grace m s.View.Registrations)
            let s, poolEvents = poolConfigEvents s live
            let s, assigned = assignmentStage s m live
            let due =
                [ yield! Option.toList (ownershipDue s assignments)
                  yield! Option.toList rebalanceDue
                  yield! Option.toList (Membership.janitorsChangeAt s.Now grace s.View.Registrations) ]
            { s with OwnershipStale = false; OwnershipDueAt = (if due.IsEmpty then None else Some(List.min due)); MaintenanceDueAt = Some s.Now },
            exclusion @ kernel @ writes @ deletes @ status @ emits @ poolEvents @ assigned

    /// DHCP clients (docs/DHCP.md): one for each DHCP Service whose group this node holds (Holding: its claim
    /// acknowledged, so no other node still runs one), kept while nobody may hold the group (Releasing,
    /// Unserved: its endpoints went first), stopped without a release when the group goes elsewhere
    /// (or the agent stops), with one when the Service no longer asks for the lease; leases recorded on the
    /// Service, from which every node's Desired takes the group's address.
    let private dhcpStage (s: NodeState) : NodeState * Command list =
        if s.Dhcp.IsEmpty && s.Desired.DhcpWants.IsEmpty then s, []
        else
            let standing (g: GroupId) =
                match s.Roles.TryFind g with
                | _ when not (running s) -> DhcpGroupStanding.Elsewhere
                | Some Holding -> DhcpGroupStanding.HeldHere
                | Some(Releasing _)
                | Some(Unserved _) -> DhcpGroupStanding.Unclaimed
                | _ -> DhcpGroupStanding.Elsewhere
            let clients, actions = DhcpServices.plan s.Now s.Desired.DhcpWants standing s.View.Services s.Dhcp
            { s with Dhcp = clients }, actions |> List.map dhcpCommand

    /// Upkeep of the VIPs in the kernel, apart from the ownership pass: gratuitous announcements of held
    /// VIPs (a burst, then every vip_arpRate) and address lifetimes (rewritten at half-life), each within the
    /// fence (fresh-clock rule). Announcements due within a short window go out together.
    let private maintenanceStage (m: Membership) (s: NodeState) : NodeState * Command list =
        match s.MaintenanceDueAt with
        | Some at when s.Now >= at && s.Kernel.Installed ->
            let t = timing s
            let lifetime = t.AddressLifetime
            let deadline = kernelDeadline s (fence s m)
            let window = Announcements.MinimumGap / 2L
            let work =
                s.Kernel.Vips
                |> Map.toList
                |> List.choose (fun (ip, v) ->
                    if v.Pending.IsSome || not v.Admitted then None
                    else
                        let announceAt =
                            match v.Announce with
                            | Some a when v.Held && s.Config.Arp -> Some(Announcements.nextDue s.Config.ArpRate a)
                            | _ -> None
                        let refreshAt = v.AddressWrittenAt |> Option.map (fun w -> w + lifetime / 2L)
                        let command =
                            match deadline with
                            | Some d when announceAt |> Option.exists (fun a -> a <= s.Now + window) -> Some(Announce(ip, d))
                            | Some d when refreshAt |> Option.exists (fun r -> r <= s.Now) || v.AddressWrittenAt.IsNone ->
                                Some(RefreshAddress(ip, v.Prefix, lifetime, d))
                            | _ -> None
                        let next = [ yield! Option.toList announceAt; yield! Option.toList refreshAt ] |> List.filter (fun x -> x > s.Now)
                        Some(ip, v, command, next))
            let vips =
                work
                |> List.fold (fun (vips: Map<Ip, VipKernel>) (ip, v, command, _) ->
                    match command with
                    | Some c -> vips.Add(ip, { v with Pending = Some(match c with Announce _ -> VipStep.Announcing | _ -> VipStep.Refreshing) })
                    | None -> vips) s.Kernel.Vips
            let next = work |> List.collect (fun (_, _, command, next) -> if command.IsSome then [] else next)
            { s with
                Kernel = { s.Kernel with Vips = vips }
                MaintenanceDueAt = (if next.IsEmpty then None else Some(List.min next)) },
            work |> List.choose (fun (_, _, command, _) -> command |> Option.map Kernel)
        | _ -> s, []

    // ════════════════════════════════════════════════════════════════════════════════════════════════
    // Step
    // ════════════════════════════════════════════════════════════════════════════════════════════════

    let private standAsideStage (m: Membership) (s: NodeState) : NodeState * Command list =
        let reason = if running s && joined s then standAside s m else None
        if reason = s.StandAside then s, []
        else
            let s =
                match s.StandAside, reason with
                // Standing aside forgets every claim: a group whose Lease still names this node afterwards is
                // claimed again by CAS (others may have taken it meanwhile, on the strength of the Aside flag).
                | None, Some _ -> { s with Claims = Map.empty }
                | Some(Isolated _), None -> { s with StandAside = reason; ListeningSince = s.Now }
                | _ -> s
            stale { s with StandAside = reason },
            [ Note(match reason with Some r -> StandingAside r | None -> StandingAsideEnded) ]

    let private phaseStage (s: NodeState) : NodeState * Command list =
        match s.Phase with
        | Starting when joined s -> stale { s with Phase = Running }, []
        | Stopping _ when s.Registration.Written |> Option.forall (fun r -> r.State = Left || r.Incarnation <> s.Incarnation) ->
            let nothingLeft = s.Kernel.Vips |> Map.forall (fun _ v -> not v.Held && v.Pending.IsNone)
            let registrationSettled = s.Registration.Pending.IsNone
            if nothingLeft && registrationSettled then { s with Phase = Stopped }, [] else s, []
        | _ -> s, []

    /// While stopping: every VIP withdrawn from the kernel first, then the fence element expired.
    let private stopStage (s: NodeState) : NodeState * Command list =
        match s.Phase with
        | Stopping _ when s.Kernel.Installed ->
            let s, commands = vipCommands s (membership s) Map.empty
            let k = s.Kernel
            if k.FenceWritten.IsSome && k.FencePending.IsNone then
                { s with Kernel = { k with FencePending = Some ExpireFence } }, commands @ [ Kernel ExpireFence ]
            else s, commands
        | _ -> s, []

    let private wake (m: Membership) (s: NodeState) : NodeState =
        let t = timing s
        let candidates =
            [ if s.Phase <> Stopped then s.Lan.NextSendAt
              match s.OwnershipDueAt with
              | Some at -> at
              | None -> ()
              match s.MaintenanceDueAt with
              | Some at -> at
              | None -> ()
              for KeyValue(_, p) in s.Lan.Peers do
                  p.HeardAt + t.LanLeaseDuration
              match s.Registration.Retry with
              | Some r -> r.At
              | None -> ()
              match s.ApiFence.LastRenewalStart with
              | Some start when s.Registration.Written |> Option.exists (fun r -> r.Fence = ApiFence) -> start + t.ApiRetryPeriod
              | _ -> ()
              match lanFence s with
              | Until deadline -> deadline - ProtocolConstants.armLead t
              | _ -> ()
              match s.ApiFence.LanHealthySince with
              | Some since -> since + ProtocolConstants.DisarmAfter
              | None -> ()
              match s.Kernel.FenceWritten with
              | Some w -> w - t.LanRenewDeadline / 2L
              | None -> ()
              for KeyValue(node, _) in Membership.others m s.Self do
                  defaultArg (s.LastGrantAt.TryFind node) s.IncarnationStartedAt + t.LanLeaseDuration
                  match s.Lan.Peers.TryFind node with
                  | Some p -> p.HeardAt + t.LanLeaseDuration
                  | None -> ()
              for KeyValue(_, d) in s.Depositions do
                  match d.Retry with
                  | Some r -> r.At
                  | None -> ()
              max s.IncarnationStartedAt s.ListeningSince + t.LanLeaseDuration
              if s.Registration.Written.IsNone then s.Registration.RejoinNotBefore
              match s.ApiFence.ArmedAt with
              | Some at -> at + ProtocolConstants.DisarmAfter
              | None -> ()
              match DhcpServices.nextDue s.Dhcp with
              | Some at -> at
              | None -> () ]
            |> List.filter (fun at -> at > s.Now)
        { s with NextWakeAt = (if candidates.IsEmpty || s.Phase = Stopped then None else Some(List.min candidates)) }

    let private decide (s: NodeState) : NodeState * Command list =
        let s = refreshDerived s
        let m = membership s
        let commands = ResizeArray<Command>()
        let run (stage: NodeState -> NodeState * Command list) (s: NodeState) =
            let s, c = stage s
            commands.AddRange c
            s
        let s =
            s
            |> run phaseStage
            |> run (standAsideStage m)
            |> run (registrationStage m)
            |> run (depositionStage m)
            |> run stopStage
            |> run (ownershipStage m)
            |> run dhcpStage
            |> run (maintenanceStage m)
            |> run (fenceStage m)
            |> run (lanStage m)
        // The frame goes out ahead of the kernel and API work of the same decision: it says only what is already
        // true (echoes of a contested claim stay capped until the withdrawal completed, Aside only once the
        // kernel answers for nothing), and peers waiting on it (a claim to acknowledge, a holder gone aside)
        // should not wait for nftables or the API client.
        let frames, others = commands |> List.ofSeq |> List.partition (function SendFrame _ -> true | _ -> false)
        wake m s, frames @ others

    /// The clock never goes back. A gap of more than two heartbeat intervals since the previous input means
    /// this process did not run meanwhile (frozen, starved of CPU; it is woken at least every interval): what
    /// it did not hear then is no evidence against anybody, so its listening starts again.
    let private advance (previous: Instant) (s: NodeState) =
        let now = max previous s.Now
        let stalled = s.Phase <> Starting && now - previous > 2L * (timing s).HeartbeatInterval
        { s with Now = now; ListeningSince = (if stalled then now else s.ListeningSince) }

    /// One input in, the new state and what the shell must do out.
    let step (s: NodeState) (input: Input) : NodeState * Command list =
        let previous = s.Now
        let s, immediate = evolve input s
        let s, decided = decide (advance previous s)
        s, immediate @ decided

    /// Several inputs in (in order), one decision out: what a busy shell does with everything that queued up
    /// while it was acting, so that a burst of observations costs one decision, not one each.
    let apply (s: NodeState) (inputs: Input list) : NodeState * Command list =
        let s, immediate =
            inputs
            |> List.fold (fun (s: NodeState, commands) input ->
                let previous = s.Now
                let s, c = evolve input s
                advance previous s, commands @ c) (s, [])
        let s, decided = decide s
        s, immediate @ decided
