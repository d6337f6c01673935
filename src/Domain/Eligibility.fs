// Eligibility: which nodes may announce a Service (EndpointSlice semantics, Local vs Cluster).
namespace Hybrid.Domain

open System

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Eligibility: which nodes may announce a Service
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Why any node may announce.
type AnyNodeBecause =
    | ServingEndpointExists
    | AllowedWithoutEndpoints
    /// svc_election=false: the leader announces everything (Local included, with a warning).
    | SingleLeaderMode

/// The nodes allowed to announce a Service or a group of Services.
type Eligibility =
    | AnyNode of AnyNodeBecause
    /// externalTrafficPolicy Local: the nodes running a serving endpoint (possibly none).
    | NodesWithEndpoint of Set<string>
    /// Cluster policy and no serving endpoint anywhere.
    | NoServingEndpoint

[<RequireQualifiedAccess>]
module Eligibility =
    /// EndpointSlice semantics: `serving` absent falls back to `ready`, absent `ready` means ready; a
    /// terminating endpoint never counts.
    let serving (c: EndpointConditions) =
        let up = c.Serving |> Option.orElse c.Ready |> Option.defaultValue true
        up && not (defaultArg c.Terminating false)

    let private servingEndpoints (slices: EndpointSlice list) =
        slices |> List.collect _.Endpoints |> List.filter (_.Conditions >> serving)

    /// Eligibility of one Service from ALL of its EndpointSlices.
    let ofService (election: bool) (service: Service) (slices: EndpointSlice list) : Eligibility =
        let endpoints = servingEndpoints slices
        if not election then
            if service.Policy = Local || not endpoints.IsEmpty then AnyNode SingleLeaderMode
            elif Annotations.isTrue service Annotations.AllowWithoutEndpoints then AnyNode AllowedWithoutEndpoints
            else NoServingEndpoint
        else
            match service.Policy with
            | Local -> endpoints |> List.choose _.NodeName |> Set.ofList |> NodesWithEndpoint
            | Cluster when not endpoints.IsEmpty -> AnyNode ServingEndpointExists
            | Cluster when Annotations.isTrue service Annotations.AllowWithoutEndpoints -> AnyNode AllowedWithoutEndpoints
            | Cluster -> NoServingEndpoint

    /// Eligibility of Services sharing one IP. Sharing keeps a group all-Cluster or all-Local: a Cluster
    /// group needs one member with endpoints; a Local group is the intersection of its members' nodes.
    let combine (members: Eligibility list) : Eligibility =
        let local = members |> List.choose (function NodesWithEndpoint s -> Some s | _ -> None)
        if not local.IsEmpty then NodesWithEndpoint(Set.intersectMany local)
        else
            match members |> List.tryPick (function AnyNode b -> Some b | _ -> None) with
            | Some because -> AnyNode because
            | None -> NoServingEndpoint

    let allows (node: string) (eligibility: Eligibility) =
        match eligibility with
        | AnyNode _ -> true
        | NodesWithEndpoint nodes -> nodes.Contains node
        | NoServingEndpoint -> false
