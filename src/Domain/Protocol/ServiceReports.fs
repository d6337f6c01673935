// What Hybrid reports on a Service: its status, and the texts of its Events.
namespace Hybrid.Domain

open System

/// Gratuitous announcements of a held VIP: a burst right after it is held, then one every vip_arpRate.
[<RequireQualifiedAccess>]
module Announcements =
    /// Offsets after the VIP is held: at once, then repeats that cover a lost frame or a switch that was
    /// still learning; afterwards one every vip_arpRate.
    let Burst: Duration list = [ 0L; 250L; 750L; 1500L ]

    /// Never two announcements of one VIP closer than this.
    let MinimumGap: Duration = 100L

    let nextDue (arpRate: Duration) (state: AnnounceState) : Instant =
        let scheduled =
            if state.Sent < Burst.Length then state.HeldAt + Burst[state.Sent]
            else state.LastSentAt + arpRate
        if state.Sent = 0 then scheduled else max scheduled (state.LastSentAt + MinimumGap)

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

    /// Whether the Service's status already lists these ingress entries.
    let ingressMatches (service: Service) (ingress: IngressEntry list) =
        List.length service.Ingress = List.length ingress && List.forall2 sameEntry service.Ingress ingress

    /// Whether the Service's vipHost annotation already names this host.
    let hostMatches (service: Service) (vipHost: string option) = service.Annotations.TryFind Annotations.VipHost = vipHost

    /// Whether the Service already says what Hybrid would write.
    let matches (service: Service) (ingress: IngressEntry list) (vipHost: string option) =
        hostMatches service vipHost && ingressMatches service ingress

    /// The parts of the Service to write: the ingress list and the vipHost annotation, each only if it differs
    /// (None: leave that part alone).
    let changes (service: Service) (ingress: IngressEntry list) (vipHost: string option)
        : IngressEntry list option * string option option =
        (if ingressMatches service ingress then None else Some ingress), (if hostMatches service vipHost then None else Some vipHost)

[<RequireQualifiedAccess>]
module ServiceWarnings =
    /// A Service is not warned about missing endpoints until this long after it last changed: a new
    /// Service normally has none for a moment, until its pods' endpoints are published.
    let EndpointGrace: Duration = 5000L

    /// The message when the holder found the address on its VIP interface, put there by someone else.
    let addressInUse (ip: Ip) (node: string) =
        sprintf "%s is not announced from node %s: the address is already on its VIP interface and Hybrid did not add it (left untouched)"
            (Ip.format ip) node

    /// The Warning for a Service nobody can announce.
    let unserved (service: ServiceKey) (reason: NoCandidateReason) : ServiceEvent =
        let eventReason, message =
            match reason with
            | NoEligibleNode NoServingEndpoint -> EventReason.NoServingEndpoint, "not announced: the service has no serving endpoint"
            | NoEligibleNode _ ->
                EventReason.NoEligibleNode, "not announced: no node runs a serving endpoint (externalTrafficPolicy Local)"
            | NoLiveEligibleNode [] -> EventReason.NoLiveNode, "not announced: no live node"
            | NoLiveEligibleNode nodes ->
                EventReason.EligibleNodesNotLive,
                sprintf "not announced: the nodes with a serving endpoint (%s) are not live" (String.concat ", " nodes)
        { Service = service; Type = Warning; Reason = eventReason; Message = message }

    let localNeedsElection (service: ServiceKey) : ServiceEvent =
        { Service = service
          Type = Warning
          Reason = EventReason.LocalNeedsElection
          Message = "externalTrafficPolicy Local needs svc_election=true: the leader announces this service whether or not it runs a pod of it" }

    /// The Warnings a Service's state calls for: why it is skipped, Local without svc_election, nobody able to
    /// announce it. One rule for the node that posts them (its janitor) and for `hybrid explain`.
    /// `announced`: every address some group announces; `unservedBy ip`: why the group of `ip` has no candidate,
    /// if it has none; `settled`: the Service has been still for EndpointGrace (a new one has no endpoint for a
    /// moment, which is not worth a Warning).
    let ofState (config: Config) (desired: Desired) (announced: Set<Ip>) (unservedBy: Ip -> NoCandidateReason option)
        (settled: bool) (service: Service) : ServiceEvent list =
        let key = service.Key
        match desired.States.TryFind key with
        | Some(Skipped reason) ->
            match SkipReason.audience reason with
            | Ours eventReason -> [ { Service = key; Type = Warning; Reason = eventReason; Message = SkipReason.describe reason } ]
            | NotOurs -> []
        | Some(Member(ips, _)) ->
            let local = if not config.Election && service.Policy = Local then [ localNeedsElection key ] else []
            let unserved =
                match unservedBy ips.Head with
                | Some(NoEligibleNode _) when not settled -> []
                | Some reason -> [ unserved key reason ]
                | None when not (announced.Contains ips.Head) && settled -> [ unserved key (NoEligibleNode NoServingEndpoint) ]
                | None -> []
            local @ unserved
        | _ -> []

    /// The address policy's and pool assignment's Warnings for the Service `key` (all Services when None).
    let ofAddresses (desired: Desired) (key: ServiceKey option) : ServiceEvent list =
        let event (k: ServiceKey) (warning: PoolWarning) =
            { Service = k; Type = Warning; Reason = PoolWarning.reason warning; Message = PoolWarning.message (Some k.Namespace) warning }
        let wanted k = key |> Option.forall ((=) k)
        [ for KeyValue(k, warnings) in desired.AddressWarnings do
              if wanted k then for w in warnings -> event k w
          for k, outcome in desired.AddressAssignments do
              if wanted k then for w in PoolWarning.ofAssignment outcome -> event k w ]

