// Manifests: `hybrid manifest daemonset|rbac|secret` reads kube-vip's `manifest` flags for services mode and
// produces the DaemonSet, RBAC and cluster-key Secret an operator applies. Which flag sets which agent
// variable, which flags are refused and why, and what the objects contain are decided here.
namespace Hybrid.Domain

open System
open System.Text.RegularExpressions

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Documents and flags
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// A manifest object as data: YAML's data model with keys in the order they are written.
[<RequireQualifiedAccess>]
type Document =
    | Map of (string * Document) list
    | List of Document list
    | Text of string
    | Number of int64
    | Boolean of bool

[<RequireQualifiedAccess>]
module Document =
    let private quote (s: string) = "\"" + System.Text.Json.JsonEncodedText.Encode(s).ToString() + "\""

    /// The document as JSON text (which is also YAML), keys in order.
    let rec toJson (document: Document) : string =
        match document with
        | Document.Map pairs -> "{" + String.Join(",", [ for k, v in pairs -> quote k + ":" + toJson v ]) + "}"
        | Document.List items -> "[" + String.Join(",", List.map toJson items) + "]"
        | Document.Text s -> quote s
        | Document.Number n -> string n
        | Document.Boolean b -> if b then "true" else "false"

/// What `hybrid manifest` generates.
[<RequireQualifiedAccess>]
type ManifestKind =
    /// The agent's DaemonSet (kube-vip's `manifest daemonset`).
    | DaemonSet
    /// Its Namespace, ServiceAccount, roles and bindings (kube-vip's `manifest rbac`).
    | Rbac
    /// The Secret holding the cluster's LAN heartbeat key (Hybrid's own).
    | Secret

/// How a flag takes its value (spf13/pflag, which kube-vip's commands use).
[<RequireQualifiedAccess>]
type FlagSyntax =
    /// `--arp` or `--arp=false`: the value is optional and read as Go's strconv.ParseBool.
    | Switch
    /// `--interface eth0` or `--interface=eth0`.
    | Value

/// A manifest setting that is not an agent variable.
[<RequireQualifiedAccess>]
type ManifestSetting =
    | Services
    | Arp
    | InCluster
    /// kube-vip's `--taint`: run only on control-plane nodes, tolerating their taints.
    | ControlPlaneOnly
    | Namespace
    | Image
    | HealthPort

/// What a flag does.
[<RequireQualifiedAccess>]
type FlagEffect =
    /// Sets this agent environment variable to the flag's value (a switch to "true" or "false").
    | Variable of string
    | Setting of ManifestSetting
    /// Accepted so that kube-vip's command lines work; changes nothing, for the reason given.
    | NoEffect of reason: string
    /// A kube-vip feature Hybrid does not have: the command fails with the reason given.
    | Refused of reason: string

/// One flag of `hybrid manifest`.
type ManifestFlag =
    { Name: string
      Shorthand: char option
      Syntax: FlagSyntax
      Effect: FlagEffect
      /// The kinds that accept the flag (kube-vip's persistent flags are accepted by daemonset and rbac).
      Kinds: ManifestKind list
      Help: string }

/// Everything a command line decided, ready to generate from.
type ManifestOptions =
    { Namespace: string
      Image: string
      HealthPort: int
      /// The switch settings (--services, --arp, --inCluster, --taint) that are on.
      Switched: Set<ManifestSetting>
      /// Agent variables set by flags, in flag-table order (the last occurrence of a flag wins).
      Variables: (string * string) list }

/// A problem with a `hybrid manifest` command line.
[<RequireQualifiedAccess>]
type ManifestError =
    | UnknownKind of word: string
    | UnknownFlag of flag: string
    | UnknownShorthand of shorthand: char * argument: string
    | MissingValue of flag: string
    | NotABoolean of flag: string * value: string
    | UnexpectedArgument of argument: string
    | NotForKind of flag: string * kind: ManifestKind
    | Refused of flag: string * reason: string
    | Required of flag: string * reason: string
    | InvalidValue of flag: string * value: string * problem: string


[<RequireQualifiedAccess>]
module ManifestError =
    let private kindWord =
        function
        | ManifestKind.DaemonSet -> "daemonset"
        | ManifestKind.Rbac -> "rbac"
        | ManifestKind.Secret -> "secret"

    let describe (error: ManifestError) : string =
        match error with
        | ManifestError.UnknownKind "pod" ->
            "unknown manifest 'pod': Hybrid runs on every node as a DaemonSet (hybrid manifest daemonset)"
        | ManifestError.UnknownKind word -> sprintf "unknown manifest '%s' (daemonset, rbac or secret)" word
        | ManifestError.UnknownFlag "" -> "bad flag syntax: --"
        | ManifestError.UnknownFlag flag -> sprintf "unknown flag: --%s" flag
        | ManifestError.UnknownShorthand(c, argument) -> sprintf "unknown shorthand flag: '%s' in %s" (string c) argument
        | ManifestError.MissingValue flag -> sprintf "flag needs an argument: --%s" flag
        | ManifestError.NotABoolean(flag, value) ->
            sprintf "invalid argument %s for --%s: not a boolean (true, false, 1, 0, t, f)" (Text.quote value) flag
        | ManifestError.UnexpectedArgument argument -> sprintf "unexpected argument %s (every option is a --flag)" (Text.quote argument)
        | ManifestError.NotForKind(flag, kind) -> sprintf "--%s does not apply to `hybrid manifest %s`" flag (kindWord kind)
        | ManifestError.Refused(flag, reason) -> sprintf "--%s is not supported: %s" flag reason
        | ManifestError.Required(flag, reason) -> sprintf "--%s is required: %s" flag reason
        | ManifestError.InvalidValue(flag, value, problem) -> sprintf "--%s %s: %s" flag (Text.quote value) problem

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// The flag table
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<RequireQualifiedAccess>]
module ManifestFlags =
    let private both = [ ManifestKind.DaemonSet; ManifestKind.Rbac ]

    let private flag name syntax effect help =
        { Name = name; Shorthand = None; Syntax = syntax; Effect = effect; Kinds = both; Help = help }

    let private variable name syntax env help = flag name syntax (FlagEffect.Variable env) help
    let private setting name syntax s help = flag name syntax (FlagEffect.Setting s) help

    let private controlPlane =
        "it configures kube-vip's control-plane VIP; Hybrid implements services mode only (keep kube-vip for the control plane, with --controlplane and without --services)"

    let private otherMode what =
        sprintf "%s is not implemented: Hybrid announces Service addresses with ARP and IPv6 neighbour advertisements (--arp)" what

    let private refused names reason =
        [ for n in names -> flag n FlagSyntax.Value (FlagEffect.Refused reason) "" ]

    let private refusedSwitches names reason =
        [ for n in names -> flag n FlagSyntax.Switch (FlagEffect.Refused reason) "" ]

    /// Every flag, in the order the variables they set appear in the DaemonSet.
    let all: ManifestFlag list =
        [ setting "services" FlagSyntax.Switch ManifestSetting.Services "enable Services of type LoadBalancer (required: Hybrid is kube-vip's services mode)"
          setting "arp" FlagSyntax.Switch ManifestSetting.Arp "announce with gratuitous ARP / unsolicited neighbour advertisements (required)"
          setting "inCluster" FlagSyntax.Switch ManifestSetting.InCluster "authenticate with the ServiceAccount from `hybrid manifest rbac` (required)"
          { setting "taint" FlagSyntax.Switch ManifestSetting.ControlPlaneOnly "run only on control-plane nodes, tolerating their taints" with
              Kinds = [ ManifestKind.DaemonSet ] }
          { setting "namespace" FlagSyntax.Value ManifestSetting.Namespace "namespace of the agent, its Secret and its Leases (default hybrid-system)" with
              Shorthand = Some 'n'
              Kinds = [ ManifestKind.DaemonSet; ManifestKind.Rbac; ManifestKind.Secret ] }
          setting "image" FlagSyntax.Value ManifestSetting.Image "the agent's image, with a tag or @sha256 digest (default ghcr.io/hybrid-lb/hybrid:latest)"
          setting "healthCheckPort" FlagSyntax.Value ManifestSetting.HealthPort "port of /healthz and /readyz on the node (1025-65535, default 2113)"
          variable "interface" FlagSyntax.Value "vip_interface" "interface the VIPs go on (default: the default route's)"
          variable "serviceInterface" FlagSyntax.Value "vip_servicesinterface" "interface for Service VIPs (wins over --interface)"
          variable "vipSubnet" FlagSyntax.Value "vip_subnet" "prefix of VIP addresses: /32, or /32,/128 for IPv4 and IPv6"
          variable "servicesElection" FlagSyntax.Switch "svc_election" "one holder per Service address, spread over the nodes"
          variable "servicesLeaseName" FlagSyntax.Value "svc_leasename" "Lease of the single leader when --servicesElection is off"
          variable "serviceNamespace" FlagSyntax.Value "svc_namespace" "watch only this namespace's Services"
          variable "lbClassOnly" FlagSyntax.Switch "lb_class_only" "act only on Services of the load-balancer class"
          variable "lbClassName" FlagSyntax.Value "lb_class_name" "the load-balancer class handled (default kube-vip.io/kube-vip-class)"
          variable "lbClassNameLegacyHandling" FlagSyntax.Switch "lb_class_legacy_handling" "false: act only on Services whose class is --lbClassName"
          variable "leaseDuration" FlagSyntax.Value "vip_leaseduration" "seconds without a heartbeat before a node is dead (Hybrid's default 1.8)"
          variable "leaseRenewDuration" FlagSyntax.Value "vip_renewdeadline" "seconds a holder keeps announcing after its last renewal (default 1.75)"
          variable "leaseRetry" FlagSyntax.Value "vip_retryperiod" "seconds between heartbeats (default 0.15)"
          variable "arpRate" FlagSyntax.Value "vip_arpRate" "milliseconds between periodic announcements (default 3000)"
          variable "disableServiceUpdates" FlagSyntax.Switch "disable_service_updates" "do not write Service status or kube-vip.io/vipHost"
          variable "enableUPNP" FlagSyntax.Switch "enable_upnp" "forward Service ports on the LAN's UPnP gateway"
          variable "prometheusHTTPServer" FlagSyntax.Value "prometheus_server" "metrics listen address (default :2112)"
          flag "leaderElection" FlagSyntax.Switch (FlagEffect.NoEffect "Hybrid always elects holders through Leases") ""
          flag "leaseName" FlagSyntax.Value (FlagEffect.NoEffect "it names kube-vip's control-plane Lease") ""
          flag "k8sConfigPath" FlagSyntax.Value (FlagEffect.NoEffect "the agent uses its ServiceAccount (--inCluster)") ""
          flag "dnsMode" FlagSyntax.Value (FlagEffect.NoEffect "it resolves control-plane addresses given as DNS names") ""
          flag "log" FlagSyntax.Value (FlagEffect.NoEffect "it sets kube-vip's own log level while generating") ""
          { flag "role" FlagSyntax.Switch (FlagEffect.Refused "Hybrid reads Nodes and watches Services in every namespace, so it needs its ClusterRole") "" with
              Kinds = [ ManifestKind.Rbac ] }
          { flag "rolebinding" FlagSyntax.Switch (FlagEffect.Refused "Hybrid's ClusterRole is bound with a ClusterRoleBinding") "" with
              Kinds = [ ManifestKind.Rbac ] } ]
        @ refusedSwitches [ "controlplane"; "autodetectcp"; "ddns"; "enableLoadBalancer" ] controlPlane
        @ refused [ "vip"; "address"; "port"; "lbPort"; "lbForwardingMethod"; "leaderElectionType" ] controlPlane
        @ refusedSwitches [ "bgp"; "bgpAttachIPToInterface"; "multihop"; "zebra" ] (otherMode "BGP")
        @ refused [ "bgpRouterID"; "bgppeers"; "peerAddress"; "peerAS"; "localAS"; "peerPass"; "sourceIF"; "sourceIP"; "annotations" ] (otherMode "BGP")
        @ refusedSwitches [ "wireguard" ] (otherMode "WireGuard")
        @ refusedSwitches [ "table"; "cleanRoutingTable" ] (otherMode "routing-table mode")
        @ refused [ "tableID"; "tableType"; "routingProtocol" ] (otherMode "routing-table mode")
        @ refusedSwitches [ "onlyAllowTrafficServicePorts"; "enableNodeLabeling"; "enableEndpoints"; "preserveVipOnLeadershipLoss" ]
            "this kube-vip feature is not implemented by Hybrid"
        @ refused [ "mirrorDestInterface"; "dhcpMode"; "egressWithNftables" ] "this kube-vip feature is not implemented by Hybrid"

    let tryFind (name: string) = all |> List.tryFind (fun f -> f.Name = name)

    let tryFindShorthand (c: char) = all |> List.tryFind (fun f -> f.Shorthand = Some c)

    /// The flag that sets an agent variable.
    let forVariable (variable: string) =
        all |> List.tryFind (fun f -> f.Effect = FlagEffect.Variable variable)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Command lines (spf13/pflag's syntax)
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<RequireQualifiedAccess>]
module ManifestCommandLine =
    /// One flag as written, with its value (a bare switch is "true").
    type Occurrence = { Flag: ManifestFlag; Value: string }

    /// Go's strconv.ParseBool, which pflag uses for switches.
    let parseBool (s: string) =
        match s with
        | "1" | "t" | "T" | "TRUE" | "true" | "True" -> Some true
        | "0" | "f" | "F" | "FALSE" | "false" | "False" -> Some false
        | _ -> None

    let private occurrence (flag: ManifestFlag) (value: string option) (rest: string list) =
        match flag.Syntax, value, rest with
        | FlagSyntax.Switch, None, _ -> Ok { Flag = flag; Value = "true" }, rest
        | FlagSyntax.Switch, Some v, _ ->
            match parseBool v with
            | Some b -> Ok { Flag = flag; Value = (if b then "true" else "false") }, rest
            | None -> Error(ManifestError.NotABoolean(flag.Name, v)), rest
        | FlagSyntax.Value, Some v, _ -> Ok { Flag = flag; Value = v }, rest
        // pflag takes the next argument as the value whatever it looks like.
        | FlagSyntax.Value, None, next :: rest -> Ok { Flag = flag; Value = next }, rest
        | FlagSyntax.Value, None, [] -> Error(ManifestError.MissingValue flag.Name), rest

    let private longFlag (argument: string) rest =
        let body = argument.Substring 2
        let name, value =
            match body.IndexOf '=' with
            | -1 -> body, None
            | i -> body.Substring(0, i), Some(body.Substring(i + 1))
        match ManifestFlags.tryFind name with
        | None -> [ Error(ManifestError.UnknownFlag name) ], rest
        | Some flag ->
            let result, rest = occurrence flag value rest
            [ result ], rest

    /// `-n value`, `-n=value`, `-nvalue`; switches may be grouped (`-ab`).
    let private shorthands (argument: string) rest =
        let rec go (chars: string) rest acc =
            if chars.Length = 0 then List.rev acc, rest
            else
                match ManifestFlags.tryFindShorthand chars[0] with
                | None -> List.rev (Error(ManifestError.UnknownShorthand(chars[0], argument)) :: acc), rest
                | Some flag ->
                    let tail = chars.Substring 1
                    let inline' = if tail.StartsWith "=" then Some(tail.Substring 1) else None
                    match flag.Syntax with
                    | FlagSyntax.Switch when inline'.IsNone ->
                        go tail rest (Ok { Flag = flag; Value = "true" } :: acc)
                    | FlagSyntax.Switch ->
                        let result, rest = occurrence flag inline' rest
                        List.rev (result :: acc), rest
                    | FlagSyntax.Value ->
                        let value = if inline'.IsSome then inline' elif tail.Length > 0 then Some tail else None
                        let result, rest = occurrence flag value rest
                        List.rev (result :: acc), rest
        go (argument.Substring 1) rest []

    /// Splits a command line into flag occurrences and errors, in order. Every error is kept.
    let scan (arguments: string list) : Result<Occurrence, ManifestError> list =
        let rec loop args acc =
            match args with
            | [] -> List.rev acc
            | "--" :: rest -> List.rev acc @ [ for a in rest -> Error(ManifestError.UnexpectedArgument a) ]
            | a :: rest when a.StartsWith "--" ->
                let results, rest = longFlag a rest
                loop rest (List.rev results @ acc)
            | a :: rest when a.StartsWith "-" && a.Length > 1 ->
                let results, rest = shorthands a rest
                loop rest (List.rev results @ acc)
            | a :: rest -> loop rest (Error(ManifestError.UnexpectedArgument a) :: acc)
        loop arguments []

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Names, defaults and validation
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<RequireQualifiedAccess>]
module Manifest =
    /// Name of the DaemonSet, ServiceAccount and ClusterRole; the `app.kubernetes.io/name` label.
    let Name = "hybrid"

    /// Hybrid's own namespace: its Lease permissions there cannot reach kube-system's Leases (the
    /// controller-manager's and scheduler's leader elections), which a Role in kube-system could.
    let DefaultNamespace = "hybrid-system"

    let DefaultImage = "ghcr.io/hybrid-lb/hybrid:latest"

    /// /healthz and /readyz on the node: kube-vip's metrics port (2112) plus one.
    let DefaultHealthPort = Config.DefaultHealthPort

    /// The Secret holding the LAN heartbeat key, its key, and the variable the agent reads it from.
    let SecretName = "hybrid-cluster-key"
    let SecretKey = "key"
    let KeyVariable = "lan_key"

    /// kube-vip's name for the health port variable.
    let HealthPortVariable = "health_check_port"

    /// The process environment the agent is given beside its configuration. glibc makes a malloc arena for
    /// each thread that allocates natively, up to eight per core, each keeping megabytes once used; the
    /// agent's few native calls (libnftables, libpcap, OpenSSL) need one. (Measured: 2–3 MiB of RSS.)
    let RuntimeEnvironment = [ "MALLOC_ARENA_MAX", "1" ]

    /// Where kube-vip-cloud-provider keeps address pools (kube-system/kubevip): readable by the agent.
    let AddressPoolNamespace = "kube-system"
    let AddressPoolConfigMap = "kubevip"

    /// Namespaces every cluster has: `hybrid manifest rbac` does not create them.
    let BuiltInNamespaces = [ "default"; "kube-system"; "kube-public"; "kube-node-lease" ]

    /// Variables the manifests set that the agent's Config does not read yet.
    let PendingVariables: string list = []

    let private imageReference =
        Regex(
            @"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)/)?"
            + @"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
            + @"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$",
            RegexOptions.CultureInvariant
        )

    /// The image as the DaemonSet names it: with no tag or digest, `:latest`.
    let private normalizeImage (image: string) =
        let lastSegment = image.Substring(image.LastIndexOf '/' + 1)
        if image.Contains '@' || lastSegment.Contains ':' then image else image + ":latest"

    let private defaults =
        { Namespace = DefaultNamespace
          Image = DefaultImage
          HealthPort = DefaultHealthPort
          Switched = Set.empty
          Variables = [] }

    /// The port of a `[host]:port` listen address, when it has one.
    let private portOf (listen: string) =
        match listen.LastIndexOf ':' with
        | -1 -> None
        | i ->
            match Int32.TryParse(listen.Substring(i + 1), Globalization.NumberStyles.None, Globalization.CultureInfo.InvariantCulture) with
            | true, p -> Some p
            | _ -> None

    // ── stages of `parse` ─────────────────────────────────────────────────────────────────────────────

    let private applicable kind (occurrences: ManifestCommandLine.Occurrence list) =
        [ for o in occurrences do
              if not (List.contains kind o.Flag.Kinds) then Error(ManifestError.NotForKind(o.Flag.Name, kind))
              else
                  match o.Flag.Effect with
                  | FlagEffect.Refused reason -> Error(ManifestError.Refused(o.Flag.Name, reason))
                  | _ -> Ok o ]

    /// Folds occurrences into options; the last occurrence of a flag wins, as in pflag.
    let private collect (occurrences: ManifestCommandLine.Occurrence list) =
        let last = occurrences |> List.rev |> List.distinctBy _.Flag.Name |> List.rev
        let switch setting (o: ManifestCommandLine.Occurrence) (options: ManifestOptions) =
            { options with Switched = (if o.Value = "true" then Set.add else Set.remove) setting options.Switched }
        let variables =
            [ for f in ManifestFlags.all do
                  match f.Effect, last |> List.tryFind (fun o -> o.Flag.Name = f.Name) with
                  | FlagEffect.Variable v, Some o -> v, o.Value
                  | _ -> () ]
        let options, errors =
            last
            |> List.fold
                (fun (options, errors) o ->
                    match o.Flag.Effect with
                    | FlagEffect.Setting(ManifestSetting.Services | ManifestSetting.Arp | ManifestSetting.InCluster | ManifestSetting.ControlPlaneOnly as setting) ->
                        switch setting o options, errors
                    | FlagEffect.Setting ManifestSetting.Namespace -> { options with Namespace = o.Value }, errors
                    | FlagEffect.Setting ManifestSetting.Image ->
                        if imageReference.IsMatch o.Value then { options with Image = normalizeImage o.Value }, errors
                        else
                            options,
                            ManifestError.InvalidValue(o.Flag.Name, o.Value, "not an image reference such as registry.example/hybrid:v1 or …@sha256:<64 hex digits>")
                            :: errors
                    | FlagEffect.Setting ManifestSetting.HealthPort ->
                        match Int32.TryParse(o.Value, Globalization.NumberStyles.None, Globalization.CultureInfo.InvariantCulture) with
                        | true, p when p > 1024 && p <= 65535 -> { options with HealthPort = p }, errors
                        | _ -> options, ManifestError.InvalidValue(o.Flag.Name, o.Value, "not a port from 1025 to 65535") :: errors
                    | FlagEffect.Variable _
                    | FlagEffect.NoEffect _
                    | FlagEffect.Refused _ -> options, errors)
                (defaults, [])
        { options with Variables = variables }, List.rev errors

    /// The agent's configuration check, run on what the DaemonSet will set; each error names the flag
    /// that carried the value.
    let private checkAgentConfig (options: ManifestOptions) =
        let environment =
            Map.ofList (options.Variables @ [ "vip_nodename", "node"; "svc_enable", "true"; "cp_namespace", options.Namespace ])
        // The key comes from its Secret at run time; any valid key stands in for it here.
        let key = Convert.ToBase64String(Array.init 32 byte)
        match Config.parse (environment.Add("lan_key", key)) None with
        | Ok _ -> []
        | Error errors ->
            [ for (e: ConfigError) in errors do
                  let flag =
                      if e.Variable = "cp_namespace" then "namespace"
                      else ManifestFlags.forVariable e.Variable |> Option.map _.Name |> Option.defaultValue e.Variable
                  ManifestError.InvalidValue(flag, e.Value, sprintf "%s (sets %s)" e.Problem e.Variable) ]

    /// prometheus_server as the manifest sets it (kube-vip's default when no flag sets it).
    let private metricsListen (options: ManifestOptions) =
        options.Variables
        |> List.tryFind (fun (v, _) -> v = "prometheus_server")
        |> Option.map snd
        |> Option.filter (fun v -> v <> "")
        |> Option.defaultValue ":2112"

    /// The port of /metrics on the node (0: none is served).
    let private metricsPort (options: ManifestOptions) = portOf (metricsListen options)

    let private checkPorts (options: ManifestOptions) =
        let metrics = metricsListen options
        match portOf metrics with
        | Some p when p = options.HealthPort ->
            [ ManifestError.InvalidValue("healthCheckPort", string options.HealthPort, sprintf "the metrics server (%s) already listens there" metrics) ]
        | _ -> []

    let private required kind (options: ManifestOptions) =
        if kind <> ManifestKind.DaemonSet then []
        else
            let off setting = not (options.Switched.Contains setting)
            [ if off ManifestSetting.Services then
                  ManifestError.Required("services", "Hybrid is kube-vip's services mode, and only that")
              if off ManifestSetting.Arp then
                  ManifestError.Required("arp", "Hybrid announces Service addresses with ARP/NDP (BGP, WireGuard and routing tables are not implemented)")
              if off ManifestSetting.InCluster then
                  ManifestError.Required(
                      "inCluster",
                      "the agent authenticates with its ServiceAccount; mounting the node's admin.conf would give every node's agent cluster-admin"
                  ) ]

    /// Reads a `hybrid manifest KIND` command line. Every problem is reported at once.
    let parse (kind: ManifestKind) (arguments: string list) : Result<ManifestOptions, ManifestError list> =
        let scanned = ManifestCommandLine.scan arguments
        let syntaxErrors = scanned |> List.choose (function Error e -> Some e | Ok _ -> None)
        let checkedFlags = scanned |> List.choose (function Ok o -> Some o | Error _ -> None) |> applicable kind
        let flagErrors = checkedFlags |> List.choose (function Error e -> Some e | Ok _ -> None)
        let options, valueErrors = checkedFlags |> List.choose (function Ok o -> Some o | Error _ -> None) |> collect
        let errors =
            syntaxErrors @ flagErrors @ valueErrors @ checkAgentConfig options @ checkPorts options @ required kind options
        if errors.IsEmpty then Ok options else Error errors

    let parseKind (word: string) : Result<ManifestKind, ManifestError> =
        match word with
        | "daemonset" -> Ok ManifestKind.DaemonSet
        | "rbac" -> Ok ManifestKind.Rbac
        | "secret" -> Ok ManifestKind.Secret
        | other -> Error(ManifestError.UnknownKind other)

    // ════════════════════════════════════════════════════════════════════════════════════════════════
    // The objects
    // ════════════════════════════════════════════════════════════════════════════════════════════════

    let private text s = Document.Text s
    let private strings (items: string list) = Document.List [ for s in items -> Document.Text s ]
    let private labels = Document.Map [ "app.kubernetes.io/name", text Name ]

    let private metadata name (ns: string option) =
        Document.Map(
            [ "name", text name
              match ns with
              | Some n -> "namespace", text n
              | None -> ()
              "labels", labels ]
        )

    let private envValue name value = Document.Map [ "name", text name; "value", text value ]

    let private envField name path =
        Document.Map [ "name", text name; "valueFrom", Document.Map [ "fieldRef", Document.Map [ "fieldPath", text path ] ] ]

    let private envSecret name secret key =
        Document.Map [ "name", text name; "valueFrom", Document.Map [ "secretKeyRef", Document.Map [ "name", text secret; "key", text key ] ] ]

    /// The agent's environment: identity and Lease namespace from the downward API, the modes this
    /// manifest is for, every variable a flag set, the health port and the cluster key.
    let environment (options: ManifestOptions) : Document list =
        [ envField "vip_nodename" "spec.nodeName"
          envField "cp_namespace" "metadata.namespace"
          envValue "svc_enable" "true"
          envValue "vip_arp" "true"
          for v, value in options.Variables do
              envValue v value
          envValue HealthPortVariable (string options.HealthPort)
          for v, value in RuntimeEnvironment do
              envValue v value
          envSecret KeyVariable SecretName SecretKey ]

    let private probe path periodSeconds failureThreshold =
        Document.Map
            [ "httpGet", Document.Map [ "path", text path; "port", text "health" ]
              "periodSeconds", Document.Number periodSeconds
              "timeoutSeconds", Document.Number 1L
              "failureThreshold", Document.Number failureThreshold ]

    /// Root, but with nothing beyond the two capabilities the agent uses: NET_ADMIN (netlink addresses,
    /// nftables) and NET_RAW (ARP/NDP frames). A non-root user would get those only through file
    /// capabilities on the executable, which no_new_privs (allowPrivilegeEscalation: false) disables.
    let private containerSecurity =
        Document.Map
            [ "allowPrivilegeEscalation", Document.Boolean false
              "privileged", Document.Boolean false
              "readOnlyRootFilesystem", Document.Boolean true
              "capabilities", Document.Map [ "drop", strings [ "ALL" ]; "add", strings [ "NET_ADMIN"; "NET_RAW" ] ] ]

    /// kube-vip's `--taint`: schedule only on control-plane nodes and tolerate their NoSchedule/NoExecute taints.
    let private controlPlaneOnly =
        [ "tolerations",
          Document.List
              [ Document.Map [ "operator", text "Exists"; "effect", text "NoSchedule" ]
                Document.Map [ "operator", text "Exists"; "effect", text "NoExecute" ] ]
          "affinity",
          Document.Map
              [ "nodeAffinity",
                Document.Map
                    [ "requiredDuringSchedulingIgnoredDuringExecution",
                      Document.Map
                          [ "nodeSelectorTerms",
                            Document.List
                                [ for key in [ "node-role.kubernetes.io/master"; "node-role.kubernetes.io/control-plane" ] ->
                                      Document.Map
                                          [ "matchExpressions",
                                            Document.List [ Document.Map [ "key", text key; "operator", text "Exists" ] ] ] ] ] ] ] ]

    let private container (options: ManifestOptions) =
        Document.Map
            [ "name", text Name
              "image", text options.Image
              "imagePullPolicy", text "IfNotPresent"
              "args", strings [ "agent" ]
              "env", Document.List(environment options)
              "ports",
              Document.List
                  [ match metricsPort options with
                    | Some p when p > 0 -> Document.Map [ "name", text "metrics"; "containerPort", Document.Number(int64 p); "protocol", text "TCP" ]
                    | _ -> ()
                    Document.Map [ "name", text "health"; "containerPort", Document.Number(int64 options.HealthPort); "protocol", text "TCP" ] ]
              "livenessProbe", probe "/healthz" 10L 3L
              "readinessProbe", probe "/readyz" 5L 2L
              // Memory: the native agent uses about 40 MiB idle, 45-52 MiB with 1,000 Services once settled, 62-65 MiB
              // right after they appear and up to 138 MiB while it starts alone with 1,000 and svc_election
              // (README, agent-memory): an OOM kill there would move VIPs. No CPU limit: CFS throttling would delay
              // heartbeats, and with them every failover.
              "resources",
              Document.Map
                  [ "requests", Document.Map [ "cpu", text "50m"; "memory", text "64Mi" ]
                    "limits", Document.Map [ "memory", text "192Mi" ] ]
              "securityContext", containerSecurity ]

    let daemonSet (options: ManifestOptions) : Document =
        let podSpec =
            [ "serviceAccountName", text Name
              "hostNetwork", Document.Boolean true
              "dnsPolicy", text "ClusterFirstWithHostNet"
              "priorityClassName", text "system-node-critical"
              "terminationGracePeriodSeconds", Document.Number StopBudget.GracePeriodSeconds
              "nodeSelector", Document.Map [ "kubernetes.io/os", text "linux" ]
              "securityContext", Document.Map [ "seccompProfile", Document.Map [ "type", text "RuntimeDefault" ] ]
              if options.Switched.Contains ManifestSetting.ControlPlaneOnly then yield! controlPlaneOnly
              "containers", Document.List [ container options ] ]
        Document.Map
            [ "apiVersion", text "apps/v1"
              "kind", text "DaemonSet"
              "metadata", metadata Name (Some options.Namespace)
              "spec",
              Document.Map
                  [ "selector", Document.Map [ "matchLabels", labels ]
                    "updateStrategy",
                    Document.Map [ "type", text "RollingUpdate"; "rollingUpdate", Document.Map [ "maxUnavailable", Document.Number 1L ] ]
                    "template", Document.Map [ "metadata", Document.Map [ "labels", labels ]; "spec", Document.Map podSpec ] ] ]

    let private rule (group: string) (resources: string list) (verbs: string list) =
        Document.Map [ "apiGroups", strings [ group ]; "resources", strings resources; "verbs", strings verbs ]

    let private namedRule (group: string) resources (names: string list) verbs =
        Document.Map
            [ "apiGroups", strings [ group ]
              "resources", strings resources
              "resourceNames", strings names
              "verbs", strings verbs ]

    let private subject (options: ManifestOptions) =
        Document.List [ Document.Map [ "kind", text "ServiceAccount"; "name", text Name; "namespace", text options.Namespace ] ]

    let private binding kind name (ns: string option) roleKind roleName options =
        Document.Map
            [ "apiVersion", text "rbac.authorization.k8s.io/v1"
              "kind", text kind
              "metadata", metadata name ns
              "roleRef", Document.Map [ "apiGroup", text "rbac.authorization.k8s.io"; "kind", text roleKind; "name", text roleName ]
              "subjects", subject options ]

    let private role kind name (ns: string option) rules =
        Document.Map
            [ "apiVersion", text "rbac.authorization.k8s.io/v1"
              "kind", text kind
              "metadata", metadata name ns
              "rules", Document.List rules ]

    /// The cluster-wide rules: what the agent reads everywhere and the reports it writes.
    let clusterRules: Document list =
        [ rule "" [ "services" ] [ "get"; "list"; "watch"; "patch" ]
          rule "" [ "services/status" ] [ "patch" ]
          rule "discovery.k8s.io" [ "endpointslices" ] [ "get"; "list"; "watch" ]
          rule "" [ "nodes" ] [ "get"; "list"; "watch" ]
          rule "events.k8s.io" [ "events" ] [ "create"; "patch" ] ]

    /// Namespace (unless built in), ServiceAccount, the ClusterRole and its binding, the Lease Role in the
    /// agent's namespace, and read access to kube-system/kubevip (address pools).
    let rbac (options: ManifestOptions) : Document list =
        let ns = Some options.Namespace
        [ if not (List.contains options.Namespace BuiltInNamespaces) then
              Document.Map
                  [ "apiVersion", text "v1"
                    "kind", text "Namespace"
                    "metadata",
                    Document.Map
                        [ "name", text options.Namespace
                          // hostNetwork and NET_ADMIN are beyond the baseline Pod Security level.
                          "labels", Document.Map [ "app.kubernetes.io/name", text Name; "pod-security.kubernetes.io/enforce", text "privileged" ] ] ]
          Document.Map [ "apiVersion", text "v1"; "kind", text "ServiceAccount"; "metadata", metadata Name ns ]
          role "ClusterRole" Name None clusterRules
          binding "ClusterRoleBinding" Name None "ClusterRole" Name options
          role "Role" (Name + "-leases") ns [ rule "coordination.k8s.io" [ "leases" ] [ "get"; "list"; "watch"; "create"; "update"; "patch"; "delete" ] ]
          binding "RoleBinding" (Name + "-leases") ns "Role" (Name + "-leases") options
          role "Role" (Name + "-address-pools") (Some AddressPoolNamespace) [ namedRule "" [ "configmaps" ] [ AddressPoolConfigMap ] [ "get"; "list"; "watch" ] ]
          binding "RoleBinding" (Name + "-address-pools") (Some AddressPoolNamespace) "Role" (Name + "-address-pools") options ]

    /// The Secret with the cluster's LAN heartbeat key.
    let secret (options: ManifestOptions) (key: ClusterKey) : Document =
        Document.Map
            [ "apiVersion", text "v1"
              "kind", text "Secret"
              "metadata", metadata SecretName (Some options.Namespace)
              "type", text "Opaque"
              "stringData", Document.Map [ SecretKey, text (ClusterKey.text key) ] ]

    /// The objects of one kind, in the order they should be applied.
    let generate (kind: ManifestKind) (options: ManifestOptions) (key: ClusterKey) : Document list =
        match kind with
        | ManifestKind.DaemonSet -> [ daemonSet options ]
        | ManifestKind.Rbac -> rbac options
        | ManifestKind.Secret -> [ secret options key ]

    /// The flags a kind accepts, with their help, for `hybrid manifest --help`.
    let usage (kind: ManifestKind) : (string * string) list =
        [ for f in ManifestFlags.all do
              if List.contains kind f.Kinds && f.Help <> "" then
                  let syntax = match f.Syntax with FlagSyntax.Switch -> "" | FlagSyntax.Value -> " VALUE"
                  let short = match f.Shorthand with Some c -> "-" + string c + ", " | None -> ""
                  sprintf "%s--%s%s" short f.Name syntax, f.Help ]

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Facade for the C# command
// ════════════════════════════════════════════════════════════════════════════════════════════════════

namespace Hybrid.Facade

open Hybrid.Domain

/// Result of `hybrid manifest`: the objects to print (JSON text each, in order), or every problem found.
type ManifestOutcome =
    | Generated of Objects: string array
    | Rejected of Errors: string array

/// `hybrid manifest KIND ARGS`: pure, given 32 random bytes for a Secret's key.
type Manifests =
    static member Generate(kind: string, arguments: string array, keyBytes: byte array) : ManifestOutcome =
        let errors es = Rejected(es |> List.map ManifestError.describe |> Array.ofList)
        match Manifest.parseKind kind with
        | Error e -> errors [ e ]
        | Ok k ->
            match Manifest.parse k (List.ofArray arguments), ClusterKey.create keyBytes with
            | Ok options, Ok key -> Generated(Manifest.generate k options key |> List.map Document.toJson |> Array.ofList)
            | Error es, _ -> errors es
            | Ok _, Error problem -> Rejected [| problem |]

    /// The process environment the DaemonSet gives the agent beside its configuration (the lab gives it too).
    static member RuntimeEnvironment: System.Collections.Generic.IReadOnlyDictionary<string, string> =
        readOnlyDict Manifest.RuntimeEnvironment

    /// Flag and help rows of one kind ("FLAG", "help"); empty for an unknown kind.
    static member Usage(kind: string) : string array array =
        match Manifest.parseKind kind with
        | Ok k -> [| for flag, help in Manifest.usage k -> [| flag; help |] |]
        | Error _ -> [||]
