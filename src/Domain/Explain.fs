// Explain: the same decisions as sentences, for logs, Events and `hybrid explain`.
namespace Hybrid.Domain

open System

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Explain: the same decisions, as sentences
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Why a Service is (not) announced, as seen from one node.
type Explanation =
    { Service: ServiceKey
      Node: string
      Summary: string
      Details: string list }

[<RequireQualifiedAccess>]
module Explain =
    let eligibility (e: Eligibility) =
        match e with
        | AnyNode ServingEndpointExists -> "any node (a serving endpoint exists)"
        | AnyNode AllowedWithoutEndpoints -> sprintf "any node (%s)" Annotations.AllowWithoutEndpoints
        | AnyNode SingleLeaderMode -> "the leader (svc_election=false)"
        | NodesWithEndpoint nodes when nodes.IsEmpty -> "no node (no serving endpoint; externalTrafficPolicy Local)"
        | NodesWithEndpoint nodes -> sprintf "nodes with a serving endpoint: %s" (String.concat ", " nodes)
        | NoServingEndpoint -> "no node (no serving endpoint)"

    let role (r: Role) =
        match r with
        | Holding -> "this node holds it and announces"
        | Reclaiming _ -> "this node is re-confirming its Lease before announcing"
        | Claiming(_, Some previous, _) -> sprintf "this node is taking it over from %s" previous
        | Claiming _ -> "this node is taking it"
        | Releasing(_, NoLongerEligible) -> "this node is releasing it: no longer eligible"
        | Releasing(_, InterfaceDown) -> "this node is releasing it: the VIP interface is down"
        | Releasing(_, ShuttingDown) -> "this node is releasing it: the agent is stopping"
        | Fenced -> "withdrawn here: heartbeat renewal overdue (fenced) until the API answers again"
        | Following holder -> sprintf "announced by %s" holder
        | Waiting(BetterRankedNode(first, rank)) -> sprintf "waiting: %s takes over first (this node ranks %d)" first (rank + 1)
        | Waiting(HolderReleasing holder) -> sprintf "waiting for %s to release it (no longer eligible there)" holder
        | Waiting(TakeoverDueAt _) -> "waiting for the previous holder's lease to run out"
        | Waiting(NotEntitled because) -> sprintf "this node may not take it: %s" because
        | Waiting NotACandidate -> "this node is not a candidate (not eligible or not live)"
        | Unserved(NoEligibleNode e) -> sprintf "not announced: eligible nodes are %s" (eligibility e)
        | Unserved(NoLiveEligibleNode []) -> "not announced: no live node"
        | Unserved(NoLiveEligibleNode nodes) -> sprintf "not announced: eligible nodes (%s) are not live" (String.concat ", " nodes)

    let private source (service: Service) =
        match service.Annotations.TryFind Annotations.LoadBalancerIPs with
        | Some v when not (String.IsNullOrWhiteSpace v) -> sprintf "%s=%A" Annotations.LoadBalancerIPs v
        | _ ->
            match service.LoadBalancerIP with
            | Some ip -> sprintf "spec.loadBalancerIP=%A" ip
            | None -> "no address requested"

    /// One explanation per Service in the snapshot.
    let all (snapshot: Snapshot) (plan: Plan) : Explanation list =
        let groupById = plan.Desired.Groups |> List.map (fun g -> g.Id, g) |> Map.ofList
        let states = plan.Desired.States
        let groupOf = plan.Desired.GroupOf
        let eligibilityOf = plan.Desired.ServiceEligibility
        let leases = snapshot.Leases |> List.map (fun l -> l.Name, l) |> Map.ofList
        snapshot.Services
        |> List.sortBy (fun s -> s.Key.Namespace, s.Key.Name)
        |> List.map (fun service ->
            let summary, details =
                match states[service.Key] with
                | Skipped reason ->
                    let prefix =
                        match SkipReason.audience reason with
                        | NotOurs -> "not handled"
                        | Ours _ -> "skipped"
                    sprintf "%s: %s" prefix (SkipReason.describe reason), [ source service ]
                | AwaitingAddress [] ->
                    "awaiting an address", [ "set kube-vip.io/loadbalancerIPs or spec.loadBalancerIP" ]
                | AwaitingAddress pending ->
                    sprintf "awaiting a DHCP lease (%s)" (pending |> List.map (sprintf "%A") |> String.concat ", "),
                    [ source service ]
                | Member(ips, pending) ->
                    // With svc_election=false the leader's group leaves out addresses without a serving
                    // endpoint: holding the group does not announce those.
                    let standing ip =
                        let gid = groupOf[ip]
                        if List.contains ip groupById[gid].Addresses then role plan.Roles[gid]
                        else role (Unserved(NoEligibleNode NoServingEndpoint))
                    let perAddress =
                        ips
                        |> List.map (fun ip ->
                            let gid = groupOf[ip]
                            let g = groupById[gid]
                            let holder =
                                leases.TryFind gid |> Option.bind _.Holder |> Option.defaultValue "nobody"
                            let sharing =
                                match g.Members |> List.filter ((<>) service.Key) with
                                | [] -> ""
                                | others when snapshot.Config.Election ->
                                    sprintf "; shared with %s" (others |> List.map string |> String.concat ", ")
                                | _ -> ""
                            sprintf "%s: group %s (Lease holder: %s); eligible: %s%s; %s"
                                (Ip.format ip) gid holder (eligibility g.Eligibility) sharing (standing ip))
                    let summary = standing ips.Head
                    let pendingText =
                        if pending.IsEmpty then []
                        else [ sprintf "DHCP lease pending for %s" (pending |> List.map (sprintf "%A") |> String.concat ", ") ]
                    let eligibilityText =
                        match eligibilityOf.TryFind service.Key with
                        | Some e -> [ sprintf "this service alone: %s" (eligibility e) ]
                        | None -> []
                    summary, source service :: perAddress @ eligibilityText @ pendingText
            { Service = service.Key
              Node = snapshot.Self.Node
              Summary = summary
              Details = details })
