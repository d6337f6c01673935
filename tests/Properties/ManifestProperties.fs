/// Manifests: kube-vip's `manifest` flags for services mode produce Hybrid's DaemonSet, RBAC and cluster-key
/// Secret; flags are read as spf13/pflag reads them; every problem is reported at once, naming its flag.
module Hybrid.Properties.ManifestProperties

open System
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

// ── reading documents ────────────────────────────────────────────────────────────────────────────────

let private field (key: string) (d: Document) =
    match d with
    | Document.Map pairs -> pairs |> List.tryFind (fun (k, _) -> k = key) |> Option.map snd
    | _ -> None

let rec private at (path: string list) (d: Document) =
    match path with
    | [] -> Some d
    | k :: rest -> field k d |> Option.bind (at rest)

let private textAt path d =
    match at path d with
    | Some(Document.Text s) -> Some s
    | _ -> None

let private items path d =
    match at path d with
    | Some(Document.List xs) -> xs
    | _ -> []

let private container (ds: Document) = items [ "spec"; "template"; "spec"; "containers" ] ds |> List.exactlyOne

/// The DaemonSet's environment as the kubelet would resolve it on node-1 in namespace `ns` with `key`.
let private resolvedEnvironment (ds: Document) (ns: string) (key: string) =
    [ for e in items [ "env" ] (container ds) do
          let name = (textAt [ "name" ] e).Value
          match textAt [ "value" ] e, textAt [ "valueFrom"; "fieldRef"; "fieldPath" ] e, textAt [ "valueFrom"; "secretKeyRef"; "name" ] e with
          | Some v, _, _ -> name, v
          | _, Some "spec.nodeName", _ -> name, "node-1"
          | _, Some "metadata.namespace", _ -> name, ns
          | _, _, Some secret when secret = Manifest.SecretName -> name, key
          | _ -> failwithf "unresolvable variable %s" name ]

let private literalVariables (ds: Document) =
    [ for e in items [ "env" ] (container ds) do
          match textAt [ "value" ] e with
          | Some v -> (textAt [ "name" ] e).Value, v
          | None -> () ]

let private daemonSetOf args =
    Manifest.parse ManifestKind.DaemonSet args |> Result.map Manifest.daemonSet

let private required = [ "--services"; "--arp"; "--inCluster" ]

// ── what kube-vip's manifest generator does with each services-mode flag ─────────────────────────────

/// kube-vip's flag → variable pairs (pkg/kubevip/config_generator.go), and Hybrid's additions for variables
/// kube-vip reads from the environment only; with values the agent accepts.
let private variableFlags: (string * string * string list) list =
    [ "interface", "vip_interface", [ "eth0"; "ens18"; "bond0.100"; "br-lan" ]
      "serviceInterface", "vip_servicesinterface", [ "eth1"; "vlan20" ]
      "vipSubnet", "vip_subnet", [ "/32"; "24"; "/32,/128"; "/64" ]
      "servicesLeaseName", "svc_leasename", [ "plndr-svcs-lock"; "hybrid-leader"; "a.b" ]
      "serviceNamespace", "svc_namespace", [ "default"; "apps" ]
      "lbClassName", "lb_class_name", [ ""; "kube-vip.io/kube-vip-class"; "example.com/lb" ]
      "arpRate", "vip_arpRate", [ "3000"; "1000"; "250" ]
      "prometheusHTTPServer", "prometheus_server", [ ":2112"; "127.0.0.1:9100"; "[::1]:9000" ] ]

let private switchFlags: (string * string) list =
    [ "servicesElection", "svc_election"
      "lbClassOnly", "lb_class_only"
      "lbClassNameLegacyHandling", "lb_class_legacy_handling"
      "disableServiceUpdates", "disable_service_updates"
      "enableUPNP", "enable_upnp" ]

/// kube-vip's Lease timing flags (whole seconds there, decimals accepted here), as sets the agent accepts.
let private timings = [ "5", "3", "1"; "1.8", "1.75", "0.15"; "15", "10", "2" ]

/// One flag written in one of the spellings pflag accepts.
let private spell (flag: string) (value: string) =
    Gen.elements [ [ "--" + flag; value ]; [ "--" + flag + "=" + value ] ]

let private spellSwitch (flag: string) (on: bool) =
    if on then Gen.elements [ [ "--" + flag ]; [ "--" + flag + "=true" ]; [ "--" + flag + "=1" ]; [ "--" + flag + "=T" ] ]
    else Gen.elements [ [ "--" + flag + "=false" ]; [ "--" + flag + "=0" ]; [ "--" + flag + "=F" ] ]

/// A valid command line: its argument groups (in random order) and the variables each should set.
let private genValidLine =
    gen {
        let! chosen = someOf 0 variableFlags.Length variableFlags
        let! values = chosen |> List.map (fun (f, v, pool) -> Gen.elements pool |> Gen.map (fun x -> f, v, x)) |> Gen.sequenceToList
        let! switches = someOf 0 switchFlags.Length switchFlags
        let! switchValues = switches |> List.map (fun (f, v) -> bool 1 1 |> Gen.map (fun on -> f, v, on)) |> Gen.sequenceToList
        let! timing = Gen.frequency [ 2, Gen.constant None; 1, Gen.elements timings |> Gen.map Some ]
        let! valueArgs = values |> List.map (fun (f, _, x) -> spell f x) |> Gen.sequenceToList
        let! switchArgs = switchValues |> List.map (fun (f, _, on) -> spellSwitch f on) |> Gen.sequenceToList
        let timingArgs, timingVars =
            match timing with
            | Some(d, r, p) ->
                [ [ "--leaseDuration"; d ]; [ "--leaseRenewDuration"; r ]; [ "--leaseRetry"; p ] ],
                [ "vip_leaseduration", d; "vip_renewdeadline", r; "vip_retryperiod", p ]
            | None -> [], []
        let! groups = Gen.shuffle ([ for r in required -> [ r ] ] @ valueArgs @ switchArgs @ timingArgs)
        let expected =
            [ for _, v, x in values -> v, x ]
            @ [ for _, v, on in switchValues -> v, (if on then "true" else "false") ]
            @ timingVars
        return List.concat groups, expected
    }

[<Property>]
let ``each services-mode flag sets the variable kube-vip's manifest sets, with the value given`` () =
    forAll genValidLine (fun (args, expected) ->
        match daemonSetOf args with
        | Error e -> holds (sprintf "rejected %A: %A" args e) false
        | Ok ds ->
            let fixedOnes = [ "svc_enable", "true"; "vip_arp", "true"; Manifest.HealthPortVariable, "2113"; "MALLOC_ARENA_MAX", "1" ]
            let actual = literalVariables ds |> Set.ofList
            holds (sprintf "args %A\nexpected %A\nactual %A" args expected actual) (actual = Set.ofList (expected @ fixedOnes))
        |> Prop.classify (expected.IsEmpty) "required flags only"
        |> Prop.classify (expected.Length >= 5) "five or more variables")

[<Property>]
let ``generated variables always form a valid agent configuration`` () =
    forAll genValidLine (fun (args, expected) ->
        match daemonSetOf args with
        | Error e -> holds (sprintf "rejected %A: %A" args e) false
        | Ok ds ->
            let ns = (textAt [ "metadata"; "namespace" ] ds).Value
            let environment = resolvedEnvironment ds ns (Convert.ToBase64String(Array.init 32 byte)) |> Map.ofList
            match Config.parse environment None with
            | Ok c ->
                allOf
                    [ holds "node name from spec.nodeName" (c.NodeName = "node-1")
                      holds "Leases in the agent's namespace" (c.LeaseNamespace = ns)
                      holds "election as asked" (c.Election = List.contains ("svc_election", "true") expected) ]
            | Error e -> holds (sprintf "agent rejects %A: %A" environment e) false)

[<Property>]
let ``every spelling of a flag means the same`` () =
    let genPair =
        Gen.oneof
            [ Gen.elements [ "eth0"; "-x"; "--weird" ] |> Gen.map (fun v -> [ "--interface"; v ], [ "--interface=" + v ])
              Gen.elements [ "true"; "1"; "t"; "T"; "TRUE"; "True" ] |> Gen.map (fun v -> [ "--servicesElection" ], [ "--servicesElection=" + v ])
              Gen.elements [ "apps"; "hybrid" ]
              |> Gen.bind (fun ns -> Gen.elements [ [ "-n"; ns ]; [ "-n=" + ns ]; [ "-n" + ns ]; [ "--namespace=" + ns ] ] |> Gen.map (fun a -> [ "--namespace"; ns ], a)) ]
    forAll genPair (fun (canonical, other) ->
        let a = Manifest.parse ManifestKind.DaemonSet (required @ canonical)
        let b = Manifest.parse ManifestKind.DaemonSet (required @ other)
        holds (sprintf "%A vs %A:\n%A\n%A" canonical other a b) (a = b))

[<Property>]
let ``the last occurrence of a flag wins`` () =
    forAll (Gen.listOfLength 3 (Gen.elements [ "eth0"; "eth1"; "ens3" ])) (fun values ->
        let args = required @ List.collect (fun v -> [ "--interface"; v ]) values
        match Manifest.parse ManifestKind.DaemonSet args with
        | Ok o -> holds (sprintf "%A" o.Variables) (o.Variables = [ "vip_interface", List.last values ])
        | Error e -> holds (sprintf "%A" e) false)

/// Problems planted in an otherwise valid command line, each with the error it must produce.
let private problems: (string list * (ManifestError -> bool)) list =
    [ [ "--bogus" ], (function ManifestError.UnknownFlag "bogus" -> true | _ -> false)
      [ "-x" ], (function ManifestError.UnknownShorthand('x', "-x") -> true | _ -> false)
      [ "stray" ], (function ManifestError.UnexpectedArgument "stray" -> true | _ -> false)
      [ "--lbClassOnly=maybe" ], (function ManifestError.NotABoolean("lbClassOnly", "maybe") -> true | _ -> false)
      [ "--bgp" ], (function ManifestError.Refused("bgp", _) -> true | _ -> false)
      [ "--controlplane" ], (function ManifestError.Refused("controlplane", _) -> true | _ -> false)
      [ "--vip"; "192.168.0.40" ], (function ManifestError.Refused("vip", _) -> true | _ -> false)
      [ "--role" ], (function ManifestError.NotForKind("role", ManifestKind.DaemonSet) -> true | _ -> false)
      [ "--interface"; "a/b" ], (function ManifestError.InvalidValue("interface", "a/b", _) -> true | _ -> false)
      [ "--vipSubnet"; "/40," ], (function ManifestError.InvalidValue("vipSubnet", "/40,", _) -> true | _ -> false)
      [ "--leaseRetry"; "0" ], (function ManifestError.InvalidValue("leaseRetry", "0", _) -> true | _ -> false)
      [ "--namespace"; "Bad_NS" ], (function ManifestError.InvalidValue("namespace", "Bad_NS", _) -> true | _ -> false)
      [ "--healthCheckPort"; "80" ], (function ManifestError.InvalidValue("healthCheckPort", "80", _) -> true | _ -> false)
      [ "--image"; "Registry/UPPER:tag" ], (function ManifestError.InvalidValue("image", _, _) -> true | _ -> false) ]

[<Property>]
let ``every problem is reported at once, each naming its flag, and nothing is generated`` () =
    let gen =
        gen {
            let! planted = someOf 1 problems.Length problems
            let! groups = Gen.shuffle ([ for r in required -> [ r ] ] @ List.map fst planted)
            // A value flag missing its value can only be last.
            let! dangling = bool 1 3
            return planted, List.concat groups @ (if dangling then [ "--interface" ] else []), dangling
        }
    forAll gen (fun (planted, args, dangling) ->
        match Manifest.parse ManifestKind.DaemonSet args with
        | Ok o -> holds (sprintf "accepted %A: %A" args o) false
        | Error errors ->
            let expected = List.length planted + (if dangling then 1 else 0)
            allOf
                [ for _, matches in planted do
                      yield holds (sprintf "%A lacks a planted problem in %A" errors args) (errors |> List.exists matches)
                  if dangling then yield holds "missing value" (List.contains (ManifestError.MissingValue "interface") errors)
                  yield holds (sprintf "%d errors for %d problems: %A" errors.Length expected errors) (errors.Length = expected)
                  for planted, matches in planted do
                      let token = (List.head planted).TrimStart('-').Split('=')[0]
                      let messages = errors |> List.filter matches |> List.map ManifestError.describe
                      yield holds (sprintf "%A does not mention %s" messages token) (messages |> List.forall (fun m -> m.Contains token)) ]
            |> Prop.classify (planted.Length > 3) "four or more problems")

[<Property>]
let ``a DaemonSet needs --services, --arp and --inCluster`` () =
    forAll (Gen.zip (someOf 0 3 required) (Gen.elements [ "=true"; "=false"; "" ])) (fun (given, suffix) ->
        let args = given |> List.map (fun f -> f + suffix)
        let on = if suffix = "=false" then [] else given
        let missing = required |> List.filter (fun r -> not (List.contains r on)) |> List.map (fun r -> r.Substring 2)
        match Manifest.parse ManifestKind.DaemonSet args, missing with
        | Ok _, [] -> holds "accepted" true
        | Error errors, _ :: _ ->
            let reported = errors |> List.choose (function ManifestError.Required(f, _) -> Some f | _ -> None)
            holds (sprintf "missing %A, reported %A" missing errors) (reported = missing && reported.Length = errors.Length)
        | outcome, _ -> holds (sprintf "%A with %A missing" outcome missing) false
        |> Prop.classify missing.IsEmpty "complete")

[<Xunit.Fact>]
let ``rbac and secret need none of the DaemonSet's flags, and --taint is the DaemonSet's alone`` () =
    Xunit.Assert.True(Manifest.parse ManifestKind.Rbac [] |> Result.isOk)
    Xunit.Assert.True(Manifest.parse ManifestKind.Secret [] |> Result.isOk)
    // kube-vip's rbac accepts its persistent flags; they change nothing there.
    Xunit.Assert.Equal(Manifest.parse ManifestKind.Rbac [] |> Result.map Manifest.rbac,
                 Manifest.parse ManifestKind.Rbac [ "--interface"; "eth0"; "--services"; "--leaderElection" ] |> Result.map Manifest.rbac)
    Xunit.Assert.Equal(Error [ ManifestError.NotForKind("taint", ManifestKind.Rbac) ], Manifest.parse ManifestKind.Rbac [ "--taint" ])
    Xunit.Assert.Equal(Error [ ManifestError.NotForKind("interface", ManifestKind.Secret) ], Manifest.parse ManifestKind.Secret [ "--interface"; "eth0" ])
    Xunit.Assert.Equal(Error(ManifestError.UnknownKind "pod"), Manifest.parseKind "pod")

[<Property>]
let ``--taint confines the agent to control-plane nodes and tolerates their taints`` () =
    forAll (bool 1 1) (fun taint ->
        match daemonSetOf (required @ (if taint then [ "--taint" ] else [])) with
        | Error e -> holds (sprintf "%A" e) false
        | Ok ds ->
            let spec = (at [ "spec"; "template"; "spec" ] ds).Value
            let tolerations = items [ "tolerations" ] spec |> List.map (textAt [ "effect" ]) |> List.choose id
            let keys =
                items [ "affinity"; "nodeAffinity"; "requiredDuringSchedulingIgnoredDuringExecution"; "nodeSelectorTerms" ] spec
                |> List.collect (items [ "matchExpressions" ])
                |> List.choose (textAt [ "key" ])
            if taint then
                holds (sprintf "%A %A" tolerations keys)
                    (List.sort tolerations = [ "NoExecute"; "NoSchedule" ]
                     && List.sort keys = [ "node-role.kubernetes.io/control-plane"; "node-role.kubernetes.io/master" ])
            else holds (sprintf "%A %A" tolerations keys) (tolerations.IsEmpty && keys.IsEmpty))

let private isNamespaced (d: Document) =
    not (List.contains (textAt [ "kind" ] d) [ Some "Namespace"; Some "ClusterRole"; Some "ClusterRoleBinding" ])

[<Property>]
let ``every object goes to the agent's namespace, except read access to kube-system/kubevip`` () =
    forAll (Gen.elements [ None; Some "kube-system"; Some "hybrid"; Some "lb" ]) (fun ns ->
        let args = match ns with Some n -> [ "--namespace"; n ] | None -> []
        let target = defaultArg ns Manifest.DefaultNamespace
        let key = ClusterKey.create (Array.zeroCreate 32) |> Result.toOption |> Option.get
        match Manifest.parse ManifestKind.DaemonSet (required @ args) with
        | Error e -> holds (sprintf "%A" e) false
        | Ok o ->
            let objects = Manifest.daemonSet o :: Manifest.secret o key :: Manifest.rbac o
            let placed =
                objects
                |> List.filter isNamespaced
                |> List.filter (fun d -> textAt [ "metadata"; "name" ] d <> Some "hybrid-address-pools")
                |> List.map (textAt [ "metadata"; "namespace" ])
            let poolAccess = objects |> List.filter (fun d -> textAt [ "metadata"; "name" ] d = Some "hybrid-address-pools")
            let namespaceObjects = objects |> List.filter (fun d -> textAt [ "kind" ] d = Some "Namespace")
            let subjects = objects |> List.collect (items [ "subjects" ]) |> List.map (textAt [ "namespace" ])
            allOf
                [ holds (sprintf "placed %A" placed) (placed |> List.forall ((=) (Some target)))
                  holds "pools" (poolAccess |> List.forall (fun d -> textAt [ "metadata"; "namespace" ] d = Some "kube-system") && poolAccess.Length = 2)
                  holds "bindings name the agent's ServiceAccount" (subjects |> List.forall ((=) (Some target)) && subjects.Length = 3)
                  holds "a Namespace object only for a namespace clusters lack"
                      (namespaceObjects.Length = (if target = "kube-system" then 0 else 1)) ])

[<Property>]
let ``the cluster key the Secret carries reads back as the same key, and keys under 16 bytes are refused`` () =
    forAll (Gen.choose (0, 64) |> Gen.bind (fun n -> Gen.arrayOfLength n (Gen.choose (0, 255) |> Gen.map byte))) (fun bytes ->
        match ClusterKey.create bytes with
        | Ok key ->
            allOf
                [ holds "at least 16 bytes" (bytes.Length >= ClusterKey.MinimumBytes)
                  holds "reads back" (ClusterKey.parse (ClusterKey.text key) |> Result.map _.Id = Ok key.Id) ]
        | Error _ -> holds "under 16 bytes" (bytes.Length < ClusterKey.MinimumBytes)
        |> Prop.classify (bytes.Length = 32) "32 bytes, as hybrid manifest secret makes")

[<Xunit.Fact>]
let ``a cluster key text that is not base64 of at least 16 bytes is refused`` () =
    let valid = Convert.ToBase64String(Array.init 32 byte)
    Xunit.Assert.True(ClusterKey.parse valid |> Result.isOk)
    for bad in [ ""; valid.Replace('A', '*'); Convert.ToBase64String(Array.zeroCreate 15); "not base64!" ] do
        Xunit.Assert.True(ClusterKey.parse bad |> Result.isError, bad)

/// (API group, resource, verb, namespace or "*" for cluster-wide, resource name or "*").
let private grants (objects: Document list) =
    [ for d in objects do
          match textAt [ "kind" ] d with
          | Some("Role" | "ClusterRole" as kind) ->
              let scope = if kind = "Role" then (textAt [ "metadata"; "namespace" ] d).Value else "*"
              for r in items [ "rules" ] d do
                  let names = match items [ "resourceNames" ] r |> List.choose (function Document.Text s -> Some s | _ -> None) with [] -> [ "*" ] | ns -> ns
                  for g in items [ "apiGroups" ] r do
                      for res in items [ "resources" ] r do
                          for v in items [ "verbs" ] r do
                              for n in names do
                                  match g, res, v with
                                  | Document.Text g, Document.Text res, Document.Text v -> g, res, v, scope, n
                                  | _ -> ()
          | _ -> () ]
    |> Set.ofList

[<Xunit.Fact>]
let ``the roles grant exactly the agent's API calls`` () =
    let o = Manifest.parse ManifestKind.Rbac [] |> Result.toOption |> Option.get
    let read group resource scope name = [ for v in [ "get"; "list"; "watch" ] -> group, resource, v, scope, name ]
    let expected =
        Set.ofList (
            read "" "services" "*" "*"
            @ [ "", "services", "patch", "*", "*" ] // the kube-vip.io/vipHost annotation
            @ [ "", "services/status", "patch", "*", "*" ]
            @ read "discovery.k8s.io" "endpointslices" "*" "*"
            @ read "" "nodes" "*" "*"
            @ [ for v in [ "create"; "patch" ] -> "events.k8s.io", "events", v, "*", "*" ]
            @ [ for v in [ "get"; "list"; "watch"; "create"; "update"; "patch"; "delete" ] -> "coordination.k8s.io", "leases", v, "hybrid-system", "*" ]
            @ read "" "configmaps" "kube-system" "kubevip"
        )
    Xunit.Assert.Equal<Set<_>>(expected, grants (Manifest.rbac o))

[<Property>]
let ``the probes look at the health port, which differs from the metrics port, and both are declared`` () =
    forAll (Gen.zip (Gen.elements [ None; Some 2113; Some 9000; Some 2112 ]) (Gen.elements [ None; Some ":2112"; Some ":9000"; Some "127.0.0.1:2113"; Some ":0" ])) (fun (health, metrics) ->
        let args =
            required
            @ (match health with Some p -> [ "--healthCheckPort"; string p ] | None -> [])
            @ (match metrics with Some m -> [ "--prometheusHTTPServer"; m ] | None -> [])
        let healthPort = defaultArg health 2113
        let metricsPort = match metrics with Some m -> int (m.Substring(m.LastIndexOf ':' + 1)) | None -> 2112
        match daemonSetOf args with
        | Ok ds ->
            let c = container ds
            let ports = items [ "ports" ] c
            let named name = ports |> List.filter (fun p -> textAt [ "name" ] p = Some name)
            let port = named "health" |> List.exactlyOne
            allOf
                [ holds "ports differ" (healthPort <> metricsPort)
                  holds "the metrics port is declared unless none is served"
                      (match named "metrics" with
                       | [ m ] -> metricsPort <> 0 && at [ "containerPort" ] m = Some(Document.Number(int64 metricsPort))
                       | [] -> metricsPort = 0
                       | _ -> false)
                  holds "no other port" (ports.Length = (if metricsPort = 0 then 1 else 2))
                  holds "container port" (at [ "containerPort" ] port = Some(Document.Number(int64 healthPort)))
                  holds "probes use it" ([ "livenessProbe"; "readinessProbe" ] |> List.forall (fun p -> textAt [ p; "httpGet"; "port" ] c = textAt [ "name" ] port))
                  holds "paths" (textAt [ "livenessProbe"; "httpGet"; "path" ] c = Some "/healthz" && textAt [ "readinessProbe"; "httpGet"; "path" ] c = Some "/readyz")
                  holds "the agent is told" (List.contains (Manifest.HealthPortVariable, string healthPort) (literalVariables ds)) ]
        | Error errors -> holds (sprintf "%A" errors) (healthPort = metricsPort && errors.Length = 1)
        |> Prop.classify (healthPort = metricsPort) "clash"
        |> Prop.classify (metricsPort = 0) "no metrics")

[<Xunit.Fact>]
let ``a stopping agent's budgets end well before the DaemonSet's grace period ends in SIGKILL`` () =
    // Withdrawing, expiring the fence and writing Left, then flushing Events and ending the loops: all of it
    // at most half the grace period, so that a slow API server still leaves the agent time to exit by itself.
    let ds = (daemonSetOf required |> Result.toOption).Value
    let grace =
        match at [ "spec"; "template"; "spec"; "terminationGracePeriodSeconds" ] ds with
        | Some(Document.Number seconds) -> seconds * 1000L
        | other -> failwithf "no terminationGracePeriodSeconds in the DaemonSet: %A" other
    let stop = StopBudget.Sequence + StopBudget.EventFlush + StopBudget.Background
    Xunit.Assert.True(2L * stop <= grace, sprintf "the stop takes up to %d ms of a %d ms grace period" stop grace)
