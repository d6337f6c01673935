/// UPnP forwarding as one node's protocol sees it: who forwards, what the forwarder is asked, and what its
/// report adds to status and Events.
module Hybrid.Properties.ForwardingProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators
open Hybrid.Properties.UpnpGenerators

let private enabled = configWith [ "enable_upnp", "true" ]
let private disabled = configWith []
let private VipPool = [ v4 198 18 0 220; v4 198 18 0 221; v4 198 18 0 222 ]
let private WanIp = v4 198 19 0 2
let private Gateway = GatewayId "uuid:gw::WANIPConnection:2"

/// A node's state after an ownership pass: these Services, every group in one of the given roles, the held
/// VIPs in the kernel, and a forwarder report.
type private Scene =
    { State: NodeState
      Services: Service list
      Roles: Map<GroupId, Role> }

let private genRole = Gen.elements [ Holding; Holding; Acknowledging; Following "node-b"; Releasing("7", NoLongerEligible) ]

let private genService (key: ServiceKey) : Gen<Service> =
    gen {
        let! vip = Gen.elements VipPool
        let! forwarded = Gen.elements [ None; Some "true"; Some "false"; Some "yes" ]
        let! ports = someOf 1 2 [ tcp 80; udp 53; tcp 8080; { Protocol = "SCTP"; Port = 9 } ]
        let! created = Gen.choose (0, 5)
        let s = { service key.Namespace key.Name with LoadBalancerIP = Some(Ip.format vip); Ports = ports; CreatedAt = int64 created }
        return match forwarded with Some text -> annotate Annotations.ForwardUpnp text s | None -> s
    }

let private genScene (config: Config) : Gen<Scene> =
    gen {
        let! keys = someOf 1 5 AllKeys
        let! services = keys |> List.map genService |> Gen.sequenceToList
        let desired = Desired.compute config services []
        let! roles = desired.Groups |> List.map (fun g -> genRole |> Gen.map (fun r -> g.Id, r)) |> Gen.sequenceToList
        let roles = Map.ofList roles
        let! heldVips = someOf 0 3 VipPool
        let start = Protocol.create config
        let vips =
            heldVips
            |> List.map (fun ip ->
                ip, { Prefix = 32; Link = VipLink.Parent; Admitted = true; Held = true; Pending = None; AddressWrittenAt = None; Announce = None; TakenFrom = None })
            |> Map.ofList
        let state =
            { start with
                View = { start.View with Services = services |> List.map (fun s -> s.Key, s) |> Map.ofList }
                Desired = desired
                DesiredStale = false
                Roles = roles
                Kernel = { start.Kernel with Vips = vips } }
        let state = { state with ForwardWants = Forwarding.wants state roles }
        let! reported = someOf 0 5 keys
        let! failing = someOf 0 5 keys
        let report =
            { External = reported |> List.map (fun k -> k, [ WanIp ]) |> Map.ofList
              Problems =
                failing
                |> List.map (fun k -> k, MappingFailed(Gateway, tcp 80, ConflictInMappingEntry))
                |> Set.ofList
              Sources = Set.empty }
        return { State = { state with Forwarding = report }; Services = services; Roles = roles }
    }

let private holderOf (scene: Scene) (s: Service) =
    match scene.State.Desired.States.TryFind s.Key with
    | Some(Member(ips, _)) -> (scene.State.Desired.GroupOf.TryFind ips.Head |> Option.bind scene.Roles.TryFind) = Some Holding
    | _ -> false

[<Property>]
let ``only the holder of a Service's group forwards it, and every node sees every Service`` () =
    forAll (genScene enabled) (fun scene ->
        let candidates = Forwarding.candidates scene.State scene.Roles
        let members = scene.Services |> List.filter (fun s -> match scene.State.Desired.States.TryFind s.Key with Some(Member _) -> true | _ -> false)
        allOf
            [ holds "one candidate per Service with an address" ((candidates |> List.map (fun (c: ForwardCandidate) -> c.Service.Key) |> List.sort) = (members |> List.map (fun (s: Service) -> s.Key) |> List.sort))
              holds "held here exactly when this node holds the group of its first address"
                  (candidates |> List.forall (fun (c: ForwardCandidate) -> c.HeldHere = holderOf scene c.Service)) ]
        |> Prop.classify (candidates |> List.exists (fun (c: ForwardCandidate) -> c.HeldHere)) "some held"
        |> Prop.classify (candidates |> List.exists (fun (c: ForwardCandidate) -> not c.HeldHere)) "some held elsewhere")

[<Property>]
let ``the forwarder sends only from VIPs this node answers for`` () =
    forAll (genScene enabled) (fun scene ->
        let request = Forwarding.request scene.State
        let held = scene.State.Kernel.Vips |> Map.filter (fun _ v -> v.Held) |> Map.keys |> Set.ofSeq
        allOf
            [ holds "the VIPs are the held ones" (request.LocalVips = held)
              holds "the wants are the ownership pass's" (request.Wants = scene.State.ForwardWants) ])

[<Property>]
let ``the gateway address is in status only for a forwarded Service held here, as ipMode Proxy with the forwarded ports`` () =
    forAll (genScene enabled) (fun scene ->
        scene.Services
        |> List.map (fun s ->
            let entries = Forwarding.ingress scene.State s
            let forward = scene.State.ForwardWants.Forwards |> List.tryFind (fun f -> f.HeldHere && f.Service = s.Key)
            match forward, scene.State.Forwarding.External.TryFind s.Key with
            | Some f, Some _ ->
                let expected =
                    f.Ports |> List.map (fun (protocol, port) -> { Protocol = MappingProtocol.name protocol; Port = port })
                holds (sprintf "%O: one Proxy entry of the router's address with the forwarded ports" s.Key)
                    (entries = [ { Ip = Ip.format WanIp; IpMode = Some "Proxy"; Ports = expected } ])
                |> Prop.classify true "listed"
            | _ -> holds (sprintf "%O: not forwarded from here, or nothing mapped: no entry" s.Key) entries.IsEmpty)
        |> allOf)

[<Property>]
let ``the gateway address is never in status without enable_upnp`` () =
    forAll (genScene disabled) (fun scene ->
        scene.Services |> List.map (fun s -> holds (string s.Key) (Forwarding.ingress scene.State s).IsEmpty) |> allOf)

[<Property>]
let ``UPnP warnings are about Services held here: their annotations, conflicts and what the gateway answered`` () =
    forAll (genScene enabled) (fun scene ->
        let warnings = Forwarding.warnings scene.State
        let heldForwarded =
            scene.State.ForwardWants.Forwards |> List.filter _.HeldHere |> List.map _.Service |> Set.ofList
        let expectedRuntime = scene.State.Forwarding.Problems |> Set.filter (fun (k, _) -> heldForwarded.Contains k)
        let keysOf (problems: Set<ServiceKey * ForwardProblem>) = problems |> Set.map (fun (k, p) -> k, ForwardProblem.reason p)
        allOf
            [ holds "every warning is a Warning about a Service held here"
                  (warnings |> Set.forall (fun w -> w.Type = Warning && scene.Services |> List.exists (fun s -> s.Key = w.Service && holderOf scene s)))
              holds "the Services' own problems are all there"
                  (Set.isSubset (keysOf (Set.ofList scene.State.ForwardWants.Problems)) (warnings |> Set.map (fun w -> w.Service, w.Reason)))
              holds "the gateway's answers are there for forwards held here, and only those"
                  (Set.isSubset (keysOf expectedRuntime) (warnings |> Set.map (fun w -> w.Service, w.Reason))
                   && (warnings |> Set.filter (fun w -> w.Reason = EventReason.UPnPConflict) |> Set.map _.Service) = (expectedRuntime |> Set.map fst)) ]
        |> Prop.classify (not expectedRuntime.IsEmpty) "gateway problems")

[<Property>]
let ``an annotated Service held here without enable_upnp says so`` () =
    forAll (genScene disabled) (fun scene ->
        let warned = Forwarding.warnings scene.State |> Set.filter (fun w -> w.Reason = EventReason.UPnPDisabled) |> Set.map _.Service
        let expected =
            scene.Services
            |> List.filter (fun s -> holderOf scene s && Upnp.requested s = Ok true)
            |> List.map _.Key
            |> Set.ofList
        holds "UPnPDisabled for exactly the held Services asking for forwarding" (warned = expected)
        |> Prop.classify (not expected.IsEmpty) "some warned")

[<Property>]
let ``a forwarder report is kept, and the same report again changes nothing`` () =
    forAll (genScene enabled) (fun scene ->
        let report = scene.State.Forwarding
        let start = { scene.State with Forwarding = Upnp.noReport }
        let once, _ = Protocol.step start (ForwardingReported(report, Now))
        let twice, _ = Protocol.step once (ForwardingReported(report, Now + 1L))
        allOf
            [ holds "kept" (once.Forwarding = report)
              holds "the same report again: still the same" (twice.Forwarding = report) ])

[<Property>]
let ``a retry of a failing mapping in flight still counts as failing`` () =
    let web = { service "default" "web" with Ports = [ tcp 80 ] } |> annotate Annotations.ForwardUpnp "true"
    let wants = Upnp.wants enabled [ { Service = web; Addresses = [ VipPool.Head ]; HeldHere = true } ]
    let gateway = { Id = Gateway; ControlUrl = "http://198.18.0.1:5000/ctl"; ServiceType = "urn:schemas-upnp-org:service:WANIPConnection:2" }
    let found = Upnp.evolve Upnp.initial Now Jitter.none (Discovered [ gateway ])
    let key = { Gateway = Gateway; Protocol = Tcp; ExternalPort = 80 }
    forAll (Gen.elements [ SoapFault(718, "ConflictInMappingEntry"); SoapFault(606, "Action not authorized"); Unreachable "timeout" ]) (fun failure ->
        let first = Upnp.decide wants (set [ VipPool.Head ]) found Now
        let failed = Upnp.evolve first.State Now Jitter.none (AddFailed(key, failure))
        let retryAt = match failed.Mappings[key].Phase with AddRetry(_, _, at) -> at | _ -> Now
        let retrying = Upnp.decide wants (set [ VipPool.Head ]) failed retryAt
        let failingIn (d: UpnpDecision) = d.Problems |> List.exists (fun (_, p) -> match p with MappingFailed _ -> true | _ -> false)
        allOf
            [ holds "the retry is sent" (retrying.Commands |> List.exists (function AddMapping _ -> true | _ -> false))
              holds "and the failure is still reported while it is in flight" (failingIn retrying)
              holds "until it succeeds"
                  (not (failingIn (Upnp.decide wants (set [ VipPool.Head ]) (Upnp.evolve retrying.State retryAt Jitter.none (Added key)) retryAt))) ])

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// A deleted Service's VIP stays while its mappings are deleted from it
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<Property(MaxTest = 40)>]
let ``a VIP no Service wants any more stays on the node while the forwarder deletes its mappings from it, and goes once it is done`` () =
    let genCase = Gen.zip3 (Gen.elements [ true; false ]) (chooseL 0L 3000L) (Gen.elements [ true; false ])
    forAll genCase (fun (election, deleting, forwarded) ->
        let config = configWith [ "enable_upnp", "true"; "svc_election", (if election then "true" else "false") ]
        let vip = VipPool[0]
        let web = { service "default" "web" with LoadBalancerIP = Some(Ip.format vip) } |> annotate Annotations.ForwardUpnp "true"
        let settled = SingleNode.start config [ web ] [ readyOn [ "node-a" ] web ] |> SingleNode.runUntil 3000L
        let sources = if forwarded then Set [ vip ] else Set.empty
        let reported = settled |> SingleNode.deliver [ ForwardingReported({ Upnp.noReport with Sources = sources }, settled.Now) ]
        let deleted = reported |> SingleNode.deliver [ ServiceDeleted(web.Key, reported.Now) ]
        let during = deleted |> SingleNode.runUntil (deleted.Now + deleting)
        let doneAt = during.Now
        let after = during |> SingleNode.deliver [ ForwardingReported(Upnp.noReport, doneAt) ] |> SingleNode.runUntil (doneAt + 200L)
        // With svc_election the group's Lease goes with the group (the global Lease of the other mode stays).
        let leaseGone = not election || not (after.Leases |> Map.exists (fun name _ -> name.StartsWith LeaseNames.VipPrefix))
        allOf
            [ holds "answered before" (SingleNode.answering settled = Set [ vip ])
              (if forwarded then holds (sprintf "withdrawn while deleting: %A" (SingleNode.answering during)) (SingleNode.answering during = Set [ vip ])
               else holds "kept without mappings to delete" (SingleNode.answering during).IsEmpty)
              holds "still answered once the deletes are through" (SingleNode.answering after).IsEmpty
              holds "still on the interface" after.Addresses.IsEmpty
              holds (sprintf "group Lease left: %A" (Map.keys after.Leases)) leaseGone ]
        |> Prop.classify forwarded "mappings to delete"
        |> Prop.classify election "svc_election")
