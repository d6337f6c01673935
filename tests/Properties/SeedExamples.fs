/// The seed's examples, as truth tables and fixed scenarios (plain xunit facts).
module Hybrid.Properties.SeedExamples

open Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private D = Config.DefaultClassName
let private O = "example.com/other-lb"

/// The class filter against the seed's wording. Columns: legacy handling, lb_class_only, lb_class_name,
/// the service's spec.loadBalancerClass (null = unset), whether Hybrid acts on it.
/// Legacy (default): "if it isn't set then [kube-vip] will assume that classes aren't being set and act upon
/// the service" (unless lb_class_only); "if the spec.loadBalancerClass has been set ... only act IF" it is the
/// configured class. Strict: "only process the service if it's spec.loadBalancerClass value is equal to the
/// class configured"; an empty lb_class_name is "no class". With an empty lb_class_name, kube-vip's default
/// class is just another class.
[<Theory>]
// legacy, lb_class_name default
[<InlineData(true, false, "kube-vip.io/kube-vip-class", null, true)>]
[<InlineData(true, true, "kube-vip.io/kube-vip-class", null, false)>]
[<InlineData(true, false, "kube-vip.io/kube-vip-class", "kube-vip.io/kube-vip-class", true)>]
[<InlineData(true, true, "kube-vip.io/kube-vip-class", "kube-vip.io/kube-vip-class", true)>]
[<InlineData(true, false, "kube-vip.io/kube-vip-class", "example.com/other-lb", false)>]
[<InlineData(true, true, "kube-vip.io/kube-vip-class", "example.com/other-lb", false)>]
// legacy, lb_class_name empty
[<InlineData(true, false, "", null, true)>]
[<InlineData(true, true, "", null, false)>]
[<InlineData(true, false, "", "kube-vip.io/kube-vip-class", false)>]
[<InlineData(true, true, "", "kube-vip.io/kube-vip-class", false)>]
[<InlineData(true, false, "", "example.com/other-lb", false)>]
[<InlineData(true, true, "", "example.com/other-lb", false)>]
// strict, lb_class_name default
[<InlineData(false, false, "kube-vip.io/kube-vip-class", null, false)>]
[<InlineData(false, true, "kube-vip.io/kube-vip-class", null, false)>]
[<InlineData(false, false, "kube-vip.io/kube-vip-class", "kube-vip.io/kube-vip-class", true)>]
[<InlineData(false, true, "kube-vip.io/kube-vip-class", "kube-vip.io/kube-vip-class", true)>]
[<InlineData(false, false, "kube-vip.io/kube-vip-class", "example.com/other-lb", false)>]
[<InlineData(false, true, "kube-vip.io/kube-vip-class", "example.com/other-lb", false)>]
// strict, lb_class_name empty
[<InlineData(false, false, "", null, true)>]
[<InlineData(false, true, "", null, true)>]
[<InlineData(false, false, "", "kube-vip.io/kube-vip-class", false)>]
[<InlineData(false, true, "", "kube-vip.io/kube-vip-class", false)>]
[<InlineData(false, false, "", "example.com/other-lb", false)>]
[<InlineData(false, true, "", "example.com/other-lb", false)>]
let ``class filter truth table`` (legacy: bool, classOnly: bool, className: string, serviceClass: string | null, acts: bool) =
    let config =
        configWith
            [ "lb_class_legacy_handling", (if legacy then "true" else "false")
              "lb_class_only", (if classOnly then "true" else "false")
              "lb_class_name", className ]
    Assert.Equal(className, config.ClassName)
    let cls = Option.ofObj serviceClass
    let s = { service "default" "svc" with Class = cls; LoadBalancerIP = Some "192.168.0.220" }
    let state = (Desired.compute config [ s ] []).States[s.Key]
    if acts then
        Assert.Equal(Interested, Admission.interest config s)
        Assert.Equal(Member([ v4 192 168 0 220 ], []), state)
    else
        Assert.Equal(NotInterested(ClassMismatch(cls, className)), Admission.interest config s)
        Assert.Equal(Skipped(ClassMismatch(cls, className)), state)
        Assert.Equal(NotOurs, SkipReason.audience (ClassMismatch(cls, className)))

// ── kubectl expose ... --load-balancer-ip=192.168.0.220 ─────────────────────────────────────────────

/// What `kubectl expose deployment test-deploy --port=P --target-port=80 --type=LoadBalancer --name N
/// --load-balancer-ip=192.168.0.220` creates (the seconds apart they were typed in).
let private exposed (name: string) (port: int) (createdAt: int64) =
    { service "default" name with
        CreatedAt = createdAt
        LoadBalancerIP = Some "192.168.0.220"
        Ports = [ tcp port ]
        Selector = Map [ "app", "test-deploy" ] }

let private http1 = exposed "http1" 80 1000L
let private http2 = exposed "http2" 81 1005L
let private http3 = exposed "http3" 80 1010L
let private vip = v4 192 168 0 220

let private readyOn (node: string) (s: Service) =
    { Service = s.Key; Endpoints = [ { NodeName = Some node; Conditions = { Ready = Some true; Serving = Some true; Terminating = Some false } } ] }

/// One agent alone with these services (each with a serving endpoint on it), run for 3 s.
let private oneNode (election: bool) (services: Service list) =
    SingleNode.start (configFor "node-a" election) services (services |> List.map (readyOn "node-a")) |> SingleNode.runUntil 3000L

[<Fact>]
let ``http1 on port 80 and http2 on port 81 share 192.168.0.220`` () =
    for election in [ true; false ] do
        let desired = Desired.compute (configFor "node-a" election) [ http2; http1 ] []
        Assert.Equal(Member([ vip ], []), desired.States[http1.Key])
        Assert.Equal(Member([ vip ], []), desired.States[http2.Key])
        let g = desired.Groups |> List.find (fun g -> g.Members |> List.contains http1.Key)
        Assert.Equal<ServiceKey list>([ http1.Key; http2.Key ], g.Members)
        Assert.Equal(Some g.Id, desired.GroupOf.TryFind vip)

[<Fact>]
let ``a third service on port 80 does not share, and its reason names http1 and port 80`` () =
    let desired = Desired.compute (configFor "node-a" true) [ http3; http2; http1 ] []
    Assert.Equal(Member([ vip ], []), desired.States[http1.Key])
    Assert.Equal(Member([ vip ], []), desired.States[http2.Key])
    let reason = PortConflict(http1.Key, tcp 80, vip)
    Assert.Equal(Skipped reason, desired.States[http3.Key])
    let text = SkipReason.describe reason
    Assert.Contains("http1", text)
    Assert.Contains("80", text)
    Assert.Contains("192.168.0.220", text)

[<Fact>]
let ``the seed's three services on one node: one VIP, two statuses, one warning, then quiet`` () =
    for election in [ false; true ] do
        let settled = oneNode election [ http1; http2; http3 ]
        Assert.Equal<Set<Ip>>(Set [ vip ], SingleNode.answering settled)
        let warnings = settled.Events |> List.filter (fun e -> e.Type = Warning)
        let warning = Assert.Single warnings
        Assert.Equal(http3.Key, warning.Service)
        Assert.Equal(EventReason.PortConflict, warning.Reason)
        Assert.Contains("http1", warning.Message)
        let announced = settled.Events |> List.filter (fun e -> e.Reason = EventReason.Announced) |> List.map _.Service |> List.sort
        Assert.Equal<ServiceKey list>([ http1.Key; http2.Key ], announced)
        let status name = settled.Services |> Map.toList |> List.map snd |> List.find (fun s -> s.Key.Name = name)
        Assert.Equal<IngressEntry list>([ { Ip = "192.168.0.220"; IpMode = Some "VIP"; Ports = [ tcp 80 ] } ], (status "http1").Ingress)
        Assert.Equal<IngressEntry list>([ { Ip = "192.168.0.220"; IpMode = Some "VIP"; Ports = [ tcp 81 ] } ], (status "http2").Ingress)
        Assert.Empty((status "http3").Ingress)
        Assert.Equal(Some "node-a", (status "http1").Annotations.TryFind Annotations.VipHost)
        // Steady state: no API write and no Event for as long as nothing changes, and the VIP stays answered.
        let later = SingleNode.runUntil 8000L settled
        Assert.Equal(settled.Writes, later.Writes)
        Assert.Equal(settled.Events.Length, later.Events.Length)
        Assert.Equal<Set<Ip>>(Set [ vip ], SingleNode.answering later)

[<Fact>]
let ``a node taking over a service keeps the status its previous holder wrote until it answers, then names itself`` () =
    for election in [ false; true ] do
        let entry = { Ip = "192.168.0.220"; IpMode = Some "VIP"; Ports = [ tcp 80 ] }
        let previous = { http1 with Ingress = [ entry ]; Annotations = http1.Annotations.Add(Annotations.VipHost, "node-old") }
        let settled = oneNode election [ previous ]
        Assert.Equal<Set<Ip>>(Set [ vip ], SingleNode.answering settled)
        Assert.Equal(0, settled.IngressCleared)
        let status = settled.Services[http1.Key]
        Assert.Equal<IngressEntry list>([ entry ], status.Ingress)
        Assert.Equal(Some "node-a", status.Annotations.TryFind Annotations.VipHost)

[<Fact>]
let ``a service is advertised only once loadbalancerIPs or spec.loadBalancerIP is populated`` () =
    let bare = service "default" "nginx"
    Assert.Equal(AwaitingAddress [], (Desired.compute DefaultConfig [ bare ] []).States[bare.Key])
    let annotated = annotate Annotations.LoadBalancerIPs "192.168.0.221" bare
    Assert.Equal(Member([ v4 192 168 0 221 ], []), (Desired.compute DefaultConfig [ annotated ] []).States[bare.Key])
    let viaSpec = { bare with LoadBalancerIP = Some "192.168.0.222" }
    Assert.Equal(Member([ v4 192 168 0 222 ], []), (Desired.compute DefaultConfig [ viaSpec ] []).States[bare.Key])

[<Fact>]
let ``kube-vip.io/ignore=true makes kube-vip ignore a service`` () =
    let s = { exposed "ignored" 80 0L with Annotations = Map [ Annotations.Ignore, "true" ] }
    Assert.Equal(Skipped IgnoredByAnnotation, (Desired.compute DefaultConfig [ s ] []).States[s.Key])
    let settled = oneNode true [ s ]
    Assert.Empty(settled.Events)
    Assert.Empty(SingleNode.answering settled)
    Assert.Empty((settled.Services |> Map.find s.Key).Ingress)

[<Fact>]
let ``svc_election true from the seed's yaml`` () =
    Assert.True((configWith [ "svc_election", "true" ]).Election)
    Assert.False(DefaultConfig.Election)

[<Fact>]
let ``nginx-service with externalTrafficPolicy Local is announced only from a node with a local pod`` () =
    let nginx = { service "default" "nginx-service" with Policy = Local; Selector = Map [ "app", "nginx" ]; LoadBalancerIP = Some "192.168.0.223" }
    let slice = { Service = nginx.Key; Endpoints = [ { NodeName = Some "node-b"; Conditions = { Ready = Some true; Serving = None; Terminating = None } } ] }
    let desired = Desired.compute (configFor "node-a" true) [ nginx ] [ slice ]
    let g = Assert.Single desired.Groups
    let live = [ "node-a"; "node-b"; "node-c" ]
    let assignments = Ownership.assign Now DefaultTiming (fun _ -> Live) live Map.empty Map.empty desired.Groups
    Assert.Equal(Orphaned([ "node-b" ], g.ChangedSeenAt, None), assignments[g.Id])
    // Alone, a node without a local pod leaves it unannounced.
    let alone = SingleNode.start (configFor "node-a" true) [ nginx ] [ slice ] |> SingleNode.runUntil 3000L
    Assert.Empty(SingleNode.answering alone)

[<Fact>]
let ``nginx-dhcp on 0.0.0.0 waits for the DHCP lease, then announces 192.168.0.155`` () =
    let dhcp =
        { service "default" "nginx-dhcp" with LoadBalancerIP = Some "0.0.0.0"; Annotations = Map [ Annotations.LoadBalancerHostname, "mydhcp-test" ] }
    Assert.Equal(AwaitingAddress [ IPv4 ], (Desired.compute DefaultConfig [ dhcp ] []).States[dhcp.Key])
    let leased = annotate Annotations.RequestedIP "192.168.0.155" dhcp
    Assert.Equal(Member([ v4 192 168 0 155 ], []), (Desired.compute DefaultConfig [ leased ] []).States[dhcp.Key])
    let settled = oneNode false [ leased ]
    Assert.Equal<Set<Ip>>(Set [ v4 192 168 0 155 ], SingleNode.answering settled)
    Assert.Equal("192.168.0.155", (Assert.Single (settled.Services |> Map.find dhcp.Key).Ingress).Ip)

[<Fact>]
let ``kube-vip's usual lease settings (5 s, 3 s, 1 s) are accepted with the LAN defaults`` () =
    let c = configWith [ "vip_leaseduration", "5"; "vip_renewdeadline", "3"; "vip_retryperiod", "1" ]
    Assert.Equal(
        { HeartbeatInterval = 100L
          LanRenewDeadline = 400L
          LanLeaseDuration = 450L
          ApiLeaseDuration = 5000L
          ApiRenewDeadline = 3000L
          ApiRetryPeriod = 1000L
          AddressLifetime = 10_000L },
        c.Timing
    )
