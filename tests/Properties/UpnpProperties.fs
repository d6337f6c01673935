/// UPnP port forwarding: which Services want which mappings, and the calls that put them on the gateway,
/// keep them there and take them away.
module Hybrid.Properties.UpnpProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open global.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators
open Hybrid.Properties.UpnpGenerators

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Fixtures
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private enabled = configWith [ "enable_upnp", "true" ]
let private disabled = configWith []

let private Vips = [ v4 198 18 0 220; v4 198 18 0 221; v4 198 18 0 222 ]
let private VipV6 = ip "2001:db8::220"
let private AllVips = set Vips

let private GatewayA = { Id = GatewayId "uuid:a::WANIPConnection:2"; ControlUrl = "http://198.18.0.1:5000/ctl/IPConn"; ServiceType = "urn:schemas-upnp-org:service:WANIPConnection:2" }
let private GatewayB = { Id = GatewayId "uuid:b::WANPPPConnection:1"; ControlUrl = "http://198.18.0.2:5000/ctl/PPP"; ServiceType = "urn:schemas-upnp-org:service:WANPPPConnection:1" }
let private WanIp = v4 198 19 0 2

let private forwarded (s: Service) = annotate Annotations.ForwardUpnp "true" s

let private candidate held addresses (s: Service) : ForwardCandidate = { Service = s; Addresses = addresses; HeldHere = held }

/// A web Service on one VIP, forwarded, held here.
let private web name port vip =
    { service "default" name with Ports = [ tcp port ] } |> forwarded |> candidate true [ vip ]

/// The state after a successful search that found these gateways at `at`, external addresses read.
let private withGateways (gateways: Gateway list) at =
    let found = Upnp.evolve Upnp.initial at Jitter.none (Discovered gateways)
    gateways |> List.fold (fun s g -> Upnp.evolve s at Jitter.none (ExternalAddressRead(g.Id, Some WanIp))) found

/// Decides, then folds every command's outcome as `answer` says, at `now`.
let private round (answer: UpnpCommand -> UpnpOutcome) (wants: Wants) (vips: Set<Ip>) (state: UpnpState) now =
    let decision = Upnp.decide wants vips state now
    let next = decision.Commands |> List.fold (fun s c -> Upnp.evolve s now Jitter.none (answer c)) decision.State
    decision, next

let private succeed (command: UpnpCommand) =
    match command with
    | Discover -> Discovered [ GatewayA ]
    | ReadExternalAddress g -> ExternalAddressRead(g.Id, Some WanIp)
    | AddMapping(_, m) -> Added m.Key
    | DeleteMapping(_, key, _) -> Deleted key

let private adds (d: UpnpDecision) = d.Commands |> List.choose (function AddMapping(_, m) -> Some m | _ -> None)
let private deletes (d: UpnpDecision) = d.Commands |> List.choose (function DeleteMapping(_, k, s) -> Some(k, s) | _ -> None)

let private keyOf port = { Gateway = GatewayA.Id; Protocol = Tcp; ExternalPort = port }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Wants
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private TrueSpellings = [ "1"; "t"; "T"; "TRUE"; "true"; "True" ]
let private FalseSpellings = [ "0"; "f"; "F"; "FALSE"; "false"; "False" ]
let private Garbage = [ "yes"; "on"; " true"; "tRUE"; ""; "2"; "enabled" ]

[<Property>]
let ``forwarding is asked for by kube-vip.io/forwardUPNP in Go's boolean spellings`` () =
    let genCase =
        Gen.oneof
            [ Gen.elements TrueSpellings |> Gen.map (fun v -> Some v, "true")
              Gen.elements FalseSpellings |> Gen.map (fun v -> Some v, "false")
              Gen.elements Garbage |> Gen.map (fun v -> Some v, "garbage")
              Gen.constant (None, "absent") ]
    forAll genCase (fun (value, kind) ->
        let s = service "default" "web"
        let s = match value with Some v -> annotate Annotations.ForwardUpnp v s | None -> s
        let w = Upnp.wants enabled [ candidate true [ Vips[0] ] s ]
        let isForwarded = w.Forwards |> List.exists (fun f -> f.Service = s.Key)
        match kind with
        | "true" -> holds "forwarded, no problem" (isForwarded && w.Problems.IsEmpty)
        | "garbage" -> holds (sprintf "problems %A" w.Problems) (not isForwarded && w.Problems = [ s.Key, InvalidForwardAnnotation value.Value ])
        | _ -> holds "neither forwarded nor a problem" (not isForwarded && w.Problems.IsEmpty)
        |> Prop.classify true kind)

[<Property>]
let ``with enable_upnp off nothing is forwarded and an annotated Service held here says so`` () =
    forAll (Gen.zip (bool 1 1) (Gen.elements TrueSpellings)) (fun (held, spelling) ->
        let s = service "default" "web" |> annotate Annotations.ForwardUpnp spelling
        let w = Upnp.wants disabled [ candidate held [ Vips[0] ] s ]
        let d = Upnp.decide w AllVips Upnp.initial Now
        allOf
            [ holds "nothing forwarded" w.Forwards.IsEmpty
              holds "no calls, not even a search" d.Commands.IsEmpty
              holds (sprintf "problems %A" w.Problems) (w.Problems = (if held then [ s.Key, UpnpDisabled ] else [])) ]
        |> Prop.classify held "held here")

[<Property>]
let ``each port is mapped from the same external port to the Service's IPv4 VIP, with its protocol`` () =
    let genCase =
        gen {
            let! ports = someOf 1 4 [ tcp 80; udp 80; tcp 32380; udp 5353; { Protocol = "SCTP"; Port = 9 } ]
            let! addresses = Gen.elements [ [ Vips[0] ]; [ Vips[1]; VipV6 ]; [ VipV6 ] ]
            return ports, addresses
        }
    forAll genCase (fun (ports, addresses) ->
        let s = { service "default" "web" with Ports = ports } |> forwarded
        let w = Upnp.wants enabled [ candidate true addresses s ]
        let state = withGateways [ GatewayA ] Now
        let wanted = Upnp.wantedMappings w state |> Map.toList |> List.map snd
        let mappable = ports |> List.filter (fun p -> p.Protocol <> "SCTP")
        let v4 = addresses |> List.tryFind (fun a -> Ip.family a = IPv4)
        match v4 with
        | None ->
            holds (sprintf "no IPv4: %A %A" wanted w.Problems) (wanted.IsEmpty && w.Problems = [ s.Key, NoIpv4Address ])
        | Some vip ->
            allOf
                [ holds (sprintf "one mapping per TCP/UDP port: %A" wanted) (wanted.Length = mappable.Length)
                  for m in wanted do
                      holds (sprintf "%A" m) (m.Client = vip && m.InternalPort = m.Key.ExternalPort && m.Service = s.Key && m.Lease = Upnp.DefaultLease)
                  for p in mappable do
                      holds (sprintf "port %A mapped" p)
                          (wanted |> List.exists (fun m -> m.Key.ExternalPort = p.Port && MappingProtocol.name m.Key.Protocol = p.Protocol))
                  holds (sprintf "SCTP is a problem: %A" w.Problems)
                      ((ports |> List.exists (fun p -> p.Protocol = "SCTP")) = (w.Problems |> List.exists (fun (_, p) -> p.IsUnsupportedProtocol))) ]
        |> Prop.classify v4.IsNone "no IPv4 VIP"
        |> Prop.classify (ports |> List.exists (fun p -> p.Protocol = "SCTP")) "SCTP port")

[<Property>]
let ``two Services wanting one external port and protocol: the older keeps it, port by port`` () =
    let genCase =
        gen {
            let! keys = distinct 3 AllKeys
            let! services =
                keys
                |> Gen.collectToList (fun k ->
                    gen {
                        let! created = Gen.choose (0, 2)
                        let! ports = someOf 1 3 [ tcp 80; udp 80; tcp 443 ]
                        let! vip = Gen.elements Vips
                        let! held = bool 1 1
                        return candidate held [ vip ] ({ service k.Namespace k.Name with CreatedAt = int64 created; Ports = ports } |> forwarded)
                    })
            return services
        }
    forAll genCase (fun candidates ->
        let w = Upnp.wants enabled candidates
        let claims = w.Forwards |> List.collect (fun f -> f.Ports |> List.map (fun p -> p, f.Service))
        let byService = candidates |> List.map (fun c -> c.Service.Key, c.Service) |> Map.ofList
        allOf
            [ holds (sprintf "one Service per port: %A" claims) (claims |> List.countBy fst |> List.forall (fun (_, n) -> n = 1))
              for c in candidates do
                  for p in c.Service.Ports do
                      let port = (MappingProtocol.ofServicePort p).Value, p.Port
                      let older =
                          candidates
                          |> List.filter (fun o -> o.Service.Key <> c.Service.Key && List.contains p o.Service.Ports)
                          |> List.filter (fun o -> Sharing.compareOrder o.Service c.Service < 0)
                      let winner = claims |> List.tryFind (fun (q, _) -> q = port) |> Option.map snd
                      if older.IsEmpty then
                          holds (sprintf "%O keeps %A" c.Service.Key p) (winner = Some c.Service.Key)
                      else
                          let oldest = older |> List.sortWith (fun a b -> Sharing.compareOrder a.Service b.Service) |> List.head
                          allOf
                              [ holds (sprintf "%O loses %A to %O" c.Service.Key p oldest.Service.Key) (winner = Some oldest.Service.Key)
                                if c.HeldHere then
                                    holds "the loser's holder says who has it"
                                        (w.Problems |> List.contains (c.Service.Key, PortTaken(p, oldest.Service.Key))) ]
              for (k, _) in w.Problems do
                  holds "only Services held here have problems" (candidates |> List.exists (fun c -> c.Service.Key = k && c.HeldHere))
              ignore byService ]
        |> Prop.classify (claims.Length < (candidates |> List.sumBy (fun c -> c.Service.Ports.Length))) "some port taken")

[<Property>]
let ``only the holder of a Service's group maps its ports`` () =
    forAll (Gen.zip (bool 1 1) (bool 1 1)) (fun (heldA, heldB) ->
        let a = { web "a" 80 Vips[0] with HeldHere = heldA }
        let b = { web "b" 81 Vips[1] with HeldHere = heldB }
        let w = Upnp.wants enabled [ a; b ]
        let d = Upnp.decide w AllVips (withGateways [ GatewayA ] Now) Now
        let mapped = adds d |> List.map _.Service |> Set.ofList
        let expected = (if heldA then [ a.Service.Key ] else []) @ (if heldB then [ b.Service.Key ] else []) |> Set.ofList
        holds (sprintf "mapped %A" mapped) (mapped = expected)
        |> Prop.classify (heldA && heldB) "both held"
        |> Prop.classify (not heldA && not heldB) "neither held")

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Lease syntax
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Go's own answers (time.ParseDuration) for these texts, in nanoseconds; None = Go refuses the text.
let private GoAnswers: (string * int64 option) list =
    [ "0", Some 0L; "+0", Some 0L; "-0", Some 0L; "0s", Some 0L; "5s", Some 5_000_000_000L; "30s", Some 30_000_000_000L
      "1h", Some 3_600_000_000_000L; "1.5h", Some 5_400_000_000_000L; "2h45m", Some 9_900_000_000_000L
      "-1.5h", Some -5_400_000_000_000L; "300ms", Some 300_000_000L; ".5s", Some 500_000_000L; "5.s", Some 5_000_000_000L
      "1h1m1s", Some 3_661_000_000_000L; "1us", Some 1_000L; "1\u00b5s", Some 1_000L; "1\u03bcs", Some 1_000L; "7ns", Some 7L
      "", None; "1", None; ".", None; "s", None; "1d", None; "1h-1m", None; "-", None; "1.2.3s", None; " 1s", None
      "1s ", None; "1S", None; "9999999999999999999h", None; "3000000h", None ]

[<Fact>]
let ``lease durations are read with Go's time.ParseDuration syntax`` () =
    for text, expected in GoAnswers do
        let parsed = GoDuration.parse text
        match expected, parsed with
        | Some n, Ok m when n = m -> ()
        | None, Error _ -> ()
        | _ -> failwithf "%A: Go says %A, parsed %A" text expected parsed

[<Property>]
let ``a lease annotation asks for that many whole seconds, 0 for permanent, at most a week; anything else means one hour with a problem`` () =
    let genText =
        Gen.oneof
            [ Gen.choose (1, 100_000) |> Gen.map (fun n -> sprintf "%ds" n, Choice1Of3(min n LeaseSeconds.Max))
              Gen.choose (1, 200) |> Gen.map (fun n -> sprintf "%dh" n, Choice1Of3(min (n * 3600) LeaseSeconds.Max))
              Gen.choose (1, 59) |> Gen.map (fun n -> sprintf "%dm%d.9s" n n, Choice1Of3(n * 60 + n))
              Gen.elements [ "0", Choice2Of3(); "0s", Choice2Of3(); "0h0m", Choice2Of3() ]
              Gen.elements [ "500ms"; "-5s"; "1"; "1d"; ""; "an hour"; "5 s" ] |> Gen.map (fun t -> t, Choice3Of3()) ]
    forAll genText (fun (text, expected) ->
        let s = service "default" "web" |> annotate Annotations.UpnpLeaseDuration text
        let lease, problem = Upnp.leaseOf s
        match expected with
        | Choice1Of3 seconds -> holds (sprintf "%A → %A %A" text lease problem) (lease = Lasting((LeaseSeconds.tryCreate seconds).Value) && problem.IsNone)
        | Choice2Of3() -> holds (sprintf "%A → %A" text lease) (lease = Permanent && problem.IsNone)
        | Choice3Of3() ->
            holds (sprintf "%A → %A %A" text lease problem)
                (lease = Upnp.DefaultLease && (match problem with Some(InvalidLeaseDuration(t, _)) -> t = text | _ -> false))
        |> Prop.classify (match expected with Choice3Of3 _ -> true | _ -> false) "invalid")

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Calls: add, refresh, hand over, delete
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<Property>]
let ``a mapping is sent again before its lease ends, half-way through it`` () =
    forAll (Gen.choose (1, 7200)) (fun seconds ->
        let s = { service "default" "web" with Ports = [ tcp 80 ] } |> forwarded |> annotate Annotations.UpnpLeaseDuration (sprintf "%ds" seconds)
        let w = Upnp.wants enabled [ candidate true [ Vips[0] ] s ]
        let _, mapped = round succeed w AllVips (withGateways [ GatewayA ] Now) Now
        let lease = int64 seconds * 1000L
        let quiet = Upnp.decide w AllVips mapped (Now + lease / 2L - 1L)
        let due = Upnp.decide w AllVips mapped (Now + lease / 2L)
        allOf
            [ holds "nothing sent before half the lease" (adds quiet).IsEmpty
              holds (sprintf "wakes at half the lease, not later: %A" quiet.NextWakeAt) (quiet.NextWakeAt = Some(Now + lease / 2L))
              holds "sent again at half the lease" ((adds due |> List.map _.Key) = [ keyOf 80 ])
              holds "half the lease is before its end" (Now + lease / 2L < Now + lease) ]
        |> Prop.classify (seconds < 10) "short lease")

[<Property>]
let ``a permanent mapping is sent again every half hour`` () =
    forAll (Gen.elements [ "0"; "0s" ]) (fun text ->
        let s = web "web" 80 Vips[0]
        let s = { s with Service = s.Service |> annotate Annotations.UpnpLeaseDuration text }
        let w = Upnp.wants enabled [ s ]
        let _, mapped = round succeed w AllVips (withGateways [ GatewayA ] Now) Now
        let due = Upnp.decide w AllVips mapped (Now + Upnp.PermanentReassertEvery)
        let quiet = Upnp.decide w AllVips mapped (Now + Upnp.PermanentReassertEvery - 1L)
        holds "re-asserted on time" ((adds due).Length = 1 && (adds quiet).IsEmpty))

[<Property>]
let ``no second call for a mapping while one is in flight`` () =
    forAll (Gen.choose (0, 5)) (fun extraDecides ->
        let w = Upnp.wants enabled [ web "web" 80 Vips[0] ]
        let first = Upnp.decide w AllVips (withGateways [ GatewayA ] Now) Now
        let later =
            [ 1..extraDecides ]
            |> List.scan (fun (d: UpnpDecision) i -> Upnp.decide w AllVips d.State (Now + int64 i * 1000L)) first
            |> List.tail
        allOf
            [ holds "one add at first" ((adds first).Length = 1)
              for d in later do
                  holds "nothing more while it is in flight" (adds d).IsEmpty ])

[<Property>]
let ``a mapping is sent only while its VIP is on this node, and kept meanwhile`` () =
    forAll (Gen.zip (bool 1 1) (Gen.choose (1, 3_600_000))) (fun (mappedBefore, later) ->
        let w = Upnp.wants enabled [ web "web" 80 Vips[0] ]
        let start = withGateways [ GatewayA ] Now
        let state = if mappedBefore then snd (round succeed w (set [ Vips[0] ]) start Now) else start
        let away = Upnp.decide w (set [ Vips[1] ]) state (Now + int64 later)
        let back = Upnp.decide w (set [ Vips[0] ]) away.State (Now + int64 later)
        allOf
            [ holds (sprintf "no add or delete while the VIP is away: %A" away.Commands) ((adds away).IsEmpty && (deletes away).IsEmpty)
              holds "what was mapped is still known" (away.State.Mappings.ContainsKey(keyOf 80) = mappedBefore)
              holds "sent once the VIP is back (if due)"
                  ((adds back).Length = (if mappedBefore && later < 1_800_000 then 0 else 1)) ]
        |> Prop.classify mappedBefore "mapped before")

[<Property>]
let ``a hand-over keeps the gateway's entry: the VIP moves with the group and the new holder refreshes it`` () =
    forAll (Gen.choose (1, 100_000)) (fun later ->
        let mine = web "web" 80 Vips[0]
        let _, mapped = round succeed (Upnp.wants enabled [ mine ]) (set [ Vips[0] ]) (withGateways [ GatewayA ] Now) Now
        let handedOver = Upnp.wants enabled [ { mine with HeldHere = false } ]
        let d = Upnp.decide handedOver AllVips mapped (Now + int64 later)
        allOf
            [ holds (sprintf "no delete: %A" d.Commands) (deletes d).IsEmpty
              holds "forgotten here" (not (d.State.Mappings.ContainsKey(keyOf 80))) ])

[<Property>]
let ``a mapping nobody wants any more is deleted, from the VIP while the VIP is on this node`` () =
    let genCase =
        Gen.zip
            (Gen.elements [ "Service deleted"; "annotation removed"; "annotation false"; "port removed" ])
            (bool 1 1)
    forAll genCase (fun (change, vipStillHere) ->
        let mine = web "web" 80 Vips[0]
        let _, mapped = round succeed (Upnp.wants enabled [ mine ]) (set [ Vips[0] ]) (withGateways [ GatewayA ] Now) Now
        let after =
            match change with
            | "Service deleted" -> []
            | "annotation removed" -> [ { mine with Service = { mine.Service with Annotations = Map.empty } } ]
            | "annotation false" -> [ { mine with Service = mine.Service |> annotate Annotations.ForwardUpnp "false" } ]
            | _ -> [ { mine with Service = { mine.Service with Ports = [ tcp 8080 ] } } ]
        let vips = if vipStillHere then set [ Vips[0] ] else Set.empty
        let d = Upnp.decide (Upnp.wants enabled after) vips mapped (Now + 1L)
        let expectedSource = if vipStillHere then Some Vips[0] else None
        holds (sprintf "%s: %A" change (deletes d)) ((deletes d) = [ keyOf 80, expectedSource ])
        |> Prop.classify vipStillHere "VIP still here"
        |> Prop.classify true change)

[<Property>]
let ``a Service whose VIP changed: the old entry is deleted first, the new one added after`` () =
    forAll (Gen.elements [ Vips[1]; Vips[2] ]) (fun newVip ->
        let before = web "web" 80 Vips[0]
        let _, mapped = round succeed (Upnp.wants enabled [ before ]) (set [ Vips[0] ]) (withGateways [ GatewayA ] Now) Now
        let w = Upnp.wants enabled [ { before with Addresses = [ newVip ] } ]
        let first = Upnp.decide w (set [ Vips[0]; newVip ]) mapped (Now + 1L)
        let afterDelete = first.Commands |> List.fold (fun s c -> Upnp.evolve s (Now + 2L) Jitter.none (succeed c)) first.State
        let second = Upnp.decide w (set [ newVip ]) afterDelete (Now + 3L)
        allOf
            [ holds (sprintf "first only the delete: %A" first.Commands) ((deletes first) = [ keyOf 80, Some Vips[0] ] && (adds first).IsEmpty)
              holds (sprintf "then the add: %A" second.Commands) ((adds second |> List.map _.Client) = [ newVip ]) ])

[<Property>]
let ``a delete ends when the gateway has no such entry, refuses it for good, or the lease has run out`` () =
    let genCase =
        Gen.elements
            [ SoapFault(714, "NoSuchEntryInArray"), true
              SoapFault(606, "Action not authorized"), true
              SoapFault(501, "ActionFailed"), false
              Unreachable "connection refused", false ]
    forAll (Gen.zip genCase (Gen.choose (1, 5))) (fun ((failure, ends), leaseHours) ->
        let mine = web "web" 80 Vips[0]
        let mine = { mine with Service = mine.Service |> annotate Annotations.UpnpLeaseDuration (sprintf "%dh" leaseHours) }
        let _, mapped = round succeed (Upnp.wants enabled [ mine ]) AllVips (withGateways [ GatewayA ] Now) Now
        let d = Upnp.decide (Upnp.wants enabled []) AllVips mapped (Now + 1L)
        let failed = Upnp.evolve d.State (Now + 2L) Jitter.none (DeleteFailed(keyOf 80, failure))
        let leaseEnd = Now + 1L + int64 leaseHours * 3_600_000L
        let retriedPastLease = Upnp.evolve { failed with Mappings = failed.Mappings |> Map.map (fun _ s -> { s with Phase = Deleting(3, Now + 1L) }) } leaseEnd Jitter.none (DeleteFailed(keyOf 80, failure))
        allOf
            [ holds (sprintf "after %A: ended %b" failure ends) (failed.Mappings.ContainsKey(keyOf 80) = not ends)
              holds "a failure once the lease has run out ends it" (not (retriedPastLease.Mappings.ContainsKey(keyOf 80))) ]
        |> Prop.classify ends "ends at once")

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Failures, retries, discovery
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<Property>]
let ``retries wait between half and all of a delay that doubles from one second up to a cap`` () =
    forAll (Gen.zip3 (Gen.choose (1, 40)) (Gen.choose (0, 999)) (Gen.elements [ Upnp.DiscoveryRetryCap; Upnp.CallRetryCap ])) (fun (failures, perMille, cap) ->
        let jitter = Jitter.ofFraction (float perMille / 1000.0)
        let delay = Upnp.backoff cap failures jitter
        let full = min cap (1000L * pown 2L (min failures 30 - 1))
        let previous = if failures > 1 then Upnp.backoff cap (failures - 1) Jitter.none else 0L
        allOf
            [ holds (sprintf "%d in [%d, %d]" delay (full / 2L) full) (delay >= full / 2L && delay <= full)
              holds "never shorter than the previous minimum" (Upnp.backoff cap failures Jitter.none >= previous) ]
        |> Prop.classify (full = cap) "at the cap")

[<Property>]
let ``discovery never gives up: a search that finds nothing is retried, ever more slowly up to a minute`` () =
    forAll (Gen.choose (1, 60)) (fun misses ->
        let step (state: UpnpState, now: Instant, searches: Instant list) _ =
            let d = Upnp.decide (Upnp.wants enabled []) AllVips state now
            let searched = d.Commands |> List.contains Discover
            let state = if searched then Upnp.evolve d.State now Jitter.none (Discovered []) else d.State
            let wake = (Upnp.decide (Upnp.wants enabled []) AllVips state now).NextWakeAt
            state, (match wake with Some w -> w | None -> now), (if searched then now :: searches else searches)
        let _, _, searches = List.fold step (Upnp.initial, Now, []) [ 1..misses ]
        let gaps = searches |> List.rev |> List.pairwise |> List.map (fun (a, b) -> b - a)
        allOf
            [ holds (sprintf "a search each time: %d of %d" searches.Length misses) (searches.Length = misses)
              holds (sprintf "gaps %A within the cap" gaps) (gaps |> List.forall (fun g -> g >= 500L && g <= Upnp.DiscoveryRetryCap)) ]
        |> Prop.classify (misses > 8) "reached the cap")

[<Property>]
let ``a gateway that answers after the agent started is found by a later search`` () =
    forAll (Gen.choose (1, 10)) (fun misses ->
        let w = Upnp.wants enabled [ web "web" 80 Vips[0] ]
        let rec run (state: UpnpState) now n =
            let d = Upnp.decide w AllVips state now
            if d.Commands |> List.exists (function AddMapping _ -> true | _ -> false) then Some d
            elif n > 100 then None
            else
                let answer c = if c = Discover && n < misses then Discovered [] else succeed c
                let state = d.Commands |> List.fold (fun s c -> Upnp.evolve s now Jitter.none (answer c)) d.State
                let next = Upnp.decide w AllVips state now
                run state (if next.Commands.IsEmpty then defaultArg next.NextWakeAt (now + 1L) else now) (n + 1)
        let problemsWhileSearching =
            let d = Upnp.decide w AllVips Upnp.initial Now
            let missed = Upnp.evolve d.State Now Jitter.none (Discovered [])
            (Upnp.decide w AllVips missed Now).Problems
        allOf
            [ holds "the mapping is added once the gateway answers" (run Upnp.initial Now 0).IsSome
              holds (sprintf "while none answers the Service says so: %A" problemsWhileSearching)
                  (problemsWhileSearching |> List.exists (fun (_, p) -> p = NoGatewayFound)) ])

[<Property>]
let ``error 725 switches the gateway to permanent leases and sends the mapping again at once`` () =
    forAll (Gen.choose (1, 3600)) (fun seconds ->
        let mine = web "web" 80 Vips[0]
        let mine = { mine with Service = mine.Service |> annotate Annotations.UpnpLeaseDuration (sprintf "%ds" seconds) }
        let w = Upnp.wants enabled [ mine ]
        let first = Upnp.decide w AllVips (withGateways [ GatewayA ] Now) Now
        let refused = Upnp.evolve first.State (Now + 5L) Jitter.none (AddFailed(keyOf 80, SoapFault(725, "OnlyPermanentLeasesSupported")))
        let again = Upnp.decide w AllVips refused (Now + 5L)
        holds (sprintf "%A" (adds again)) ((adds again |> List.map _.Lease) = [ Permanent ] && refused.Gateways[GatewayA.Id].PermanentOnly))

[<Property>]
let ``a failed add is retried with backoff and reported as a problem of the Service until it succeeds`` () =
    let genFailure = Gen.elements [ SoapFault(718, "ConflictInMappingEntry"); SoapFault(606, "Action not authorized"); Unreachable "timeout"; HttpStatus 500 ]
    forAll (Gen.zip genFailure (Gen.choose (1, 6))) (fun (failure, times) ->
        let w = Upnp.wants enabled [ web "web" 80 Vips[0] ]
        let rec fail (state: UpnpState) now n =
            let d = Upnp.decide w AllVips state now
            if n = 0 then d, state, now
            else
                match adds d with
                | [ m ] -> fail (Upnp.evolve d.State now Jitter.none (AddFailed(m.Key, failure))) now (n - 1)
                | _ -> fail state (defaultArg d.NextWakeAt now) n
        let d, _, at = fail (withGateways [ GatewayA ] Now) Now times
        let reason = FailureReason.ofFailure failure
        let expectedWait = Upnp.backoff Upnp.CallRetryCap times Jitter.none
        allOf
            [ holds (sprintf "problem %A" d.Problems) (d.Problems |> List.exists (fun (_, p) -> p = MappingFailed(GatewayA.Id, tcp 80, reason)))
              holds (sprintf "retry at %A, expected %d after" d.NextWakeAt expectedWait) (d.NextWakeAt = Some(at + expectedWait)) ]
        |> Prop.classify (times > 3) "several failures")

[<Fact>]
let ``UPnP error codes map to their reasons and Event reasons`` () =
    let table =
        [ SoapFault(718, "ConflictInMappingEntry"), ConflictInMappingEntry, "UPnPConflict"
          SoapFault(725, "OnlyPermanentLeasesSupported"), OnlyPermanentLeasesSupported, "UPnPMappingFailed"
          SoapFault(606, "Action not authorized"), NotAuthorized, "UPnPNotAuthorized"
          HttpStatus 401, NotAuthorized, "UPnPNotAuthorized"
          HttpStatus 403, NotAuthorized, "UPnPNotAuthorized"
          SoapFault(401, "Invalid Action"), InvalidAction, "UPnPMappingFailed"
          SoapFault(714, "NoSuchEntryInArray"), NoSuchEntry, "UPnPMappingFailed"
          SoapFault(501, "ActionFailed"), ActionFailed, "UPnPMappingFailed"
          SoapFault(728, "NoPortMapsAvailable"), NoPortMapsAvailable, "UPnPMappingFailed"
          SoapFault(729, "ConflictWithOtherMechanisms"), ConflictWithOtherMechanisms, "UPnPMappingFailed"
          SoapFault(402, "Invalid Args"), GatewayRefused(402, "Invalid Args"), "UPnPMappingFailed"
          HttpStatus 500, GatewayRefused(500, "HTTP status 500"), "UPnPMappingFailed"
          Unreachable "connection refused", GatewayUnreachable "connection refused", "UPnPGatewayUnreachable"
          Malformed "no body", InvalidResponse "no body", "UPnPMappingFailed" ]
    for failure, reason, eventReason in table do
        let classified = FailureReason.ofFailure failure
        if classified <> reason then failwithf "%A → %A, expected %A" failure classified reason
        let problem = MappingFailed(GatewayA.Id, tcp 80, classified)
        if ForwardProblem.eventReason problem <> eventReason then failwithf "%A: Event reason %s" failure (ForwardProblem.eventReason problem)
        let message = ForwardProblem.describe problem
        if not (message.Contains "80/TCP" && message.Contains(string GatewayA.Id)) then failwithf "message %A names neither port nor gateway" message
    // The messages a user reads say what the code means, not only the code.
    let conflict = FailureReason.describe ConflictInMappingEntry
    if not (conflict.Contains "718" && conflict.Contains "another host") then failwithf "718 message: %s" conflict

[<Property>]
let ``a gateway found at a new control URL gets every mapping again at once`` () =
    forAll (Gen.choose (1, 3)) (fun services ->
        let ws = [ for i in 1..services -> web (sprintf "s%d" i) (80 + i) Vips[(i - 1) % Vips.Length] ]
        let w = Upnp.wants enabled ws
        let _, mapped = round succeed w AllVips (withGateways [ GatewayA ] Now) Now
        let moved = { GatewayA with ControlUrl = "http://198.18.0.1:6000/ctl/IPConn" }
        let same = Upnp.evolve mapped (Now + 10L) Jitter.none (Discovered [ GatewayA ])
        let relocated = Upnp.evolve mapped (Now + 10L) Jitter.none (Discovered [ moved ])
        let dSame = Upnp.decide w AllVips same (Now + 10L)
        let dMoved = Upnp.decide w AllVips relocated (Now + 10L)
        allOf
            [ holds "same URL: nothing sent" (adds dSame).IsEmpty
              holds (sprintf "moved: all %d sent to the new URL" services)
                  ((dMoved.Commands |> List.filter (function AddMapping(g, _) -> g.ControlUrl = moved.ControlUrl | _ -> false)).Length = services) ])

[<Property>]
let ``a call that gets no answer starts a new search at once`` () =
    forAll (Gen.elements [ Unreachable "connection refused"; Unreachable "timeout"; Malformed "truncated" ]) (fun failure ->
        let w = Upnp.wants enabled [ web "web" 80 Vips[0] ]
        let d = Upnp.decide w AllVips (withGateways [ GatewayA ] Now) Now
        let failed = Upnp.evolve d.State (Now + 7L) Jitter.none (AddFailed(keyOf 80, failure))
        let next = Upnp.decide w AllVips failed (Now + 7L)
        holds "searched again" (next.Commands |> List.contains Discover))

[<Property>]
let ``the external address is reported for Services with a mapping in place, on every gateway`` () =
    forAll (Gen.zip (bool 1 1) (bool 1 1)) (fun (succeeds, twoGateways) ->
        let gateways = if twoGateways then [ GatewayA; GatewayB ] else [ GatewayA ]
        let w = Upnp.wants enabled [ web "web" 80 Vips[0]; web "other" 81 Vips[1] ]
        let answer c =
            match c with
            | AddMapping(_, m) when not succeeds && m.Service = key "default" "web" -> AddFailed(m.Key, SoapFault(718, "ConflictInMappingEntry"))
            | c -> succeed c
        let _, state = round answer w AllVips (withGateways gateways Now) Now
        allOf
            [ holds "mapped: the gateway's external address" ((Upnp.externalAddresses state (key "default" "web")) = (if succeeds then [ WanIp ] else []))
              holds "another Service is unaffected" ((Upnp.externalAddresses state (key "default" "other")) = [ WanIp ])
              holds "a Service not forwarded has none" ((Upnp.externalAddresses state (key "default" "nothing")).IsEmpty) ]
        |> Prop.classify twoGateways "two gateways")

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// A simulated gateway under a changing cluster
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// What a gateway holds: external (protocol, port) → internal client. Answers as IGD v2 says (and miniupnpd
/// does): an add to another client is 718, a delete of nothing is 714; sometimes an answer is lost after the
/// gateway did the work, sometimes the call never arrives.
type private SimGateway = Map<MappingProtocol * int, Ip>

type private Fate =
    | Answered
    | LostAfterDoing
    | NeverArrived

let private simulate (gateway: SimGateway) (fate: Fate) (command: UpnpCommand) : SimGateway * UpnpOutcome =
    let lost = Unreachable "timeout"
    match command with
    | Discover -> gateway, (if fate = NeverArrived then Discovered [] else Discovered [ GatewayA ])
    | ReadExternalAddress g -> gateway, (if fate = Answered then ExternalAddressRead(g.Id, Some WanIp) else ExternalAddressFailed(g.Id, lost))
    | AddMapping(_, m) ->
        let port = m.Key.Protocol, m.Key.ExternalPort
        match fate, gateway.TryFind port with
        | NeverArrived, _ -> gateway, AddFailed(m.Key, lost)
        | _, Some other when other <> m.Client -> gateway, AddFailed(m.Key, SoapFault(718, "ConflictInMappingEntry"))
        | Answered, _ -> gateway.Add(port, m.Client), Added m.Key
        | LostAfterDoing, _ -> gateway.Add(port, m.Client), AddFailed(m.Key, lost)
    | DeleteMapping(_, key, _) ->
        let port = key.Protocol, key.ExternalPort
        match fate, gateway.ContainsKey port with
        | NeverArrived, _ -> gateway, DeleteFailed(key, lost)
        | _, false -> gateway, DeleteFailed(key, SoapFault(714, "NoSuchEntryInArray"))
        | Answered, true -> gateway.Remove port, Deleted key
        | LostAfterDoing, true -> gateway.Remove port, DeleteFailed(key, lost)

let private genWants =
    gen {
        let! present = someOf 0 3 [ "a"; "b"; "c" ]
        let! services =
            present
            |> Gen.collectToList (fun name ->
                gen {
                    let! ports = someOf 1 2 [ tcp 80; udp 80; tcp 81 ]
                    let! vip = Gen.elements Vips
                    let! created = Gen.choose (0, 3)
                    return candidate true [ vip ] ({ service "default" name with Ports = ports; CreatedAt = int64 created } |> forwarded)
                })
        return Upnp.wants enabled services
    }

let private genFate = Gen.frequency [ 6, Gen.constant Answered; 1, Gen.constant LostAfterDoing; 1, Gen.constant NeverArrived ]

[<Property(MaxTest = 200)>]
let ``once calls are answered again, the gateway holds exactly what this node's Services want`` () =
    let genCase =
        gen {
            let! phases = Gen.listOfLength 4 (Gen.zip genWants (Gen.listOfLength 6 genFate))
            let! final = genWants
            return phases, final
        }
    forAll genCase (fun (phases, final) ->
        let runRound (gateway, state: UpnpState, now: Instant) (wants: Wants) (fates: Fate list) =
            let d = Upnp.decide wants AllVips state now
            let gateway, state, _ =
                d.Commands
                |> List.fold
                    (fun (gw, st, fs: Fate list) c ->
                        let fate, rest = (match fs with f :: r -> f, r | [] -> Answered, [])
                        let gw, outcome = simulate gw fate c
                        gw, Upnp.evolve st (now + 1L) Jitter.none outcome, rest)
                    (gateway, d.State, fates)
            let next = if d.Commands.IsEmpty then defaultArg d.NextWakeAt (now + 1L) else now + 2L
            gateway, state, max next (now + 2L)
        let chaos =
            phases
            |> List.fold (fun acc (wants, fates) -> [ 1..3 ] |> List.fold (fun acc _ -> runRound acc wants fates) acc) (Map.empty, Upnp.initial, Now)
        let settled (state: UpnpState) =
            state.Mappings |> Map.forall (fun _ s -> match s.Phase with Mapped _ -> true | _ -> false)
            && not state.Gateways.IsEmpty
        let rec calm (gateway, state, now) n =
            let acc = runRound (gateway, state, now) final []
            let _, state', _ = acc
            if n > 60 || (settled state' && (Upnp.decide final AllVips state' (let _, _, t = acc in t)).Commands.IsEmpty) then acc, n
            else calm acc (n + 1)
        let (gateway, state, _), rounds = calm chaos 0
        let wanted =
            final.Forwards |> List.collect (fun f -> f.Ports |> List.map (fun p -> p, f.Client)) |> Map.ofList
        allOf
            [ holds (sprintf "settled within 60 rounds (%d): %A" rounds state.Mappings) (rounds <= 60)
              holds (sprintf "gateway %A, wanted %A" gateway wanted) (gateway = wanted) ]
        |> Prop.classify (phases |> List.exists (fun (_, fates) -> fates |> List.exists ((<>) Answered))) "lost answers")

[<Property>]
let ``the report keeps a VIP on the node while a mapping to it is on a gateway or being deleted, for at most the grace`` () =
    let genCase = Gen.zip3 (Gen.elements [ "mapped"; "deleting"; "delete failing"; "deleted" ]) (chooseL 0L (2L * Upnp.DeleteFromVipGrace)) (bool 1 1)
    forAll genCase (fun (stage, later, vipStillHere) ->
        let mine = web "web" 80 Vips[0]
        let _, mapped = round succeed (Upnp.wants enabled [ mine ]) (set [ Vips[0] ]) (withGateways [ GatewayA ] Now) Now
        let vips = if vipStillHere then set [ Vips[0] ] else Set.empty
        let state =
            match stage with
            | "mapped" -> mapped
            | _ ->
                let d = Upnp.decide (Upnp.wants enabled []) vips mapped Now
                match stage with
                | "deleting" -> d.State
                | "delete failing" -> Upnp.evolve d.State Now Jitter.none (DeleteFailed(keyOf 80, Unreachable "timed out"))
                | _ -> Upnp.evolve d.State Now Jitter.none (Deleted(keyOf 80))
        let report = Upnp.report state [] (Now + later)
        let expected =
            match stage with
            | "mapped" -> true
            | "deleted" -> false
            | _ -> later < Upnp.DeleteFromVipGrace
        holds (sprintf "%s after %d ms: sources %A" stage later report.Sources) (report.Sources = (if expected then set [ Vips[0] ] else Set.empty))
        |> Prop.classify true stage
        |> Prop.classify (later >= Upnp.DeleteFromVipGrace) "past the grace")
