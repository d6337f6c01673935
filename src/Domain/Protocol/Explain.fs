// `hybrid explain`: what the agents decide about each Service, and why, worked out from what the API server
// shows (Services, EndpointSlices, the Lease namespace, Nodes, the pool ConfigMap) with the agents' own rules.
// The API cannot see the LAN: a node counts as live when its registration says so (heard, not standing aside).
namespace Hybrid.Domain

open System

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Inputs
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// What explain reads from the cluster: the objects the agents watch.
type ClusterSnapshot =
    { Services: Service list
      /// spec.ipFamilies and spec.ipFamilyPolicy per Service (pool assignment reads them).
      Families: Map<ServiceKey, IpFamily list * IpFamilyPolicy>
      Slices: EndpointSlice list
      /// Every Lease of the Lease namespace.
      Leases: LeaseRecord list
      Nodes: NodeObject list
      /// The pool ConfigMap's data; None when there is none.
      PoolData: Map<string, string> option }

/// Where explain took the election mode (svc_election, svc_leasename) from.
[<RequireQualifiedAccess>]
type ElectionSource =
    /// svc_election was given.
    | ElectionGiven
    /// Inferred from the group Leases the agents wrote (hybrid-vip-… under election, one Lease otherwise).
    | ElectionFromLeases of leases: string list
    /// Nothing given and no group Lease to tell: the agent's default.
    | ElectionDefault

/// The agents' settings as explain uses them.
type ExplainSettings =
    { Config: Config
      ElectionSource: ElectionSource }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Results
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Why a node is not live, as its registration records it.
[<RequireQualifiedAccess>]
type NotLiveReason =
    | RegistrationLeft
    | RegistrationDeposed of by: string
    /// No registration Lease: no agent runs there, or its Lease was deleted.
    | NoRegistration
    | RegistrationUnreadable of RegistrationProblem

/// How a node stands, as far as the API shows.
[<RequireQualifiedAccess>]
type NodeLiveness =
    /// Joined with the settings in force: live, as far as the registrations tell (the LAN is not visible).
    | LiveAsRegistered
    | NotLive of NotLiveReason
    /// Joined, but with settings that are not in force: it holds nothing.
    | StandsAside of StandAsideReason

/// Why a node may not hold a group.
[<RequireQualifiedAccess>]
type Ineligibility =
    /// externalTrafficPolicy Local: no serving endpoint of the group's Services runs on the node.
    | NoServingEndpointOnNode
    /// Cluster policy and no serving endpoint anywhere.
    | NoServingEndpointAnywhere
    /// The node is labelled node.kubernetes.io/exclude-from-external-load-balancers (and the label is honoured).
    | NodeExcludedByLabel

/// Why the node the group Lease names gives the group up.
[<RequireQualifiedAccess>]
type HandOverReason =
    | NoLongerEligible of Ineligibility
    | HandsOverStandingAside of StandAsideReason

/// Why one node does, or does not, hold a group.
[<RequireQualifiedAccess>]
type NodeVerdict =
    /// The group Lease names it, and it is live and eligible: it answers for the group's addresses.
    | Holder
    /// The group Lease names it, but it hands the group over.
    | HandingOver of HandOverReason
    /// The group Lease names it, but it is not live: the group moves (after its deposition, if it was joined).
    | NamedButNotLive of NotLiveReason
    | NotEligible of Ineligibility
    | NodeNotLive of NotLiveReason
    | NodeStandsAside of StandAsideReason
    /// Nobody may hold the group now (or its holder goes): this node, first in line, takes it.
    | NextInLine
    /// Live and eligible, behind `ahead` in line (the holder first, then the canonical spread's order).
    | RankedLower of position: int * ahead: string list

/// Whom the group Lease names.
[<RequireQualifiedAccess>]
type GroupLeaseState =
    | NoGroupLease
    | NamesNobody
    | Names of GroupHolder

/// A Service's group, who holds it and why every node does or does not.
type GroupExplanation =
    { Group: GroupId
      /// The addresses the group announces while held (the single leader group: every announced VIP).
      Addresses: Ip list
      /// The Service's own addresses.
      ServiceAddresses: Ip list
      /// Whether the Service's first address is among the group's announced ones.
      Announced: bool
      Members: ServiceKey list
      Lease: GroupLeaseState
      Assignment: Assignment
      /// Every node, by name.
      Nodes: (string * NodeVerdict) list }

/// What the agents make of a Service.
[<RequireQualifiedAccess>]
type ServiceVerdict =
    /// svc_namespace names another namespace: the agents do not watch it.
    | NotWatched of watched: string
    /// Not the agents' business (type, ignore annotation, class): no Event.
    | NotOurs of SkipReason
    /// Ours, but skipped; the Warning Event says why.
    | Skipped of SkipReason * EventReason
    | AwaitingAddress of pendingDhcp: IpFamily list
    /// The address policy refuses every address it asks for.
    | AddressesRefused
    | Admitted of GroupExplanation

type ServiceExplanation =
    { Service: ServiceKey
      Verdict: ServiceVerdict
      /// The Warning Events that apply now, as the Service's janitor posts them (the endpoint ones after a
      /// grace of ServiceWarnings.EndpointGrace).
      Warnings: ServiceEvent list }

/// The whole cluster, explained.
type Explanation =
    { Settings: ExplainSettings
      /// The settings fingerprint most joined registrations carry.
      InForce: string option
      Nodes: (string * NodeLiveness) list
      Services: ServiceExplanation list }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Settings
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<RequireQualifiedAccess>]
module ExplainSettings =
    /// The node name and key explain parses the settings with: it is no node and signs nothing, and the
    /// fingerprint (which hashes the key's id) cannot be checked without the key, so any valid key does.
    let private standIns =
        [ "vip_nodename", "hybrid-explain"; "svc_enable", "true"; "lan_key", Convert.ToBase64String(Array.create 32 0x5Auy) ]

    let private isVipLease (name: string) = LeaseNames.isElectionGroup name

    let private groupLeaseNames (leases: LeaseRecord list) =
        leases
        |> List.filter (fun l -> l.Labels.TryFind LeaseKeys.Kind = Some LeaseKeys.GroupKind)
        |> List.sortBy (fun l -> l.Holder.IsNone, l.Name)

    /// The election mode the agents' group Leases show: a held Lease counts before an empty one; a
    /// hybrid-vip-… Lease means svc_election=true, any other group Lease is the single leader's svc_leasename.
    let inferElection (leases: LeaseRecord list) : (bool * string) option =
        match groupLeaseNames leases with
        | [] -> None
        | first :: _ when isVipLease first.Name -> Some(true, first.Name)
        | first :: _ -> Some(false, first.Name)

    /// The agents' settings from kube-vip's variables, parsed as the agent parses them. Without
    /// svc_election, the election mode (and without svc_leasename, the leader's Lease) comes from the group
    /// Leases of the Lease namespace (`leases`), else the agent's default applies.
    let resolve (variables: Map<string, string>) (leases: LeaseRecord list) : Result<ExplainSettings, ConfigError list> =
        let env = standIns |> List.fold (fun (acc: Map<string, string>) (k, v) -> if acc.ContainsKey k then acc else acc.Add(k, v)) variables
        match Config.parse env None with
        | Error errors -> Error errors
        | Ok config ->
            let given name = variables.TryFind name |> Option.exists (fun v -> v <> "")
            if given "svc_election" then Ok { Config = config; ElectionSource = ElectionSource.ElectionGiven }
            else
                match inferElection leases with
                | None -> Ok { Config = config; ElectionSource = ElectionSource.ElectionDefault }
                | Some(election, lease) ->
                    let leaseName = if election || given "svc_leasename" then config.LeaseName else lease
                    let shown = groupLeaseNames leases |> List.map _.Name |> List.truncate 3
                    Ok { Config = { config with Election = election; LeaseName = leaseName }; ElectionSource = ElectionSource.ElectionFromLeases shown }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// The explanation
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<RequireQualifiedAccess>]
module Explain =
    /// Registrations as the API shows them, and the unreadable ones by node.
    let private registrations (leases: LeaseRecord list) (isGroupName: string -> bool) =
        leases
        |> List.fold
            (fun (view: RegistrationView, unreadable: Map<string, RegistrationProblem>) lease ->
                match LeaseKind.ofRecord isGroupName lease with
                | RegistrationLease r -> RegistrationView.observe 0L lease r view, unreadable
                | UnreadableRegistration(name, problem) ->
                    let node = if name.StartsWith LeaseNames.RegistrationPrefix then name.Substring LeaseNames.RegistrationPrefix.Length else name
                    view, unreadable.Add(node, problem)
                | GroupLease _ | OtherLease -> view, unreadable)
            (RegistrationView.empty, Map.empty)

    /// How a node stands from the API's point of view: its registration, nothing of the LAN.
    let liveness (view: RegistrationView) (unreadable: Map<string, RegistrationProblem>) (membership: Membership) (node: string) : NodeLiveness =
        match view.Known.TryFind node with
        | Some o ->
            match o.Registration.State with
            | Left -> NodeLiveness.NotLive NotLiveReason.RegistrationLeft
            | Deposed by -> NodeLiveness.NotLive(NotLiveReason.RegistrationDeposed by)
            | Joined ->
                match membership.InForce with
                | Some fp when fp <> o.Registration.Fingerprint -> NodeLiveness.StandsAside(FingerprintNotInForce(o.Registration.Fingerprint, fp))
                | _ -> NodeLiveness.LiveAsRegistered
        | None ->
            match unreadable.TryFind node with
            | Some problem -> NodeLiveness.NotLive(NotLiveReason.RegistrationUnreadable problem)
            | None -> NodeLiveness.NotLive NotLiveReason.NoRegistration

    /// The standing Ownership.assign reads, as the registrations record it (every joined member in force is
    /// taken as heard and not standing aside).
    let standing (liveness: string -> NodeLiveness) (node: string) : Standing =
        match liveness node with
        | NodeLiveness.LiveAsRegistered -> Live
        | NodeLiveness.StandsAside _ -> OutOfForce
        | NodeLiveness.NotLive(NotLiveReason.RegistrationLeft | NotLiveReason.RegistrationDeposed _) -> Gone
        | NodeLiveness.NotLive(NotLiveReason.NoRegistration | NotLiveReason.RegistrationUnreadable _) -> Unregistered

    /// Why a node may not hold a group of this eligibility, if it may not.
    let ineligibility (eligibility: Eligibility) (node: string) : Ineligibility option =
        match eligibility with
        | AnyNode _ -> None
        | NodesWithEndpoint nodes when nodes.Contains node -> None
        | NodesWithEndpoint _ -> Some Ineligibility.NoServingEndpointOnNode
        | NoServingEndpoint -> Some Ineligibility.NoServingEndpointAnywhere

    /// The order in which live eligible nodes would hold a group: a live, eligible holder keeps it, so it
    /// comes first; then the canonical spread's successors (the node a leaving or silent holder names is out).
    let line (successors: string list) (assignment: Assignment) : string list =
        match assignment with
        | HeldBy holder -> holder :: List.filter ((<>) holder) successors
        | Orphaned(successors, _, _) -> successors
        | HolderLeaving holder
        | HolderSilent holder -> List.filter ((<>) holder) successors
        | NoCandidate _ -> []

    /// Why one node does or does not hold a group (the rule `hybrid explain` prints).
    let verdict (eligibility: Eligibility) (lease: GroupLeaseState) (assignment: Assignment) (line: string list)
        (liveness: NodeLiveness) (vips: NodeVipEligibility) (node: string) : NodeVerdict =
        let ineligibility eligibility node =
            match vips with
            | ExcludedByLabel -> Some Ineligibility.NodeExcludedByLabel
            | MayHoldVips -> ineligibility eligibility node
        match lease with
        | GroupLeaseState.Names h when h.Node = node ->
            match assignment, liveness with
            | HeldBy holder, _ when holder = node -> NodeVerdict.Holder
            | _, NodeLiveness.StandsAside reason -> NodeVerdict.HandingOver(HandOverReason.HandsOverStandingAside reason)
            | _, NodeLiveness.NotLive reason -> NodeVerdict.NamedButNotLive reason
            | _, NodeLiveness.LiveAsRegistered ->
                NodeVerdict.HandingOver(HandOverReason.NoLongerEligible(ineligibility eligibility node |> Option.defaultValue Ineligibility.NoServingEndpointOnNode))
        | _ ->
            match ineligibility eligibility node, liveness with
            | Some why, _ -> NodeVerdict.NotEligible why
            | None, NodeLiveness.NotLive reason -> NodeVerdict.NodeNotLive reason
            | None, NodeLiveness.StandsAside reason -> NodeVerdict.NodeStandsAside reason
            | None, NodeLiveness.LiveAsRegistered ->
                match List.tryFindIndex ((=) node) line with
                | Some 0 -> NodeVerdict.NextInLine
                | Some position -> NodeVerdict.RankedLower(position, List.take position line)
                // Every live eligible node is in the spread; a node missing from it is behind all of it.
                | None -> NodeVerdict.RankedLower(line.Length, line)

    /// The Warning Events that apply to a Service (the janitor's; Protocol.step posts them once each).
    let warnings (config: Config) (desired: Desired) (assignments: Map<GroupId, Assignment>) (service: Service) : ServiceEvent list =
        let announced = desired.Groups |> List.collect _.Addresses |> Set.ofList
        let unservedBy ip =
            match desired.GroupOf.TryFind ip |> Option.bind assignments.TryFind with
            | Some(NoCandidate reason) -> Some reason
            | _ -> None
        // A snapshot has no history: the Service counts as settled.
        ServiceWarnings.ofState config desired announced unservedBy true service @ ServiceWarnings.ofAddresses desired (Some service.Key)

    // ── Stages ──────────────────────────────────────────────────────────────────────────────────────

    type private World =
        { Config: Config
          Liveness: string -> NodeLiveness
          /// Whether each node may hold VIPs (the exclusion label, as the agents' settings read it).
          Vips: string -> NodeVipEligibility
          Nodes: string list
          Desired: Desired
          Leases: Map<GroupId, ObservedGroupLease>
          Assignments: Map<GroupId, Assignment>
          Spread: Map<GroupId, string list> }

    let private isGroupName (config: Config) (name: string) =
        LeaseNames.isElectionGroup name || name = config.LeaseName

    let private groupLeases (config: Config) (leases: LeaseRecord list) =
        leases
        |> List.choose (fun lease ->
            match LeaseKind.ofRecord (isGroupName config) lease with
            | GroupLease holder -> Some(lease.Name, { Holder = holder; Version = lease.Version; Transitions = lease.Transitions; ChangedSeenAt = 0L })
            | _ -> None)
        |> Map.ofList

    /// The exclusion label's verdict per node, from the Node objects (a node without one may hold).
    let private vipEligibility (config: Config) (nodes: NodeObject list) : string -> NodeVipEligibility =
        let labels = nodes |> List.map (fun n -> n.Name, n.Labels) |> Map.ofList
        fun node ->
            match labels.TryFind node with
            | Some l -> NodeExclusion.eligibility config.ExclusionLabel l
            | None -> MayHoldVips

    let private world (config: Config) (snapshot: ClusterSnapshot) (watched: Service list) : World * Membership =
        let view, unreadable = registrations snapshot.Leases (isGroupName config)
        let membership = Membership.ofView view
        let liveness = liveness view unreadable membership
        let leases = groupLeases config snapshot.Leases
        let named = leases |> Map.toList |> List.choose (fun (_, l) -> l.Holder |> Option.map _.Node)
        let nodes =
            [ yield! snapshot.Nodes |> List.map _.Name
              yield! view.Known.Keys
              yield! unreadable.Keys
              yield! named ]
            |> List.distinct
            |> List.sort
        let policy =
            { Pools = snapshot.PoolData |> Option.map (Pools.read >> _.Config) |> Option.defaultValue Pools.none
              Network = AddressPolicy.network snapshot.Nodes (view.Known |> Map.map (fun _ o -> o.Registration.Interface)) }
        let desired = Desired.computeWithPolicy config policy snapshot.Families watched snapshot.Slices
        let vips = vipEligibility config snapshot.Nodes
        let live = nodes |> List.filter (fun n -> liveness n = NodeLiveness.LiveAsRegistered && vips n = MayHoldVips)
        let standing node =
            match standing liveness node with
            | Live when vips node = ExcludedByLabel -> Excluded
            | other -> other
        let assignments = Ownership.assign 0L config.Timing standing live leases Map.empty desired.Groups
        { Config = config
          Liveness = liveness
          Vips = vips
          Nodes = nodes
          Desired = desired
          Leases = leases
          Assignments = assignments
          Spread = Ownership.spread live desired.Groups },
        membership

    let private group (w: World) (ips: Ip list) (g: Group) : GroupExplanation =
        let lease =
            match w.Leases.TryFind g.Id with
            | None -> GroupLeaseState.NoGroupLease
            | Some { Holder = None } -> GroupLeaseState.NamesNobody
            | Some { Holder = Some h } -> GroupLeaseState.Names h
        let assignment = w.Assignments[g.Id]
        let order = line (w.Spread.TryFind g.Id |> Option.defaultValue []) assignment
        { Group = g.Id
          Addresses = g.Addresses
          ServiceAddresses = ips
          Announced = List.contains ips.Head g.Addresses
          Members = g.Members
          Lease = lease
          Assignment = assignment
          Nodes = w.Nodes |> List.map (fun n -> n, verdict g.Eligibility lease assignment order (w.Liveness n) (w.Vips n) n) }

    let private service (w: World) (s: Service) : ServiceExplanation =
        let verdict =
            match w.Desired.States.TryFind s.Key with
            | Some(Skipped reason) ->
                match SkipReason.audience reason with
                | Ours eventReason -> ServiceVerdict.Skipped(reason, eventReason)
                | NotOurs -> ServiceVerdict.NotOurs reason
            | Some(AwaitingAddress pending) -> ServiceVerdict.AwaitingAddress pending
            | Some Refused -> ServiceVerdict.AddressesRefused
            | Some(Member(ips, _)) ->
                match w.Desired.GroupOf.TryFind ips.Head |> Option.bind w.Desired.GroupById.TryFind with
                | Some g -> ServiceVerdict.Admitted(group w ips g)
                | None -> ServiceVerdict.AwaitingAddress []
            | None -> ServiceVerdict.AwaitingAddress []
        { Service = s.Key; Verdict = verdict; Warnings = warnings w.Config w.Desired w.Assignments s }

    /// Explains every Service of the snapshot with the agents' settings.
    let explain (settings: ExplainSettings) (snapshot: ClusterSnapshot) : Explanation =
        let config = settings.Config
        let watched, unwatched =
            match config.ServiceNamespace with
            | Some ns -> snapshot.Services |> List.partition (fun s -> s.Key.Namespace = ns)
            | None -> snapshot.Services, []
        let w, membership = world config snapshot watched
        let explained =
            [ yield! watched |> List.map (service w)
              for s in unwatched -> { Service = s.Key; Verdict = ServiceVerdict.NotWatched(defaultArg config.ServiceNamespace ""); Warnings = [] } ]
            |> List.sortBy _.Service
        { Settings = settings
          InForce = membership.InForce
          Nodes = w.Nodes |> List.map (fun n -> n, w.Liveness n)
          Services = explained }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Wording
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<RequireQualifiedAccess>]
module ExplainText =
    let private ordinal (n: int) =
        let suffix =
            match n % 100, n % 10 with
            | (11 | 12 | 13), _ -> "th"
            | _, 1 -> "st"
            | _, 2 -> "nd"
            | _, 3 -> "rd"
            | _ -> "th"
        string n + suffix

    let notLive (reason: NotLiveReason) =
        match reason with
        | NotLiveReason.RegistrationLeft -> "its registration says it left"
        | NotLiveReason.RegistrationDeposed by when by <> "" -> sprintf "its registration says %s deposed it" by
        | NotLiveReason.RegistrationDeposed _ -> "its registration says it was deposed"
        | NotLiveReason.NoRegistration -> "it has no registration (no agent runs there, or its Lease was deleted)"
        | NotLiveReason.RegistrationUnreadable problem -> sprintf "its registration cannot be read (%s)" (RegistrationProblem.describe problem)

    let private standAside (reason: StandAsideReason) =
        match reason with
        | FingerprintNotInForce(mine, inForce) -> sprintf "its settings (fingerprint %s) are not the ones in force (%s)" mine inForce
        | Isolated silent -> sprintf "it hears none of %s on the LAN" (String.concat ", " silent)

    let liveness (l: NodeLiveness) =
        match l with
        | NodeLiveness.LiveAsRegistered -> "live (joined, settings in force)"
        | NodeLiveness.NotLive reason -> "not live: " + notLive reason
        | NodeLiveness.StandsAside reason -> "stands aside: " + standAside reason

    let private ineligible (why: Ineligibility) =
        match why with
        | Ineligibility.NoServingEndpointOnNode -> "no serving endpoint on this node (externalTrafficPolicy Local)"
        | Ineligibility.NoServingEndpointAnywhere -> "the service has no serving endpoint"
        | Ineligibility.NodeExcludedByLabel -> sprintf "the node is labelled %s" NodeExclusion.Label

    let verdict (v: NodeVerdict) =
        match v with
        | NodeVerdict.Holder -> "holder: the group Lease names it, and it is live and eligible"
        | NodeVerdict.HandingOver(HandOverReason.NoLongerEligible why) -> "named in the group Lease, hands it over: " + ineligible why
        | NodeVerdict.HandingOver(HandOverReason.HandsOverStandingAside reason) -> "named in the group Lease, hands it over: " + standAside reason
        | NodeVerdict.NamedButNotLive reason -> "named in the group Lease, but not live: " + notLive reason
        | NodeVerdict.NotEligible why -> "not eligible: " + ineligible why
        | NodeVerdict.NodeNotLive reason -> "not live: " + notLive reason
        | NodeVerdict.NodeStandsAside reason -> "stands aside: " + standAside reason
        | NodeVerdict.NextInLine -> "next in line: it takes the group"
        | NodeVerdict.RankedLower(position, ahead) ->
            sprintf "ranked lower: %s in line, after %s" (ordinal (position + 1)) (String.concat ", " ahead)

    let assignment (key: ServiceKey) (a: Assignment) =
        match a with
        | HeldBy holder -> sprintf "held by %s" holder
        | HolderLeaving holder -> sprintf "held by %s, which hands it over" holder
        | HolderSilent holder -> sprintf "the Lease names %s, which must be deposed before the group moves" holder
        | Orphaned(first :: _, _, Some previous) -> sprintf "orphaned (its holder was %s): %s takes it" previous first
        | Orphaned(first :: _, _, None) -> sprintf "held by nobody yet: %s takes it" first
        | Orphaned([], _, _) -> "held by nobody"
        | NoCandidate reason -> "held by nobody: " + (ServiceWarnings.unserved key reason).Message

    let private lease (name: GroupId) (state: GroupLeaseState) =
        match state with
        | GroupLeaseState.NoGroupLease -> sprintf "Lease %s: absent" name
        | GroupLeaseState.NamesNobody -> sprintf "Lease %s: names nobody" name
        | GroupLeaseState.Names h -> sprintf "Lease %s: names %s" name h.Node

    let private addresses (ips: Ip list) = ips |> List.map Ip.format |> String.concat ", "

    let private families (fs: IpFamily list) =
        fs |> List.map (function IPv4 -> "IPv4" | IPv6 -> "IPv6") |> String.concat ", "

    let private summary (e: ServiceExplanation) =
        match e.Verdict with
        | ServiceVerdict.NotWatched ns -> sprintf "not watched: the agents watch namespace %s only (svc_namespace)" ns
        | ServiceVerdict.NotOurs reason -> "not Hybrid's: " + SkipReason.describe reason
        | ServiceVerdict.Skipped(reason, eventReason) -> sprintf "skipped (%s): %s" (EventReason.name eventReason) (SkipReason.describe reason)
        | ServiceVerdict.AwaitingAddress [] -> "admitted, awaiting an address (none requested yet)"
        | ServiceVerdict.AwaitingAddress pending -> sprintf "admitted, awaiting a DHCP lease (%s)" (families pending)
        | ServiceVerdict.AddressesRefused -> "skipped: every address it asks for is refused (see the warnings)"
        | ServiceVerdict.Admitted g when g.Announced -> sprintf "admitted: %s" (addresses g.ServiceAddresses)
        | ServiceVerdict.Admitted g -> sprintf "admitted, not announced: %s" (addresses g.ServiceAddresses)

    /// The lines `hybrid explain` prints about one Service (the shell adds its recent Events).
    let service (e: ServiceExplanation) : string list =
        [ yield sprintf "Service %s: %s" (string e.Service) (summary e)
          match e.Verdict with
          | ServiceVerdict.Admitted g ->
              let others = g.Members |> List.filter ((<>) e.Service)
              yield sprintf "  group %s (%s)%s" g.Group (addresses g.Addresses)
                        (if others.IsEmpty then "" else sprintf ", shared with %s" (others |> List.map string |> String.concat ", "))
              yield sprintf "  %s; %s" (lease g.Group g.Lease) (assignment e.Service g.Assignment)
              let width = g.Nodes |> List.map (fst >> String.length) |> List.fold max 0
              for node, v in g.Nodes -> sprintf "    %s  %s" (node.PadRight width) (verdict v)
          | _ -> ()
          for w in e.Warnings -> sprintf "  Warning %s: %s" (EventReason.name w.Reason) w.Message ]

    let private election (s: ExplainSettings) =
        let mode =
            if s.Config.Election then "svc_election=true"
            else sprintf "svc_election=false (one leader, Lease %s)" s.Config.LeaseName
        match s.ElectionSource with
        | ElectionSource.ElectionGiven -> mode + " (as given)"
        | ElectionSource.ElectionFromLeases leases -> sprintf "%s (from the group Leases: %s)" mode (String.concat ", " leases)
        | ElectionSource.ElectionDefault -> mode + " (the agent's default: no group Lease tells, none given)"

    /// The lines before the Services: settings, liveness, and what the API cannot show.
    let header (e: Explanation) : string list =
        let width = e.Nodes |> List.map (fst >> String.length) |> List.fold max 0
        [ yield sprintf "Settings: %s; Leases in namespace %s; fingerprint in force: %s" (election e.Settings)
                    e.Settings.Config.LeaseNamespace (defaultArg e.InForce "none (no joined registration)")
          yield "Liveness is as the registrations record it: the API server cannot see the LAN (heartbeats, a node that hears nobody)."
          yield "Nodes:"
          for node, l in e.Nodes -> sprintf "  %s  %s" (node.PadRight width) (liveness l) ]
