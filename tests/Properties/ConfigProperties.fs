/// Rule 1: configuration from kube-vip's environment variable names, with kube-vip's defaults; all errors
/// at once; the timing safety inequality.
module Hybrid.Properties.ConfigProperties

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
      Timing =
        { LeaseDuration = Timing.DefaultLeaseDuration
          RenewDeadline = Timing.DefaultRenewDeadline
          RetryPeriod = Timing.DefaultRetryPeriod
          AddressLifetime = 1000L }
      Upnp = false
      DisableServiceUpdates = false
      PrometheusServer = ":2112"
      LogLevel = 4 }

/// Variables of the environment that Hybrid does not read (a Pod has plenty of them).
let private genUnrelated =
    someOf 0 5
        [ "HOME", "/root"; "PATH", "/usr/bin"; "KUBERNETES_SERVICE_HOST", "10.96.0.1"; "svc_enablex", "garbage"
          "VIP_ARP", "garbage"; "Svc_Election", "garbage"; "lb_class", "x"; "vip_arprate", "1" ]

[<Property>]
let ``unset variables take kube-vip's defaults`` () =
    forAll genUnrelated (fun extra ->
        match parseEnv extra with
        | Ok c -> holds (sprintf "%A" c) (c = expectedDefaults)
        | Error e -> holds (sprintf "rejected: %A" e) false
        |> Prop.classify extra.IsEmpty "only required variables"
        |> Prop.classify (not extra.IsEmpty) "with unrelated variables")

let private optionalVariables = Config.Variables |> List.filter (fun v -> v <> "vip_nodename" && v <> "svc_enable" && v <> "lb_class_name")

[<Property>]
let ``an empty variable means its default, except lb_class_name where empty is a value`` () =
    forAll (someOf 1 optionalVariables.Length optionalVariables) (fun empties ->
        match parseEnv [ for v in empties do v, "" ] with
        | Ok c -> holds (sprintf "%A" c) (c = expectedDefaults)
        | Error e -> holds (sprintf "rejected: %A" e) false)

[<Property>]
let ``lb_class_name accepts any value including empty`` () =
    let genName = Gen.oneof [ Gen.constant ""; Gen.elements [ "kube-vip.io/kube-vip-class"; "example.com/lb"; "x" ]; Gen.listOf (Gen.elements [ 'a'; 'Z'; '0'; '.'; '/'; '-'; ' '; '_' ]) |> Gen.map (fun cs -> System.String(Array.ofList cs)) ]
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
      "disable_service_updates", _.DisableServiceUpdates ]

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
        let env = [ "vip_nodename", "node-a" ] @ (enable |> Option.map (fun v -> "svc_enable", v) |> Option.toList) @ bad
        let enabled = enable |> Option.exists (fun v -> List.contains v goTrue)
        let named = match Config.parse (Map.ofList env) with Ok _ -> [] | Error errors -> errors |> List.map _.Variable
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

/// For every variable, values it must refuse.
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
      "vip_leaseduration", [ "-1"; "0"; "abc"; "1.2345" ]
      "vip_renewdeadline", [ "x"; "1,5" ]
      "vip_retryperiod", [ "0"; "." ]
      "enable_upnp", [ "si" ]
      "disable_service_updates", [ "nah" ]
      "prometheus_server", [ "nohost"; ":99999"; ":+80" ] ]

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

// ── Timing ──────────────────────────────────────────────────────────────────────────────────────────

let private rho = Timing.ClockDriftPerMille

/// Timings around every boundary of the inequalities: P, then R near P + slack + 1 s, then D near R·(1+ρ)/(1−ρ).
let private genTiming =
    gen {
        let! p = Gen.frequency [ 1, Gen.choose (-5, 0); 8, Gen.choose (1, 2000) ]
        let! r = Gen.frequency [ 1, Gen.choose (-5, p + 5); 6, Gen.choose (p + 1200, p + 1400); 3, Gen.choose (p + 1300, p + 9000) ]
        let boundary = int64 r * (1000L + rho) / (1000L - rho)
        let! d = Gen.frequency [ 1, Gen.choose (r - 5, r + 5) |> Gen.map int64; 6, Gen.choose (-3, 3) |> Gen.map (fun k -> boundary + int64 k); 3, Gen.choose (0, 5000) |> Gen.map (fun k -> boundary + int64 k) ]
        return d, int64 r, int64 p
    }

let private safe (t: Timing) =
    t.RenewDeadline * (1000L + rho) < t.LeaseDuration * (1000L - rho)
    && t.RenewDeadline - t.AddressLifetime - Timing.KernelExpirySlack >= t.RetryPeriod

[<Property>]
let ``every accepted timing satisfies R(1+rho) < D(1-rho) and leaves a write window of one retry period`` () =
    forAll genTiming (fun (d, r, p) ->
        match Timing.create d r p with
        | Ok t ->
            allOf
                [ holds "D, R, P kept" (t.LeaseDuration = d && t.RenewDeadline = r && t.RetryPeriod = p)
                  holds (sprintf "R(1+rho) < D(1-rho) for %A" t) (r * (1000L + rho) < d * (1000L - rho))
                  holds (sprintf "R - T - slack >= P for %A" t) (r - t.AddressLifetime - Timing.KernelExpirySlack >= p)
                  holds (sprintf "lifetime is whole seconds >= 1 s: %A" t) (t.AddressLifetime >= 1000L && t.AddressLifetime % 1000L = 0L)
                  holds "D > R > P > 0" (d > r && r > p && p > 0L) ]
        | Error _ -> holds "rejected" true
        |> Prop.classify (Timing.create d r p |> Result.isOk) "accepted"
        |> Prop.classify (Timing.create d r p |> Result.isError) "rejected")

[<Property>]
let ``every rejected timing names a timing variable and breaks a safety condition`` () =
    forAll genTiming (fun (d, r, p) ->
        match Timing.create d r p with
        | Ok _ -> holds "accepted" true
        | Error problems ->
            // The same D, R, P with the longest lifetime that could work: if that were safe, the rejection was wrong.
            let candidate = { LeaseDuration = d; RenewDeadline = r; RetryPeriod = p; AddressLifetime = max 1000L ((r - Timing.KernelExpirySlack - p) / 1000L * 1000L) }
            allOf
                [ holds "at least one problem" (not problems.IsEmpty)
                  holds (sprintf "variables %A" problems)
                      (problems |> List.forall (fun (v, text) -> List.contains v [ "vip_leaseduration"; "vip_renewdeadline"; "vip_retryperiod" ] && text <> ""))
                  holds "a safety condition fails" (not (p > 0L && d > r && r > p && safe candidate)) ]
        |> Prop.classify (Timing.create d r p |> Result.isError) "rejected")

[<Property>]
let ``timings are read in seconds with millisecond precision and checked through the environment`` () =
    let text (ms: int64) = if ms % 1000L = 0L then string (ms / 1000L) else sprintf "%d.%03d" (ms / 1000L) (ms % 1000L)
    forAll (genTiming |> Gen.map (fun (d, r, p) -> max 1L d, max 1L r, max 1L p)) (fun (d, r, p) ->
        let env = [ "vip_leaseduration", text d; "vip_renewdeadline", text r; "vip_retryperiod", text p ]
        match parseEnv env, Timing.create d r p with
        | Ok c, Ok t -> holds (sprintf "%A <> %A" c.Timing t) (c.Timing = t)
        | Error errors, Error problems ->
            holds (sprintf "%A vs %A" errors problems)
                (errors |> List.map (fun e -> e.Variable, e.Problem) = problems
                 && errors |> List.forall (fun e -> List.contains (e.Variable, e.Value) env))
        | outcome, expected -> holds (sprintf "environment gave %A, Timing.create %A" outcome expected) false
        |> Prop.classify (Timing.create d r p |> Result.isOk) "accepted")
