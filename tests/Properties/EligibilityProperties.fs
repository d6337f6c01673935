/// Rule 5: which nodes may announce a Service (EndpointSlice semantics, Local vs Cluster, shared IPs).
module Hybrid.Properties.EligibilityProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

/// The Kubernetes API's reading of EndpointConditions, written out case by case.
let private servingByTheApi (c: EndpointConditions) =
    match c.Terminating, c.Serving, c.Ready with
    | Some true, _, _ -> false // terminating endpoints do not count
    | _, Some serving, _ -> serving
    | _, None, Some ready -> ready // serving absent: defer to ready
    | _, None, None -> true // ready absent: ready

let private Nodes = [ "node-a"; "node-b"; "node-c"; "node-d" ]

let private servingNodes (slices: EndpointSlice list) =
    slices |> List.collect _.Endpoints |> List.filter (_.Conditions >> servingByTheApi) |> List.choose _.NodeName |> Set.ofList

let private anyServing (slices: EndpointSlice list) =
    slices |> List.collect _.Endpoints |> List.exists (_.Conditions >> servingByTheApi)

let private genServiceWithSlices =
    gen {
        let! policy = genPolicy
        let! allow = bool 1 2
        let s = { service "default" "svc" with Policy = policy }
        let s = if allow then annotate Annotations.AllowWithoutEndpoints "true" s else s
        let! slices = genSlices Nodes s.Key
        return s, slices
    }

[<Property>]
let ``serving absent means ready, ready absent means ready, terminating never counts`` () =
    forAll genConditions (fun c ->
        holds (sprintf "%A" c) (Eligibility.serving c = servingByTheApi c)
        |> Prop.classify (c.Terminating = Some true) "terminating"
        |> Prop.classify (c.Serving.IsNone) "serving absent"
        |> Prop.classify (c.Serving.IsNone && c.Ready.IsNone) "both absent")

[<Property>]
let ``Local eligibility is the nodes with a serving endpoint over every EndpointSlice`` () =
    forAll (genServiceWithSlices |> Gen.map (fun (s, slices) -> { s with Policy = Local }, slices)) (fun (s, slices) ->
        let e = Eligibility.ofService true s slices
        allOf
            [ holds (sprintf "%A, expected nodes %A" e (servingNodes slices)) (e = NodesWithEndpoint(servingNodes slices))
              for n in Nodes do holds (sprintf "%s allowed?" n) (Eligibility.allows n e = (servingNodes slices).Contains n) ]
        |> Prop.classify (slices.Length > 1) "several slices"
        |> Prop.classify ((servingNodes slices).IsEmpty) "no node eligible"
        |> Prop.classify (not (servingNodes slices).IsEmpty) "some node eligible")

[<Property>]
let ``how endpoints are split into EndpointSlices does not matter`` () =
    let genCase =
        gen {
            let! s, slices = genServiceWithSlices
            let endpoints = slices |> List.collect _.Endpoints
            let! shuffled = Gen.shuffle endpoints
            let! cuts = Gen.choose (1, 3)
            let parts = shuffled |> Array.toList |> List.chunkBySize (max 1 ((endpoints.Length + cuts - 1) / cuts))
            return s, slices, parts |> List.map (fun eps -> { Service = s.Key; Endpoints = eps })
        }
    forAll genCase (fun (s, slices, resliced) ->
        allOf
            [ for election in [ true; false ] do
                  holds (sprintf "election=%b" election) (Eligibility.ofService election s slices = Eligibility.ofService election s resliced) ]
        |> Prop.classify (s.Policy = Local) "Local")

[<Property>]
let ``Cluster services may use every node once any serving endpoint exists`` () =
    forAll (genServiceWithSlices |> Gen.map (fun (s, slices) -> { s with Policy = Cluster }, slices)) (fun (s, slices) ->
        let e = Eligibility.ofService true s slices
        let allowed = Annotations.isTrue s Annotations.AllowWithoutEndpoints
        let expected =
            if anyServing slices then AnyNode ServingEndpointExists
            elif allowed then AnyNode AllowedWithoutEndpoints
            else NoServingEndpoint
        allOf
            [ holds (sprintf "%A, expected %A" e expected) (e = expected)
              for n in Nodes @ [ "node-without-pods" ] do holds n (Eligibility.allows n e = (anyServing slices || allowed)) ]
        |> Prop.classify (anyServing slices) "serving endpoint exists"
        |> Prop.classify (not (anyServing slices) && allowed) "allow-reconcile-without-endpoints"
        |> Prop.classify (not (anyServing slices) && not allowed) "no serving endpoint")

[<Property>]
let ``a shared IP's eligible nodes are the intersection over its Local services`` () =
    let genCase =
        gen {
            // One namespace (without pools, Services of two namespaces never share an address), same IP, same
            // selector, distinct ports: all admitted into one group.
            let! ns = Gen.elements [ "default"; "prod" ]
            let! keys = someOf 1 4 (AllKeys |> List.filter (fun k -> k.Namespace = ns))
            let services = keys |> List.mapi (fun i k -> { service k.Namespace k.Name with Policy = Local; Ports = [ tcp (8000 + i) ]; LoadBalancerIP = Some "192.168.0.220" })
            // Each service has a serving endpoint on most nodes, so that intersections are often non-empty.
            let! slices =
                keys
                |> Gen.collectToList (fun k ->
                    Nodes
                    |> Gen.collectToList (fun n ->
                        Gen.frequency [ 4, Gen.constant (Some { NodeName = Some n; Conditions = { Ready = Some true; Serving = None; Terminating = None } }); 1, genEndpoint Nodes |> Gen.map Some; 1, Gen.constant None ])
                    |> Gen.map (fun eps -> { Service = k; Endpoints = List.choose id eps }))
            return services, slices
        }
    forAll genCase (fun (services, slices) ->
        let desired = Desired.compute (configFor "node-a" true) services slices
        let perService = services |> List.map (fun s -> servingNodes (slices |> List.filter (fun x -> x.Service = s.Key)))
        let expected = Set.intersectMany perService
        match desired.Groups with
        | [ g ] ->
            allOf
                [ holds "every service a member" (g.Members.Length = services.Length)
                  holds (sprintf "%A, expected %A" g.Eligibility expected) (g.Eligibility = NodesWithEndpoint expected) ]
        | groups -> holds (sprintf "groups %A" groups) false
        |> Prop.classify (services.Length > 1) "shared"
        |> Prop.classify (expected.IsEmpty) "empty intersection"
        |> Prop.classify (not expected.IsEmpty) "some node eligible")

[<Property>]
let ``svc_election=false announces Local services from the leader`` () =
    forAll (genServiceWithSlices |> Gen.map (fun (s, slices) -> { s with Policy = Local; LoadBalancerIP = Some "192.168.0.220" }, slices)) (fun (s, slices) ->
        let desired = Desired.compute (configFor "node-a" false) [ s ] slices
        allOf
            [ holds "leader mode" (Eligibility.ofService false s slices = AnyNode SingleLeaderMode)
              holds (sprintf "%A" desired.Groups) (desired.Groups |> List.exists (fun g -> g.Addresses = [ ip "192.168.0.220" ] && g.Eligibility = AnyNode SingleLeaderMode)) ]
        |> Prop.classify ((servingNodes slices).IsEmpty) "no local endpoint")
