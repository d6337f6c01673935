// DHCPv4 for load-balancer addresses requested as 0.0.0.0: the identity a Service leases under (MAC,
// client identifier, hostname, macvlan name) and the client itself, RFC 2131, as a pure state machine:
// `Dhcp.step state input` returns the next state and what the shell must do (send, report, wake up).
namespace Hybrid.Domain

open System
open System.Security.Cryptography
open System.Text

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Identity: what a Service leases under, the same on every node that holds it
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// An Ethernet MAC address: 48 bits, the first octet in the high byte.
type Mac =
    private
    | Mac of uint64

    /// The six octets, first octet first.
    member m.Bytes: byte array =
        let (Mac v) = m
        Array.init 6 (fun i -> byte ((v >>> (8 * (5 - i))) &&& 0xFFUL))

    /// Lower-case, colon-separated (how `ip link` prints it).
    override m.ToString() =
        m.Bytes |> Array.map (fun b -> b.ToString "x2") |> String.concat ":"

/// Why a text is not a usable Ethernet address for a macvlan.
[<RequireQualifiedAccess>]
type MacProblem =
    /// Not six octets in one of the forms 00:00:5e:00:53:01, 00-00-5e-00-53-01 or 0000.5e00.5301.
    | Unparsable
    /// The group bit is set (multicast or broadcast): no interface can own it.
    | GroupAddress
    /// 00:00:00:00:00:00.
    | AllZeros

[<RequireQualifiedAccess>]
module Mac =
    let private ofUInt64 (v: uint64) = Mac(v &&& 0xFFFF_FFFF_FFFFUL)

    /// The address of six octets; Error for any other length.
    let ofBytes (bytes: byte array) : Result<Mac, MacProblem> =
        if bytes.Length <> 6 then Error MacProblem.Unparsable
        else Ok(ofUInt64 (bytes |> Array.fold (fun acc b -> (acc <<< 8) ||| uint64 b) 0UL))

    let private hexValue (s: string) =
        if s |> Seq.forall Char.IsAsciiHexDigit then Some(Convert.ToUInt64(s, 16)) else None

    /// Parses the three six-octet forms Go's net.ParseMAC (kube-vip) accepts: colon or hyphen separated
    /// pairs, or dot-separated groups of four hex digits. Case does not matter.
    let parse (text: string) : Result<Mac, MacProblem> =
        let t = text.Trim()
        let fromParts (parts: string array) width =
            if parts |> Array.forall (fun p -> p.Length = width) then
                match parts |> Array.map hexValue with
                | values when values |> Array.forall Option.isSome ->
                    Some(values |> Array.fold (fun acc v -> (acc <<< (4 * width)) ||| v.Value) 0UL)
                | _ -> None
            else None
        let value =
            match t.Split ':', t.Split '-', t.Split '.' with
            | colon, _, _ when colon.Length = 6 -> fromParts colon 2
            | _, hyphen, _ when hyphen.Length = 6 -> fromParts hyphen 2
            | _, _, dot when dot.Length = 3 -> fromParts dot 4
            | _ -> None
        match value with
        | None -> Error MacProblem.Unparsable
        | Some v when v &&& 0x0100_0000_0000UL <> 0UL -> Error MacProblem.GroupAddress
        | Some 0UL -> Error MacProblem.AllZeros
        | Some v -> Ok(ofUInt64 v)

    /// Individual (unicast) address: the group bit (least significant bit of the first octet) is clear.
    let isUnicast (Mac v) = v &&& 0x0100_0000_0000UL = 0UL

    /// Locally administered: the U/L bit (second least significant bit of the first octet) is set, so it
    /// can never equal a manufacturer's address.
    let isLocallyAdministered (Mac v) = v &&& 0x0200_0000_0000UL <> 0UL

    /// The MAC a Service leases with when kube-vip.io/hwaddr is not set: 48 bits of SHA-256 over a fixed
    /// label and the Service UID, made locally administered and unicast. Every node computes the same
    /// address for the same Service without writing anything, so a DHCP server sees one client.
    let forService (uid: string) : Mac =
        let hash = SHA256.HashData(Encoding.UTF8.GetBytes("hybrid/dhcp-mac/v1:" + uid))
        let bytes = hash[0..5]
        bytes[0] <- (bytes[0] ||| 0x02uy) &&& 0xFEuy
        bytes |> Array.fold (fun acc b -> (acc <<< 8) ||| uint64 b) 0UL |> ofUInt64

    let describeProblem problem =
        match problem with
        | MacProblem.Unparsable -> "not a MAC address of six octets (e.g. 02:00:5e:10:00:01)"
        | MacProblem.GroupAddress -> "a multicast or broadcast address, which no interface can own"
        | MacProblem.AllZeros -> "the all-zeros address"

/// Option 61, the client identifier, as sent on the wire.
type ClientId =
    private
    | ClientId of byte list

    member c.Bytes: byte array =
        let (ClientId bytes) = c
        Array.ofList bytes

/// Option 12, the host name the lease is registered under (kube-vip.io/loadbalancerHostname).
type Hostname =
    private
    | Hostname of string

    member h.Value =
        let (Hostname v) = h
        v

    override h.ToString() = h.Value

/// A Linux interface name that the kernel accepts (at most 15 bytes, no '/', ':', '%' or white space).
type InterfaceName =
    private
    | InterfaceName of string

    member n.Value =
        let (InterfaceName v) = n
        v

    override n.ToString() = n.Value

/// Why an interface name is refused.
[<RequireQualifiedAccess>]
type InterfaceNameProblem =
    | EmptyName
    | NameTooLong of bytes: int
    | ForbiddenCharacter of char
    | ReservedName

/// Why a host name cannot go into option 12.
[<RequireQualifiedAccess>]
type HostnameProblem =
    | EmptyHostname
    | HostnameTooLong of bytes: int
    /// Only printable ASCII without spaces fits the option (RFC 2132 §3.14: the NVT ASCII character set).
    | NotPrintableAscii of char

/// A DHCP Service whose annotations cannot form a lease identity (a Warning Event; the Service gets no
/// lease rather than a different one).
[<RequireQualifiedAccess>]
type DhcpIdentityError =
    | InvalidHwAddr of text: string * problem: MacProblem
    | InvalidMacvlanName of text: string * problem: InterfaceNameProblem
    | InvalidHostname of text: string * problem: HostnameProblem

/// Everything a Service leases under: the same on every node that holds the Service's group, so that a
/// DHCP server sees one client however often the group moves, and hands back the same address.
type DhcpIdentity =
    { /// The macvlan created on the VIP interface for this Service.
      Interface: InterfaceName
      /// The macvlan's MAC, the frames' source and the chaddr of every message.
      Mac: Mac
      ClientId: ClientId
      Hostname: Hostname option }

[<RequireQualifiedAccess>]
module InterfaceName =
    /// IFNAMSIZ minus the terminating NUL.
    let MaxBytes = 15

    /// Checks what the kernel's dev_valid_name checks, plus '%' (a name template to the kernel).
    let create (text: string) : Result<InterfaceName, InterfaceNameProblem> =
        let t = text
        let bytes = Encoding.UTF8.GetByteCount t
        if t = "" then Error InterfaceNameProblem.EmptyName
        elif t = "." || t = ".." then Error InterfaceNameProblem.ReservedName
        elif bytes > MaxBytes then Error(InterfaceNameProblem.NameTooLong bytes)
        else
            match t |> Seq.tryFind (fun c -> c = '/' || c = ':' || c = '%' || Char.IsWhiteSpace c || c < '!' || c > '~') with
            | Some c -> Error(InterfaceNameProblem.ForbiddenCharacter c)
            | None -> Ok(InterfaceName t)

    /// kube-vip's name for a Service's macvlan: "vip-" and the first eight hex digits of the UID (UIDs are
    /// UUIDs); a UID that does not start with eight hex digits gets eight hex digits of its SHA-256.
    let forService (uid: string) : InterfaceName =
        let u = uid.ToLowerInvariant()
        let prefix = u |> Seq.truncate 8 |> String.Concat
        let hex =
            if prefix.Length = 8 && prefix |> Seq.forall Char.IsAsciiHexDigit then prefix
            else Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes u)).ToLowerInvariant().Substring(0, 8)
        InterfaceName("vip-" + hex)

    let describeProblem problem =
        match problem with
        | InterfaceNameProblem.EmptyName -> "empty"
        | InterfaceNameProblem.NameTooLong bytes -> string bytes + " bytes long; Linux allows at most " + string MaxBytes
        | InterfaceNameProblem.ForbiddenCharacter c -> "contains '" + string c + "', which an interface name may not"
        | InterfaceNameProblem.ReservedName -> "\".\" and \"..\" are not interface names"

[<RequireQualifiedAccess>]
module Hostname =
    let MaxBytes = 255

    let create (text: string) : Result<Hostname, HostnameProblem> =
        match text |> Seq.tryFind (fun c -> c < '!' || c > '~') with
        | _ when text = "" -> Error HostnameProblem.EmptyHostname
        | Some c -> Error(HostnameProblem.NotPrintableAscii c)
        | None when text.Length > MaxBytes -> Error(HostnameProblem.HostnameTooLong text.Length)
        | None -> Ok(Hostname text)

    let describeProblem problem =
        match problem with
        | HostnameProblem.EmptyHostname -> "empty"
        | HostnameProblem.HostnameTooLong bytes -> string bytes + " bytes long; a DHCP option holds at most " + string MaxBytes
        | HostnameProblem.NotPrintableAscii c -> "contains '" + string c + "'; a DHCP host name is printable ASCII without spaces"

[<RequireQualifiedAccess>]
module ClientId =
    /// Hardware type 1 (Ethernet) and the MAC (RFC 2132 §9.14), sent when the Service names no host.
    let ofMac (mac: Mac) = ClientId(1uy :: List.ofArray mac.Bytes)

    /// The host name's own bytes, exactly as kube-vip sends it: a lease (or reservation by client id) made
    /// while kube-vip served the Service keeps matching after the switch to Hybrid.
    let ofHostname (hostname: Hostname) = ClientId(List.ofArray (Encoding.ASCII.GetBytes hostname.Value))

[<RequireQualifiedAccess>]
module DhcpIdentityError =
    let describe error =
        match error with
        | DhcpIdentityError.InvalidHwAddr(text, problem) ->
            Annotations.HwAddr + " " + EventText.quote text + " is " + Mac.describeProblem problem
        | DhcpIdentityError.InvalidMacvlanName(text, problem) ->
            Annotations.MacvlanName + " " + EventText.quote text + " is not an interface name: " + InterfaceName.describeProblem problem
        | DhcpIdentityError.InvalidHostname(text, problem) ->
            Annotations.LoadBalancerHostname + " " + EventText.quote text + " cannot be sent to a DHCP server: " + Hostname.describeProblem problem

[<RequireQualifiedAccess>]
module DhcpIdentity =
    let private annotation (service: Service) key =
        match service.Annotations |> Map.tryFind key with
        | Some v when not (String.IsNullOrWhiteSpace v) -> Some(v.Trim())
        | _ -> None

    /// The identity of a Service: kube-vip.io/hwaddr or the MAC derived from the UID; kube-vip.io/macvlanName
    /// or vip-<uid>; kube-vip.io/loadbalancerHostname as option 12 and (as kube-vip does) as the client id,
    /// else client id = type 1 + MAC. Every bad annotation is reported; a bad one is never replaced by a
    /// default, since that would lease a different address than the one the user arranged.
    let ofService (service: Service) : Result<DhcpIdentity, DhcpIdentityError list> =
        let mac =
            match annotation service Annotations.HwAddr with
            | None -> Ok(Mac.forService service.Uid)
            | Some text -> Mac.parse text |> Result.mapError (fun p -> DhcpIdentityError.InvalidHwAddr(text, p))
        let name =
            match annotation service Annotations.MacvlanName with
            | None -> Ok(InterfaceName.forService service.Uid)
            | Some text -> InterfaceName.create text |> Result.mapError (fun p -> DhcpIdentityError.InvalidMacvlanName(text, p))
        let hostname =
            match annotation service Annotations.LoadBalancerHostname with
            | None -> Ok None
            | Some text -> Hostname.create text |> Result.map Some |> Result.mapError (fun p -> DhcpIdentityError.InvalidHostname(text, p))
        match mac, name, hostname with
        | Ok mac, Ok name, Ok hostname ->
            let clientId =
                match hostname with
                | Some h -> ClientId.ofHostname h
                | None -> ClientId.ofMac mac
            Ok { Interface = name; Mac = mac; ClientId = clientId; Hostname = hostname }
        | _ ->
            Error
                [ for r in [ Result.map ignore mac; Result.map ignore name; Result.map ignore hostname ] do
                      match r with
                      | Error e -> e
                      | Ok() -> () ]

    /// The IPv4 address this Service already leased (kube-vip.io/requestedIP, else its status), when it
    /// asks for DHCPv4: the client confirms it first (INIT-REBOOT) instead of asking for a new one.
    let knownAddress (service: Service) : Ip option =
        match Addresses.requested service with
        | Requested requests -> requests |> List.tryPick (function Dhcp(IPv4, leased) -> leased | _ -> None)
        | NoAddressYet | Unusable _ -> None

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Messages: what the server sent (as the shell decoded it) and what the client sends
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// A transaction id (the xid of RFC 2131); replies are matched to requests by it.
[<Struct>]
type Xid =
    | Xid of uint32

    member x.Value =
        let (Xid v) = x
        v

/// The lease time of option 51.
[<RequireQualifiedAccess>]
type LeaseLength =
    | Finite of Duration
    /// 0xffffffff: the lease never ends (no renewal, no expiry).
    | Infinite

/// The server messages the client acts on.
[<RequireQualifiedAccess>]
type ReplyKind =
    | Offer
    | Ack
    | Nak

/// The on-link sender of a server's answers: the server itself, or the relay agent that forwards them (the
/// IP and Ethernet sources of the reply frame). Unicast requests are framed to its MAC.
type Hop = { Ip: Ip; Mac: Mac }

/// A server message as decoded from the wire (every field the client uses, nothing interpreted yet).
type DhcpReply =
    { Kind: ReplyKind
      Xid: Xid
      /// chaddr: whose request this answers.
      ClientMac: Mac
      /// yiaddr.
      YourIp: Ip
      /// Option 54.
      ServerId: Ip option
      /// Who put the frame on this link.
      Hop: Hop
      /// Option 51.
      LeaseTime: LeaseLength option
      /// Option 58 (T1), from the moment the request was sent.
      RenewalTime: Duration option
      /// Option 59 (T2).
      RebindingTime: Duration option
      /// Option 1.
      SubnetMask: Ip option
      /// Option 3.
      Routers: Ip list
      /// Option 56, the server's explanation (mostly on a NAK).
      Message: string option }

/// The client messages.
[<RequireQualifiedAccess>]
type RequestKind =
    | Discover
    | Request
    | Release

/// Where a message goes on the wire.
[<RequireQualifiedAccess>]
type Destination =
    /// To 255.255.255.255 and ff:ff:ff:ff:ff:ff.
    | Broadcast
    /// To the server's address, in a frame to the MAC of the hop its last reply came from.
    | Unicast of server: Ip * hop: Hop

/// One message for the shell to encode and send; the IP source is ClientIp, or 0.0.0.0 without one.
type ClientMessage =
    { Kind: RequestKind
      Xid: Xid
      /// The secs field: seconds since this acquisition or renewal began.
      Seconds: int
      ClientMac: Mac
      /// ciaddr: set only while the client holds the address (renewing, rebinding, releasing).
      ClientIp: Ip option
      /// Option 50.
      RequestedIp: Ip option
      /// Option 54.
      ServerId: Ip option
      /// Option 61.
      ClientId: ClientId
      /// Option 12.
      Hostname: Hostname option
      /// Option 55 (empty on a RELEASE).
      ParameterRequests: byte list
      Destination: Destination }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// The client's state
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// When a lease must be renewed, rebound, and given up; absent for an infinite lease.
type LeaseDeadlines =
    { RenewAt: Instant
      RebindAt: Instant
      ExpiresAt: Instant }

/// A lease the client holds.
type Lease =
    { Address: Ip
      /// From option 1; None when the server sent no mask or a non-contiguous one.
      PrefixLength: int option
      Routers: Ip list
      Server: Ip
      /// Where the server's answers came from on this link; unicast renewals and the release go there.
      Hop: Hop
      Length: LeaseLength
      /// When the request that obtained or last extended the lease was first sent: lease times count from
      /// there (RFC 2131 §4.4.1), never from the slower arrival of the answer.
      Start: Instant
      Deadlines: LeaseDeadlines option }

/// Retransmission and renewal timing. RFC 2131 §4.1: 4 s doubling to 64 s, each ±1 s at random; tests
/// shorten it through configuration.
type DhcpTiming =
    { FirstRetransmit: Duration
      MaxRetransmit: Duration
      /// Bound of the jitter the shell supplies (values beyond it are clamped).
      MaxJitter: Duration
      /// REQUESTs sent for an offer before discovery starts over (RFC: "reverts to INIT").
      RequestAttempts: int
      /// INIT-REBOOT REQUESTs before falling back to discovery: a server that does not know the lease
      /// stays silent (dnsmasq without dhcp-authoritative), and the address is then asked for in the DISCOVER.
      RebootAttempts: int
      /// Least wait between renewal (or rebinding) REQUESTs: RFC 2131 §4.4.5 says 60 s; a lease shorter than
      /// eight times that uses an eighth of its length instead, so that short leases still get retries.
      RenewRetransmitFloor: Duration }

/// One exchange in progress: its xid, when the acquisition or renewal began (secs), when its first
/// message went out (lease start), how many were sent, and when the next one is due.
type Transaction =
    { Xid: Xid
      Began: Instant
      FirstSentAt: Instant
      Attempts: int
      RetransmitAt: Instant }

/// The offer being requested.
type Offered = { Address: Ip; Server: Ip; Hop: Hop }

/// The RFC 2131 §4.4 states (INIT and INIT-REBOOT are instants: the client leaves them as it sends).
[<RequireQualifiedAccess>]
type DhcpPhase =
    /// Created, not started.
    | Idle
    /// Waiting to start discovery at RestartAt (after consecutive NAKs), asking for Hint if any.
    | Init of restartAt: Instant * hint: Ip option
    /// DISCOVER sent; waiting for an offer.
    | Selecting of Transaction * hint: Ip option
    /// REQUEST for an offer sent; waiting for ACK or NAK.
    | Requesting of Transaction * Offered
    /// INIT-REBOOT REQUEST for a known address sent; waiting for ACK or NAK.
    | Rebooting of Transaction * address: Ip
    | Bound of Lease
    /// T1 passed: unicast REQUESTs to the leasing server.
    | Renewing of Transaction * Lease
    /// T2 passed: broadcast REQUESTs to any server.
    | Rebinding of Transaction * Lease
    /// Stopped for good: every input is ignored.
    | Stopped

/// A client for one Service identity.
type DhcpState =
    { Identity: DhcpIdentity
      Timing: DhcpTiming
      Phase: DhcpPhase
      /// NAKs since the last lease: discovery restarts at once after the first, then backs off.
      ConsecutiveNaks: int }

/// How the client stops.
[<RequireQualifiedAccess>]
type StopMode =
    /// The Service is gone or changed address: give the address back (DHCPRELEASE when a lease is held).
    | ReleaseLease
    /// The Service moves to another node, which keeps the lease alive under the same identity: send nothing.
    | KeepLease

/// Randomness the shell draws for every input (the domain has none of its own): the xid of a transaction
/// that starts now, and the jitter of a retransmission scheduled now.
type Entropy = { Xid: Xid; Jitter: Duration }

[<RequireQualifiedAccess>]
type DhcpEvent =
    /// Begin, confirming a known address first when there is one (INIT-REBOOT after a takeover or restart).
    | Start of known: Ip option
    | Received of DhcpReply
    /// Time passed (the shell ticks at each WakeAt, and may tick more often).
    | Tick
    | Stop of StopMode

type DhcpInput =
    { Event: DhcpEvent
      /// Monotonic milliseconds of this node.
      Now: Instant
      Entropy: Entropy }

/// Why a leased address is no longer the Service's.
[<RequireQualifiedAccess>]
type LostReason =
    /// The lease ran out without a renewal or rebinding answer.
    | Expired
    /// The server answered NAK (its explanation, if it gave one).
    | Refused of message: string option
    /// The server extended a different address than the one held.
    | Replaced of by: Ip

/// Whether a lease is new or an existing one extended.
[<RequireQualifiedAccess>]
type LeaseChange =
    | Obtained
    | Extended

/// What the shell must do, in order.
[<RequireQualifiedAccess>]
type DhcpCommand =
    | Send of ClientMessage
    /// The address may be used until the lease's expiry (Obtained: add and announce it; Extended: it stays).
    | Leased of Lease * LeaseChange
    /// Withdraw the address and say why (a Warning Event).
    | Lost of address: Ip * reason: LostReason
    /// Tick the client at this instant (the earliest deadline of the new state).
    | WakeAt of Instant
    /// Send an ARP request for the hop's address from the leased one, framed to the hop's MAC, as a kernel
    /// stack does before a unicast: the hop learns the address's MAC from it (RFC 826), so its unicast answer
    /// comes to the macvlan, not to whichever interface of the node answered the hop's own ARP first (the
    /// parent answers for every local address, and first). Always just before the unicast message.
    | Resolve of hop: Hop * sender: Ip

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// The client
// ════════════════════════════════════════════════════════════════════════════════════════════════════

// The texts below are concatenated, not printf'd: printf's specializations for numbers and characters are
// not in the native agent (NotSupportedException), and these texts reach it.

[<RequireQualifiedAccess>]
module RequestKind =
    /// The message's name as RFC 2131 writes it (a union's ToString needs reflection, which the native agent lacks).
    let name kind =
        match kind with
        | RequestKind.Discover -> "DHCPDISCOVER"
        | RequestKind.Request -> "DHCPREQUEST"
        | RequestKind.Release -> "DHCPRELEASE"

[<RequireQualifiedAccess>]
module ReplyKind =
    let name kind =
        match kind with
        | ReplyKind.Offer -> "DHCPOFFER"
        | ReplyKind.Ack -> "DHCPACK"
        | ReplyKind.Nak -> "DHCPNAK"

[<RequireQualifiedAccess>]
module DhcpTiming =
    /// RFC 2131's schedule.
    let Default =
        { FirstRetransmit = 4_000L
          MaxRetransmit = 64_000L
          MaxJitter = 1_000L
          RequestAttempts = 4
          RebootAttempts = 2
          RenewRetransmitFloor = 60_000L }

    /// Checks that every delay stays positive whatever the jitter, and that attempts are counted from one.
    let create first max jitter requestAttempts rebootAttempts renewFloor : Result<DhcpTiming, string list> =
        let problems =
            [ if jitter < 0L then "the jitter bound must not be negative"
              if first <= 2L * jitter then "the first retransmission must be longer than twice the jitter bound"
              if max < first then "the longest retransmission must not be shorter than the first"
              if requestAttempts < 1 then "at least one REQUEST must be sent for an offer"
              if rebootAttempts < 1 then "at least one INIT-REBOOT REQUEST must be sent"
              if renewFloor <= 0L then "the renewal retransmission floor must be positive" ]
        if problems.IsEmpty then
            Ok
                { FirstRetransmit = first
                  MaxRetransmit = max
                  MaxJitter = jitter
                  RequestAttempts = requestAttempts
                  RebootAttempts = rebootAttempts
                  RenewRetransmitFloor = renewFloor }
        else
            Error problems

[<RequireQualifiedAccess>]
module LostReason =
    let describe reason =
        match reason with
        | LostReason.Expired -> "the DHCP lease expired without being renewed"
        | LostReason.Refused None -> "the DHCP server refused the lease (DHCPNAK)"
        | LostReason.Refused(Some message) -> "the DHCP server refused the lease (DHCPNAK: " + message + ")"
        | LostReason.Replaced by -> "the DHCP server leased " + Ip.format by + " instead"

[<RequireQualifiedAccess>]
module Dhcp =
    /// Option 55: subnet mask, router, lease time, server identifier, T1, T2.
    let ParameterRequests = [ 1uy; 3uy; 51uy; 54uy; 58uy; 59uy ]

    /// The client for an identity, not started yet.
    let create (identity: DhcpIdentity) (timing: DhcpTiming) : DhcpState =
        { Identity = identity; Timing = timing; Phase = DhcpPhase.Idle; ConsecutiveNaks = 0 }

    /// The lease held now, if any (also while renewing or rebinding).
    let lease (state: DhcpState) : Lease option =
        match state.Phase with
        | DhcpPhase.Bound l | DhcpPhase.Renewing(_, l) | DhcpPhase.Rebinding(_, l) -> Some l
        | _ -> None

    /// The phase's name, for logs.
    let phaseName (phase: DhcpPhase) =
        match phase with
        | DhcpPhase.Idle -> "Idle"
        | DhcpPhase.Init _ -> "Init"
        | DhcpPhase.Selecting _ -> "Selecting"
        | DhcpPhase.Requesting _ -> "Requesting"
        | DhcpPhase.Rebooting _ -> "Rebooting"
        | DhcpPhase.Bound _ -> "Bound"
        | DhcpPhase.Renewing _ -> "Renewing"
        | DhcpPhase.Rebinding _ -> "Rebinding"
        | DhcpPhase.Stopped -> "Stopped"

    // ── Time ─────────────────────────────────────────────────────────────────────────────────────────

    let private clampJitter timing (jitter: Duration) = max -timing.MaxJitter (min timing.MaxJitter jitter)

    /// Delay before retransmission number `attempt` + 1 of an acquisition message: FirstRetransmit doubling
    /// up to MaxRetransmit, plus the clamped jitter; never less than a millisecond.
    let retransmitDelay (timing: DhcpTiming) (attempt: int) (jitter: Duration) : Duration =
        let doublings = min (max 0 (attempt - 1)) 30
        let baseDelay =
            if timing.FirstRetransmit >= (timing.MaxRetransmit >>> doublings) then timing.MaxRetransmit
            else min timing.MaxRetransmit (timing.FirstRetransmit <<< doublings)
        max 1L (baseDelay + clampJitter timing jitter)

    /// T1, T2 and expiry of a lease starting at `start`: options 58/59 when the server sent sane ones
    /// (T1 < T2 < lease), else 1/2 and 7/8 of the lease (RFC 2131 §4.4.5); a server T2 before half the
    /// lease moves the default T1 to half of T2.
    let deadlines (start: Instant) (length: LeaseLength) (t1: Duration option) (t2: Duration option) : LeaseDeadlines option =
        match length with
        | LeaseLength.Infinite -> None
        | LeaseLength.Finite lease ->
            let lease = max 0L lease
            let rebind =
                match t2 with
                | Some t when t > 0L && t < lease -> t
                | _ -> lease * 7L / 8L
            let renew =
                match t1 with
                | Some t when t > 0L && t < rebind -> t
                | _ when lease / 2L < rebind -> lease / 2L
                | _ -> rebind / 2L
            Some { RenewAt = start + renew; RebindAt = start + rebind; ExpiresAt = start + lease }

    /// The next renewal (or rebinding) REQUEST after one sent at `now`: half the time left until
    /// `deadline`, but not sooner than the floor (RFC 2131 §4.4.5).
    let renewRetransmitAt (timing: DhcpTiming) (lease: Lease) (now: Instant) (deadline: Instant) : Instant =
        let floor =
            match lease.Length with
            | LeaseLength.Finite length -> max 1L (min timing.RenewRetransmitFloor (length / 8L))
            | LeaseLength.Infinite -> timing.RenewRetransmitFloor
        now + max floor ((deadline - now) / 2L)

    /// The earliest instant the phase has to act at, if any.
    let nextDeadline (phase: DhcpPhase) : Instant option =
        match phase with
        | DhcpPhase.Idle | DhcpPhase.Stopped -> None
        | DhcpPhase.Init(at, _) -> Some at
        | DhcpPhase.Selecting(tx, _) | DhcpPhase.Requesting(tx, _) | DhcpPhase.Rebooting(tx, _) -> Some tx.RetransmitAt
        | DhcpPhase.Bound lease -> lease.Deadlines |> Option.map _.RenewAt
        | DhcpPhase.Renewing(tx, lease) -> lease.Deadlines |> Option.map (fun d -> min tx.RetransmitAt d.RebindAt)
        | DhcpPhase.Rebinding(tx, lease) -> lease.Deadlines |> Option.map (fun d -> min tx.RetransmitAt d.ExpiresAt)

    // ── Messages ─────────────────────────────────────────────────────────────────────────────────────

    let private seconds (tx: Transaction) (now: Instant) = int (min 65_535L (max 0L ((now - tx.Began) / 1000L)))

    let private message (state: DhcpState) kind (tx: Transaction) now destination clientIp requested server =
        { Kind = kind
          Xid = tx.Xid
          Seconds = seconds tx now
          ClientMac = state.Identity.Mac
          ClientIp = clientIp
          RequestedIp = requested
          ServerId = server
          ClientId = state.Identity.ClientId
          Hostname = state.Identity.Hostname
          ParameterRequests = (if kind = RequestKind.Release then [] else ParameterRequests)
          Destination = destination }

    /// What the phase sends (first transmission or retransmission): RFC 2131 table 5.
    let private transmission (state: DhcpState) (phase: DhcpPhase) (now: Instant) : ClientMessage option =
        match phase with
        | DhcpPhase.Selecting(tx, hint) -> Some(message state RequestKind.Discover tx now Destination.Broadcast None hint None)
        | DhcpPhase.Requesting(tx, offer) -> Some(message state RequestKind.Request tx now Destination.Broadcast None (Some offer.Address) (Some offer.Server))
        | DhcpPhase.Rebooting(tx, address) -> Some(message state RequestKind.Request tx now Destination.Broadcast None (Some address) None)
        | DhcpPhase.Renewing(tx, lease) ->
            Some(message state RequestKind.Request tx now (Destination.Unicast(lease.Server, lease.Hop)) (Some lease.Address) None None)
        | DhcpPhase.Rebinding(tx, lease) -> Some(message state RequestKind.Request tx now Destination.Broadcast (Some lease.Address) None None)
        | DhcpPhase.Idle | DhcpPhase.Init _ | DhcpPhase.Bound _ | DhcpPhase.Stopped -> None

    /// A new transaction's xid: the one the shell drew, unless it equals the transaction it replaces.
    let private freshXid (previous: Xid option) (drawn: Xid) =
        match previous with
        | Some p when p = drawn -> Xid(drawn.Value + 1u)
        | _ -> drawn

    let private currentXid (phase: DhcpPhase) =
        match phase with
        | DhcpPhase.Selecting(tx, _) | DhcpPhase.Requesting(tx, _) | DhcpPhase.Rebooting(tx, _) | DhcpPhase.Renewing(tx, _) | DhcpPhase.Rebinding(tx, _) -> Some tx.Xid
        | _ -> None

    let private newTransaction (state: DhcpState) (input: DhcpInput) (began: Instant) (retransmitAt: Instant) =
        { Xid = freshXid (currentXid state.Phase) input.Entropy.Xid
          Began = began
          FirstSentAt = input.Now
          Attempts = 1
          RetransmitAt = retransmitAt }

    // ── Transitions ──────────────────────────────────────────────────────────────────────────────────

    /// The commands that put a message on the wire: a unicast one from a leased address is preceded by the
    /// ARP request that tells the hop where that address lives.
    let private send (message: ClientMessage) =
        match message.Destination, message.ClientIp with
        | Destination.Unicast(_, hop), Some sender -> [ DhcpCommand.Resolve(hop, sender); DhcpCommand.Send message ]
        | _ -> [ DhcpCommand.Send message ]

    /// Enters `phase` and sends its message.
    let private enter (state: DhcpState) (input: DhcpInput) (phase: DhcpPhase) (commands: DhcpCommand list) =
        let sent = transmission state phase input.Now |> Option.map send |> Option.defaultValue []
        { state with Phase = phase }, commands @ sent

    /// Starts discovery now (DISCOVER, asking for `hint`).
    let private discover (state: DhcpState) (input: DhcpInput) (hint: Ip option) (commands: DhcpCommand list) =
        let timing = state.Timing
        let tx = newTransaction state input input.Now (input.Now + retransmitDelay timing 1 input.Entropy.Jitter)
        enter state input (DhcpPhase.Selecting(tx, hint)) commands

    /// Back to INIT after a NAK or a failed exchange: discovery restarts at once the first time, then
    /// waits longer after each consecutive NAK, so a server that refuses everything is not flooded.
    let private restart (state: DhcpState) (input: DhcpInput) (hint: Ip option) (naks: int) (commands: DhcpCommand list) =
        let state = { state with ConsecutiveNaks = naks }
        if naks <= 1 then discover state input hint commands
        else
            let at = input.Now + retransmitDelay state.Timing (naks - 1) input.Entropy.Jitter
            { state with Phase = DhcpPhase.Init(at, hint) }, commands

    let private usableV4 (ip: Ip) = Ip.family ip = IPv4 && (Ip.unusable ip).IsNone

    let private prefixOfMask (mask: Ip) =
        match mask with
        | V4 m ->
            let ones = System.Numerics.BitOperations.PopCount m
            if ones = 0 then None
            elif (m >>> (32 - ones)) <<< (32 - ones) = m then Some ones
            else None
        | V6 _ -> None

    /// A reply belongs to the exchange in progress: same xid, and our MAC as chaddr.
    let private answers (state: DhcpState) (tx: Transaction) (reply: DhcpReply) =
        reply.Xid = tx.Xid && reply.ClientMac = state.Identity.Mac

    /// The lease an ACK grants, or None when the ACK lacks what a lease needs (a usable address, a lease
    /// time, a server to renew with).
    let private leaseOf (tx: Transaction) (reply: DhcpReply) (knownServer: Ip option) : Lease option =
        let server = reply.ServerId |> Option.orElse knownServer
        match reply.LeaseTime, server with
        | Some length, Some server when usableV4 reply.YourIp ->
            Some
                { Address = reply.YourIp
                  PrefixLength = reply.SubnetMask |> Option.bind prefixOfMask
                  Routers = reply.Routers
                  Server = server
                  Hop = reply.Hop
                  Length = length
                  Start = tx.FirstSentAt
                  Deadlines = deadlines tx.FirstSentAt length reply.RenewalTime reply.RebindingTime }
        | _ -> None

    let private bind (state: DhcpState) (lease: Lease) (commands: DhcpCommand list) =
        { state with Phase = DhcpPhase.Bound lease; ConsecutiveNaks = 0 }, commands

    let private onReply (state: DhcpState) (input: DhcpInput) (reply: DhcpReply) =
        let ignored = state, []
        let naks = state.ConsecutiveNaks + 1
        match state.Phase, reply.Kind with
        | DhcpPhase.Selecting(tx, _), ReplyKind.Offer when answers state tx reply ->
            match reply.ServerId with
            | Some server when usableV4 reply.YourIp ->
                let requesting =
                    { tx with
                        FirstSentAt = input.Now
                        Attempts = 1
                        RetransmitAt = input.Now + retransmitDelay state.Timing 1 input.Entropy.Jitter }
                enter state input (DhcpPhase.Requesting(requesting, { Address = reply.YourIp; Server = server; Hop = reply.Hop })) []
            | _ -> ignored
        | DhcpPhase.Requesting(tx, offer), ReplyKind.Ack when answers state tx reply ->
            match leaseOf tx reply (Some offer.Server) with
            | Some lease -> bind state lease [ DhcpCommand.Leased(lease, LeaseChange.Obtained) ]
            | None -> ignored
        | DhcpPhase.Rebooting(tx, _), ReplyKind.Ack when answers state tx reply ->
            match leaseOf tx reply None with
            | Some lease -> bind state lease [ DhcpCommand.Leased(lease, LeaseChange.Obtained) ]
            | None -> ignored
        | (DhcpPhase.Renewing(tx, held) | DhcpPhase.Rebinding(tx, held)), ReplyKind.Ack when answers state tx reply ->
            match leaseOf tx reply (Some held.Server) with
            | Some lease when lease.Address = held.Address -> bind state lease [ DhcpCommand.Leased(lease, LeaseChange.Extended) ]
            | Some lease -> bind state lease [ DhcpCommand.Lost(held.Address, LostReason.Replaced lease.Address); DhcpCommand.Leased(lease, LeaseChange.Obtained) ]
            | None -> ignored
        | DhcpPhase.Requesting(tx, _), ReplyKind.Nak when answers state tx reply -> restart state input None naks []
        | DhcpPhase.Rebooting(tx, address), ReplyKind.Nak when answers state tx reply ->
            restart state input None naks [ DhcpCommand.Lost(address, LostReason.Refused reply.Message) ]
        | (DhcpPhase.Renewing(tx, held) | DhcpPhase.Rebinding(tx, held)), ReplyKind.Nak when answers state tx reply ->
            restart state input None naks [ DhcpCommand.Lost(held.Address, LostReason.Refused reply.Message) ]
        | _ -> ignored

    /// Retransmits the phase's message with the same xid, or gives the exchange up as RFC 2131 says.
    let private retransmit (state: DhcpState) (input: DhcpInput) (tx: Transaction) (next: Transaction -> DhcpPhase) =
        let attempts = tx.Attempts + 1
        let tx = { tx with Attempts = attempts; RetransmitAt = input.Now + retransmitDelay state.Timing attempts input.Entropy.Jitter }
        enter state input (next tx) []

    /// The timers of a held lease, latest first: expiry, T2 (rebind), T1 (renew), then the next renewal or
    /// rebinding REQUEST.
    let private onLeaseTick (state: DhcpState) (input: DhcpInput) (lease: Lease) (d: LeaseDeadlines) =
        let now = input.Now
        let timing = state.Timing
        match state.Phase with
        | _ when now >= d.ExpiresAt ->
            discover state input (Some lease.Address) [ DhcpCommand.Lost(lease.Address, LostReason.Expired) ]
        | DhcpPhase.Bound _ | DhcpPhase.Renewing _ when now >= d.RebindAt ->
            let tx = newTransaction state input now (renewRetransmitAt timing lease now d.ExpiresAt)
            enter state input (DhcpPhase.Rebinding(tx, lease)) []
        | DhcpPhase.Bound _ when now >= d.RenewAt ->
            let tx = newTransaction state input now (renewRetransmitAt timing lease now d.RebindAt)
            enter state input (DhcpPhase.Renewing(tx, lease)) []
        | DhcpPhase.Renewing(tx, _) when now >= tx.RetransmitAt ->
            let tx = { tx with Attempts = tx.Attempts + 1; RetransmitAt = renewRetransmitAt timing lease now d.RebindAt }
            enter state input (DhcpPhase.Renewing(tx, lease)) []
        | DhcpPhase.Rebinding(tx, _) when now >= tx.RetransmitAt ->
            let tx = { tx with Attempts = tx.Attempts + 1; RetransmitAt = renewRetransmitAt timing lease now d.ExpiresAt }
            enter state input (DhcpPhase.Rebinding(tx, lease)) []
        | _ -> state, []

    let private onTick (state: DhcpState) (input: DhcpInput) =
        let now = input.Now
        let timing = state.Timing
        let due (at: Instant) = now >= at
        match state.Phase with
        | DhcpPhase.Init(at, hint) when due at -> discover state input hint []
        | DhcpPhase.Selecting(tx, hint) when due tx.RetransmitAt -> retransmit state input tx (fun tx -> DhcpPhase.Selecting(tx, hint))
        | DhcpPhase.Requesting(tx, _) when due tx.RetransmitAt && tx.Attempts >= timing.RequestAttempts ->
            discover state input None []
        | DhcpPhase.Requesting(tx, offer) when due tx.RetransmitAt -> retransmit state input tx (fun tx -> DhcpPhase.Requesting(tx, offer))
        | DhcpPhase.Rebooting(tx, address) when due tx.RetransmitAt && tx.Attempts >= timing.RebootAttempts ->
            discover state input (Some address) []
        | DhcpPhase.Rebooting(tx, address) when due tx.RetransmitAt -> retransmit state input tx (fun tx -> DhcpPhase.Rebooting(tx, address))
        | DhcpPhase.Bound lease | DhcpPhase.Renewing(_, lease) | DhcpPhase.Rebinding(_, lease) ->
            match lease.Deadlines with
            | Some d -> onLeaseTick state input lease d
            | None -> state, []
        | _ -> state, []

    let private onStart (state: DhcpState) (input: DhcpInput) (known: Ip option) =
        match state.Phase, known with
        | DhcpPhase.Idle, Some address when usableV4 address ->
            let tx = newTransaction state input input.Now (input.Now + retransmitDelay state.Timing 1 input.Entropy.Jitter)
            enter state input (DhcpPhase.Rebooting(tx, address)) []
        | DhcpPhase.Idle, _ -> discover state input None []
        | _ -> state, []

    /// Stopping releases only a lease still held at this instant; an expired one is no longer ours to give.
    let private onStop (state: DhcpState) (input: DhcpInput) (mode: StopMode) =
        let stopped = { state with Phase = DhcpPhase.Stopped }
        let held =
            lease state
            |> Option.filter (fun l -> l.Deadlines |> Option.forall (fun d -> input.Now < d.ExpiresAt))
        match mode, held, state.Phase with
        | _, _, DhcpPhase.Stopped -> state, []
        | StopMode.ReleaseLease, Some lease, _ ->
            let tx = newTransaction state input input.Now input.Now
            let release =
                message state RequestKind.Release tx input.Now (Destination.Unicast(lease.Server, lease.Hop)) (Some lease.Address) None (Some lease.Server)
            stopped, send release
        | _ -> stopped, []

    /// One step of the client: the next state and the commands to execute in order, ending with the WakeAt
    /// of the new state's earliest deadline when it has one.
    let step (state: DhcpState) (input: DhcpInput) : DhcpState * DhcpCommand list =
        let next, commands =
            match state.Phase, input.Event with
            | DhcpPhase.Stopped, _ -> state, []
            | _, DhcpEvent.Start known -> onStart state input known
            | _, DhcpEvent.Received reply -> onReply state input reply
            | _, DhcpEvent.Tick -> onTick state input
            | _, DhcpEvent.Stop mode -> onStop state input mode
        let wake = nextDeadline next.Phase |> Option.map DhcpCommand.WakeAt |> Option.toList
        next, commands @ wake
