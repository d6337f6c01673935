/// DHCP Services on a node (docs/DHCP.md, "the agent"): who runs a Service's client, how it stops, what its
/// outcomes write back, the Warnings; and one node leasing, announcing and releasing through the real step.
module Hybrid.Properties.DhcpServiceProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private dhcpService (k: ServiceKey) = { service k.Namespace k.Name with LoadBalancerIP = Some "0.0.0.0" }

let private identityOf (s: Service) =
    match DhcpIdentity.ofService s with
    | Ok identity -> identity
    | Error errors -> failwithf "no identity: %A" errors

let private wantOf (s: Service) =
    { Service = s.Key; Identity = identityOf s; Group = LeaseNames.dhcp s.Uid; Known = DhcpIdentity.knownAddress s }

let private Leases = [ v4 198 18 0 100; v4 198 18 0 101; v4 198 18 0 102 ]

/// What a Service is to a node before and after a change: wanted (held here, elsewhere or by nobody: its
/// endpoints went first), wanted under another identity (kube-vip.io/hwaddr changed), or no longer wanted
/// (deleted, or another address).
type private Change =
    | HeldHere
    | HeldElsewhere
    | HeldByNobody
    | NewIdentity
    | NotWanted

/// Services, the clients this node ran for some of them, and what each is now.
let private genScene =
    gen {
        let! keys = genKeys 1 6
        let! rows =
            keys
            |> List.map (fun k ->
                gen {
                    let! running = Gen.elements [ true; false ]
                    let! change = Gen.elements [ HeldHere; HeldHere; HeldElsewhere; HeldByNobody; NewIdentity; NotWanted ]
                    let! bound = Gen.optionOf (Gen.elements Leases)
                    return dhcpService k, running, change, bound
                })
            |> Gen.sequenceToList
        return rows
    }

let private clientFor (w: DhcpWant) (bound: Ip option) : DhcpClient =
    { Want = w; StartedAt = Now - 1000L; Bound = bound; Recorded = Some bound; UnboundSince = Now - 1000L; Warned = bound.IsNone }

/// The scene's wants (after the change), the groups held here, and the clients before.
let private setUp rows =
    let wants =
        rows
        |> List.choose (fun (s: Service, _, change, _) ->
            match change with
            | NotWanted -> None
            | NewIdentity -> Some(s.Key, wantOf (s |> annotate Annotations.HwAddr "02:00:5e:10:00:01"))
            | HeldHere
            | HeldElsewhere
            | HeldByNobody -> Some(s.Key, wantOf s))
        |> Map.ofList
    let standings =
        rows
        |> List.map (fun (s: Service, _, change, _) ->
            LeaseNames.dhcp s.Uid,
            match change with
            | HeldElsewhere -> DhcpGroupStanding.Elsewhere
            | HeldByNobody -> DhcpGroupStanding.Unclaimed
            | _ -> DhcpGroupStanding.HeldHere)
        |> Map.ofList
    let standing g = standings.TryFind g |> Option.defaultValue DhcpGroupStanding.Elsewhere
    let clients =
        rows
        |> List.choose (fun (s: Service, running, _, bound) -> if running then Some(s.Key, clientFor (wantOf s) bound) else None)
        |> Map.ofList
    let services = rows |> List.map (fun (s: Service, _, _, _) -> s.Key, s) |> Map.ofList
    wants, standing, clients, services

let private starts actions = actions |> List.choose (function DhcpAction.Start w -> Some w.Service | _ -> None) |> Set.ofList
let private stops actions = actions |> List.choose (function DhcpAction.Stop(w, mode) -> Some(w.Service, mode) | _ -> None) |> Map.ofList

[<Property>]
let ``a DHCP Service's client starts only on the holder of its group, runs on while nobody holds the group, and one runs per Service`` () =
    forAll genScene (fun rows ->
        let wants, standing, clients, services = setUp rows
        let after, actions = DhcpServices.plan Now wants standing services clients
        let sameClient k (w: DhcpWant) = clients.TryFind k |> Option.exists (fun c -> c.Want.Identity = w.Identity && c.Want.Group = w.Group)
        let shouldRun =
            wants
            |> Map.filter (fun k w ->
                match standing w.Group with
                | DhcpGroupStanding.HeldHere -> true
                | DhcpGroupStanding.Unclaimed -> sameClient k w
                | DhcpGroupStanding.Elsewhere -> false)
            |> Map.keys
            |> Set.ofSeq
        let started = starts actions
        let startsOnce = (actions |> List.filter (function DhcpAction.Start _ -> true | _ -> false)).Length = started.Count
        allOf
            [ holds "runs exactly the clients of groups held here and those it ran for groups nobody holds" (Set.ofSeq after.Keys = shouldRun)
              holds "starts only what it did not run under the same identity"
                  (started |> Set.forall (fun k -> not (clients.ContainsKey k) || clients[k].Want.Identity <> wants[k].Identity))
              holds "one start per Service" startsOnce
              holds "a client runs under the identity wanted now" (after |> Map.forall (fun k c -> c.Want = wants[k])) ]
        |> Prop.classify (started.IsEmpty |> not) "a client started"
        |> Prop.classify (rows |> List.exists (fun (_, running, change, _) -> running && change = HeldByNobody)) "kept while nobody holds"
        |> Prop.classify (clients.Count > after.Count) "a client stopped")

[<Property>]
let ``a client stops without DHCPRELEASE when its group goes elsewhere, keeps the lease while nobody holds the group, and releases when the Service no longer asks for the lease`` () =
    forAll genScene (fun rows ->
        let wants, standing, clients, services = setUp rows
        let _, actions = DhcpServices.plan Now wants standing services clients
        let stopped = stops actions
        let expected =
            rows
            |> List.choose (fun (s: Service, running, change, _) ->
                match running, change with
                | false, _ -> None
                | true, (HeldHere | HeldByNobody) -> None
                | true, HeldElsewhere -> Some(s.Key, StopMode.KeepLease)
                | true, (NewIdentity | NotWanted) -> Some(s.Key, StopMode.ReleaseLease))
            |> Map.ofList
        let stopsFirst =
            let index = actions |> List.mapi (fun i a -> i, a)
            let lastStop = index |> List.choose (fun (i, a) -> match a with DhcpAction.Stop _ -> Some i | _ -> None) |> List.fold max -1
            let firstStart = index |> List.choose (fun (i, a) -> match a with DhcpAction.Start _ -> Some i | _ -> None) |> List.fold min System.Int32.MaxValue
            lastStop < firstStart
        allOf
            [ holds "the stops and their modes" (stopped = expected)
              holds "stops before starts (an old macvlan of the same name goes first)" stopsFirst ]
        |> Prop.classify (expected |> Map.exists (fun _ m -> m = StopMode.KeepLease)) "kept for a successor"
        |> Prop.classify (expected |> Map.exists (fun _ m -> m = StopMode.ReleaseLease)) "released")

[<Property>]
let ``a Service whose client released its lease for another identity loses its record, and the client that replaces it confirms no address`` () =
    let genCase = Gen.zip3 (Gen.elements AllKeys) (Gen.elements Leases) (Gen.elements [ true; false ])
    forAll genCase (fun (k, lease, recorded) ->
        let before = dhcpService k |> annotate Annotations.HwAddr "02:00:5e:10:00:02"
        let before = if recorded then before |> annotate Annotations.RequestedIP (Ip.format lease) else before
        let old = wantOf before
        let now = before |> annotate Annotations.HwAddr "02:00:5e:10:00:01"
        let w = wantOf now
        let held (_: GroupId) = DhcpGroupStanding.HeldHere
        let clients, actions = DhcpServices.plan Now (Map [ k, w ]) held (Map [ k, now ]) (Map [ k, clientFor old (Some lease) ])
        let unrecord = if recorded then [ DhcpAction.Record(k, None, w.Identity.Mac) ] else []
        allOf
            [ holds "release, the record removed when there is one, then a client that confirms nothing"
                  (actions = [ DhcpAction.Stop(old, StopMode.ReleaseLease) ] @ unrecord @ [ DhcpAction.Start { w with Known = None } ])
              holds "the new client runs under the identity wanted now, without a lease" (clients[k].Want = w && clients[k].Bound = None) ]
        |> Prop.classify recorded "recorded")

[<Property>]
let ``a bound lease the Service does not record is recorded once, with the identity's MAC, until the Service shows it`` () =
    let genCase = Gen.zip3 (Gen.elements AllKeys) (Gen.elements Leases) (Gen.elements [ None; Some(v4 198 18 0 200) ])
    forAll genCase (fun (k, lease, recorded) ->
        let s = dhcpService k
        let s = match recorded with Some ip -> s |> annotate Annotations.RequestedIP (Ip.format ip) | None -> s
        let w = wantOf s
        let services = Map [ k, s ]
        let held (_: GroupId) = DhcpGroupStanding.HeldHere
        let clients, _ = DhcpServices.plan Now (Map [ k, w ]) held services Map.empty
        let clients, _ = DhcpServices.report Now k (DhcpOutcome.Bound lease) clients
        let clients, first = DhcpServices.plan Now (Map [ k, w ]) held services clients
        let _, again = DhcpServices.plan (Now + 1L) (Map [ k, w ]) held services clients
        let shown = s |> annotate Annotations.RequestedIP (Ip.format lease) |> annotate Annotations.HwAddr (string w.Identity.Mac)
        let _, afterShown = DhcpServices.plan (Now + 2L) (Map [ k, wantOf shown ]) held (Map [ k, shown ]) clients
        allOf
            [ holds "recorded" (first = [ DhcpAction.Record(k, Some lease, w.Identity.Mac) ])
              holds "not again while the write is on its way" (again = [])
              holds "nothing once the Service shows it" (afterShown = [])
              holds "the MAC written keeps the identity" ((wantOf shown).Identity = w.Identity) ])

[<Property>]
let ``a lost lease is removed from the Service with a Warning, and the client's next lease is recorded again`` () =
    let genCase = Gen.zip3 (Gen.elements AllKeys) (Gen.elements Leases) (Gen.elements [ LostReason.Expired; LostReason.Refused None; LostReason.Refused(Some "wrong network"); LostReason.Replaced(v4 198 18 0 9) ])
    forAll genCase (fun (k, lease, reason) ->
        let s = dhcpService k |> annotate Annotations.RequestedIP (Ip.format lease)
        let w = wantOf s
        let clients = Map [ k, clientFor w (Some lease) ]
        let clients, lost = DhcpServices.report Now k (DhcpOutcome.Lost(lease, reason)) clients
        let clients, _ = DhcpServices.report (Now + 5L) k (DhcpOutcome.Bound lease) clients
        let _, recorded = DhcpServices.plan (Now + 5L) (Map [ k, w ]) (fun _ -> DhcpGroupStanding.HeldHere) (Map [ k, s ]) clients
        allOf
            [ holds "a Warning on that Service" (lost |> List.exists (function DhcpAction.Warn e -> e.Service = k && e.Type = Warning && e.Reason = EventReason.DhcpLeaseLost | _ -> false))
              holds "the record removed" (lost |> List.contains (DhcpAction.Record(k, None, w.Identity.Mac)))
              holds "the same address leased again is recorded again" (recorded = [ DhcpAction.Record(k, Some lease, w.Identity.Mac) ]) ])

[<Property>]
let ``a client without a lease warns once after the warning delay, and again only after another lease was lost`` () =
    forAll (Gen.zip (Gen.elements AllKeys) (chooseL 0L 60_000L)) (fun (k, waited) ->
        let s = dhcpService k
        let w = wantOf s
        let wants = Map [ k, w ]
        let services = Map [ k, s ]
        let clients, _ = DhcpServices.plan Now wants (fun _ -> DhcpGroupStanding.HeldHere) services Map.empty
        let clients, actions = DhcpServices.plan (Now + waited) wants (fun _ -> DhcpGroupStanding.HeldHere) services clients
        let _, later = DhcpServices.plan (Now + waited + 60_000L) wants (fun _ -> DhcpGroupStanding.HeldHere) services clients
        let warned = actions |> List.exists (function DhcpAction.Warn e -> e.Reason = EventReason.DhcpNoLease | _ -> false)
        allOf
            [ holds "warned exactly when the delay passed" (warned = (waited >= DhcpServices.NoLeaseWarningAfter))
              holds "woken for it" (waited >= DhcpServices.NoLeaseWarningAfter || DhcpServices.nextDue clients = Some(Now + DhcpServices.NoLeaseWarningAfter))
              holds "once" (not warned || later |> List.forall (function DhcpAction.Warn _ -> false | _ -> true)) ]
        |> Prop.classify warned "warned")

[<Property>]
let ``a report from a client the node no longer runs changes nothing`` () =
    forAll (Gen.zip (Gen.elements AllKeys) (Gen.elements Leases)) (fun (k, lease) ->
        let clients, actions = DhcpServices.report Now k (DhcpOutcome.Lost(lease, LostReason.Expired)) Map.empty
        holds "ignored" (clients.IsEmpty && actions.IsEmpty))

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Desired: the group of a DHCP Service
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<Property>]
let ``with svc_election a DHCP Service is a group of its own, named after it, whose address is the lease it records`` () =
    let genCase = Gen.zip (genKeys 1 4) (Gen.listOf (Gen.elements Leases))
    forAll genCase (fun (keys, recorded) ->
        let services =
            keys
            |> List.mapi (fun i k ->
                match List.tryItem i recorded with
                | Some ip -> dhcpService k |> annotate Annotations.RequestedIP (Ip.format ip)
                | None -> dhcpService k)
            // Two Services cannot hold one lease: the later would be refused by sharing; keep them distinct.
            |> List.distinctBy (fun s -> s.Annotations.TryFind Annotations.RequestedIP |> Option.defaultValue s.Uid)
        let config = configWith [ "svc_election", "true" ]
        let desired = Desired.computeWithPolicy config Desired.noPolicy Map.empty services (services |> List.map (readyOn [ "node-a" ]))
        allOf
            [ for s in services do
                  let g = desired.GroupById.TryFind(LeaseNames.dhcp s.Uid)
                  let lease = DhcpIdentity.knownAddress s
                  holds (sprintf "%O has its group" s.Key) (g |> Option.exists (fun g -> g.Members = [ s.Key ]))
                  holds (sprintf "%O's group announces its lease" s.Key) (g |> Option.exists (fun g -> g.Addresses = Option.toList lease))
                  holds (sprintf "%O's client leases for that group" s.Key) (desired.DhcpWants.TryFind s.Key |> Option.exists (fun w -> w.Group = LeaseNames.dhcp s.Uid && w.Known = lease)) ]
        |> Prop.classify (services |> List.exists (fun s -> (DhcpIdentity.knownAddress s).IsNone)) "no lease yet")

[<Property>]
let ``a bad DHCP annotation is a Warning for that Service alone, which gets no client`` () =
    let bad = [ Annotations.HwAddr, "ff:ff:ff:ff:ff:ff"; Annotations.HwAddr, "nonsense"; Annotations.MacvlanName, "a/b"; Annotations.MacvlanName, "much-too-long-for-linux"; Annotations.LoadBalancerHostname, "two words" ]
    forAll (Gen.zip (Gen.elements bad) (genKeys 2 4)) (fun ((annotation, value), keys) ->
        let broken = dhcpService keys.Head |> annotate annotation value
        let others = keys.Tail |> List.map dhcpService
        let desired = Desired.computeWithPolicy (configWith [ "svc_election", "true" ]) Desired.noPolicy Map.empty (broken :: others) []
        let warnings = DhcpServices.warnings desired.DhcpProblems
        allOf
            [ holds "no client for it" (not (desired.DhcpWants.ContainsKey broken.Key))
              holds "one Warning, on it" (warnings |> List.map (fun e -> e.Service, e.Reason) = [ broken.Key, EventReason.InvalidDhcpAnnotation ])
              holds "the others lease" (others |> List.forall (fun s -> desired.DhcpWants.ContainsKey s.Key)) ])

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// One node through the real step
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<Property(MaxTest = 20)>]
let ``one node leases a 0.0.0.0 Service, announces and reports the lease, withdraws it when lost, and releases it when the Service is deleted`` () =
    forAll (Gen.zip (Gen.elements [ true; false ]) (Gen.elements Leases)) (fun (election, lease) ->
        let config = configWith [ "svc_election", (if election then "true" else "false") ]
        let web = dhcpService (key "default" "nginx-dhcp") |> annotate Annotations.LoadBalancerHostname "mydhcp-test"
        let started = SingleNode.start config [ web ] [ readyOn [ "node-a" ] web ] |> SingleNode.runUntil 3000L
        let client = started.DhcpClients.TryFind web.Key
        let bound = started |> SingleNode.deliver [ DhcpReported(web.Key, DhcpOutcome.Bound lease, started.Now) ] |> SingleNode.runUntil (started.Now + 2000L)
        let recorded = bound.Services[web.Key]
        let lost = bound |> SingleNode.deliver [ DhcpReported(web.Key, DhcpOutcome.Lost(lease, LostReason.Expired), bound.Now) ] |> SingleNode.runUntil (bound.Now + 2000L)
        let again = lost |> SingleNode.deliver [ DhcpReported(web.Key, DhcpOutcome.Bound lease, lost.Now) ] |> SingleNode.runUntil (lost.Now + 2000L)
        let deleted = again |> SingleNode.deliver [ ServiceDeleted(web.Key, again.Now) ] |> SingleNode.runUntil (again.Now + 2000L)
        allOf
            [ holds "a client started, under the Service's identity" (client |> Option.exists (fun w -> w.Identity = identityOf web && w.Known.IsNone))
              holds "the lease recorded (requestedIP, hwaddr)" (recorded.Annotations.TryFind Annotations.RequestedIP = Some(Ip.format lease) && recorded.Annotations.ContainsKey Annotations.HwAddr)
              holds "spec stays 0.0.0.0" (recorded.LoadBalancerIP = Some "0.0.0.0")
              holds "announced" (SingleNode.answering bound = Set [ lease ])
              holds "in status" (recorded.Ingress |> List.map _.Ip = [ Ip.format lease ])
              holds "a lost lease is no longer answered" (SingleNode.answering lost |> Set.isEmpty)
              holds "a Warning when lost" (lost.Events |> List.exists (fun e -> e.Reason = EventReason.DhcpLeaseLost))
              holds "leased again: answered again" (SingleNode.answering again = Set [ lease ])
              holds "one client all along" (again.DhcpStops.IsEmpty)
              holds "deleted: released" (deleted.DhcpStops = [ web.Key, StopMode.ReleaseLease ]) ])

[<Property(MaxTest = 10)>]
let ``a node that stops hands a DHCP Service over without releasing its lease`` () =
    forAll (Gen.elements Leases) (fun lease ->
        let web = dhcpService (key "default" "nginx-dhcp")
        let started = SingleNode.start (configWith []) [ web ] [ readyOn [ "node-a" ] web ] |> SingleNode.runUntil 3000L
        let bound = started |> SingleNode.deliver [ DhcpReported(web.Key, DhcpOutcome.Bound lease, started.Now) ] |> SingleNode.runUntil (started.Now + 2000L)
        let stopped = bound |> SingleNode.deliver [ StopRequested bound.Now ] |> SingleNode.runUntil (bound.Now + 3000L)
        allOf
            [ holds "it ran the client" (bound.DhcpClients.ContainsKey web.Key)
              holds "stopped, keeping the lease" (stopped.DhcpStops = [ web.Key, StopMode.KeepLease ]) ])

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Where the lease goes: the Service's macvlan
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<Property>]
let ``which interface carries a VIP: the macvlan of the DHCP Service whose recorded lease it is, else the parent`` () =
    let genCase = Gen.zip (genKeys 1 4) (Gen.zip (Gen.listOf (Gen.elements Leases)) (Gen.elements (v4 198 18 0 50 :: Leases)))
    forAll genCase (fun (keys, (recorded, probe)) ->
        let wants =
            keys
            |> List.mapi (fun i k ->
                let s = dhcpService k
                match List.tryItem i recorded with
                | Some ip -> s |> annotate Annotations.RequestedIP (Ip.format ip)
                | None -> s)
            |> List.distinctBy (fun s -> s.Annotations.TryFind Annotations.RequestedIP |> Option.defaultValue s.Uid)
            |> List.map (fun s -> s.Key, wantOf s)
            |> Map.ofList
        let owner = wants |> Map.tryPick (fun _ w -> if w.Known = Some probe then Some w else None)
        let link = DhcpServices.link wants probe
        let expected =
            match owner with
            | Some w -> VipLink.Macvlan(w.Identity.Interface, w.Identity.Mac)
            | None -> VipLink.Parent
        allOf
            [ holds "the owner's macvlan, or the parent" (link = expected)
              holds "a host address on a macvlan, the configured prefix on the parent"
                  (DhcpServices.prefix link (fun _ -> 24) probe = (if owner.IsSome then 32 else 24)) ]
        |> Prop.classify owner.IsSome "a lease")

[<Property(MaxTest = 20)>]
let ``a DHCP lease is admitted on its Service's macvlan as a host address and withdrawn from there, while a static VIP stays on the parent`` () =
    forAll (Gen.zip (Gen.elements [ true; false ]) (Gen.elements Leases)) (fun (election, lease) ->
        let config = configWith [ "svc_election", (if election then "true" else "false"); "vip_subnet", "24" ]
        let web = dhcpService (key "default" "nginx-dhcp")
        let fixedIp = v4 198 18 0 30
        let plain = { service "default" "plain" with LoadBalancerIP = Some(Ip.format fixedIp) }
        let started = SingleNode.start config [ web; plain ] [ readyOn [ "node-a" ] web; readyOn [ "node-a" ] plain ] |> SingleNode.runUntil 3000L
        let bound = started |> SingleNode.deliver [ DhcpReported(web.Key, DhcpOutcome.Bound lease, started.Now) ] |> SingleNode.runUntil (started.Now + 2000L)
        let lost = bound |> SingleNode.deliver [ DhcpReported(web.Key, DhcpOutcome.Lost(lease, LostReason.Expired), bound.Now) ] |> SingleNode.runUntil (bound.Now + 2000L)
        let identity = identityOf web
        let kernel (w: SingleNode.World) = w.Decisions |> List.concat |> List.choose (function Kernel k -> Some k | _ -> None)
        let admitted = kernel bound |> List.collect (function Admit(vips, _) -> vips | _ -> [])
        let withdrawn = kernel lost |> List.collect (function Withdraw vips -> vips | _ -> [])
        allOf
            [ holds "announced" (SingleNode.answering bound = Set [ lease; fixedIp ])
              holds "the lease on the macvlan" (bound.Node.Kernel.Vips.TryFind lease |> Option.map _.Link = Some(VipLink.Macvlan(identity.Interface, identity.Mac)))
              holds "admitted as a host address" (admitted |> List.contains (lease, 32))
              holds "the static VIP on the parent, with vip_subnet" (bound.Node.Kernel.Vips.TryFind fixedIp |> Option.map (fun v -> v.Link, v.Prefix) = Some(VipLink.Parent, 24))
              holds "withdrawn as a host address when lost" (withdrawn |> List.contains (lease, 32))
              holds "the static VIP still answered" (SingleNode.answering lost = Set [ fixedIp ]) ])
