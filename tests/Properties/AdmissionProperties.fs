/// Rule 2: which Services are ours (type, ignore annotation, load-balancer class in legacy and strict mode).
module Hybrid.Properties.AdmissionProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private ClassNames = [ Config.DefaultClassName; ""; "example.com/lb" ]

/// A configuration in either mode, with any lb_class_only and lb_class_name, built through the environment.
let private genClassConfig (legacy: bool) =
    Gen.map2
        (fun only name ->
            configWith [ "lb_class_only", (if only then "true" else "false"); "lb_class_name", name
                         "lb_class_legacy_handling", (if legacy then "true" else "false") ])
        (bool 1 1)
        (Gen.elements ClassNames)

/// The service's class: unset, equal to the configured one, kube-vip's default, or another controller's.
let private genClass (configured: string) =
    Gen.elements [ None; Some configured; Some Config.DefaultClassName; Some OtherClass; Some "example.com/lb" ]
    |> Gen.map (Option.filter (fun c -> c <> "")) // Kubernetes has no empty class: "" is unset.

let private genClassCase legacy =
    genClassConfig legacy |> Gen.bind (fun c -> genClass c.ClassName |> Gen.map (fun cls -> c, cls))

let private interested (config: Config) (cls: string option) =
    Admission.interest config { service "default" "svc" with Class = cls } = Interested

[<Property>]
let ``legacy mode acts on class-less services unless lb_class_only, and on the configured class`` () =
    forAll (genClassCase true) (fun (config, cls) ->
        // The seed: no class set -> act (lb_class_only: ignore class-less services); a class set -> act only
        // if it is the configured one.
        let expected =
            match cls with
            | None -> not config.ClassOnly
            | Some c -> c = config.ClassName
        holds (sprintf "class %A, lb_class_name %A, lb_class_only %b" cls config.ClassName config.ClassOnly) (interested config cls = expected)
        |> Prop.classify cls.IsNone "class unset"
        |> Prop.classify (cls = Some config.ClassName) "class equal"
        |> Prop.classify (cls.IsSome && cls <> Some config.ClassName) "other class"
        |> Prop.classify config.ClassOnly "lb_class_only")

[<Property>]
let ``strict mode acts only when the class equals lb_class_name`` () =
    forAll (genClassCase false) (fun (config, cls) ->
        // The seed: only if spec.loadBalancerClass equals the configured class; an empty lb_class_name is
        // "no class", so it selects class-less services. lb_class_only changes nothing here.
        let expected = (defaultArg cls "") = config.ClassName
        holds (sprintf "class %A, lb_class_name %A" cls config.ClassName) (interested config cls = expected)
        |> Prop.classify cls.IsNone "class unset"
        |> Prop.classify (cls.IsSome && cls = Some config.ClassName) "class equal"
        |> Prop.classify (config.ClassName = "") "empty lb_class_name")

[<Property>]
let ``a class mismatch is not ours and names both classes`` () =
    forAll (bool 1 1 |> Gen.bind genClassCase) (fun (config, cls) ->
        match Admission.classFilter config cls with
        | Interested -> holds "interested" true
        | NotInterested(ClassMismatch(actual, expected) as reason) ->
            holds (sprintf "%A" reason) (actual = cls && expected = config.ClassName && SkipReason.audience reason = NotOurs)
        | NotInterested other -> holds (sprintf "unexpected %A" other) false)

[<Property>]
let ``a service that is not LoadBalancer is skipped as not ours`` () =
    let genType = Gen.elements [ "ClusterIP"; "NodePort"; "ExternalName"; ""; "loadbalancer"; "LoadBalancer " ]
    forAll (Gen.map2 (fun t a -> t, a) genType genAddressText) (fun (t, address) ->
        let s = { service "default" "svc" with Type = t; LoadBalancerIP = address }
        let desired = Desired.compute DefaultConfig [ s ] []
        allOf
            [ holds "interest" (Admission.interest DefaultConfig s = NotInterested(NotLoadBalancer t))
              holds (sprintf "state %A" desired.States[s.Key]) (desired.States[s.Key] = Skipped(NotLoadBalancer t))
              holds "not ours" (SkipReason.audience (NotLoadBalancer t) = NotOurs) ])

[<Property>]
let ``kube-vip.io/ignore true skips the service as not ours`` () =
    let genValue = Gen.elements [ Some "true"; Some "false"; Some ""; Some "yes"; None ]
    forAll (Gen.map2 (fun v cls -> v, cls) genValue (genClass Config.DefaultClassName)) (fun (value, cls) ->
        let s = { service "default" "svc" with Class = cls }
        let s = match value with Some v -> annotate Annotations.Ignore v s | None -> s
        let interest = Admission.interest DefaultConfig s
        (if value = Some "true" then holds (sprintf "%A" interest) (interest = NotInterested IgnoredByAnnotation)
         else holds (sprintf "%A" interest) (interest = Admission.classFilter DefaultConfig cls))
        |> Prop.classify (value = Some "true") "ignored"
        |> Prop.classify (value <> Some "true") "not ignored")

[<Property>]
let ``a service with no address is awaiting an address, not an error`` () =
    // No annotation, no spec.loadBalancerIP, or only blanks in them.
    let genBlank = Gen.elements [ None; Some ""; Some "  "; Some "\t" ]
    forAll (Gen.map3 (fun e a s -> e, a, s) (bool 1 1) genBlank genBlank) (fun (election, annotation, spec) ->
        let s = { service "default" "svc" with LoadBalancerIP = spec }
        let s = match annotation with Some v -> annotate Annotations.LoadBalancerIPs v s | None -> s
        let desired = Desired.compute (configFor "node-a" election) [ s ] []
        allOf
            [ holds (sprintf "requested %A" (Addresses.requested s)) (Addresses.requested s = NoAddressYet)
              holds (sprintf "state %A" desired.States[s.Key]) (desired.States[s.Key] = AwaitingAddress [])
              holds "in no group" (desired.Groups |> List.forall (fun g -> not (List.contains s.Key g.Members))) ])

let private caseName (value: obj) =
    let case, _ = Microsoft.FSharp.Reflection.FSharpValue.GetUnionFields(value, value.GetType())
    case.Name

let private allReasons =
    Microsoft.FSharp.Reflection.FSharpType.GetUnionCases typeof<EventReason>
    |> Array.map (fun c ->
        match Microsoft.FSharp.Reflection.FSharpValue.MakeUnion(c, [||]) with
        | :? EventReason as r -> r
        | other -> failwithf "not an EventReason: %A" other)
    |> List.ofArray

[<Property>]
let ``an Event's reason is the name of its case, and no two reasons share a name`` () =
    forAll (Gen.elements allReasons) (fun reason ->
        allOf
            [ holds (sprintf "%A named %s" reason (EventReason.name reason)) (EventReason.name reason = caseName reason)
              holds "names are distinct" ((allReasons |> List.map EventReason.name |> List.distinct).Length = allReasons.Length) ]
        |> Prop.collect (EventReason.name reason))

/// Every kind of skip, with made-up details.
let private genSkip =
    let k = key "default" "earlier"
    let a = v4 192 168 0 220
    Gen.elements
        [ NotLoadBalancer "ClusterIP"
          IgnoredByAnnotation
          ClassMismatch(Some OtherClass, Config.DefaultClassName)
          ClassMismatch(None, Config.DefaultClassName)
          InvalidAddress("not-an-ip", "not an IPv4 or IPv6 address")
          PortConflict(k, tcp 80, a)
          PolicyConflict(k, a)
          SelectorConflict(k, a) ]

[<Property>]
let ``another controller's service is not ours; every other skip is a Warning with the skip's own reason`` () =
    forAll genSkip (fun skip ->
        let foreign =
            match skip with
            | NotLoadBalancer _ | IgnoredByAnnotation | ClassMismatch _ -> true
            | _ -> false
        match SkipReason.audience skip with
        | NotOurs -> holds (sprintf "%A not ours" skip) foreign
        | Ours reason -> holds (sprintf "%A as %A" skip reason) (not foreign && EventReason.name reason = caseName skip)
        |> Prop.collect (caseName skip))

[<Property>]
let ``a skip's description names what it is about`` () =
    forAll genSkip (fun skip ->
        let text = SkipReason.describe skip
        let mentions =
            match skip with
            | NotLoadBalancer t -> [ t ]
            | IgnoredByAnnotation -> [ Annotations.Ignore ]
            | ClassMismatch(actual, expected) -> Option.toList actual @ [ expected ]
            | InvalidAddress(t, problem) -> [ t; problem ]
            | PortConflict(k, port, ip) -> [ string k; string port.Port; port.Protocol; Ip.format ip ]
            | PolicyConflict(k, ip) | SelectorConflict(k, ip) -> [ string k; Ip.format ip ]
        holds (sprintf "%s should mention %A" text mentions) (mentions |> List.forall text.Contains))

/// Annotations a decision reads, with values that make each of them matter, and others that must not.
let private ReadAnnotations =
    [ Annotations.LoadBalancerIPs, [ "198.18.0.7"; "198.18.0.7,2001:db8::7"; "bogus" ]
      Annotations.Ignore, [ "true"; "false" ]
      Annotations.RequestedIP, [ "198.18.0.9"; "" ]
      Annotations.VipHost, [ "node-1" ]
      Annotations.AllowWithoutEndpoints, [ "true" ]
      Annotations.LoadBalancerHostname, [ "web" ]
      Annotations.ForwardUpnp, [ "true"; "yes" ]
      Annotations.UpnpLeaseDuration, [ "0"; "90s"; "never" ]
      Annotations.HwAddr, [ "02:00:00:00:00:01" ] ]

let private ForeignKeys =
    [ "kubectl.kubernetes.io/last-applied-configuration"; "example.com/owner"; "notkube-vip.io/ignore"; "kube-vip.io.example/ignore"; "ignore" ]

let private genAnnotatedService =
    let genRead = Gen.elements ReadAnnotations |> Gen.bind (fun (k, values) -> Gen.elements values |> Gen.map (fun v -> k, v))
    let genForeign = Gen.map2 (fun k v -> k, v) (Gen.elements ForeignKeys) (Gen.elements [ "true"; "198.18.0.8"; String.replicate 50 "{}" ])
    Gen.map3
        (fun read foreign policy ->
            { service "default" "web" with Annotations = Map.ofList (foreign @ read); Policy = policy })
        (Gen.listOf genRead)
        (Gen.nonEmptyListOf genForeign)
        (Gen.elements [ Cluster; Local ])

[<Property>]
let ``dropping the annotations the agent does not keep changes no decision about a Service`` () =
    forAll genAnnotatedService (fun full ->
        let kept = { full with Annotations = full.Annotations |> Map.filter (fun k _ -> Annotations.isRead k) }
        let config = configWith []
        let decisions (s: Service) =
            sprintf "%A" (Admission.interest config s, Addresses.requested s, AddressPolicy.announced s, AddressPolicy.claimedBy s,
                          Eligibility.ofService true s [], Upnp.leaseOf s, Upnp.requested s)
        holds (sprintf "%A kept of %A" kept.Annotations full.Annotations) (decisions kept = decisions full)
        |> Prop.classify (kept.Annotations.IsEmpty) "no annotation read"
        |> Prop.classify (kept.Annotations.Count < full.Annotations.Count) "some dropped")
