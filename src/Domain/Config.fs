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

    override e.ToString() = sprintf "%s=%s: %s" e.Variable (Text.quote e.Value) e.Problem

/// The protocol's timings (docs/PROTOCOL.md §7), on each node's own monotonic clock. LAN: heartbeat interval
/// h, LAN renew deadline R_L (a member's grant lasts R_L from the send time of the sequence it echoes), LAN
/// lease duration D_L (a member not granted for D_L may be deposed). API fence: renew deadline R_A (the fence
/// lasts R_A from the start of the last successful arm or renewal), lease duration D_A (a silent node's armed
/// registration must stay unchanged for D_A before it may be deposed), retry period P_A (renewal interval).
/// AddressLifetime: the kernel lifetime of a VIP address, a cleanup backstop only (the kernel fence decides).
/// Built only through Timing.create, which enforces the safety inequalities.
type Timing =
    { HeartbeatInterval: Duration
      LanRenewDeadline: Duration
      LanLeaseDuration: Duration
      ApiLeaseDuration: Duration
      ApiRenewDeadline: Duration
      ApiRetryPeriod: Duration
      AddressLifetime: Duration }

/// A timing variable that breaks a rule, and why.
type TimingProblem = { Variable: string; Problem: string }

[<RequireQualifiedAccess>]
module Timing =
    /// Bound on the rate difference of two nodes' monotonic clocks, in parts per thousand (0.1 %: ten
    /// times a poor crystal oscillator).
    let ClockDriftPerMille = 1L

    /// How much later than its deadline the kernel may still answer: one timer tick (4 ms at HZ 250; an
    /// nftables element with `timeout 300ms` was measured to stop matching 297–301 ms after it was written)
    /// plus the transaction that follows the fresh clock read (0.7 ms typical, 3.5 ms p99). A fence write
    /// the shell reports as having overrun this is written again at once (Protocol: FenceExtended).
    let KernelSlack: Duration = 10L

    let DefaultHeartbeatInterval: Duration = 100L
    /// 4h: a grant is up to 2h old when the next one arrives, so the LAN fence keeps at least R_L − 2h = 200 ms
    /// in steady state, and D_L − R_L = 50 ms covers drift and the kernel's slack.
    let DefaultLanRenewDeadline: Duration = 400L
    let DefaultLanLeaseDuration: Duration = 450L
    let DefaultApiLeaseDuration: Duration = 3000L
    let DefaultApiRenewDeadline: Duration = 2000L
    let DefaultApiRetryPeriod: Duration = 500L

    /// Kernel lifetime of VIP addresses: only cleans up after a crash; the kernel fence stops answering.
    let AddressLifetime: Duration = 10_000L

    /// `later` exceeds `earlier` even when one clock runs fast and the other slow, with the kernel's slack.
    let private exceedsWithDrift (later: Duration) (earlier: Duration) =
        later * (1000L - ClockDriftPerMille) > earlier * (1000L + ClockDriftPerMille) + KernelSlack * 1000L

    let private needed (earlier: Duration) =
        float (earlier * (1000L + ClockDriftPerMille) + KernelSlack * 1000L) / float (1000L - ClockDriftPerMille) / 1000.0

    /// Checks every rule of docs/PROTOCOL.md §7 and reports every broken one: D_L·(1−ρ) > R_L·(1+ρ) + ε,
    /// R_L ≥ 2h + 2ε (a grant is up to two intervals old when the next arrives, and the API fence is armed half
    /// the remaining margin ahead, which must be at least the kernel slack), D_A·(1−ρ) > R_A·(1+ρ) + ε, 0 < P_A < R_A.
    let create (h: Duration) (rl: Duration) (dl: Duration) (da: Duration) (ra: Duration) (pa: Duration)
        : Result<Timing, TimingProblem list> =
        let problem variable text = { Variable = variable; Problem = text }
        let problems =
            [ if rl < 2L * h + 2L * KernelSlack then
                  problem "lan_renew_deadline"
                      (sprintf "must be at least twice lan_interval plus %s ms: an echo is up to two intervals old when the next one arrives, and the API fence is armed half the remaining margin ahead of the LAN fence's end, which must leave it time"
                          (string (2L * KernelSlack)))
              if not (exceedsWithDrift dl rl) then
                  problem "lan_lease_duration"
                      (sprintf "must exceed lan_renew_deadline by the clock-drift and kernel margins: needs more than %s s" (Text.decimals3 (needed rl)))
              if pa >= ra then problem "vip_retryperiod" "must be less than vip_renewdeadline"
              if not (exceedsWithDrift da ra) then
                  problem "vip_leaseduration"
                      (sprintf "must exceed vip_renewdeadline by the clock-drift and kernel margins: needs more than %s s" (Text.decimals3 (needed ra))) ]
        if problems.IsEmpty then
            Ok
                { HeartbeatInterval = h
                  LanRenewDeadline = rl
                  LanLeaseDuration = dl
                  ApiLeaseDuration = da
                  ApiRenewDeadline = ra
                  ApiRetryPeriod = pa
                  AddressLifetime = AddressLifetime }
        else
            Error problems

/// How long a stopping agent gives each part of its stop. Past them the kernel fence still ends the node's
/// right to answer on time, so a slow stop costs a hand-over its speed, never its safety.
[<RequireQualifiedAccess>]
module StopBudget =
    /// The stop sequence: every VIP withdrawn, the fence expired, the registration written Left.
    let Sequence: Duration = 1900L
    /// Events still queued afterwards (the withdrawals') get this long to reach the API.
    let EventFlush: Duration = 300L
    /// The background loops (watches, heartbeat receiver, HTTP servers) get this long to end.
    let Background: Duration = 200L
    /// The DaemonSet's terminationGracePeriodSeconds: the whole stop, with room for a slow API, before SIGKILL.
    let GracePeriodSeconds = 10L

/// The cluster key that authenticates LAN heartbeats (at least 16 bytes; `hybrid manifest secret` makes 32),
/// and its id: the first 8 bytes of HMAC-SHA256(key, "hybrid key id") in hex, safe to show and to compare.
type ClusterKey =
    private
        { Material: byte array
          KeyId: string }

    member k.Id = k.KeyId
    override k.ToString() = sprintf "key %s" k.KeyId

[<RequireQualifiedAccess>]
module ClusterKey =
    /// The shortest key accepted: 128 bits.
    let MinimumBytes = 16

    let create (material: byte array) : Result<ClusterKey, string> =
        if material.Length < MinimumBytes then
            Error(sprintf "too short: %s bytes, at least %s needed (32 recommended)" (string material.Length) (string MinimumBytes))
        else
            let id = System.Security.Cryptography.HMACSHA256.HashData(material, Text.Encoding.ASCII.GetBytes "hybrid key id")
            Ok { Material = Array.copy material; KeyId = Convert.ToHexString(id, 0, 8).ToLowerInvariant() }

    /// The key as a base64 text (what lan_key and the Secret hold), trimmed.
    let parse (text: string) : Result<ClusterKey, string> =
        let bytes = Array.zeroCreate<byte> (text.Length)
        match Convert.TryFromBase64String(text.Trim(), Span bytes) with
        | true, n -> create bytes[.. n - 1]
        | _ -> Error "not base64 (the key is the base64 text of at least 16 random bytes)"

    /// The key as base64 text (what lan_key and the Secret hold).
    let text (key: ClusterKey) = Convert.ToBase64String key.Material

    /// HMAC-SHA256 under the key of `count` bytes of `message` from `offset`.
    let sign (key: ClusterKey) (message: byte array) (offset: int) (count: int) : byte array =
        System.Security.Cryptography.HMACSHA256.HashData(key.Material, ReadOnlySpan(message, offset, count).ToArray())

/// Where lan_key_file pointed, as the shell read it (the domain does no I/O).
type KeyFile =
    | KeyFileContent of path: string * content: string
    | KeyFileUnreadable of path: string * problem: string

/// Whether a node's label node.kubernetes.io/exclude-from-external-load-balancers keeps VIPs off it
/// (MetalLB honours it unless told to ignore it: `--ignore-exclude-lb`).
type ExclusionLabelPolicy =
    | HonourExclusionLabel
    | IgnoreExclusionLabel

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
      /// UDP port of the LAN heartbeats (lan_port).
      LanPort: int
      ClusterKey: ClusterKey
      Upnp: bool
      DisableServiceUpdates: bool
      /// ignore_exclude_lb_label: whether labelled nodes may hold VIPs after all.
      ExclusionLabel: ExclusionLabelPolicy
      PrometheusServer: string
      /// TCP port of /healthz and /readyz (health_check_port); 0 serves none.
      HealthPort: int
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
          "vip_subnet"; "vip_arp"; "vip_arpRate"; "lan_interval"; "lan_renew_deadline"; "lan_lease_duration"
          "vip_leaseduration"; "vip_renewdeadline"; "vip_retryperiod"; "lan_port"; "lan_key"; "lan_key_file"
          "enable_upnp"; "enableUPNP"; "disable_service_updates"; "ignore_exclude_lb_label"; "prometheus_server"; "health_check_port"; "vip_loglevel" ]

    /// The default UDP port of the LAN heartbeats.
    let DefaultLanPort = 7474
    /// Where the DaemonSet's probes ask (kube-vip's metrics port is 2112).
    let DefaultHealthPort = 2113

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
    let parse (env: Map<string, string>) (keyFile: KeyFile option) : Result<Config, ConfigError list> =
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
        let h = readSeconds env "lan_interval" Timing.DefaultHeartbeatInterval
        let rl = readSeconds env "lan_renew_deadline" Timing.DefaultLanRenewDeadline
        let dl = readSeconds env "lan_lease_duration" Timing.DefaultLanLeaseDuration
        let da = readSeconds env "vip_leaseduration" Timing.DefaultApiLeaseDuration
        let ra = readSeconds env "vip_renewdeadline" Timing.DefaultApiRenewDeadline
        let pa = readSeconds env "vip_retryperiod" Timing.DefaultApiRetryPeriod
        let timing =
            match [ h; rl; dl; da; ra; pa ] |> List.collect _.Errors with
            | [] ->
                match Timing.create h.Value rl.Value dl.Value da.Value ra.Value pa.Value with
                | Ok t -> ok (Some t)
                | Error problems ->
                    { Value = None
                      Errors =
                        [ for p in problems ->
                              { Variable = p.Variable
                                Value = defaultArg (lookup env p.Variable) "(default)"
                                Problem = p.Problem } ] }
            | _ -> ok None
        let lanPort =
            match lookup env "lan_port" with
            | None | Some "" -> ok DefaultLanPort
            | Some v ->
                match parseInt32 v with
                | Some port when port >= 1 && port <= 65535 -> ok port
                | _ -> bad DefaultLanPort "lan_port" v "not a UDP port (1-65535)"
        let key =
            let keyError name value problem = { Value = None; Errors = [ { Variable = name; Value = value; Problem = problem } ] }
            match lookup env "lan_key", keyFile with
            | Some text, _ when text <> "" ->
                match ClusterKey.parse text with
                | Ok k -> ok (Some k)
                // Never echo the key itself into a log.
                | Error problem -> keyError "lan_key" "(hidden)" problem
            | _, Some(KeyFileContent(path, content)) ->
                match ClusterKey.parse content with
                | Ok k -> ok (Some k)
                | Error problem -> keyError "lan_key_file" path problem
            | _, Some(KeyFileUnreadable(path, problem)) -> keyError "lan_key_file" path problem
            | _ ->
                keyError "lan_key" ""
                    "required: the cluster key that authenticates LAN heartbeats (set lan_key or lan_key_file from a Secret; `hybrid manifest secret` makes one)"
        let upnp =
            match lookup env "enable_upnp" with
            | Some v when v <> "" -> readBool env "enable_upnp" false
            | _ -> readBool env "enableUPNP" false
        let disableUpdates = readBool env "disable_service_updates" false
        let ignoreExclusion = readBool env "ignore_exclude_lb_label" false
        let prometheus = readListen env
        let healthPort =
            match lookup env "health_check_port" with
            | None | Some "" -> ok DefaultHealthPort
            | Some v ->
                match parseInt32 v with
                | Some port when port >= 0 && port <= 65535 -> ok port
                | _ -> bad DefaultHealthPort "health_check_port" v "not a TCP port (1-65535, or 0 for none)"
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
                  servicesIface.Errors; subnet.Errors; arp.Errors; arpRate.Errors; h.Errors; rl.Errors; dl.Errors
                  da.Errors; ra.Errors; pa.Errors; timing.Errors; lanPort.Errors; key.Errors; upnp.Errors; disableUpdates.Errors; ignoreExclusion.Errors; prometheus.Errors; healthPort.Errors; logLevel.Errors ]
        match errors, timing.Value, key.Value with
        | [], Some t, Some k ->
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
                  LanPort = lanPort.Value
                  ClusterKey = k
                  Upnp = upnp.Value
                  DisableServiceUpdates = disableUpdates.Value
                  ExclusionLabel = (if ignoreExclusion.Value then IgnoreExclusionLabel else HonourExclusionLabel)
                  PrometheusServer = prometheus.Value
                  HealthPort = healthPort.Value
                  LogLevel = logLevel.Value }
        | errors, _, _ -> Error errors

    /// The interface VIPs go on: vip_servicesinterface, else vip_interface; None = the default route's.
    let vipInterface config = config.ServicesInterface |> Option.orElse config.Interface

    /// The settings that shape the protocol (docs/PROTOCOL.md §6), hashed: nodes whose fingerprints differ
    /// could not run one election together (other Leases, timings or key, or another reading of the
    /// exclusion label, which decides who may hold: appended only when ignored, so the default's hash stays).
    let fingerprint (c: Config) : string =
        let t = c.Timing
        let canonical =
            String.Join(
                "|",
                [ "hybrid/2"; string c.Election; c.LeaseName; c.LeaseNamespace; string t.HeartbeatInterval
                  string t.LanRenewDeadline; string t.LanLeaseDuration; string t.ApiLeaseDuration
                  string t.ApiRenewDeadline; string t.ApiRetryPeriod; string c.LanPort; c.ClusterKey.Id ]
                @ (match c.ExclusionLabel with IgnoreExclusionLabel -> [ "ignore-exclude-lb" ] | HonourExclusionLabel -> [])
            )
        let mutable h = 14695981039346656037UL
        for b in Text.Encoding.UTF8.GetBytes canonical do
            h <- (h ^^^ uint64 b) * 1099511628211UL
        h.ToString "x16"

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
          "vip_subnet", "/" + string c.PrefixV4 + ",/" + string c.PrefixV6, "prefix of VIP addresses (IPv4, IPv6)"
          "vip_arp", string c.Arp |> _.ToLowerInvariant(), "send gratuitous ARP / unsolicited NA"
          "vip_arpRate", string c.ArpRate, "ms between periodic announcements"
          "lan_interval", seconds c.Timing.HeartbeatInterval, "h: LAN heartbeat interval"
          "lan_renew_deadline", seconds c.Timing.LanRenewDeadline, "R_L: a member's echo keeps a holder's LAN fence this long"
          "lan_lease_duration", seconds c.Timing.LanLeaseDuration, "D_L: a member not heard (or not echoed) this long may be deposed"
          "vip_leaseduration", seconds c.Timing.ApiLeaseDuration, "D_A: a silent node's armed API fence is waited out this long"
          "vip_renewdeadline", seconds c.Timing.ApiRenewDeadline, "R_A: an API fence lasts this long after its last renewal started"
          "vip_retryperiod", seconds c.Timing.ApiRetryPeriod, "P_A: API fence renewal interval (only while armed)"
          "lan_port", string c.LanPort, "UDP port of the LAN heartbeats"
          "lan_key", c.ClusterKey.Id, "id of the cluster key (the key itself is never shown)"
          "(fingerprint)", fingerprint c, "settings that shape the protocol; one value is in force cluster-wide"
          "(address lifetime)", seconds c.Timing.AddressLifetime, "kernel lifetime of VIPs (cleanup backstop)"
          "enable_upnp", string c.Upnp |> _.ToLowerInvariant(), "UPnP port forwarding"
          "disable_service_updates", string c.DisableServiceUpdates |> _.ToLowerInvariant(), "do not write status or vipHost"
          "ignore_exclude_lb_label", (match c.ExclusionLabel with IgnoreExclusionLabel -> "true" | HonourExclusionLabel -> "false"),
          (match c.ExclusionLabel with
           | IgnoreExclusionLabel -> "nodes labelled node.kubernetes.io/exclude-from-external-load-balancers may hold VIPs"
           | HonourExclusionLabel -> "nodes labelled node.kubernetes.io/exclude-from-external-load-balancers hold no VIP")
          "prometheus_server", c.PrometheusServer, "listen address of /metrics, [host]:port (port 0: none)"
          "health_check_port", string c.HealthPort, "TCP port of /healthz and /readyz (0: none)"
          "vip_loglevel", string c.LogLevel, "4 info, 5 debug, 6 trace" ]
