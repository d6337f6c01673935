// Plan: announcements schedule and the actions that take this node from what is to what should be.
namespace Hybrid.Domain

open System

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Announcements
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Gratuitous announcements sent for a VIP since this node added it.
type AnnounceState =
    { AddedAt: Instant
      Sent: int
      LastSentAt: Instant }

[<RequireQualifiedAccess>]
module Announcements =
    /// Offsets after takeover of the first announcements: at once, then repeats that cover a lost frame or a
    /// switch that was still learning; afterwards one every vip_arpRate.
    let Burst: Duration list = [ 0L; 250L; 750L; 1500L ]

    /// Never two announcements of one VIP closer than this.
    let MinimumGap: Duration = 100L

    let nextDue (arpRate: Duration) (state: AnnounceState) : Instant =
        let scheduled =
            if state.Sent < Burst.Length then state.AddedAt + Burst[state.Sent]
            else state.LastSentAt + arpRate
        if state.Sent = 0 then scheduled else max scheduled (state.LastSentAt + MinimumGap)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Plan: from what is wanted and what is there, what this node must do now
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// A VIP address this agent put on its interface (recognised by its netlink protocol mark).
type VipState =
    { Ip: Ip
      Prefix: int
      /// When the kernel will delete it unless refreshed; None when not known (found at startup).
      ExpiresAt: Instant option
      /// None when found at startup: announced afresh if kept.
      Announce: AnnounceState option }

/// Kubernetes Event type.
type EventType =
    | Normal
    | Warning

/// An Event about a Service, with a stable reason.
type ServiceEvent =
    { Service: ServiceKey
      Type: EventType
      Reason: string
      Message: string }

/// Something this node must do. The shell executes actions in list order; effects that depend on the
/// outcome of a lease write (adding the VIP after a claim) come in the next plan. Address writes come before
/// every Lease write: they are decided for this instant (the fence's write deadline), and a Lease write may
/// keep the shell waiting on the API server for seconds.
type Action =
    | RemoveVip of ip: Ip * prefix: int
    | AddVip of ip: Ip * prefix: int * lifetime: Duration
    | RefreshVip of ip: Ip * prefix: int * lifetime: Duration
    | Announce of ip: Ip
    /// Compare-and-swap the group Lease to this node (create it when `expected` is None); when `confirm`
    /// is Some (node, heartbeatVersion), first re-read that heartbeat and do nothing if its version changed
    /// ("" = it must still be absent).
    | ClaimLease of group: GroupId * expected: string option * previous: string option * confirm: (string * string) option
    | ReleaseLease of group: GroupId * version: string
    | DeleteLease of group: GroupId * version: string
    /// Patch status.loadBalancer.ingress and the kube-vip.io/vipHost annotation (None removes it).
    | WriteStatus of service: ServiceKey * ingress: IngressEntry list * vipHost: string option
    | Emit of ServiceEvent

/// Everything a plan needs: configuration, the clock, the cluster as observed, and this node's own state.
type Snapshot =
    { Config: Config
      Now: Instant
      Services: Service list
      Slices: EndpointSlice list
      Heartbeats: Heartbeat list
      /// Group Leases (names starting with LeaseNames.VipPrefix, or svc_leasename).
      Leases: GroupLease list
      Self: SelfState
      Vips: VipState list
      /// Warnings already emitted by this node and still applicable (see Plan.ActiveWarnings).
      EmittedWarnings: Set<ServiceEvent> }

/// The decision for a snapshot.
type Plan =
    { Actions: Action list
      /// When to plan again even if nothing is observed to change (fence deadline, announcements, takeovers).
      NextWakeAt: Instant option
      /// Warnings that apply now; the shell keeps them as EmittedWarnings after emitting the new ones.
      ActiveWarnings: Set<ServiceEvent>
      /// Something is held back until the next successful heartbeat renewal (a VIP write outside the write
      /// window, a fenced or unentitled group): the shell plans again as soon as one lands.
      WaitsForRenewal: bool
      Desired: Desired
      Assignments: Map<GroupId, Assignment>
      Roles: Map<GroupId, Role> }

[<RequireQualifiedAccess>]
module Status =
    /// The ingress entry Hybrid writes for an announced address.
    let entry (service: Service) (ip: Ip) =
        { Ip = Ip.format ip; IpMode = Some "VIP"; Ports = service.Ports }

    /// The same address, written canonically (desired) or as found (observed, maybe not canonical).
    let private sameIp (observed: string) (desired: string) =
        String.Equals(observed, desired) || (Ip.tryParse observed |> Option.map Ip.format) = Some desired

    /// An unset ipMode means "VIP" (the API server's default since 1.30; older ones drop the field on write).
    let private sameEntry (observed: IngressEntry) (desired: IngressEntry) =
        sameIp observed.Ip desired.Ip
        && (observed.IpMode |> Option.orElse (Some "VIP")) = desired.IpMode
        && observed.Ports = desired.Ports

    /// Whether the Service already says what Hybrid would write.
    let matches (service: Service) (ingress: IngressEntry list) (vipHost: string option) =
        service.Annotations.TryFind Annotations.VipHost = vipHost
        && List.length service.Ingress = List.length ingress
        && List.forall2 sameEntry service.Ingress ingress

[<RequireQualifiedAccess>]
module Plan =
    let private roleVerb reason =
        match reason with
        | NoLongerEligible -> "this node is no longer eligible"
        | InterfaceDown -> "the VIP interface is down"
        | ShuttingDown -> "the agent is stopping"

    /// A Service is not warned about missing endpoints until this long after it last changed: a new
    /// Service normally has none for a moment, until its pods' endpoints are published.
    let EndpointGrace: Duration = 5000L

    /// Warning for a Service nobody can announce.
    let private unservedWarning (service: ServiceKey) (reason: NoCandidateReason) =
        let reasonText, message =
            match reason with
            | NoEligibleNode NoServingEndpoint -> "NoServingEndpoint", "not announced: the service has no serving endpoint"
            | NoEligibleNode _ -> "NoEligibleNode", "not announced: no node runs a serving endpoint (externalTrafficPolicy Local)"
            | NoLiveEligibleNode [] -> "NoLiveNode", "not announced: no live node"
            | NoLiveEligibleNode nodes ->
                "EligibleNodesNotLive", sprintf "not announced: the nodes with a serving endpoint (%s) are not live" (String.concat ", " nodes)
        { Service = service; Type = Warning; Reason = reasonText; Message = message }

    let compute (snapshot: Snapshot) : Plan =
        let config = snapshot.Config
        let timing = config.Timing
        let now = snapshot.Now
        let self = snapshot.Self
        let desired = Desired.compute config snapshot.Services snapshot.Slices
        let view =
            { Now = now
              Timing = timing
              Heartbeats = snapshot.Heartbeats |> List.map (fun h -> h.Node, h) |> Map.ofList
              Leases = snapshot.Leases |> List.map (fun l -> l.Name, l) |> Map.ofList }
        let assignments = Ownership.assign view desired.Groups
        let roleList = desired.Groups |> List.map (fun g -> g.Id, Ownership.role view self assignments[g.Id] g)
        let roles = Index.ofSeq roleList
        let groupById = desired.Groups |> List.map (fun g -> g.Id, g) |> Index.ofSeq
        let stateOf = Index.ofSeq desired.StateList
        let groupOf = Index.ofSeq desired.GroupOfList
        // Janitor duty goes to the best-ranked live node; the live set is the same for every key.
        let live = Ownership.liveNodes view
        let iAmJanitor key = Rendezvous.preference key live |> List.tryHead = Some self.Node

        // ── VIPs ────────────────────────────────────────────────────────────────────────────────────
        let groupsWhere predicate =
            desired.Groups |> List.filter (fun g -> predicate roles[g.Id])
        let held = groupsWhere (function Holding -> true | _ -> false)
        let reclaiming = groupsWhere (function Reclaiming _ -> true | _ -> false)
        let wantedList = held |> List.collect (fun g -> g.Addresses |> List.map (fun ip -> ip, g)) |> List.sortWith (fun (a, _) (b, _) -> Ip.Order(a, b))
        let wanted = Index.ofSeq wantedList
        // Until a reclaim settles, a VIP found on the interface is neither refreshed nor removed: the kernel
        // lifetime bounds it, and the compare-and-swap decides within a round trip.
        let pending = reclaiming |> List.collect _.Addresses |> Index.keys
        let observed = snapshot.Vips |> List.map (fun v -> v.Ip, v) |> Index.ofSeq
        let mayWrite = Fence.mayWriteAddress timing self.Fence now
        let lifetime = timing.AddressLifetime
        let removals =
            snapshot.Vips
            |> List.filter (fun v -> not (wanted.ContainsKey v.Ip) && not (pending.Contains v.Ip))
            |> List.map (fun v -> RemoveVip(v.Ip, v.Prefix))
        let additions, refreshes, announcements =
            wantedList
            |> List.map (fun (ip, _) ->
                let prefix = Desired.prefix config ip
                match Index.tryFind ip observed with
                | None ->
                    (if mayWrite then [ AddVip(ip, prefix, lifetime) ] else []),
                    [],
                    (if mayWrite && config.Arp then [ Announce ip ] else [])
                | Some vip ->
                    let refresh =
                        match vip.ExpiresAt with
                        | Some expires when expires - now > lifetime / 2L -> []
                        | _ when mayWrite -> [ RefreshVip(ip, vip.Prefix, lifetime) ]
                        | _ -> []
                    let announce =
                        match vip.Announce with
                        | _ when not config.Arp -> []
                        | None -> [ Announce ip ]
                        | Some state when now >= Announcements.nextDue config.ArpRate state -> [ Announce ip ]
                        | Some _ -> []
                    [], refresh, announce)
            |> List.unzip3
            |> fun (a, r, n) -> List.concat a, List.concat r, List.concat n

        // ── Leases ──────────────────────────────────────────────────────────────────────────────────
        let leaseWrites =
            desired.Groups
            |> List.choose (fun g ->
                match roles[g.Id] with
                | Claiming(expected, previous, confirm) -> Some(ClaimLease(g.Id, expected, previous, confirm))
                | Reclaiming version -> Some(ClaimLease(g.Id, Some version, Some self.Node, None))
                | Releasing(version, _) -> Some(ReleaseLease(g.Id, version))
                | _ -> None)
        let staleLeases =
            snapshot.Leases
            |> List.filter (fun l -> l.Name.StartsWith LeaseNames.VipPrefix && not (groupById.ContainsKey l.Name))
            |> List.choose (fun l ->
                let deleter =
                    match l.Holder with
                    | Some h when Ownership.liveness view h = Live -> Some h
                    | _ -> Ownership.janitor view l.Name
                if deleter = Some self.Node then Some(DeleteLease(l.Name, l.Version)) else None)

        // ── Status ──────────────────────────────────────────────────────────────────────────────────
        // One writer per Service: the holder of its first address's group; when nobody can hold it (or it is
        // no longer ours) the Service's janitor clears what Hybrid wrote before.
        let announcedBy =
            desired.Groups
            |> List.collect (fun g ->
                let holder =
                    match roles[g.Id] with
                    | Holding -> Some self.Node
                    | Following h -> Some h
                    | _ -> None
                match holder with
                | Some h -> g.Addresses |> List.map (fun ip -> ip, h)
                | None -> [])
            |> Index.ofSeq
        let statusWrites =
            if config.DisableServiceUpdates then []
            else
                snapshot.Services
                |> List.choose (fun service ->
                    let clear () =
                        let hasOurs = service.Annotations.ContainsKey Annotations.VipHost
                        if hasOurs && iAmJanitor (string service.Key) && not (Status.matches service [] None) then
                            Some(WriteStatus(service.Key, [], None))
                        else None
                    match stateOf[service.Key] with
                    | Member(ips, _) ->
                        let primary = groupOf[ips.Head]
                        match roles[primary] with
                        | Holding ->
                            let ingress = ips |> List.filter announcedBy.ContainsKey |> List.map (Status.entry service)
                            let host = if ingress.IsEmpty then None else Some self.Node
                            if Status.matches service ingress host then None
                            else Some(WriteStatus(service.Key, ingress, host))
                        | Unserved _ -> clear ()
                        | _ -> None
                    | Skipped reason when SkipReason.audience reason = NotOurs -> clear ()
                    | Skipped _
                    | AwaitingAddress _ -> clear ())

        // ── Events ──────────────────────────────────────────────────────────────────────────────────
        let announcedAddresses = desired.Groups |> List.collect _.Addresses |> Index.keys
        let warnings =
            snapshot.Services
            |> List.collect (fun service ->
                match stateOf[service.Key] with
                | Skipped reason ->
                    match SkipReason.audience reason with
                    | Ours eventReason ->
                        [ { Service = service.Key; Type = Warning; Reason = eventReason; Message = SkipReason.describe reason } ]
                    | NotOurs -> []
                | Member(ips, _) ->
                    let localWarning =
                        if not config.Election && service.Policy = Local then
                            [ { Service = service.Key
                                Type = Warning
                                Reason = "LocalNeedsElection"
                                Message =
                                  "externalTrafficPolicy Local needs svc_election=true: the leader announces this service whether or not it runs a pod of it" } ]
                        else []
                    let group = groupById[groupOf[ips.Head]]
                    let settled = now - service.ChangedSeenAt >= EndpointGrace
                    let unserved =
                        match roles[group.Id] with
                        | Unserved(NoEligibleNode _) when not settled -> []
                        | Unserved reason -> [ unservedWarning service.Key reason ]
                        // The single leader group holds only the addresses whose services have endpoints.
                        | _ when not (announcedAddresses.Contains ips.Head) && settled ->
                            [ unservedWarning service.Key (NoEligibleNode NoServingEndpoint) ]
                        | _ -> []
                    localWarning @ unserved
                | AwaitingAddress _ -> [])
            |> List.filter (fun w -> iAmJanitor (string w.Service))
            |> Set.ofList
        let newWarnings = Set.difference warnings snapshot.EmittedWarnings |> Set.toList |> List.map Emit
        let membersUsing (g: Group) ip =
            g.Members
            |> List.filter (fun k ->
                match Index.tryFind k stateOf with
                | Some(Member(ips, _)) -> List.contains ip ips
                | _ -> false)
        let transitions =
            [ for action in additions do
                  match action with
                  | AddVip(ip, _, _) ->
                      let g = wanted[ip]
                      let message, reason =
                          match self.Claims.TryFind g.Id |> Option.bind _.From with
                          | Some previous when previous <> self.Node ->
                              sprintf "took over %s from node %s" (Ip.format ip) previous, "TookOver"
                          | _ -> sprintf "announcing %s from node %s" (Ip.format ip) self.Node, "Announced"
                      for k in membersUsing g ip do
                          Emit { Service = k; Type = Normal; Reason = reason; Message = message }
                  | _ -> ()
              for action in removals do
                  match action with
                  | RemoveVip(ip, _) ->
                      match desired.GroupOf.TryFind ip |> Option.bind (fun id -> Index.tryFind id groupById) with
                      | Some g ->
                          let why =
                              match roles[g.Id] with
                              | Releasing(_, reason) -> roleVerb reason
                              | Fenced -> "heartbeat renewal overdue (fenced)"
                              | Following h -> sprintf "node %s holds it now" h
                              | _ -> "this node no longer holds it"
                          for k in membersUsing g ip do
                              Emit { Service = k; Type = Normal; Reason = "Withdrawn"; Message = sprintf "withdrew %s: %s" (Ip.format ip) why }
                      | None -> ()
                  | _ -> () ]

        // ── When to look again ──────────────────────────────────────────────────────────────────────
        let wakeups =
            [ match self.Fence.LastRenewalStartedAt with
              | Some started when Fence.valid timing self.Fence now -> started + timing.RenewDeadline
              | _ -> ()
              for v in snapshot.Vips do
                  if wanted.ContainsKey v.Ip then
                      match v.ExpiresAt with
                      | Some expires -> expires - lifetime / 2L
                      | None -> ()
                      match v.Announce with
                      | Some state when config.Arp -> Announcements.nextDue config.ArpRate state
                      | _ -> ()
              for KeyValue(_, role) in roles do
                  match role with
                  | Waiting(TakeoverDueAt due) -> due
                  | _ -> ()
              for KeyValue(id, assignment) in assignments do
                  match assignment with
                  | Orphaned(successors, since, _, _) ->
                      match List.tryFindIndex ((=) self.Node) successors with
                      | Some rank -> Ownership.claimDue timing (view.Leases.TryFind id) since rank
                      | None -> ()
                  | _ -> ()
              for service in snapshot.Services do
                  service.ChangedSeenAt + EndpointGrace
              for hb in snapshot.Heartbeats do
                  if Ownership.liveness view hb.Node = Live then hb.ChangedSeenAt + timing.LeaseDuration
              for lease in snapshot.Leases do
                  match lease.Holder with
                  | Some h when Ownership.liveness view h = NeverSeen -> lease.ChangedSeenAt + timing.LeaseDuration
                  | _ -> () ]
            |> List.filter (fun t -> t > now)
        let waitsForRenewal =
            let blockedWrite =
                not mayWrite
                && wantedList
                   |> List.exists (fun (ip, _) ->
                       match Index.tryFind ip observed with
                       | None -> true
                       | Some vip -> vip.ExpiresAt |> Option.forall (fun expires -> expires - now <= lifetime / 2L))
            let unentitled =
                roleList
                |> List.exists (fun (_, role) ->
                    match role with
                    | Fenced
                    | Waiting(NotEntitled _) -> true
                    | _ -> false)
            blockedWrite || unentitled
        { Actions =
            removals @ additions @ refreshes @ announcements @ leaseWrites @ staleLeases @ statusWrites @ transitions
            @ newWarnings
          NextWakeAt = if wakeups.IsEmpty then None else Some(List.min wakeups)
          ActiveWarnings = warnings
          WaitsForRenewal = waitsForRenewal
          Desired = desired
          Assignments = assignments
          Roles = Map.ofList roleList }
