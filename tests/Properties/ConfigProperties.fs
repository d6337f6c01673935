/// Configuration from kube-vip's environment variable names (and Hybrid's lan_* ones), with kube-vip's defaults;
/// every error at once; the cluster key; the settings fingerprint.
module Hybrid.Properties.ConfigProperties

open System
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private expectedDefaults: Config =
    { NodeName = "node-a"
      Election = false
      LeaseName = "plndr-svcs-lock"
      LeaseNamespace = "kube-system"
      ServiceNamespace = None
      ClassOnly = false
      ClassName = "kube-vip.io/kube-vip-class"
      ClassLegacyHandling = true
      Interface = None
      ServicesInterface = None
      PrefixV4 = 32
      PrefixV6 = 128
      Arp = true
      ArpRate = 3000L
      // docs/PROTOCOL.md §7: h = 100 ms, R_L = 400 ms, D_L = 450 ms, D_A = 3 s, R_A = 2 s, P_A = 0.5 s.
      Timing =
        { HeartbeatInterval = 100L
          LanRenewDeadline = 400L
          LanLeaseDuration = 450L
          ApiLeaseDuration = 3000L
          ApiRenewDeadline = 2000L
          ApiRetryPeriod = 500L
          AddressLifetime = 10_000L }
      LanPort = 7474
      ClusterKey = Key
      Upnp = false
      DisableServiceUpdates = false
      ExclusionLabel = HonourExclusionLabel
      PrometheusServer = ":2112"
      HealthPort = 2113
      LogLevel = 4 }

/// Variables of the environment that Hybrid does not read (a Pod has plenty of them).
let private genUnrelated =
    someOf 0 5
        [ "HOME", "/root"; "PATH", "/usr/bin"; "KUBERNETES_SERVICE_HOST", "10.96.0.1"; "svc_enablex", "garbage"
          "VIP_ARP", "garbage"; "Svc_Election", "garbage"; "lb_class", "x"; "vip_arprate", "1"; "LAN_KEY", "garbage"; "lan_portx", "-" ]

[<Property>]
let ``unset variables take kube-vip's defaults`` () =
    forAll genUnrelated (fun extra ->
        match parseEnv extra with
        | Ok c -> holds (sprintf "%A" c) (c = expectedDefaults)
        | Error e -> holds (sprintf "rejected: %A" e) false
        |> Prop.classify extra.IsEmpty "only required variables"
        |> Prop.classify (not extra.IsEmpty) "with unrelated variables")

let private optionalVariables =
    Config.Variables |> List.filter (fun v -> v <> "vip_nodename" && v <> "svc_enable" && v <> "lb_class_name" && v <> "lan_key")

[<Property>]
let ``an empty variable means its default, except lb_class_name where empty is a value`` () =
    forAll (someOf 1 optionalVariables.Length optionalVariables) (fun empties ->
        match parseEnv [ for v in empties do v, "" ] with
        | Ok c -> holds (sprintf "%A" c) (c = expectedDefaults)
        | Error e -> holds (sprintf "rejected: %A" e) false)

[<Property>]
let ``lb_class_name accepts any value including empty`` () =
    let genName =
        Gen.oneof
            [ Gen.constant ""
              Gen.elements [ "kube-vip.io/kube-vip-class"; "example.com/lb"; "x" ]
              Gen.listOf (Gen.elements [ 'a'; 'Z'; '0'; '.'; '/'; '-'; ' '; '_' ]) |> Gen.map (fun cs -> String(Array.ofList cs)) ]
    forAll genName (fun name ->
        match parseEnv [ "lb_class_name", name ] with
        | Ok c -> holds (sprintf "ClassName %A" c.ClassName) (c.ClassName = name)
        | Error e -> holds (sprintf "rejected: %A" e) false
        |> Prop.classify (name = "") "empty")

let private goTrue = [ "1"; "t"; "T"; "TRUE"; "true"; "True" ]
let private goFalse = [ "0"; "f"; "F"; "FALSE"; "false"; "False" ]
let private notGoBool = [ "yes"; "no"; "on"; "off"; "tRUE"; "fALSE"; "TRUE "; " true"; "2"; "-1"; "y"; "n"; "tru"; "enabled" ]

let private booleanVariables: (string * (Config -> bool)) list =
    [ "svc_election", _.Election
      "lb_class_only", _.ClassOnly
      "lb_class_legacy_handling", _.ClassLegacyHandling
      "vip_arp", _.Arp
      "enable_upnp", _.Upnp
      "enableUPNP", _.Upnp
      "disable_service_updates", _.DisableServiceUpdates
      "ignore_exclude_lb_label", (fun c -> c.ExclusionLabel = IgnoreExclusionLabel) ]

[<Property>]
let ``booleans accept exactly Go's ParseBool spellings`` () =
    let genCase =
        Gen.map2
            (fun var (text, expected) -> var, text, expected)
            (Gen.elements booleanVariables)
            (Gen.oneof
                [ Gen.elements goTrue |> Gen.map (fun t -> t, Some true)
                  Gen.elements goFalse |> Gen.map (fun t -> t, Some false)
                  Gen.elements notGoBool |> Gen.map (fun t -> t, None) ])
    forAll genCase (fun ((name, read), text, expected) ->
        match parseEnv [ name, text ], expected with
        | Ok c, Some b -> holds (sprintf "%s=%s read as %b" name text (read c)) (read c = b)
        | Error errors, None ->
            holds (sprintf "errors %A" errors) (errors = [ { Variable = name; Value = text; Problem = errors.Head.Problem } ])
        | outcome, _ -> holds (sprintf "%s=%A gave %A" name text outcome) false
        |> Prop.classify expected.IsNone "not a Go boolean"
        |> Prop.classify (expected = Some true) "true spelling"
        |> Prop.classify (expected = Some false) "false spelling")

[<Property>]
let ``svc and lb variables only count when svc_enable is set`` () =
    let gated = [ "svc_election", "yes"; "svc_leasename", "Bad_Lease"; "svc_namespace", "a.b"; "lb_class_only", "maybe"; "lb_class_legacy_handling", "nope" ]
    let genCase =
        gen {
            let! enable = Gen.oneof [ Gen.constant None; Gen.elements ("" :: goFalse @ goTrue @ [ "yes"; "on" ]) |> Gen.map Some ]
            let! bad = someOf 0 gated.Length gated
            return enable, bad
        }
    forAll genCase (fun (enable, bad) ->
        let env = [ "vip_nodename", "node-a"; "lan_key", KeyText ] @ (enable |> Option.map (fun v -> "svc_enable", v) |> Option.toList) @ bad
        let enabled = enable |> Option.exists (fun v -> List.contains v goTrue)
        let named = match Config.parse (Map.ofList env) None with Ok _ -> [] | Error errors -> errors |> List.map _.Variable
        (if enabled then holds (sprintf "errors for %A, expected those of %A" named bad) (List.sort named = List.sort (List.map fst bad))
         else holds (sprintf "errors for %A, expected only svc_enable" named) (named = [ "svc_enable" ]))
        |> Prop.classify enabled "svc_enable set"
        |> Prop.classify (not enabled) "svc_enable unset, false or invalid"
        |> Prop.classify (not bad.IsEmpty) "with bad svc_/lb_ values")

[<Property>]
let ``vip_arpRate below 500 falls back to 3000`` () =
    let genRate = Gen.oneof [ Gen.choose (-100000, 499); Gen.choose (500, 100000); Gen.elements [ -1; 0; 499; 500; 501; 3000 ] ]
    forAll genRate (fun rate ->
        match parseEnv [ "vip_arpRate", string rate ] with
        | Ok c -> holds (sprintf "ArpRate %d" c.ArpRate) (c.ArpRate = (if rate < 500 then 3000L else int64 rate))
        | Error e -> holds (sprintf "rejected: %A" e) false
        |> Prop.classify (rate < 500) "below 500"
        |> Prop.classify (rate >= 500) "500 or more")

/// For every variable, values it must refuse (the key has its own property: it is never echoed).
let private invalidValues =
    [ "vip_nodename", [ "Node_A"; "-bad"; "UPPER" ]
      "svc_election", [ "yes"; "on"; "tRUE" ]
      "svc_leasename", [ "Bad_Lease"; "-x" ]
      "cp_namespace", [ "kube.system"; "Kube" ]
      "svc_namespace", [ "a.b"; "_x" ]
      "lb_class_only", [ "maybe"; "2" ]
      "lb_class_legacy_handling", [ "nope" ]
      "vip_interface", [ "eth 0"; "a/b"; "sixteen-chars-xx" ]
      "vip_servicesinterface", [ "x:y"; ".." ]
      "vip_subnet", [ "abc"; "/33,/129"; "0"; "1,2,3" ]
      "vip_arp", [ "arp" ]
      "vip_arpRate", [ "fast"; "1.5"; "99999999999" ]
      "lan_interval", [ "0"; "-0.1"; "100ms"; "0.0001" ]
      "lan_renew_deadline", [ "abc"; "0.3s"; "," ]
      "lan_lease_duration", [ "0.000"; "1e3"; " 1" ]
      "vip_leaseduration", [ "-1"; "0"; "abc"; "1.2345" ]
      "vip_renewdeadline", [ "x"; "1,5" ]
      "vip_retryperiod", [ "0"; "." ]
      "lan_port", [ "0"; "65536"; "http"; "-1" ]
      "enable_upnp", [ "si" ]
      "disable_service_updates", [ "nah" ]
      "prometheus_server", [ "nohost"; ":99999"; ":+80" ]
      "health_check_port", [ "65536"; "-1"; "http" ]
      "vip_loglevel", [ "7"; "-1"; "debug" ] ]

[<Property>]
let ``invalid values are all reported at once, each naming the variable and the value`` () =
    let genBad =
        someOf 1 invalidValues.Length invalidValues
        |> Gen.bind (Gen.collectToList (fun (name, values) -> Gen.elements values |> Gen.map (fun v -> name, v)))
    forAll genBad (fun bad ->
        match parseEnv bad with
        | Ok c -> holds (sprintf "accepted %A" c) false
        | Error errors ->
            let named = errors |> List.map _.Variable |> Set.ofList
            allOf
                [ holds (sprintf "errors name %A, expected %A" named (bad |> List.map fst)) (named = (bad |> List.map fst |> Set.ofList))
                  for (name, value) in bad do
                      let own = errors |> List.filter (fun e -> e.Variable = name)
                      holds (sprintf "%s=%A: %A" name value own)
                          (own.Length = 1 && own.Head.Value = value && (string own.Head).Contains name
                           && (string own.Head).Contains value && own.Head.Problem <> "") ]
        |> Prop.collect (if bad.Length >= 4 then "4+ bad variables" else sprintf "%d bad variables" bad.Length))

[<Property>]
let ``enable_upnp wins over the older enableUPNP`` () =
    let genCase = Gen.map2 (fun a b -> a, b) (Gen.elements [ None; Some "true"; Some "false"; Some "" ]) (Gen.elements [ None; Some "true"; Some "false" ])
    forAll genCase (fun (modern, legacy) ->
        let env = [ for (k, v) in [ "enable_upnp", modern; "enableUPNP", legacy ] do match v with Some v -> k, v | None -> () ]
        let expected =
            match modern, legacy with
            | Some v, _ when v <> "" -> v = "true"
            | _, Some v -> v = "true"
            | _ -> false
        match parseEnv env with
        | Ok c -> holds (sprintf "Upnp %b" c.Upnp) (c.Upnp = expected)
        | Error e -> holds (sprintf "rejected %A" e) false)

[<Property>]
let ``lan_port accepts exactly the UDP ports 1 to 65535`` () =
    let genPort = Gen.oneof [ Gen.choose (-70000, 140000); Gen.elements [ -1; 0; 1; 7474; 65535; 65536 ] ]
    forAll genPort (fun port ->
        match parseEnv [ "lan_port", string port ] with
        | Ok c -> holds (sprintf "port %d read as %d" port c.LanPort) (port >= 1 && port <= 65535 && c.LanPort = port)
        | Error [ e ] -> holds (sprintf "%d refused: %A" port e) ((port < 1 || port > 65535) && e.Variable = "lan_port" && e.Value = string port)
        | Error e -> holds (sprintf "%A" e) false
        |> Prop.classify (port >= 1 && port <= 65535) "a port"
        |> Prop.classify (port < 1 || port > 65535) "out of range")

// ── The cluster key ─────────────────────────────────────────────────────────────────────────────────

let private genMaterial (lo: int) (hi: int) =
    Gen.choose (lo, hi) |> Gen.bind (fun n -> Gen.arrayOfLength n (Gen.choose (0, 255) |> Gen.map byte))

[<Property>]
let ``a key of at least 16 bytes in base64 is accepted, and its id is 16 hex digits that depend only on the key`` () =
    let genCase =
        gen {
            let! material = genMaterial 16 64
            let! padding = genPadding
            return material, padding
        }
    forAll genCase (fun (material, padding) ->
        let text = Convert.ToBase64String material
        match ClusterKey.parse (padding + text + padding), ClusterKey.parse text, ClusterKey.create material with
        | Ok padded, Ok plain, Ok created ->
            allOf
                [ holds (sprintf "id %s" plain.Id) (plain.Id.Length = 16 && plain.Id |> Seq.forall (fun c -> Char.IsAsciiHexDigitLower c || Char.IsAsciiDigit c))
                  holds "surrounding whitespace is trimmed" (padded = plain)
                  holds "text and bytes make the same key" (created = plain)
                  holds "the id is not the key" (not ((string plain).Contains text)) ]
        | a, b, c -> holds (sprintf "refused: %A %A %A" a b c) false
        |> Prop.classify (padding <> "") "padded")

[<Property>]
let ``different keys have different ids`` () =
    forAll (Gen.two (genMaterial 16 40)) (fun (a, b) ->
        match ClusterKey.create a, ClusterKey.create b with
        | Ok ka, Ok kb -> holds (sprintf "%s %s" ka.Id kb.Id) ((ka.Id = kb.Id) = (a = b))
        | x, y -> holds (sprintf "%A %A" x y) false)

[<Property>]
let ``a key shorter than 16 bytes or not base64 is refused through lan_key without echoing it`` () =
    let genBad =
        Gen.oneof
            [ genMaterial 1 15 |> Gen.map Convert.ToBase64String
              Gen.elements [ "not base64!"; "%%%%"; "abc"; "====" ] ]
    forAll genBad (fun text ->
        match parseEnv [ "lan_key", text ] with
        | Error [ e ] ->
            holds (sprintf "%A" e) (e.Variable = "lan_key" && e.Value <> text && not ((string e).Contains text) && e.Problem <> "")
        | other -> holds (sprintf "%A" other) false)

type private KeyExpectation =
    | UsesKey of ClusterKey
    | FileProblem of path: string * problem: string option
    | KeyRequired

[<Property>]
let ``lan_key wins over lan_key_file; the file's content is the key, and an unreadable file is reported with its path`` () =
    let path = "/etc/hybrid/key"
    let genCase =
        gen {
            let! inEnv = Gen.elements [ None; Some KeyText; Some "" ]
            let! file =
                Gen.elements
                    [ None
                      Some(KeyFileContent(path, OtherKeyText + "\n"))
                      Some(KeyFileUnreadable(path, "permission denied"))
                      Some(KeyFileContent(path, "short")) ]
            return inEnv, file
        }
    forAll genCase (fun (inEnv, file) ->
        let env = [ "vip_nodename", "node-a"; "svc_enable", "true" ] @ (inEnv |> Option.map (fun k -> "lan_key", k) |> Option.toList)
        let expected =
            match inEnv, file with
            | Some k, _ when k <> "" -> UsesKey Key
            | _, Some(KeyFileContent(_, content)) when content.Trim() = OtherKeyText -> UsesKey(clusterKey OtherKeyText)
            | _, Some(KeyFileContent(p, _)) -> FileProblem(p, None)
            | _, Some(KeyFileUnreadable(p, problem)) -> FileProblem(p, Some problem)
            | _, None -> KeyRequired
        match expected, Config.parse (Map.ofList env) file with
        | UsesKey k, Ok c -> holds "the expected key" (c.ClusterKey = k)
        | FileProblem(p, problem), Error [ e ] ->
            holds (sprintf "%A" e) (e.Variable = "lan_key_file" && e.Value = p && (problem |> Option.forall ((=) e.Problem)))
        | KeyRequired, Error [ e ] -> holds (sprintf "%A" e) (e.Variable = "lan_key" && e.Problem.StartsWith "required")
        | expected, outcome -> holds (sprintf "%A / %A: expected %A, gave %A" inEnv file expected outcome) false
        |> Prop.classify (inEnv |> Option.exists ((<>) "")) "lan_key set"
        |> Prop.classify file.IsSome "lan_key_file set")

// ── The settings fingerprint ────────────────────────────────────────────────────────────────────────

/// Settings docs/PROTOCOL.md §6 names as shaping the protocol (election mode, Lease name and namespace, every
/// timing, the key), the heartbeat port (nodes on different ports never hear each other) and whether the
/// exclusion label counts (nodes reading it differently would name different holders): two valid values each.
let private shaping =
    [ "svc_election", [ "true"; "false" ]
      "svc_leasename", [ "plndr-svcs-lock"; "other-lock" ]
      "cp_namespace", [ "kube-system"; "hybrid" ]
      "lan_interval", [ "0.1"; "0.05" ]
      "lan_renew_deadline", [ "0.3"; "0.25" ]
      "lan_lease_duration", [ "0.45"; "0.5" ]
      "vip_leaseduration", [ "3"; "2.5" ]
      "vip_renewdeadline", [ "2"; "1.5" ]
      "vip_retryperiod", [ "0.5"; "0.4" ]
      "lan_port", [ "7474"; "7475" ]
      "lan_key", [ KeyText; OtherKeyText ]
      "ignore_exclude_lb_label", [ "true"; "false" ] ]

/// Settings that are the node's own business.
let private local =
    [ "vip_nodename", [ "node-a"; "node-b" ]
      "svc_namespace", [ ""; "team" ]
      "lb_class_only", [ "true"; "false" ]
      "lb_class_name", [ ""; "example.com/lb" ]
      "lb_class_legacy_handling", [ "true"; "false" ]
      "vip_interface", [ "eth0"; "bond0" ]
      "vip_subnet", [ "32"; "24,64" ]
      "vip_arp", [ "true"; "false" ]
      "vip_arpRate", [ "3000"; "1000" ]
      "enable_upnp", [ "true"; "false" ]
      "disable_service_updates", [ "true"; "false" ]
      "prometheus_server", [ ":2112"; "127.0.0.1:9000" ]
      "health_check_port", [ "2113"; "0" ]
      "vip_loglevel", [ "4"; "5" ] ]

let private valuesOf (name: string) = (shaping @ local |> Map.ofList).[name]

[<Property>]
let ``the fingerprint changes exactly when a setting that shapes the protocol changes`` () =
    let genEnv = (shaping @ local) |> Gen.collectToList (fun (name, values) -> Gen.elements (None :: List.map Some values) |> Gen.map (fun v -> name, v))
    let genCase =
        gen {
            let! a = genEnv
            // The second node: the same environment with a few variables set otherwise (or not at all).
            let! changed = someOf 0 4 (shaping @ local |> List.map fst)
            let! b =
                a
                |> Gen.collectToList (fun (name, v) ->
                    if List.contains name changed then
                        Gen.elements (None :: List.map Some (valuesOf name)) |> Gen.map (fun v -> name, v)
                    else Gen.constant (name, v))
            return a, b
        }
    let envOf (pairs: (string * string option) list) = [ for (k, v) in pairs do match v with Some v -> k, v | None -> () ]
    forAll genCase (fun (a, b) ->
        match parseEnv (envOf a), parseEnv (envOf b) with
        | Ok ca, Ok cb ->
            // Whether a shaping setting's effective value differs (an unset variable and its default are the same).
            let differs =
                ca.Election <> cb.Election || ca.LeaseName <> cb.LeaseName || ca.LeaseNamespace <> cb.LeaseNamespace
                || ca.Timing <> cb.Timing || ca.LanPort <> cb.LanPort || ca.ClusterKey.Id <> cb.ClusterKey.Id
                || ca.ExclusionLabel <> cb.ExclusionLabel
            let same = Config.fingerprint ca = Config.fingerprint cb
            holds (sprintf "differs %b, fingerprints %s %s" differs (Config.fingerprint ca) (Config.fingerprint cb)) (same = not differs)
            |> Prop.classify differs "a shaping setting differs"
            |> Prop.classify (not differs && ca <> cb) "only the node's own settings differ"
        | x, y -> holds (sprintf "%A %A" x y) false)

[<Property>]
let ``the fingerprint is 16 hex digits and reads as a number`` () =
    forAll genAcceptedTiming (fun t ->
        let f = Config.fingerprint { DefaultConfig with Timing = t }
        holds f (f.Length = 16 && fst (UInt64.TryParse(f, Globalization.NumberStyles.AllowHexSpecifier, Globalization.CultureInfo.InvariantCulture))))

// ── Timings through the environment ─────────────────────────────────────────────────────────────────

let private timingVariables =
    [ "lan_interval"; "lan_renew_deadline"; "lan_lease_duration"; "vip_leaseduration"; "vip_renewdeadline"; "vip_retryperiod" ]

[<Property>]
let ``timings are read in seconds with millisecond precision and checked through the environment`` () =
    let genCase =
        Gen.oneof
            [ genAcceptedTiming |> Gen.map (fun t -> [ t.HeartbeatInterval; t.LanRenewDeadline; t.LanLeaseDuration; t.ApiLeaseDuration; t.ApiRenewDeadline; t.ApiRetryPeriod ])
              Gen.listOfLength 6 (chooseL 1L 5000L) ]
    forAll genCase (fun values ->
        let env = List.zip timingVariables (values |> List.map secondsText)
        match values, parseEnv env with
        | [ h; rl; dl; da; ra; pa ], outcome ->
            match outcome, Timing.create h rl dl da ra pa with
            | Ok c, Ok t -> holds (sprintf "%A <> %A" c.Timing t) (c.Timing = t)
            | Error errors, Error problems ->
                holds (sprintf "%A vs %A" errors problems)
                    (errors |> List.map (fun e -> e.Variable, e.Problem) = (problems |> List.map (fun p -> p.Variable, p.Problem))
                     && errors |> List.forall (fun e -> List.contains (e.Variable, e.Value) env))
            | outcome, expected -> holds (sprintf "environment gave %A, Timing.create %A" outcome expected) false
            |> Prop.classify (Result.isOk outcome) "accepted"
        | _ -> holds "six values" false)

[<Property>]
let ``a timing that breaks a rule through a default is reported as the default`` () =
    // vip_renewdeadline set at or below the default vip_retryperiod (0.5 s): the retry period, left unset, is
    // what breaks P_A < R_A.
    forAll (chooseL 100L 500L) (fun ra ->
        match parseEnv [ "vip_renewdeadline", secondsText ra ] with
        | Error [ e ] -> holds (sprintf "%A" e) (e.Variable = "vip_retryperiod" && e.Value = "(default)")
        | other -> holds (sprintf "%A" other) false)
