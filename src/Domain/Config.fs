// Configuration: kube-vip's environment variables, the ownership timings and their safety inequality.
namespace Hybrid.Domain

open System

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Configuration (kube-vip's environment variables)
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// One bad configuration variable: its name, the value found, and what is wrong with it.
type ConfigError =
    { Variable: string
      Value: string
      Problem: string }

    override e.ToString() = sprintf "%s=%A: %s" e.Variable e.Value e.Problem

/// The ownership timings. LeaseDuration (D): how long a node stays live without a visible heartbeat change.
/// RenewDeadline (R): how long a holder may keep announcing after the START of its last successful heartbeat
/// renewal. RetryPeriod (P): heartbeat interval. AddressLifetime (T): kernel lifetime of a VIP address.
/// Built only through Timing.create, which enforces the safety inequality (see there).
type Timing =
    { LeaseDuration: Duration
      RenewDeadline: Duration
      RetryPeriod: Duration
      AddressLifetime: Duration }

[<RequireQualifiedAccess>]
module Timing =
    /// Upper bound on how late the kernel deletes an address after its valid lifetime ends. Linux checks
    /// lifetimes from one global work item that runs at most once a second, rounded up by up to 0.25 s and
    /// occasionally late on an idle CPU: measured 0.02–0.54 s (p99 0.54 s over 100 samples, kernel 6.18;
    /// tests/Benchmarks address-lifetime). Known limit: an unrelated address change on the same host in
    /// the last second before expiry re-arms that check and can add up to another second.
    let KernelExpirySlack: Duration = 600L

    /// Bound on the rate difference of two nodes' monotonic clocks, in parts per thousand (0.1 %: ten
    /// times a poor crystal oscillator).
    let ClockDriftPerMille = 1L

    /// Hybrid's defaults, chosen so that node-failure failover stays under 2 s (takeover happens between
    /// D - P and D after the holder's last heartbeat) while the safety inequality holds.
    let DefaultLeaseDuration: Duration = 1800L
    let DefaultRenewDeadline: Duration = 1750L
    let DefaultRetryPeriod: Duration = 150L

    /// The VIP's kernel lifetime T: whole seconds (the kernel's unit), the longest that still leaves a write
    /// window W = R - T - slack of at least one heartbeat period, so that in steady state every moment lies
    /// within W of some successful renewal and the holder may add or refresh its VIPs at any time.
    let lifetimeFor (renewDeadline: Duration) (retryPeriod: Duration) : Duration =
        max 1000L ((renewDeadline - KernelExpirySlack - retryPeriod) / 1000L * 1000L)

    /// The latest instant at which the holder may add a VIP or refresh its lifetime, given the start of its
    /// last successful heartbeat renewal: the kernel deletes the address by write + T + slack, which must not
    /// pass renewal start + R (the fence).
    let writeDeadline timing (renewalStartedAt: Instant) : Instant =
        renewalStartedAt + timing.RenewDeadline - timing.AddressLifetime - KernelExpirySlack

    /// Checks D > R > P > 0, room for a one-second lifetime, and the safety inequality R·(1+ρ) < D·(1−ρ):
    /// a holder's VIP is gone from the wire (its own withdrawal, or the kernel's expiry if it crashed) R after
    /// the start of its last successful renewal, while no other node takes over earlier than D after it
    /// observed that renewal.
    let create (d: Duration) (r: Duration) (p: Duration) : Result<Timing, (string * string) list> =
        let problems =
            [ if p <= 0L then "vip_retryperiod", "must be greater than zero"
              if r <= p then "vip_renewdeadline", "must be greater than vip_retryperiod"
              elif r - KernelExpirySlack - p < 1000L then
                  "vip_renewdeadline",
                  sprintf "must be at least vip_retryperiod + %.1f s: the VIP's kernel lifetime is at least 1 s and may end %.1f s late"
                      (float (1000L + KernelExpirySlack) / 1000.0) (float KernelExpirySlack / 1000.0)
              if d <= r then "vip_leaseduration", "must be greater than vip_renewdeadline"
              elif r * (1000L + ClockDriftPerMille) >= d * (1000L - ClockDriftPerMille) then
                  "vip_leaseduration",
                  sprintf "must exceed vip_renewdeadline by the clock-drift margin (%d/1000 each way): needs more than %.3f s"
                      ClockDriftPerMille
                      (float (r * (1000L + ClockDriftPerMille)) / float (1000L - ClockDriftPerMille) / 1000.0) ]
        if problems.IsEmpty then
            Ok { LeaseDuration = d; RenewDeadline = r; RetryPeriod = p; AddressLifetime = lifetimeFor r p }
        else
            Error problems

/// Effective agent configuration, parsed from kube-vip's environment variable names.
type Config =
    { NodeName: string
      Election: bool
      LeaseName: string
      LeaseNamespace: string
      ServiceNamespace: string option
      ClassOnly: bool
      ClassName: string
      ClassLegacyHandling: bool
      Interface: string option
      ServicesInterface: string option
      PrefixV4: int
      PrefixV6: int
      Arp: bool
      ArpRate: Duration
      Timing: Timing
      Upnp: bool
      DisableServiceUpdates: bool
      PrometheusServer: string
      /// vip_loglevel, kube-vip's logrus levels: 0 panic … 4 info (default) … 5 debug, 6 trace.
      LogLevel: int }

[<RequireQualifiedAccess>]
module Config =
    /// kube-vip's default class name (`lb_class_name`).
    let DefaultClassName = "kube-vip.io/kube-vip-class"

    /// Every variable Hybrid reads, in the order `--print-config` shows them.
    let Variables =
        [ "vip_nodename"; "svc_enable"; "svc_election"; "svc_leasename"; "cp_namespace"; "svc_namespace"
          "lb_class_only"; "lb_class_name"; "lb_class_legacy_handling"; "vip_interface"; "vip_servicesinterface"
          "vip_subnet"; "vip_arp"; "vip_arpRate"; "vip_leaseduration"; "vip_renewdeadline"; "vip_retryperiod"
          "enable_upnp"; "enableUPNP"; "disable_service_updates"; "prometheus_server"; "vip_loglevel" ]

    /// A value read from the environment plus the errors found reading it.
    type private Read<'a> = { Value: 'a; Errors: ConfigError list }

    let private ok v = { Value = v; Errors = [] }
    let private bad fallback name value problem =
        { Value = fallback; Errors = [ { Variable = name; Value = value; Problem = problem } ] }

    let private lookup (env: Map<string, string>) name = env |> Map.tryFind name

    /// Go's strconv.ParseBool, which kube-vip uses (for variables, and Hybrid also for boolean annotations).
    let parseBool (s: string) =
        match s with
        | "1" | "t" | "T" | "TRUE" | "true" | "True" -> Some true
        | "0" | "f" | "F" | "FALSE" | "false" | "False" -> Some false
        | _ -> None

    let private readBool env name fallback =
        match lookup env name with
        | None | Some "" -> ok fallback
        | Some v ->
            match parseBool v with
            | Some b -> ok b
            | None -> bad fallback name v "not a boolean (use true or false)"

    /// Go's strconv.ParseInt(s, 10, 32).
    let private parseInt32 (s: string) =
        let digits = if s.StartsWith "-" || s.StartsWith "+" then s.Substring 1 else s
        if digits.Length = 0 || digits.Length > 10 || not (digits |> Seq.forall Char.IsAsciiDigit) then None
        else
            let magnitude = Int64.Parse digits
            let v = if s.StartsWith "-" then -magnitude else magnitude
            if v < int64 Int32.MinValue || v > int64 Int32.MaxValue then None else Some(int v)

    /// Decimal seconds with at most millisecond precision ("1", "0.25", "1.5").
    let private parseSeconds (s: string) : Duration option =
        let whole, frac =
            match s.IndexOf '.' with
            | -1 -> s, ""
            | i -> s.Substring(0, i), s.Substring(i + 1)
        let allDigits (x: string) = x |> Seq.forall Char.IsAsciiDigit
        if whole.Length = 0 || whole.Length > 6 || not (allDigits whole) || frac.Length > 3 || not (allDigits frac)
           || (s.Contains '.' && frac.Length = 0) then
            None
        else
            Some(int64 whole * 1000L + (if frac = "" then 0L else int64 (frac.PadRight(3, '0'))))

    let private readSeconds env name fallback =
        match lookup env name with
        | None | Some "" -> ok fallback
        | Some v ->
            match parseSeconds v with
            | Some ms when ms > 0L -> ok ms
            | _ -> bad fallback name v "not a positive number of seconds (decimals allowed, e.g. 1.5)"

    let private isDnsLabel (s: string) =
        s.Length >= 1 && s.Length <= 63
        && s |> Seq.forall (fun c -> Char.IsAsciiLetterLower c || Char.IsAsciiDigit c || c = '-')
        && Char.IsAsciiLetterOrDigit s[0] && Char.IsAsciiLetterOrDigit s[s.Length - 1]

    let private isDnsSubdomain (s: string) =
        s.Length >= 1 && s.Length <= 253 && s.Split '.' |> Array.forall isDnsLabel

    let private readName env name fallback (valid: string -> bool) problem =
        match lookup env name with
        | None | Some "" -> ok fallback
        | Some v when valid v -> ok v
        | Some v -> bad fallback name v problem

    let private isInterfaceName (s: string) =
        s.Length >= 1 && s.Length <= 15 && s <> "." && s <> ".."
        && s |> Seq.forall (fun c -> c > ' ' && c < '\u007f' && c <> '/' && c <> ':')

    let private readInterface env name =
        match lookup env name with
        | None | Some "" -> ok None
        | Some v when isInterfaceName v -> ok (Some v)
        | Some v -> bad None name v "not a network interface name (1-15 characters, no '/', ':' or spaces)"

    /// `vip_subnet`: "", "N", "/N", or "A,B" (IPv4 then IPv6); a single value above 32 applies to IPv6.
    let private readSubnet env =
        let name = "vip_subnet"
        let prefix (s: string) =
            let s = s.Trim()
            let s = if s.StartsWith "/" then s.Substring 1 else s
            if s.Length >= 1 && s.Length <= 3 && s |> Seq.forall Char.IsAsciiDigit then Some(int s) else None
        match lookup env name with
        | None | Some "" -> ok (32, 128)
        | Some v ->
            match v.Split ',' |> Array.map prefix with
            | [| Some p |] when p >= 1 && p <= 32 -> ok (p, 128)
            | [| Some p |] when p > 32 && p <= 128 -> ok (32, p)
            | [| Some a; Some b |] when a >= 1 && a <= 32 && b >= 1 && b <= 128 -> ok (a, b)
            | _ -> bad (32, 128) name v "not a prefix length such as /32, or /32,/128 for IPv4 and IPv6"

    let private readArpRate env =
        let name = "vip_arpRate"
        match lookup env name with
        | None | Some "" -> ok 3000L
        | Some v ->
            match parseInt32 v with
            // kube-vip's ARP manager replaces rates below 500 ms with its 3 s default.
            | Some ms when ms < 500 -> ok 3000L
            | Some ms -> ok (int64 ms)
            | None -> bad 3000L name v "not an integer number of milliseconds"

    let private readListen env =
        let name = "prometheus_server"
        match lookup env name with
        | None | Some "" -> ok ":2112"
        | Some v ->
            match v.LastIndexOf ':' with
            | -1 -> bad ":2112" name v "not a listen address of the form [host]:port"
            | i ->
                match parseInt32 (v.Substring(i + 1)) with
                | Some port when port >= 0 && port <= 65535 && not (v.Substring(i + 1).StartsWith "+") -> ok v
                | _ -> bad ":2112" name v "not a listen address of the form [host]:port (port 0-65535)"

    /// Parses the whole environment. Every bad variable is reported, each with its name and value.
    /// `svc_*` and `lb_*` variables only count when `svc_enable` is set (as in kube-vip); Hybrid implements
    /// kube-vip's services mode only, so `svc_enable` must be true.
    let parse (env: Map<string, string>) : Result<Config, ConfigError list> =
        let nodeName =
            match lookup env "vip_nodename" with
            | Some v when isDnsSubdomain v -> ok v
            | Some "" | None -> bad "" "vip_nodename" "" "required: the name of this node (set it from the Pod's spec.nodeName)"
            | Some v -> bad "" "vip_nodename" v "not a Kubernetes node name (DNS subdomain)"
        let svcEnable =
            let r = readBool env "svc_enable" false
            match r.Errors, lookup env "svc_enable" with
            | [], _ when r.Value -> r
            | [], v -> bad false "svc_enable" (defaultArg v "") "must be true: Hybrid implements kube-vip's services mode (set svc_enable=true)"
            | _ -> r
        let services = svcEnable.Value
        let whenServices (read: Read<'a>) (fallback: 'a) = if services then read else ok fallback
        let election = whenServices (readBool env "svc_election" false) false
        let leaseName =
            whenServices (readName env "svc_leasename" "plndr-svcs-lock" isDnsSubdomain "not a valid Lease name (DNS subdomain)") "plndr-svcs-lock"
        let svcNamespace =
            if not services then ok None
            else
                match lookup env "svc_namespace" with
                | None | Some "" -> ok None
                | Some v when isDnsLabel v -> ok (Some v)
                | Some v -> bad None "svc_namespace" v "not a namespace name (DNS label)"
        let classOnly = whenServices (readBool env "lb_class_only" false) false
        let className =
            // An empty lb_class_name is a valid, distinct setting (strict mode then accepts only class-less services).
            if services then ok (defaultArg (lookup env "lb_class_name") DefaultClassName) else ok DefaultClassName
        let legacy = whenServices (readBool env "lb_class_legacy_handling" true) true
        let leaseNamespace = readName env "cp_namespace" "kube-system" isDnsLabel "not a namespace name (DNS label)"
        let iface = readInterface env "vip_interface"
        let servicesIface = readInterface env "vip_servicesinterface"
        let subnet = readSubnet env
        let arp = readBool env "vip_arp" true
        let arpRate = readArpRate env
        let d = readSeconds env "vip_leaseduration" Timing.DefaultLeaseDuration
        let r = readSeconds env "vip_renewdeadline" Timing.DefaultRenewDeadline
        let p = readSeconds env "vip_retryperiod" Timing.DefaultRetryPeriod
        let timing =
            match d.Errors, r.Errors, p.Errors with
            | [], [], [] ->
                match Timing.create d.Value r.Value p.Value with
                | Ok t -> ok (Some t)
                | Error problems ->
                    { Value = None
                      Errors =
                        [ for (variable, problem) in problems ->
                              { Variable = variable
                                Value = defaultArg (lookup env variable) "(default)"
                                Problem = problem } ] }
            | _ -> ok None
        let upnp =
            match lookup env "enable_upnp" with
            | Some v when v <> "" -> readBool env "enable_upnp" false
            | _ -> readBool env "enableUPNP" false
        let disableUpdates = readBool env "disable_service_updates" false
        let prometheus = readListen env
        let logLevel =
            match lookup env "vip_loglevel" with
            | None | Some "" -> ok 4
            | Some v ->
                match parseInt32 v with
                | Some level when level >= 0 && level <= 6 -> ok level
                | _ -> bad 4 "vip_loglevel" v "not a log level from 0 (panic) to 6 (trace); 4 is info, 5 debug"
        let errors =
            List.concat
                [ nodeName.Errors; svcEnable.Errors; election.Errors; leaseName.Errors; leaseNamespace.Errors
                  svcNamespace.Errors; classOnly.Errors; className.Errors; legacy.Errors; iface.Errors
                  servicesIface.Errors; subnet.Errors; arp.Errors; arpRate.Errors; d.Errors; r.Errors; p.Errors
                  timing.Errors; upnp.Errors; disableUpdates.Errors; prometheus.Errors; logLevel.Errors ]
        match errors, timing.Value with
        | [], Some t ->
            Ok
                { NodeName = nodeName.Value
                  Election = election.Value
                  LeaseName = leaseName.Value
                  LeaseNamespace = leaseNamespace.Value
                  ServiceNamespace = svcNamespace.Value
                  ClassOnly = classOnly.Value
                  ClassName = className.Value
                  ClassLegacyHandling = legacy.Value
                  Interface = iface.Value
                  ServicesInterface = servicesIface.Value
                  PrefixV4 = fst subnet.Value
                  PrefixV6 = snd subnet.Value
                  Arp = arp.Value
                  ArpRate = arpRate.Value
                  Timing = t
                  Upnp = upnp.Value
                  DisableServiceUpdates = disableUpdates.Value
                  PrometheusServer = prometheus.Value
                  LogLevel = logLevel.Value }
        | errors, _ -> Error errors

    /// The interface VIPs go on: vip_servicesinterface, else vip_interface; None = the default route's.
    let vipInterface config = config.ServicesInterface |> Option.orElse config.Interface

    /// The effective settings as (variable, value, meaning) rows for `hybrid agent --print-config`.
    let describe (c: Config) : (string * string * string) list =
        let seconds (ms: Duration) = (float ms / 1000.0).ToString("0.###", Globalization.CultureInfo.InvariantCulture) + "s"
        [ "vip_nodename", c.NodeName, "this node"
          "svc_enable", "true", "services mode"
          "svc_election", string c.Election |> _.ToLowerInvariant(),
          (if c.Election then "one holder per VIP, spread over nodes" else sprintf "one leader (Lease %s) holds every VIP" c.LeaseName)
          "svc_leasename", c.LeaseName, "Lease of the single group when svc_election=false"
          "cp_namespace", c.LeaseNamespace, "namespace of Hybrid's Leases"
          "svc_namespace", defaultArg c.ServiceNamespace "", (if c.ServiceNamespace.IsNone then "all namespaces" else "only this namespace")
          "lb_class_only", string c.ClassOnly |> _.ToLowerInvariant(), "legacy mode: ignore services without a class"
          "lb_class_name", c.ClassName, (if c.ClassName = "" then "(empty)" else "load-balancer class")
          "lb_class_legacy_handling", string c.ClassLegacyHandling |> _.ToLowerInvariant(),
          (if c.ClassLegacyHandling then "act on services with no class or this class" else "act only on services whose class equals lb_class_name")
          "vip_interface", defaultArg (vipInterface c) "", (if (vipInterface c).IsNone then "interface of the default route" else "VIP interface")
          "vip_subnet", sprintf "/%d,/%d" c.PrefixV4 c.PrefixV6, "prefix of VIP addresses (IPv4, IPv6)"
          "vip_arp", string c.Arp |> _.ToLowerInvariant(), "send gratuitous ARP / unsolicited NA"
          "vip_arpRate", sprintf "%d" c.ArpRate, "ms between periodic announcements"
          "vip_leaseduration", seconds c.Timing.LeaseDuration, "D: a node is dead after this long without a heartbeat"
          "vip_renewdeadline", seconds c.Timing.RenewDeadline, "R: a holder stops announcing this long after its last renewal started"
          "vip_retryperiod", seconds c.Timing.RetryPeriod, "P: heartbeat interval"
          "(address lifetime)", seconds c.Timing.AddressLifetime, "kernel lifetime of VIPs, refreshed while held"
          "enable_upnp", string c.Upnp |> _.ToLowerInvariant(), "UPnP port forwarding"
          "disable_service_updates", string c.DisableServiceUpdates |> _.ToLowerInvariant(), "do not write status or vipHost"
          "prometheus_server", c.PrometheusServer, "metrics and health listen address"
          "vip_loglevel", string c.LogLevel, "4 info, 5 debug, 6 trace" ]
