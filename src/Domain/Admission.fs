// Services as observed, whether they are ours (type, ignore, class), and the addresses they request.
namespace Hybrid.Domain

open System

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Services and endpoints, as observed
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// namespace/name of a Service.
// Ordinal order by namespace then name, written out: Services key the maps of every plan.
[<CustomEquality; CustomComparison>]
type ServiceKey =
    { Namespace: string
      Name: string }

    override k.ToString() = k.Namespace + "/" + k.Name

    static member private Order(a: ServiceKey, b: ServiceKey) =
        match String.CompareOrdinal(a.Namespace, b.Namespace) with
        | 0 -> String.CompareOrdinal(a.Name, b.Name)
        | c -> c

    override a.Equals(other: obj) =
        match other with
        | :? ServiceKey as b -> String.Equals(a.Namespace, b.Namespace) && String.Equals(a.Name, b.Name)
        | _ -> false

    override a.GetHashCode() = HashCode.Combine(a.Namespace, a.Name)

    interface IEquatable<ServiceKey> with
        member a.Equals(b: ServiceKey | null) =
            match b with
            | null -> false
            | b -> String.Equals(a.Namespace, b.Namespace) && String.Equals(a.Name, b.Name)

    interface IComparable<ServiceKey> with
        member a.CompareTo(b: ServiceKey | null) =
            match b with
            | null -> 1
            | b -> ServiceKey.Order(a, b)

    // Anything that is not a ServiceKey sorts first (a total order, no exception).
    interface IComparable with
        member a.CompareTo(other: obj | null) =
            match other with
            | :? ServiceKey as b -> ServiceKey.Order(a, b)
            | _ -> 1

/// Kubernetes Event type.
type EventType =
    | Normal
    | Warning

/// An Event about a Service.
type ServiceEvent =
    { Service: ServiceKey
      Type: EventType
      Reason: EventReason
      Message: string }

/// A port a Service exposes: protocol (upper case, as Kubernetes spells it) and number.
type ServicePort = { Protocol: string; Port: int }

/// spec.externalTrafficPolicy.
type TrafficPolicy =
    | Cluster
    | Local

/// One status.loadBalancer.ingress entry as found on the Service.
type IngressEntry =
    { Ip: string
      IpMode: string option
      Ports: ServicePort list }

/// A Service as the agent observed it (only the fields that matter to a decision).
type Service =
    { Key: ServiceKey
      Uid: string
      /// creationTimestamp in Unix seconds; with namespace/name it orders services for port sharing.
      CreatedAt: int64
      Type: string
      Class: string option
      Annotations: Map<string, string>
      LoadBalancerIP: string option
      Ports: ServicePort list
      Policy: TrafficPolicy
      Selector: Map<string, string>
      Ingress: IngressEntry list
      /// When this node observed the current version of the object.
      ChangedSeenAt: Instant }

/// EndpointSlice conditions; absent values keep their API meaning (see Eligibility).
type EndpointConditions =
    { Ready: bool option
      Serving: bool option
      Terminating: bool option }

/// One endpoint of an EndpointSlice.
type Endpoint =
    { NodeName: string option
      Conditions: EndpointConditions }

/// An EndpointSlice, attributed to its Service through the kubernetes.io/service-name label.
type EndpointSlice =
    { Service: ServiceKey
      Endpoints: Endpoint list }

/// The kube-vip annotations Hybrid reads and writes.
[<RequireQualifiedAccess>]
module Annotations =
    let LoadBalancerIPs = "kube-vip.io/loadbalancerIPs"
    let Ignore = "kube-vip.io/ignore"
    let RequestedIP = "kube-vip.io/requestedIP"
    let VipHost = "kube-vip.io/vipHost"
    let AllowWithoutEndpoints = "kube-vip.io/allow-reconcile-without-endpoints"
    let LoadBalancerHostname = "kube-vip.io/loadbalancerHostname"
    let ForwardUpnp = "kube-vip.io/forwardUPNP"
    let UpnpLeaseDuration = "kube-vip.io/upnp-lease-duration"
    let HwAddr = "kube-vip.io/hwaddr"
    /// Hybrid's own: the name of the macvlan a DHCP Service leases on (default vip-<first 8 hex of the UID>).
    let MacvlanName = "kube-vip.io/macvlanName"
    /// The interface a pool names for its Services (interface-<namespace>), written with an assignment.
    let ServiceInterface = "kube-vip.io/serviceInterface"

    /// The prefix of every annotation above (and of Hybrid's own, hybrid.kube-vip.io/...).
    let Prefix = "kube-vip.io/"

    /// Whether an annotation can matter to a decision: the agent keeps only these of each Service, so that
    /// large annotations (kubectl's last-applied-configuration) cost no memory on every node.
    let isRead (key: string) =
        key.StartsWith(Prefix, System.StringComparison.Ordinal)
        || key.StartsWith("hybrid." + Prefix, System.StringComparison.Ordinal)

    let isTrue (service: Service) key =
        match service.Annotations |> Map.tryFind key with
        | Some v -> v.Trim().ToLowerInvariant() = "true"
        | None -> false

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Admission: is this Service ours, and what address does it want?
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Why a Service is not announced.
type SkipReason =
    /// spec.type is not LoadBalancer: not ours.
    | NotLoadBalancer of serviceType: string
    /// kube-vip.io/ignore: "true": not ours.
    | IgnoredByAnnotation
    /// spec.loadBalancerClass does not select this agent: not ours (another load balancer's service).
    | ClassMismatch of actual: string option * expected: string
    /// The requested address cannot be used; carries the offending text.
    | InvalidAddress of text: string * problem: string
    /// An earlier Service on the same IP exposes the same protocol and port.
    | PortConflict of earlier: ServiceKey * port: ServicePort * ip: Ip
    /// An earlier Service on the same IP has the other externalTrafficPolicy (they could not share a node set).
    | PolicyConflict of earlier: ServiceKey * ip: Ip
    /// An earlier Local Service on the same IP selects other pods (so other nodes would be eligible).
    | SelectorConflict of earlier: ServiceKey * ip: Ip

/// Whether a skipped Service is this agent's business (and so deserves a Warning Event) or not.
type SkipAudience =
    | Ours of EventReason
    | NotOurs

[<RequireQualifiedAccess>]
module SkipReason =
    /// Longest offending text quoted whole in a description. An Event's note may hold at most 1024 bytes
    /// (kube-apiserver refuses longer ones), and an annotation can hold 256 kB of anything.
    let QuotedTextLimit = 100

    let private quoted (text: string) =
        if text.Length <= QuotedTextLimit then Text.quote text
        else
            // Never cut a surrogate pair in half.
            let cut = if Char.IsHighSurrogate text[QuotedTextLimit - 1] then QuotedTextLimit - 1 else QuotedTextLimit
            sprintf "%s… (%s characters)" (Text.quote (text.Substring(0, cut))) (string text.Length)

    /// The stable Event reason of a skip, or NotOurs when the Service belongs to someone else.
    let audience reason =
        match reason with
        | NotLoadBalancer _ | IgnoredByAnnotation | ClassMismatch _ -> NotOurs
        | InvalidAddress _ -> Ours EventReason.InvalidAddress
        | PortConflict _ -> Ours EventReason.PortConflict
        | PolicyConflict _ -> Ours EventReason.PolicyConflict
        | SelectorConflict _ -> Ours EventReason.SelectorConflict

    let private sentence reason =
        match reason with
        | NotLoadBalancer t -> sprintf "type %s is not LoadBalancer" (if t = "" then "ClusterIP" else t)
        | IgnoredByAnnotation -> sprintf "annotated %s: \"true\"" Annotations.Ignore
        | ClassMismatch(None, expected) -> sprintf "no loadBalancerClass, and only class %s is handled" (Text.quote expected)
        | ClassMismatch(Some actual, expected) ->
            sprintf "loadBalancerClass %s is not this agent's (%s)" (Text.quote actual) (Text.quote expected)
        | InvalidAddress(text, problem) -> sprintf "address %s is invalid: %s" (quoted text) problem
        | PortConflict(earlier, port, ip) ->
            sprintf "port %s/%s on %s is already used by %s" (string port.Port) port.Protocol (Ip.format ip) (string earlier)
        | PolicyConflict(earlier, ip) ->
            sprintf "%s is shared with %s, which has the other externalTrafficPolicy" (Ip.format ip) (string earlier)
        | SelectorConflict(earlier, ip) ->
            sprintf "%s is shared with %s, a Local service selecting other pods" (Ip.format ip) (string earlier)

    /// The reason as a sentence. It is also the Warning Event's message, so it fits an Event's note and
    /// quotes only a bounded part of the offending text (an annotation may hold 256 KiB).
    let describe reason = EventText.note (sentence reason)

/// Whether the agent acts on a Service at all (type, ignore annotation, load-balancer class).
type Interest =
    | Interested
    | NotInterested of SkipReason

[<RequireQualifiedAccess>]
module Admission =
    /// The class filter, exactly as kube-vip's services watcher applies it.
    /// Legacy (default): a class, when set, must equal lb_class_name; with lb_class_only a class is required.
    /// Strict (lb_class_legacy_handling=false): the class must equal lb_class_name, where an empty
    /// lb_class_name means "no class".
    let classFilter (config: Config) (serviceClass: string option) : Interest =
        let mismatch = NotInterested(ClassMismatch(serviceClass, config.ClassName))
        if config.ClassLegacyHandling then
            match serviceClass with
            | Some c when c <> config.ClassName -> mismatch
            | None when config.ClassOnly -> mismatch
            | _ -> Interested
        else
            match serviceClass with
            | None when config.ClassName = "" -> Interested
            | Some c when c = config.ClassName -> Interested
            | _ -> mismatch

    let interest (config: Config) (service: Service) : Interest =
        if service.Type <> "LoadBalancer" then NotInterested(NotLoadBalancer service.Type)
        elif Annotations.isTrue service Annotations.Ignore then NotInterested IgnoredByAnnotation
        else classFilter config service.Class

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Addresses
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// One requested address of a Service.
type AddressRequest =
    /// A fixed VIP.
    | Static of Ip
    /// 0.0.0.0 or ::: the LAN's DHCP server chooses; `Leased` is the address obtained so far, if any.
    | Dhcp of family: IpFamily * leased: Ip option

/// What a Service asks for.
type AddressOutcome =
    /// Neither kube-vip.io/loadbalancerIPs nor spec.loadBalancerIP is set yet (an IPAM has not run).
    | NoAddressYet
    /// One request per family, IPv4 first.
    | Requested of AddressRequest list
    | Unusable of text: string * problem: string

[<RequireQualifiedAccess>]
module Addresses =
    let private blank (s: string) = String.IsNullOrWhiteSpace s

    /// The first usable address of a family in a comma list (for DHCP leases recorded by an agent).
    let private firstOfFamily family (texts: string seq) =
        texts
        |> Seq.choose (fun t -> Ip.tryParse (t.Trim()))
        |> Seq.tryFind (fun ip -> Ip.family ip = family && (Ip.unusable ip).IsNone)

    /// The address already leased for a DHCP request: kube-vip.io/requestedIP, else status ingress.
    let private leased (service: Service) family =
        let recorded =
            match service.Annotations |> Map.tryFind Annotations.RequestedIP with
            | Some v -> firstOfFamily family (v.Split ',')
            | None -> None
        // Not an ipMode Proxy entry: that is a gateway's public address (UPnP), never a lease of ours.
        let ingress = service.Ingress |> List.filter (fun i -> i.IpMode <> Some "Proxy") |> List.map _.Ip
        recorded |> Option.orElse (firstOfFamily family ingress)

    /// kube-vip.io/loadbalancerIPs (comma-separated) wins over spec.loadBalancerIP. Whitespace and empty
    /// items are tolerated, duplicates collapse, at most one address per family; 0.0.0.0 and :: ask DHCP.
    let requested (service: Service) : AddressOutcome =
        let source =
            match service.Annotations |> Map.tryFind Annotations.LoadBalancerIPs with
            | Some v when not (blank v) -> Some v
            | _ -> service.LoadBalancerIP |> Option.filter (blank >> not)
        match source with
        | None -> NoAddressYet
        | Some text ->
            let items = text.Split ',' |> Array.map _.Trim() |> Array.filter (blank >> not) |> List.ofArray
            let parsed =
                items
                |> List.map (fun item ->
                    match Ip.tryParse item with
                    | None ->
                        let problem =
                            match item.Split '/' with
                            | [| address; _ |] when (Ip.tryParse address).IsSome -> "a CIDR, not an address"
                            | _ -> "not an IPv4 or IPv6 address"
                        Error(item, problem)
                    | Some ip ->
                        match Ip.unusable ip with
                        | None -> Ok(Static ip)
                        | Some Unspecified -> Ok(Dhcp(Ip.family ip, None))
                        | Some reason -> Error(item, UnusableAddress.describe reason + ", not usable as a VIP"))
            match parsed |> List.tryPick (function Error e -> Some e | Ok _ -> None) with
            | Some(item, problem) -> Unusable(item, problem)
            | None ->
                let requests = parsed |> List.choose (function Ok r -> Some r | Error _ -> None) |> List.distinct
                let familyOf r =
                    match r with
                    | Static ip -> Ip.family ip
                    | Dhcp(f, _) -> f
                let byFamily = requests |> List.groupBy familyOf
                match byFamily |> List.tryFind (fun (_, rs) -> rs.Length > 1) with
                | Some(family, _) ->
                    let what = if family = IPv4 then "IPv4" else "IPv6"
                    Unusable(text.Trim(), sprintf "more than one %s address (at most one per family)" what)
                | None ->
                    requests
                    |> List.sortBy familyOf
                    |> List.map (fun r ->
                        match r with
                        | Dhcp(f, _) -> Dhcp(f, leased service f)
                        | s -> s)
                    |> Requested

    /// The addresses to advertise now: the static ones and the DHCP leases already obtained.
    let advertised (requests: AddressRequest list) : Ip list =
        requests
        |> List.choose (fun r ->
            match r with
            | Static ip -> Some ip
            | Dhcp(_, leased) -> leased)
