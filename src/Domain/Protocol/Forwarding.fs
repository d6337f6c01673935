// UPnP port forwarding as one node's protocol sees it (docs/UPNP.md): which Services this node forwards (it
// holds their group), what it asks of its forwarder, and what the forwarder's report adds to status and Events.
namespace Hybrid.Domain

/// What the UPnP forwarder must work towards now.
type ForwardingRequest =
    { /// Every Service's forward (all nodes compute the same, so they agree on conflicts); only those held
      /// here are mapped by this node.
      Wants: Wants
      /// The VIPs this node answers for right now: a mapping is sent from its VIP.
      LocalVips: Set<Ip> }

[<RequireQualifiedAccess>]
module Forwarding =
    /// Every Service with addresses, and whether this node holds the group of its first address: the holder
    /// that also writes its status, so the external address and the VIP appear in status together.
    let candidates (s: NodeState) (roles: Map<GroupId, Role>) : ForwardCandidate list =
        s.View.Services
        |> Map.toList
        |> List.choose (fun (key, service) ->
            match s.Desired.States.TryFind key with
            | Some(Member(ips, _)) when not ips.IsEmpty ->
                let held = (s.Desired.GroupOf.TryFind ips.Head |> Option.bind roles.TryFind) = Some Holding
                Some { Service = service; Addresses = ips; HeldHere = held }
            | _ -> None)

    /// The forwards after an ownership pass with these roles.
    let wants (s: NodeState) (roles: Map<GroupId, Role>) : Wants = Upnp.wants s.Config (candidates s roles)

    /// The VIPs this node answers for now: on the interface and not fenced off, so that a call sent from one
    /// gets its answer.
    let answeredVips (s: NodeState) : Set<Ip> = Set.ofList s.Kernel.HeldVips

    let request (s: NodeState) : ForwardingRequest = { Wants = s.ForwardWants; LocalVips = answeredVips s }

    let private heldForward (s: NodeState) (key: ServiceKey) =
        s.ForwardWants.Forwards |> List.tryFind (fun f -> f.HeldHere && f.Service = key)

    /// The status entries of the gateways' external addresses on which the Service has a port mapped now:
    /// after its VIP entries, ipMode Proxy (kube-proxy must not short-circuit traffic to a router's public
    /// address inside the cluster), with the ports that are forwarded.
    let ingress (s: NodeState) (service: Service) : IngressEntry list =
        match s.Forwarding.External.TryFind service.Key, heldForward s service.Key with
        | Some ips, Some forward ->
            let ports = forward.Ports |> List.map (fun (protocol, port) -> { Protocol = MappingProtocol.name protocol; Port = port })
            ips |> List.map (fun ip -> { Ip = Ip.format ip; IpMode = Some "Proxy"; Ports = ports })
        | _ -> []

    /// Warning Events for the problems of the Services held here: those their annotations and the other
    /// Services cause, and those the gateway revealed.
    let warnings (s: NodeState) : Set<ServiceEvent> =
        let runtime = s.Forwarding.Problems |> Set.filter (fun (key, _) -> (heldForward s key).IsSome)
        Set.union (Set.ofList s.ForwardWants.Problems) runtime
        |> Set.map (fun (key, problem) ->
            { Service = key; Type = Warning; Reason = ForwardProblem.reason problem; Message = ForwardProblem.describe problem })
