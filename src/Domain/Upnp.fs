// UPnP port forwarding: which mappings this node wants on the Internet gateway, and the calls that get them
// there and keep them there. `Upnp.decide` says what must happen now; `Upnp.evolve` folds in what happened.
namespace Hybrid.Domain

open System

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Values: protocols, leases, gateways, jitter
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// The transport protocol of a port mapping (an IGD maps TCP and UDP only).
type MappingProtocol =
    | Tcp
    | Udp

/// A lease length in whole seconds, 1 to 604,800 (IGD v2's maximum, one week).
type LeaseSeconds =
    private
    | LeaseSeconds of int

    member s.Value = let (LeaseSeconds v) = s in v

/// How long the gateway keeps a mapping.
type MappingLease =
    | Lasting of LeaseSeconds
    /// Lease 0: until deleted (what gateways that answer 725 OnlyPermanentLeasesSupported require).
    | Permanent

/// One WAN connection service of an Internet Gateway Device: UDN of its device plus service type, so that it
/// keeps its identity when the gateway restarts on another HTTP port.
type GatewayId =
    | GatewayId of string

    override g.ToString() = let (GatewayId s) = g in s

/// A gateway as discovered. The domain compares the control URL (to notice a gateway that moved) but never
/// interprets it.
type Gateway =
    { Id: GatewayId
      ControlUrl: string
      /// urn:schemas-upnp-org:service:WANIPConnection:2, …:1 or WANPPPConnection:1.
      ServiceType: string }

/// A random fraction in [0, 1) in thousandths, supplied by the shell with each failure (the domain has no
/// randomness): it spreads the retries of many nodes.
type Jitter =
    private
    | Jitter of perMille: int

    member j.PerMille = let (Jitter v) = j in v

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Call outcomes and why a call failed
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// How a call to the gateway failed, as the shell saw it.
type CallFailure =
    /// A SOAP fault carrying a UPnPError (errorCode, errorDescription).
    | SoapFault of code: int * description: string
    /// An HTTP error status without a UPnPError body.
    | HttpStatus of status: int
    /// No answer: connection refused or reset, timeout, no route, source address not on this host.
    | Unreachable of detail: string
    /// An answer that is not what the protocol says.
    | Malformed of detail: string

/// Why the gateway did not do what was asked, classified for decisions and Events.
type FailureReason =
    /// 718: the external port is mapped to another internal client, or the gateway lets a host map only to
    /// itself (miniupnpd's secure_mode).
    | ConflictInMappingEntry
    /// 725: the gateway only accepts lease 0 (permanent).
    | OnlyPermanentLeasesSupported
    /// 606, or HTTP 401/403: the gateway refuses this caller (secure mode, or UPnP writes disabled).
    | NotAuthorized
    /// 714: no such mapping.
    | NoSuchEntry
    /// 501: the gateway could not do it; miniupnpd says this when its WAN address is private or reserved.
    | ActionFailed
    /// 728: the gateway's mapping table is full.
    | NoPortMapsAvailable
    /// 729: the port is used by another mechanism on the gateway (its own service, a static forward).
    | ConflictWithOtherMechanisms
    /// 401: the gateway does not implement the action.
    | InvalidAction
    /// Any other UPnP error, or an HTTP error status.
    | GatewayRefused of code: int * description: string
    /// The gateway did not answer; it may have moved (a new discovery follows).
    | GatewayUnreachable of detail: string
    /// The gateway answered something unreadable.
    | InvalidResponse of detail: string

/// What the shell reports back after executing a command.
type UpnpOutcome =
    /// Gateways that answered a search (possibly none).
    | Discovered of Gateway list
    /// The search itself failed (no such interface, socket error).
    | DiscoveryFailed of detail: string
    /// GetExternalIPAddress answered; None when the address is empty or not an IPv4 address.
    | ExternalAddressRead of GatewayId * Ip option
    | ExternalAddressFailed of GatewayId * CallFailure
    | Added of MappingKey
    | AddFailed of MappingKey * CallFailure
    | Deleted of MappingKey
    | DeleteFailed of MappingKey * CallFailure

/// A port mapping's identity on a gateway: what AddPortMapping overwrites and DeletePortMapping removes.
and MappingKey =
    { Gateway: GatewayId
      Protocol: MappingProtocol
      ExternalPort: int }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// What the cluster wants
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// A Service that might be forwarded: the Service, its advertised addresses, and whether this node holds
/// its group (only the holder maps; every node sees every candidate, so that all decide conflicts alike).
type ForwardCandidate =
    { Service: Service
      Addresses: Ip list
      HeldHere: bool }

/// What one Service asks of every gateway: each port mapped from the gateway's external address, same port
/// number, to the Service's IPv4 VIP.
type ServiceForward =
    { Service: ServiceKey
      Client: Ip
      Ports: (MappingProtocol * int) list
      Lease: MappingLease
      Description: string
      HeldHere: bool }

/// Why a Service is not (fully) forwarded. Reported only by the node holding the Service's group.
type ForwardProblem =
    /// kube-vip.io/forwardUPNP is set but the agent runs without enable_upnp.
    | UpnpDisabled
    /// kube-vip.io/forwardUPNP is not a boolean.
    | InvalidForwardAnnotation of text: string
    /// kube-vip.io/upnp-lease-duration cannot be used; the default lease applies.
    | InvalidLeaseDuration of text: string * problem: string
    /// UPnP port mappings are IPv4 NAT; the Service has no IPv4 VIP (IPv6 pinholes are not implemented).
    | NoIpv4Address
    /// A port whose protocol an IGD cannot map (SCTP).
    | UnsupportedProtocol of port: ServicePort
    /// An older Service wants the same external port and protocol (one gateway address has one port 80).
    | PortTaken of port: ServicePort * earlier: ServiceKey
    /// No gateway has answered a search yet; the search goes on.
    | NoGatewayFound
    /// The gateway refused or did not answer; the call is retried.
    | MappingFailed of gateway: GatewayId * port: ServicePort * reason: FailureReason

/// The forwards of every candidate, and the problems of the Services this node holds.
type Wants =
    { Enabled: bool
      Forwards: ServiceForward list
      Problems: (ServiceKey * ForwardProblem) list }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// What this node knows and does
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// One mapping as this node sends it.
type Mapping =
    { Key: MappingKey
      Client: Ip
      InternalPort: int
      Description: string
      Lease: MappingLease
      Service: ServiceKey }

/// Where a mapping this node is responsible for stands.
type MappingPhase =
    /// AddPortMapping in flight; `failures` so far (for the backoff) and why the last one failed (a retry is
    /// still failing, as far as anyone knows, until it succeeds).
    | Adding of failures: int * lastFailure: FailureReason option
    | Mapped of at: Instant
    /// The gateway may have lost it (it moved or restarted): add again now.
    | Unconfirmed
    /// The last add failed; try again at `retryAt`.
    | AddRetry of reason: FailureReason * failures: int * retryAt: Instant
    /// DeletePortMapping in flight; the delete was first wanted at `since`.
    | Deleting of failures: int * since: Instant
    | DeleteRetry of reason: FailureReason * failures: int * since: Instant * retryAt: Instant

type MappingState = { Mapping: Mapping; Phase: MappingPhase }

/// The gateway's external address as last read.
type ExternalAddress =
    | Unread
    | Reading of failures: int
    | Read of ip: Ip * at: Instant
    | ReadRetry of failures: int * retryAt: Instant

type GatewayState =
    { Gateway: Gateway
      External: ExternalAddress
      /// The gateway answered 725: every mapping on it uses lease 0.
      PermanentOnly: bool }

/// The search for gateways (SSDP M-SEARCH on the VIP interface).
type Discovery =
    /// Search at `dueAt`; `failures` = searches in a row that found nothing.
    | Idle of failures: int * dueAt: Instant
    | Searching of failures: int

type UpnpState =
    { Discovery: Discovery
      Gateways: Map<GatewayId, GatewayState>
      Mappings: Map<MappingKey, MappingState> }

/// A call for the shell to make. Each command's outcome is folded back with `Upnp.evolve`.
type UpnpCommand =
    | Discover
    | ReadExternalAddress of Gateway
    /// AddPortMapping, sent from the mapping's client address (the VIP): gateways in secure mode accept a
    /// mapping only to the caller.
    | AddMapping of Gateway * Mapping
    /// DeletePortMapping, sent from `source` when it is Some (the VIP, still on this node) or from any address.
    | DeleteMapping of Gateway * MappingKey * source: Ip option

/// What the forwarder tells the node's protocol after each change: the gateways' external addresses on which
/// each Service has a port mapped now (for its status), and the problems only the gateway revealed.
type ForwardingReport =
    { External: Map<ServiceKey, Ip list>
      Problems: Set<ServiceKey * ForwardProblem>
      /// The VIPs of every mapping this node still has on a gateway (deleting included, for at most
      /// DeleteFromVipGrace): a VIP no Service wants any more stays on the node while it is listed, so that the
      /// delete is sent from it (gateways in secure mode delete a mapping only at its client's request).
      Sources: Set<Ip> }

type UpnpDecision =
    { Commands: UpnpCommand list
      /// The state with the commands' calls marked in flight: keep it, then fold each outcome into it.
      State: UpnpState
      /// When to decide again if nothing else happens.
      NextWakeAt: Instant option
      /// Problems of the Services this node holds, for Warning Events.
      Problems: (ServiceKey * ForwardProblem) list }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Rules
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<RequireQualifiedAccess>]
module LeaseSeconds =
    /// IGD v2: a lease is 1 to 604,800 s; 0 means permanent.
    let Max = 604_800

    let tryCreate (seconds: int) = if seconds >= 1 && seconds <= Max then Some(LeaseSeconds seconds) else None

[<RequireQualifiedAccess>]
module Jitter =
    let none = Jitter 0

    /// From a fraction in [0, 1) (anything outside is clamped).
    let ofFraction (f: float) =
        if Double.IsNaN f then Jitter 0 else Jitter(int (Math.Clamp(f, 0.0, 0.999) * 1000.0))

[<RequireQualifiedAccess>]
module MappingProtocol =
    let ofServicePort (port: ServicePort) =
        match port.Protocol with
        | "TCP" -> Some Tcp
        | "UDP" -> Some Udp
        | _ -> None

    /// As the NewProtocol argument spells it.
    let name protocol =
        match protocol with
        | Tcp -> "TCP"
        | Udp -> "UDP"

/// Go's time.ParseDuration, which kube-vip uses for kube-vip.io/upnp-lease-duration: a sequence of decimal
/// numbers, each with a unit (ns, us, µs, ms, s, m, h), optionally signed: "90s", "1h30m", "1.5h", "0".
[<RequireQualifiedAccess>]
module GoDuration =
    let private unitNanos =
        [ "ns", 1m; "us", 1_000m; "\u00b5s", 1_000m; "\u03bcs", 1_000m; "ms", 1_000_000m; "s", 1_000_000_000m
          "m", 60_000_000_000m; "h", 3_600_000_000_000m ]
        |> Map.ofList

    let private maxNanos = decimal Int64.MaxValue

    /// Nanoseconds, or why the text is not a duration.
    let parse (text: string) : Result<int64, string> =
        let negative = text.StartsWith "-"
        let body = if text.StartsWith "-" || text.StartsWith "+" then text.Substring 1 else text
        let isDigit c = c >= '0' && c <= '9'
        let rec components (s: string) (total: decimal) =
            if s = "" then Ok total
            elif not (s[0] = '.' || isDigit s[0]) then Error "not a duration such as 30s, 90m or 1h"
            else
                let whole = s |> Seq.takeWhile isDigit |> Seq.length
                let afterWhole = s.Substring whole
                let fraction = if afterWhole.StartsWith "." then afterWhole.Substring 1 |> Seq.takeWhile isDigit |> Seq.length else 0
                let numberLength = whole + (if afterWhole.StartsWith "." then 1 + fraction else 0)
                let rest = s.Substring numberLength
                let unitLength = rest |> Seq.takeWhile (fun c -> c <> '.' && not (isDigit c)) |> Seq.length
                let unitText = rest.Substring(0, unitLength)
                if whole = 0 && fraction = 0 then Error "not a duration such as 30s, 90m or 1h"
                elif whole > 20 || fraction > 20 then Error "out of range"
                elif unitText = "" then Error "missing unit (ns, us, ms, s, m or h)"
                else
                    match unitNanos.TryFind unitText with
                    | None -> Error(sprintf "unknown unit %s (use ns, us, ms, s, m or h)" (Text.quote unitText))
                    | Some nanos ->
                        let wholePart = if whole = 0 then 0m else Decimal.Parse(s.Substring(0, whole), Globalization.CultureInfo.InvariantCulture)
                        let fractionPart =
                            if fraction = 0 then 0m
                            else Decimal.Parse("0." + s.Substring(whole + 1, fraction), Globalization.CultureInfo.InvariantCulture)
                        // Checked before multiplying: 20 digits of hours would overflow even a decimal.
                        if wholePart > maxNanos / nanos then Error "out of range"
                        else
                            let sum = total + wholePart * nanos + Decimal.Truncate(fractionPart * nanos)
                            if sum > maxNanos then Error "out of range" else components (rest.Substring unitLength) sum
        if body = "0" then Ok 0L
        elif body = "" then Error "not a duration such as 30s, 90m or 1h"
        else
            components body 0m
            |> Result.map (fun total -> if negative then -(int64 total) else int64 total)

[<RequireQualifiedAccess>]
module FailureReason =
    /// The UPnP error codes (UPnP Device Architecture, WANIPConnection:2) and HTTP statuses, classified.
    let ofFailure (failure: CallFailure) : FailureReason =
        match failure with
        | SoapFault(718, _) -> ConflictInMappingEntry
        | SoapFault(725, _) -> OnlyPermanentLeasesSupported
        | SoapFault(606, _) -> NotAuthorized
        | SoapFault(714, _) -> NoSuchEntry
        | SoapFault(501, _) -> ActionFailed
        | SoapFault(728, _) -> NoPortMapsAvailable
        | SoapFault(729, _) -> ConflictWithOtherMechanisms
        | SoapFault(401, _) -> InvalidAction
        | SoapFault(code, description) -> GatewayRefused(code, description)
        | HttpStatus(401 | 403) -> NotAuthorized
        | HttpStatus status -> GatewayRefused(status, "HTTP status " + string status)
        | Unreachable detail -> GatewayUnreachable detail
        | Malformed detail -> InvalidResponse detail

    /// Whether the gateway may have done it even though the call failed (no answer, or no readable one).
    let outcomeUnknown reason =
        match reason with
        | GatewayUnreachable _ | InvalidResponse _ -> true
        | _ -> false

    let describe reason =
        match reason with
        | ConflictInMappingEntry ->
            "the gateway answered 718 ConflictInMappingEntry: the port is mapped to another host, or the gateway only lets a host map ports to itself"
        | OnlyPermanentLeasesSupported -> "the gateway answered 725 OnlyPermanentLeasesSupported"
        | NotAuthorized -> "the gateway refused this node (606 Action not authorized): UPnP may be read-only or in secure mode"
        | NoSuchEntry -> "the gateway has no such mapping (714)"
        | ActionFailed ->
            "the gateway answered 501 ActionFailed: it may have no public WAN address (miniupnpd refuses to map behind another NAT)"
        | NoPortMapsAvailable -> "the gateway's mapping table is full (728)"
        | ConflictWithOtherMechanisms -> "the gateway uses this port itself or forwards it by another mechanism (729)"
        | InvalidAction -> "the gateway does not implement this action (401)"
        | GatewayRefused(code, description) -> sprintf "the gateway answered %s %s" (string code) description
        | GatewayUnreachable detail -> sprintf "the gateway did not answer (%s)" detail
        | InvalidResponse detail -> sprintf "the gateway's answer was unreadable (%s)" detail

[<RequireQualifiedAccess>]
module ForwardProblem =
    let private portText (port: ServicePort) = string port.Port + "/" + port.Protocol

    /// The stable Event reason.
    let reason problem =
        match problem with
        | UpnpDisabled -> EventReason.UPnPDisabled
        | InvalidForwardAnnotation _ | InvalidLeaseDuration _ -> EventReason.UPnPInvalidAnnotation
        | NoIpv4Address -> EventReason.UPnPNoIPv4Address
        | UnsupportedProtocol _ -> EventReason.UPnPUnsupportedProtocol
        | PortTaken _ -> EventReason.UPnPPortTaken
        | NoGatewayFound -> EventReason.UPnPNoGateway
        | MappingFailed(_, _, ConflictInMappingEntry) -> EventReason.UPnPConflict
        | MappingFailed(_, _, NotAuthorized) -> EventReason.UPnPNotAuthorized
        | MappingFailed(_, _, GatewayUnreachable _) -> EventReason.UPnPGatewayUnreachable
        | MappingFailed _ -> EventReason.UPnPMappingFailed

    /// The Event's `reason` field.
    let eventReason problem = EventReason.name (reason problem)

    /// Problems that only calling the gateway reveals (the rest follow from the Services alone).
    let isRuntime problem =
        match problem with
        | NoGatewayFound | MappingFailed _ -> true
        | _ -> false

    /// The Event message.
    let describe problem =
        match problem with
        | UpnpDisabled -> sprintf "%s is set but this agent runs without enable_upnp=true: not forwarded" Annotations.ForwardUpnp
        | InvalidForwardAnnotation text -> sprintf "%s=%s is not a boolean (use \"true\"): not forwarded" Annotations.ForwardUpnp (Text.quote text)
        | InvalidLeaseDuration(text, problem) ->
            sprintf "%s=%s: %s; the default of 1h applies" Annotations.UpnpLeaseDuration (Text.quote text) problem
        | NoIpv4Address -> "UPnP port mappings need an IPv4 VIP, and this Service has none: not forwarded"
        | UnsupportedProtocol port -> sprintf "port %s cannot be forwarded: UPnP maps only TCP and UDP" (portText port)
        | PortTaken(port, earlier) ->
            sprintf "port %s is forwarded for %s, which is older: a gateway has one external port %s per protocol" (portText port) (string earlier) (string port.Port)
        | NoGatewayFound -> "no UPnP Internet gateway has answered on the VIP interface yet; still searching"
        | MappingFailed(gateway, port, reason) ->
            sprintf "forwarding port %s on gateway %s failed: %s; retrying" (portText port) (string gateway) (FailureReason.describe reason)

[<RequireQualifiedAccess>]
module Upnp =
    // ── Constants ─────────────────────────────────────────────────────────────────────────────────────

    /// kube-vip's default lease: one hour.
    let DefaultLease = Lasting(LeaseSeconds 3600)

    /// A permanent mapping is sent again this often: a gateway that restarted forgets it, and IGD v2
    /// gateways (miniupnpd among them) turn lease 0 into their maximum of one week.
    let PermanentReassertEvery: Duration = 30L * 60_000L

    /// A search that found gateways is repeated this often, to notice a gateway that moved or appeared.
    let RediscoverEvery: Duration = 5L * 60_000L

    /// The external address is read again this often (it changes when the ISP renumbers).
    let ExternalAddressRecheckEvery: Duration = 5L * 60_000L

    /// Retries of searches and calls: the first after ~1 s, doubling, at most this far apart.
    let RetryBase: Duration = 1000L
    let DiscoveryRetryCap: Duration = 60_000L
    let CallRetryCap: Duration = 5L * 60_000L
    /// How long a VIP no Service wants any more stays on its node for the delete of its mappings.
    let DeleteFromVipGrace: Duration = 5000L

    /// A delete of a permanent mapping that keeps failing is given up after this long (a timed one when its
    /// lease has run out: then the gateway has removed it itself).
    let PermanentDeleteGiveUpAfter: Duration = 60L * 60_000L

    /// How long one SOAP call or description fetch may take before it counts as no answer.
    let CallTimeout: Duration = 5000L

    /// How long a search listens for answers. M-SEARCH asks with MX = 1 (answer within a second), and the
    /// request is sent twice, 250 ms apart, against a lost datagram.
    let SearchListen: Duration = 1500L
    let SearchMx = 1
    let SearchRepeatGap: Duration = 250L

    /// Longest mapping description sent (gateways keep short descriptions; miniupnpd truncates to 64 bytes).
    let DescriptionLimit = 60

    // ── Time rules ────────────────────────────────────────────────────────────────────────────────────

    /// Equal-jitter exponential backoff: after `failures` (≥ 1) failures in a row, a delay between half and
    /// all of min(cap, base · 2^(failures−1)).
    let backoff (cap: Duration) (failures: int) (jitter: Jitter) : Duration =
        let exponent = Math.Clamp(failures - 1, 0, 30)
        let full = min cap (RetryBase <<< exponent)
        full / 2L + full / 2L * int64 jitter.PerMille / 1000L

    let private leaseLength lease : Duration option =
        match lease with
        | Lasting s -> Some(int64 s.Value * 1000L)
        | Permanent -> None

    /// When a mapping made at `mappedAt` is sent again: half-way through its lease (so that a failed refresh
    /// has the other half for retries before the gateway drops it), or every PermanentReassertEvery.
    let refreshAt (lease: MappingLease) (mappedAt: Instant) : Instant =
        match leaseLength lease with
        | Some length -> mappedAt + length / 2L
        | None -> mappedAt + PermanentReassertEvery

    /// When a failing delete stops mattering: the lease it would end has run out.
    let deleteGiveUpAt (lease: MappingLease) (since: Instant) : Instant =
        since + defaultArg (leaseLength lease) PermanentDeleteGiveUpAfter

    // ── Wants: which Services want which mappings ───────────────────────────────────────────────────────

    /// kube-vip.io/upnp-lease-duration: Go duration syntax as in kube-vip; 0 = permanent; fractions of a
    /// second are cut off; longer than IGD v2's week is cut to a week. Invalid → the default, with a problem.
    let leaseOf (service: Service) : MappingLease * ForwardProblem option =
        match service.Annotations.TryFind Annotations.UpnpLeaseDuration with
        | None -> DefaultLease, None
        | Some text ->
            let invalid problem = DefaultLease, Some(InvalidLeaseDuration(text, problem))
            match GoDuration.parse text with
            | Error _ when text = "" -> invalid "empty"
            | Error problem -> invalid problem
            | Ok nanos when nanos < 0L -> invalid "negative"
            | Ok 0L -> Permanent, None
            | Ok nanos when nanos < 1_000_000_000L ->
                invalid "shorter than one second (UPnP leases are whole seconds; 0 asks for a permanent mapping)"
            | Ok nanos ->
                let seconds = min (int64 LeaseSeconds.Max) (nanos / 1_000_000_000L)
                Lasting(LeaseSeconds(int seconds)), None

    /// Whether the Service asks for forwarding: kube-vip.io/forwardUPNP in Go's boolean spellings.
    let requested (service: Service) : Result<bool, ForwardProblem> =
        match service.Annotations.TryFind Annotations.ForwardUpnp with
        | None -> Ok false
        | Some text ->
            match Config.parseBool text with
            | Some b -> Ok b
            | None -> Error(InvalidForwardAnnotation text)

    let description (key: ServiceKey) =
        let text = "hybrid " + string key
        if text.Length <= DescriptionLimit then text else text.Substring(0, DescriptionLimit)

    /// One Service's forward before conflicts are resolved, with its own problems.
    let private forwardOf (candidate: ForwardCandidate) : (ServiceForward option * ForwardProblem list) =
        let service = candidate.Service
        let lease, leaseProblem = leaseOf service
        match candidate.Addresses |> List.tryFind (fun ip -> Ip.family ip = IPv4) with
        | None -> None, [ NoIpv4Address ]
        | Some vip ->
            let mappable, unsupported =
                service.Ports |> List.partition (fun p -> (MappingProtocol.ofServicePort p).IsSome)
            let forward =
                { Service = service.Key
                  Client = vip
                  Ports = mappable |> List.map (fun p -> (MappingProtocol.ofServicePort p).Value, p.Port) |> List.distinct
                  Lease = lease
                  Description = description service.Key
                  HeldHere = candidate.HeldHere }
            Some forward, (Option.toList leaseProblem @ (unsupported |> List.map UnsupportedProtocol))

    /// Every Service's forward and the problems of those held here. With enable_upnp off nothing is
    /// forwarded, and an annotated Service held here says so. Two Services wanting one external port and
    /// protocol: the older keeps it (creationTimestamp, then namespace/name, as port sharing), per port.
    let wants (config: Config) (candidates: ForwardCandidate list) : Wants =
        let asking =
            candidates
            |> List.choose (fun c ->
                match requested c.Service with
                | Ok false -> None
                | Ok true -> Some(c, None)
                | Error problem -> Some(c, Some problem))
        if not config.Upnp then
            { Enabled = false
              Forwards = []
              Problems =
                asking
                |> List.filter (fun (c, invalid) -> c.HeldHere && invalid.IsNone)
                |> List.map (fun (c, _) -> c.Service.Key, UpnpDisabled) }
        else
            let ordered =
                asking |> List.sortWith (fun (a, _) (b, _) -> Sharing.compareOrder a.Service b.Service)
            let taken = Collections.Generic.Dictionary<MappingProtocol * int, ServiceKey>()
            let resolved =
                ordered
                |> List.map (fun (c, invalid) ->
                    match invalid with
                    | Some problem -> c, None, [ problem ]
                    | None ->
                        match forwardOf c with
                        | None, problems -> c, None, problems
                        | Some forward, problems ->
                            let kept, lost =
                                forward.Ports
                                |> List.partition (fun port ->
                                    match taken.TryGetValue port with
                                    | true, earlier -> earlier = forward.Service
                                    | _ ->
                                        taken[port] <- forward.Service
                                        true)
                            let lostProblems =
                                lost
                                |> List.map (fun (protocol, number) ->
                                    PortTaken({ Protocol = MappingProtocol.name protocol; Port = number }, taken[(protocol, number)]))
                            c, Some { forward with Ports = kept }, problems @ lostProblems)
            { Enabled = true
              Forwards = resolved |> List.choose (fun (_, f, _) -> f) |> List.filter (fun f -> not f.Ports.IsEmpty)
              Problems =
                resolved
                |> List.filter (fun (c, _, _) -> c.HeldHere)
                |> List.collect (fun (c, _, problems) -> problems |> List.map (fun p -> c.Service.Key, p)) }

    // ── State ───────────────────────────────────────────────────────────────────────────────────────────

    /// Nothing known yet: search at once.
    let initial: UpnpState = { Discovery = Idle(0, Int64.MinValue); Gateways = Map.empty; Mappings = Map.empty }

    /// The mappings this node should hold now: every port of every forward held here, on every gateway.
    let wantedMappings (wants: Wants) (state: UpnpState) : Map<MappingKey, Mapping> =
        [ for forward in wants.Forwards do
              if forward.HeldHere then
                  for KeyValue(id, gateway) in state.Gateways do
                      for protocol, port in forward.Ports ->
                          let key = { Gateway = id; Protocol = protocol; ExternalPort = port }
                          key,
                          { Key = key
                            Client = forward.Client
                            InternalPort = port
                            Description = forward.Description
                            Lease = if gateway.PermanentOnly then Permanent else forward.Lease
                            Service = forward.Service } ]
        |> Map.ofList

    /// Whether another node holds a Service that wants exactly this mapping (same port, same VIP): then the
    /// mapping stays, and that node refreshes it. The VIP moved with the group, so the gateway's entry still
    /// points at the right place; deleting it would only open a gap (or, landing after the new holder's add,
    /// close the port until the next refresh).
    let private handedOver (wants: Wants) (mapping: Mapping) =
        wants.Forwards
        |> List.exists (fun f ->
            not f.HeldHere && f.Client = mapping.Client && f.Ports |> List.contains (mapping.Key.Protocol, mapping.Key.ExternalPort))

    // ── Decide ──────────────────────────────────────────────────────────────────────────────────────────

    type private Step =
        { Commands: UpnpCommand list
          Mappings: Map<MappingKey, MappingState>
          Wakes: Instant list }

    let private decideDiscovery (now: Instant) (discovery: Discovery) =
        match discovery with
        | Idle(failures, due) when due <= now -> [ Discover ], Searching failures, []
        | Idle(_, due) -> [], discovery, [ due ]
        | Searching _ -> [], discovery, []

    let private decideExternal (now: Instant) (gateway: GatewayState) =
        let read failures = [ ReadExternalAddress gateway.Gateway ], { gateway with External = Reading failures }, []
        match gateway.External with
        | Unread -> read 0
        | Read(_, at) when at + ExternalAddressRecheckEvery <= now -> read 0
        | Read(_, at) -> [], gateway, [ at + ExternalAddressRecheckEvery ]
        | ReadRetry(failures, retryAt) when retryAt <= now -> read failures
        | ReadRetry(_, retryAt) -> [], gateway, [ retryAt ]
        | Reading _ -> [], gateway, []

    /// One key: what is known about it, what is wanted of it, and whether it is wanted by a group held here
    /// whose VIP is not on the interface at this moment (`paused`).
    let private decideMapping (wants: Wants) (localVips: Set<Ip>) (now: Instant) (gateway: Gateway)
                              (known: MappingState option) (wanted: Mapping option) (paused: bool) =
        let add failures last (m: Mapping) = [ AddMapping(gateway, m) ], Some { Mapping = m; Phase = Adding(failures, last) }, []
        let delete failures since (s: MappingState) =
            let source = if localVips.Contains s.Mapping.Client then Some s.Mapping.Client else None
            [ DeleteMapping(gateway, s.Mapping.Key, source) ], Some { s with Phase = Deleting(failures, since) }, []
        let wait (s: MappingState) wake = [], Some s, Option.toList wake
        match known, wanted with
        | None, None -> [], None, []
        // Held, but the VIP is not on the interface (not added yet, or withdrawn while the fence is down): a
        // mapping is sent from its VIP, so nothing can be sent now, and nothing is deleted either.
        | Some s, None when paused -> wait s None
        | None, Some m -> add 0 None m
        | Some s, _ when (match s.Phase with Adding _ | Deleting _ -> true | _ -> false) -> wait s None
        | Some s, Some m when s.Mapping.Client <> m.Client ->
            // Another internal client on the same port: the gateway would refuse the add (718) while the old
            // entry exists, so remove ours first; the add follows once the delete is through.
            match s.Phase with
            | AddRetry(reason, _, _) when not (FailureReason.outcomeUnknown reason) -> add 0 None m
            | DeleteRetry(_, failures, since, retryAt) -> if retryAt <= now then delete failures since s else wait s (Some retryAt)
            | _ -> delete 0 now s
        | Some s, Some m ->
            match s.Phase with
            | _ when s.Mapping <> m -> add 0 None m
            | Mapped at when refreshAt m.Lease at <= now -> add 0 None m
            | Mapped at -> wait s (Some(refreshAt m.Lease at))
            | Unconfirmed -> add 0 None m
            | AddRetry(reason, failures, retryAt) -> if retryAt <= now then add failures (Some reason) m else wait s (Some retryAt)
            // A delete of the same mapping that is wanted again (the Service came back): overwrite instead.
            | DeleteRetry _ -> add 0 None m
            | Adding _ | Deleting _ -> wait s None
        | Some s, None when handedOver wants s.Mapping -> [], None, []
        | Some s, None ->
            match s.Phase with
            | AddRetry(reason, _, _) when not (FailureReason.outcomeUnknown reason) -> [], None, []
            | DeleteRetry(_, failures, since, retryAt) -> if retryAt <= now then delete failures since s else wait s (Some retryAt)
            | _ -> delete 0 now s

    /// What must happen now. `localVips`: the VIPs on this node's interface right now. A mapping is added or
    /// refreshed only while its VIP is here (it is sent from the VIP); a delete is sent from the VIP while it is
    /// still here, else from any address.
    let decide (wants: Wants) (localVips: Set<Ip>) (state: UpnpState) (now: Instant) : UpnpDecision =
        if not wants.Enabled then
            { Commands = []; State = state; NextWakeAt = None; Problems = wants.Problems }
        else
            let discoveryCommands, discovery, discoveryWakes = decideDiscovery now state.Discovery
            let externals = state.Gateways |> Map.map (fun _ g -> decideExternal now g)
            let gateways = externals |> Map.map (fun _ (_, g, _) -> g)
            let wantedHeld = wantedMappings wants state
            let wanted = wantedHeld |> Map.filter (fun _ m -> localVips.Contains m.Client)
            let keys = Set.union (state.Mappings |> Map.keys |> Set.ofSeq) (wanted |> Map.keys |> Set.ofSeq)
            let step =
                keys
                |> Seq.fold
                    (fun (acc: Step) key ->
                        let commands, next, wakes =
                            match state.Gateways.TryFind key.Gateway with
                            | Some g ->
                                decideMapping wants localVips now g.Gateway (state.Mappings.TryFind key) (wanted.TryFind key)
                                    (wantedHeld.ContainsKey key && not (wanted.ContainsKey key))
                            | None -> [], state.Mappings.TryFind key, []
                        { Commands = acc.Commands @ commands
                          Mappings = (match next with Some s -> acc.Mappings.Add(key, s) | None -> acc.Mappings.Remove key)
                          Wakes = wakes @ acc.Wakes })
                    { Commands = []; Mappings = state.Mappings; Wakes = [] }
            let failing =
                step.Mappings
                |> Map.toList
                |> List.choose (fun (key, s) ->
                    match s.Phase with
                    | AddRetry(reason, _, _)
                    | Adding(_, Some reason) when wanted.ContainsKey key ->
                        Some(s.Mapping.Service,
                             MappingFailed(key.Gateway, { Protocol = MappingProtocol.name key.Protocol; Port = key.ExternalPort }, reason))
                    | _ -> None)
            let searchedInVain =
                state.Gateways.IsEmpty
                && (match discovery with Idle(failures, _) | Searching failures -> failures > 0)
            let noGateway =
                if searchedInVain then
                    wants.Forwards |> List.filter _.HeldHere |> List.map (fun f -> f.Service, NoGatewayFound)
                else []
            let externalCommands = externals |> Map.toList |> List.collect (fun (_, (c, _, _)) -> c)
            // A delete that outlives the grace stops holding its VIP on the node: report again then.
            let graceEnds =
                step.Mappings
                |> Map.toList
                |> List.choose (fun (_, s) ->
                    match s.Phase with
                    | Deleting(_, since) | DeleteRetry(_, _, since, _) when now < since + DeleteFromVipGrace -> Some(since + DeleteFromVipGrace)
                    | _ -> None)
            let wakes = discoveryWakes @ (externals |> Map.toList |> List.collect (fun (_, (_, _, w)) -> w)) @ step.Wakes @ graceEnds
            { Commands = discoveryCommands @ externalCommands @ step.Commands
              State = { Discovery = discovery; Gateways = gateways; Mappings = step.Mappings }
              NextWakeAt = (if wakes.IsEmpty then None else Some(List.min wakes))
              Problems = wants.Problems @ noGateway @ failing |> List.distinct }

    // ── Evolve ──────────────────────────────────────────────────────────────────────────────────────────

    /// A call that got no answer: the gateway may have restarted on another port, so search again now.
    let private searchAgain (at: Instant) (state: UpnpState) =
        match state.Discovery with
        | Idle(failures, _) -> { state with Discovery = Idle(failures, at) }
        | Searching _ -> state

    let private discovered (at: Instant) (jitter: Jitter) (found: Gateway list) (state: UpnpState) =
        let failures = match state.Discovery with Idle(f, _) | Searching f -> f
        if found.IsEmpty then
            { state with Discovery = Idle(failures + 1, at + backoff DiscoveryRetryCap (failures + 1) jitter) }
        else
            let moved =
                found
                |> List.filter (fun g ->
                    match state.Gateways.TryFind g.Id with
                    | Some known -> known.Gateway.ControlUrl <> g.ControlUrl || known.Gateway.ServiceType <> g.ServiceType
                    | None -> false)
                |> List.map _.Id
                |> Set.ofList
            let gateways =
                found
                |> List.fold
                    (fun (acc: Map<GatewayId, GatewayState>) g ->
                        match acc.TryFind g.Id with
                        | Some _ when not (moved.Contains g.Id) -> acc
                        | Some known -> acc.Add(g.Id, { known with Gateway = g; External = Unread })
                        | None -> acc.Add(g.Id, { Gateway = g; External = Unread; PermanentOnly = false }))
                    state.Gateways
            let mappings =
                state.Mappings
                |> Map.map (fun key s ->
                    match s.Phase with
                    | Mapped _ when moved.Contains key.Gateway -> { s with Phase = Unconfirmed }
                    | _ -> s)
            { Discovery = Idle(0, at + RediscoverEvery); Gateways = gateways; Mappings = mappings }

    let private updateMapping key (f: MappingState -> MappingState option) (state: UpnpState) =
        match state.Mappings.TryFind key with
        | None -> state
        | Some s ->
            match f s with
            | Some next -> { state with Mappings = state.Mappings.Add(key, next) }
            | None -> { state with Mappings = state.Mappings.Remove key }

    let private failuresOf phase =
        match phase with
        | Adding(f, _) | Deleting(f, _) | AddRetry(_, f, _) | DeleteRetry(_, f, _, _) -> f
        | Mapped _ | Unconfirmed -> 0

    let private addFailed (at: Instant) (jitter: Jitter) key (failure: CallFailure) (state: UpnpState) =
        let reason = FailureReason.ofFailure failure
        let state = if FailureReason.outcomeUnknown reason then searchAgain at state else state
        match reason, state.Mappings.TryFind key with
        | OnlyPermanentLeasesSupported, Some s when s.Mapping.Lease <> Permanent ->
            // Switch the gateway to lease 0 and try again at once (not a failure of the mapping itself).
            let state =
                match state.Gateways.TryFind key.Gateway with
                | Some g -> { state with Gateways = state.Gateways.Add(key.Gateway, { g with PermanentOnly = true }) }
                | None -> state
            state |> updateMapping key (fun s -> Some { s with Phase = AddRetry(reason, failuresOf s.Phase, at) })
        | _ ->
            state
            |> updateMapping key (fun s ->
                let failures = failuresOf s.Phase + 1
                Some { s with Phase = AddRetry(reason, failures, at + backoff CallRetryCap failures jitter) })

    let private deleteFailed (at: Instant) (jitter: Jitter) key (failure: CallFailure) (state: UpnpState) =
        let reason = FailureReason.ofFailure failure
        let state = if FailureReason.outcomeUnknown reason then searchAgain at state else state
        state
        |> updateMapping key (fun s ->
            let since = match s.Phase with Deleting(_, since) | DeleteRetry(_, _, since, _) -> since | _ -> at
            match reason with
            // Gone already, or refused for good (the gateway keeps it until its lease ends).
            | NoSuchEntry | NotAuthorized -> None
            | _ when deleteGiveUpAt s.Mapping.Lease since <= at -> None
            | _ ->
                let failures = failuresOf s.Phase + 1
                Some { s with Phase = DeleteRetry(reason, failures, since, at + backoff CallRetryCap failures jitter) })

    /// Folds one outcome, observed at `at`, into the state; `jitter` spreads the retry if it failed.
    let evolve (state: UpnpState) (at: Instant) (jitter: Jitter) (outcome: UpnpOutcome) : UpnpState =
        match outcome with
        | Discovered found -> discovered at jitter found state
        | DiscoveryFailed _ -> discovered at jitter [] state
        | ExternalAddressRead(id, ip) ->
            match state.Gateways.TryFind id with
            | None -> state
            | Some g ->
                let failures = match g.External with Reading f | ReadRetry(f, _) -> f | _ -> 0
                let external =
                    match ip with
                    | Some ip when (Ip.unusable ip).IsNone -> Read(ip, at)
                    | _ -> ReadRetry(failures + 1, at + backoff CallRetryCap (failures + 1) jitter)
                { state with Gateways = state.Gateways.Add(id, { g with External = external }) }
        | ExternalAddressFailed(id, failure) ->
            let state = if FailureReason.outcomeUnknown (FailureReason.ofFailure failure) then searchAgain at state else state
            match state.Gateways.TryFind id with
            | None -> state
            | Some g ->
                let failures = (match g.External with Reading f | ReadRetry(f, _) -> f | _ -> 0) + 1
                { state with
                    Gateways = state.Gateways.Add(id, { g with External = ReadRetry(failures, at + backoff CallRetryCap failures jitter) }) }
        | Added key -> state |> updateMapping key (fun s -> Some { s with Phase = Mapped at })
        | AddFailed(key, failure) -> addFailed at jitter key failure state
        | Deleted key -> state |> updateMapping key (fun _ -> None)
        | DeleteFailed(key, failure) -> deleteFailed at jitter key failure state

    // ── Reading the state ───────────────────────────────────────────────────────────────────────────────

    /// The gateways' external addresses on which a Service has at least one port mapped (for
    /// status.loadBalancer.ingress, as kube-vip writes them), in address order.
    let externalAddresses (state: UpnpState) (service: ServiceKey) : Ip list =
        state.Mappings
        |> Map.toList
        |> List.choose (fun (key, s) ->
            match s.Phase, state.Gateways.TryFind key.Gateway with
            | Mapped _, Some { External = Read(ip, _) } when s.Mapping.Service = service -> Some ip
            | _ -> None)
        |> List.distinct
        |> List.sortWith (fun a b -> Ip.Order(a, b))

    /// What the node's protocol needs to know after a decision or an outcome: every Service's external
    /// addresses, and the runtime problems of the last decision.
    let report (state: UpnpState) (problems: (ServiceKey * ForwardProblem) list) (now: Instant) : ForwardingReport =
        let services = state.Mappings |> Map.toList |> List.map (fun (_, s) -> s.Mapping.Service) |> List.distinct
        let sources =
            state.Mappings
            |> Map.toList
            |> List.choose (fun (_, s) ->
                match s.Phase with
                | Deleting(_, since) | DeleteRetry(_, _, since, _) when now >= since + DeleteFromVipGrace -> None
                | _ -> Some s.Mapping.Client)
            |> Set.ofList
        { External =
            services
            |> List.choose (fun key ->
                match externalAddresses state key with
                | [] -> None
                | ips -> Some(key, ips))
            |> Map.ofList
          Problems = problems |> List.filter (snd >> ForwardProblem.isRuntime) |> Set.ofList
          Sources = sources }

    /// Nothing forwarded, nothing wrong.
    let noReport: ForwardingReport = { External = Map.empty; Problems = Set.empty; Sources = Set.empty }
