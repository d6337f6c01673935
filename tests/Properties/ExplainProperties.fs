/// `hybrid explain` (src/Domain/Protocol/Explain.fs): why each node does or does not hold a Service's group,
/// from what the API server shows. The cases are built from a ground truth (each node's registration, where
/// the pods run, whom the group Lease names) and the explanation is checked against that truth; the Warnings
/// it lists are checked against the Events the real protocol posts.
module Hybrid.Properties.ExplainProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

/// What a node's registration says, in the generated truth.
type private Registered =
    | JoinedInForce
    | JoinedOtherSettings
    | RegisteredLeft
    | RegisteredDeposed
    | Unregistered'

[<Literal>]
let private InForce = "00000000000000aa"

[<Literal>]
let private Other = "00000000000000bb"
let private Vip = v4 192 168 0 220
let private GroupLease = LeaseNames.group Vip
let private Key = key "default" "web"

/// A cluster around one Service: every node's registration, the nodes that run a serving pod, and whom
/// the group Lease names (None: no Lease; Some None: names nobody).
type private Case =
    { Nodes: (string * Registered) list
      Policy: TrafficPolicy
      ServingOn: string list
      Lease: string option option }

    member c.State(node: string) = c.Nodes |> List.tryFind (fst >> (=) node) |> Option.map snd |> Option.defaultValue Unregistered'
    member c.Live(node: string) = c.State node = JoinedInForce
    member c.Eligible(node: string) =
        match c.Policy with
        | Local -> List.contains node c.ServingOn
        | Cluster -> not c.ServingOn.IsEmpty

let private leaseRecord (write: LeaseWrite) : LeaseRecord =
    { Name = write.Name
      Version = "1"
      Holder = write.Holder
      Transitions = write.Transitions
      Labels = write.Labels
      Annotations = write.Annotations |> Map.toSeq |> Seq.choose (fun (k, v) -> v |> Option.map (fun v -> k, v)) |> Map.ofSeq }

let private registration (node: string) (state: Registered) : LeaseRecord option =
    let r fingerprint s =
        { Node = node
          Incarnation = Incarnation 7UL
          Term = 1L
          State = s
          Fence = LanFence
          Fingerprint = fingerprint
          Members = Map.empty
          Deposing = None
          Interface = InterfaceFacts.none }
    let write (reg: Registration) = Some(leaseRecord (Registration.write (LeaseNames.registration node) None 0 reg))
    match state with
    | JoinedInForce -> write (r InForce Joined)
    | JoinedOtherSettings -> write (r Other Joined)
    | RegisteredLeft -> write (r InForce Left)
    | RegisteredDeposed -> write (r InForce (Deposed "node-z"))
    | Unregistered' -> None

let private genCase: Gen<Case> =
    gen {
        let! n = Gen.choose (1, 5)
        let nodes = List.take n NodePool
        let! states =
            Gen.listOfLength n (Gen.frequency [ 8, Gen.constant JoinedInForce; 1, Gen.constant JoinedOtherSettings; 1, Gen.constant RegisteredLeft
                                                1, Gen.constant RegisteredDeposed; 1, Gen.constant Unregistered' ])
        // The settings in force are the majority's: never more nodes on the other settings than on these.
        let inForce = states |> List.filter ((=) JoinedInForce) |> List.length
        let states =
            states |> List.mapi (fun i s -> if s = JoinedOtherSettings && (states |> List.take (i + 1) |> List.filter ((=) JoinedOtherSettings) |> List.length) >= inForce then RegisteredLeft else s)
        let! policy = genPolicy
        let! servingOn = someOf 0 n nodes
        let! lease = Gen.frequency [ 1, Gen.constant None; 1, Gen.constant (Some None); 6, Gen.elements (nodes @ [ "node-gone" ]) |> Gen.map (Some >> Some) ]
        return { Nodes = List.zip nodes states; Policy = policy; ServingOn = servingOn; Lease = lease }
    }

let private snapshot (c: Case) : ClusterSnapshot =
    let svc = { service Key.Namespace Key.Name with LoadBalancerIP = Some(Ip.format Vip); Policy = c.Policy }
    let endpoints = c.ServingOn |> List.map (fun n -> { NodeName = Some n; Conditions = { Ready = Some true; Serving = Some true; Terminating = Some false } })
    let groupLease =
        c.Lease
        |> Option.map (fun holder -> leaseRecord (GroupLeases.write GroupLease None 1 (holder |> Option.map (fun n -> { Node = n; Incarnation = Some(Incarnation 7UL) }))))
    { Services = [ svc ]
      Families = Map.empty
      Slices = [ { Service = Key; Endpoints = endpoints } ]
      Leases = (c.Nodes |> List.choose (fun (n, s) -> registration n s)) @ Option.toList groupLease
      Nodes = c.Nodes |> List.map (fun (n, _) -> { Name = n; Addresses = []; Labels = Map.empty })
      PoolData = None }

let private settings (election: bool) = { Config = configFor "hybrid-explain" election; ElectionSource = ElectionSource.ElectionGiven }

let private explainCase (election: bool) (c: Case) =
    let e = Explain.explain (settings election) (snapshot c)
    match e.Services with
    | [ { Verdict = ServiceVerdict.Admitted g } ] -> Some g
    | _ -> None

let private genElectionCase = genCase |> Gen.map (fun c -> true, c)

let private classified (c: Case) (p: Property) =
    p
    |> Prop.classify (c.Policy = Local) "Local"
    |> Prop.classify (c.Lease |> Option.flatten |> Option.exists (fun n -> c.Live n && c.Eligible n)) "Lease names a live eligible node"
    |> Prop.classify (c.Nodes |> List.exists (fun (n, s) -> s = JoinedInForce && not (c.Eligible n))) "a live node without an endpoint"

[<Property>]
let ``exactly one node is named holder when the group Lease names a live eligible node, and it is that node; none otherwise`` () =
    forAll genElectionCase (fun (election, c) ->
        match explainCase election c with
        | None -> holds "the Service is admitted" false
        | Some g ->
            let holders = g.Nodes |> List.filter (snd >> (=) NodeVerdict.Holder) |> List.map fst
            let expected =
                match c.Lease with
                | Some(Some n) when c.Live n && c.Eligible n -> [ n ]
                | _ -> []
            holds (sprintf "holders %A, expected %A; %A" holders expected g.Nodes) (holders = expected)
        |> classified c)

[<Property>]
let ``a node without a serving endpoint is never explained as ranked lower for a Local Service: it is not eligible unless the Lease names it`` () =
    forAll (genCase |> Gen.map (fun c -> { c with Policy = Local })) (fun c ->
        match explainCase true c with
        | None -> holds "the Service is admitted" false
        | Some g ->
            allOf
                [ for node, v in g.Nodes do
                      if not (List.contains node c.ServingOn) then
                          let named = c.Lease = Some(Some node)
                          let ok =
                              match v with
                              | NodeVerdict.NotEligible Ineligibility.NoServingEndpointOnNode -> not named
                              | NodeVerdict.HandingOver _ | NodeVerdict.NamedButNotLive _ -> named
                              | _ -> false
                          holds (sprintf "%s (no endpoint, named %b): %A" node named v) ok ]
        |> classified c)

[<Property>]
let ``a node ranked lower or next in line is live and eligible, and so is every node ahead of it`` () =
    forAll genElectionCase (fun (election, c) ->
        match explainCase election c with
        | None -> holds "the Service is admitted" false
        | Some g ->
            allOf
                [ for node, v in g.Nodes do
                      match v with
                      | NodeVerdict.RankedLower(position, ahead) ->
                          holds (sprintf "%s ranked %d after %A" node position ahead)
                              (c.Live node && c.Eligible node && ahead.Length = position && not ahead.IsEmpty
                               && ahead |> List.forall (fun a -> c.Live a && c.Eligible a) && not (List.contains node ahead))
                      | NodeVerdict.NextInLine ->
                          let heldByLive = c.Lease |> Option.flatten |> Option.exists (fun n -> c.Live n && c.Eligible n)
                          holds (sprintf "%s next in line" node) (c.Live node && c.Eligible node && not heldByLive)
                      | _ -> () ]
        |> classified c)

[<Property>]
let ``an eligible node the Lease does not name is explained by its registration when it is not live`` () =
    forAll genElectionCase (fun (election, c) ->
        match explainCase election c with
        | None -> holds "the Service is admitted" false
        | Some g ->
            allOf
                [ for node, v in g.Nodes do
                      if c.Eligible node && c.Lease <> Some(Some node) then
                          let ok =
                              match c.State node, v with
                              | JoinedInForce, (NodeVerdict.RankedLower _ | NodeVerdict.NextInLine) -> true
                              | JoinedOtherSettings, NodeVerdict.NodeStandsAside(FingerprintNotInForce(Other, InForce)) -> true
                              | RegisteredLeft, NodeVerdict.NodeNotLive NotLiveReason.RegistrationLeft -> true
                              | RegisteredDeposed, NodeVerdict.NodeNotLive(NotLiveReason.RegistrationDeposed "node-z") -> true
                              | Unregistered', NodeVerdict.NodeNotLive NotLiveReason.NoRegistration -> true
                              | _ -> false
                          holds (sprintf "%s (%A): %A" node (c.State node) v) ok ]
        |> classified c)

[<Property>]
let ``every node of the cluster and the node the Lease names is explained exactly once`` () =
    forAll genElectionCase (fun (election, c) ->
        match explainCase election c with
        | None -> holds "the Service is admitted" false
        | Some g ->
            let expected = (c.Nodes |> List.map fst) @ (c.Lease |> Option.flatten |> Option.toList) |> List.distinct |> List.sort
            holds (sprintf "%A" (List.map fst g.Nodes)) (List.map fst g.Nodes = expected))

[<Property>]
let ``a live node labelled exclude-from-external-load-balancers is explained as not eligible by the label, or as handing over when the Lease names it, and is never in line`` () =
    let genLabelled =
        gen {
            let! c = genCase
            let! labelled = someOf 1 c.Nodes.Length (c.Nodes |> List.map fst)
            return c, labelled
        }
    forAll genLabelled (fun (c, labelled) ->
        let base' = snapshot c
        let snap =
            { base' with
                Nodes = base'.Nodes |> List.map (fun n -> if List.contains n.Name labelled then { n with Labels = Map [ NodeExclusion.Label, "" ] } else n) }
        match (Explain.explain (settings true) snap).Services with
        | [ { Verdict = ServiceVerdict.Admitted g } ] ->
            allOf
                [ for node, v in g.Nodes do
                      if List.contains node labelled && c.Live node then
                          let named = c.Lease = Some(Some node)
                          let ok =
                              match v with
                              | NodeVerdict.NotEligible Ineligibility.NodeExcludedByLabel -> not named
                              | NodeVerdict.HandingOver(HandOverReason.NoLongerEligible Ineligibility.NodeExcludedByLabel) -> named
                              | _ -> false
                          holds (sprintf "%s (labelled, live, named %b): %A" node named v) ok
                      match v with
                      | NodeVerdict.RankedLower(_, ahead) ->
                          holds (sprintf "%s ranked after %A, labelled %A" node ahead labelled)
                              (not (List.contains node labelled) && ahead |> List.forall (fun a -> not (List.contains a labelled)))
                      | NodeVerdict.NextInLine | NodeVerdict.Holder -> holds (sprintf "%s %A though labelled" node v) (not (List.contains node labelled))
                      | _ -> () ]
            |> Prop.classify (c.Lease |> Option.flatten |> Option.exists (fun n -> List.contains n labelled && c.Live n)) "the Lease names a labelled live node"
        | other -> holds (sprintf "the Service is admitted: %A" other) false)

// ── Skipped Services and Warnings, against the real protocol ────────────────────────────────────────

/// Two to four Services on a few shared addresses (some unusable), so that admission and sharing skip some.
let private genServices: Gen<Service list * EndpointSlice list> =
    gen {
        let! keys = genKeys 2 4
        let! services =
            keys
            |> Gen.collectToList (fun k ->
                gen {
                    let! created = Gen.choose (0, 3)
                    let! ports = genPorts
                    let! policy = genPolicy
                    let! selector = genSelector
                    let! address = genAddressText
                    let! viaAnnotation = Gen.elements [ true; false ]
                    let s = { service k.Namespace k.Name with CreatedAt = int64 created; Ports = ports; Policy = policy; Selector = selector }
                    return
                        match address with
                        | Some text when viaAnnotation -> annotate Annotations.LoadBalancerIPs text s
                        | Some text -> { s with LoadBalancerIP = Some text }
                        | None -> s
                })
        let! slices = keys |> Gen.collectToList (fun k -> Gen.elements [ true; false ] |> Gen.map (fun serving -> k, serving))
        return
            services,
            slices
            |> List.filter snd
            |> List.map (fun (k, _) -> { Service = k; Endpoints = [ { NodeName = Some "node-a"; Conditions = { Ready = Some true; Serving = Some true; Terminating = Some false } } ] })
    }

[<Property(MaxTest = 60)>]
let ``every skipped Service names the same reason its Warning Event does, and explain lists the Warnings the agent posts`` () =
    forAll (Gen.zip genServices (Gen.elements [ true; false ])) (fun ((services, slices), election) ->
        let config = configFor "node-a" election
        let world = SingleNode.start config services slices |> SingleNode.runUntil 8000L
        let explanation =
            Explain.explain
                { Config = config; ElectionSource = ElectionSource.ElectionGiven }
                { Services = services
                  Families = Map.empty
                  Slices = slices
                  Leases = world.Leases.Values |> List.ofSeq
                  Nodes = []
                  PoolData = None }
        let posted (key: ServiceKey) =
            world.Events |> List.filter (fun e -> e.Service = key && e.Type = Warning) |> List.map (fun e -> e.Reason, e.Message) |> Set.ofList
        allOf
            [ for e in explanation.Services do
                  let listed = e.Warnings |> List.map (fun w -> w.Reason, w.Message) |> Set.ofList
                  yield holds (sprintf "%O: explain lists %A, the agent posted %A" e.Service listed (posted e.Service)) (listed = posted e.Service)
                  match e.Verdict with
                  | ServiceVerdict.Skipped(reason, eventReason) ->
                      yield holds (sprintf "%O skipped (%A) without the Warning %A" e.Service reason eventReason)
                                (posted e.Service |> Set.contains (eventReason, SkipReason.describe reason))
                  | _ -> () ]
        |> Prop.classify (explanation.Services |> List.exists (fun e -> e.Verdict.IsSkipped)) "a Service skipped"
        |> Prop.classify (explanation.Services |> List.exists (fun e -> e.Verdict.IsAdmitted)) "a Service admitted")

// ── Settings ────────────────────────────────────────────────────────────────────────────────────────

[<Property>]
let ``without svc_election the election mode is the one the group Leases the agents wrote show`` () =
    let genLeases =
        gen {
            let! vip = Gen.elements [ true; false ]
            let! held = Gen.elements [ true; false ]
            let name = if vip then GroupLease else "plndr-svcs-lock"
            return vip, name, leaseRecord (GroupLeases.write name None 0 (if held then Some { Node = "node-a"; Incarnation = None } else None))
        }
    forAll genLeases (fun (vip, name, lease) ->
        match ExplainSettings.resolve Map.empty [ lease ] with
        | Ok s ->
            holds (sprintf "%A" s.ElectionSource)
                (s.Config.Election = vip && (vip || s.Config.LeaseName = name) && s.ElectionSource = ElectionSource.ElectionFromLeases [ name ])
        | Error e -> holds (sprintf "%A" e) false)

[<Property>]
let ``svc_election as given wins over the Leases, and bad settings are refused naming the variable`` () =
    forAll (Gen.elements [ "true"; "false"; "yes-please" ]) (fun value ->
        let vipLease = leaseRecord (GroupLeases.write GroupLease None 0 None)
        match ExplainSettings.resolve (Map [ "svc_election", value ]) [ vipLease ], value with
        | Ok s, "true" -> holds "true" (s.Config.Election && s.ElectionSource = ElectionSource.ElectionGiven)
        | Ok s, "false" -> holds "false" (not s.Config.Election && s.ElectionSource = ElectionSource.ElectionGiven)
        | Error errors, _ -> holds (sprintf "%A" errors) (errors |> List.exists (fun e -> e.Variable = "svc_election"))
        | Ok _, _ -> holds "refused" false)
