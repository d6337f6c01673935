/// Issue 10: DHCP-assigned load-balancer addresses. The lease identity of a Service (MAC, client id,
/// hostname, macvlan name) and the RFC 2131 client as a state machine: which message in which state,
/// timers, retransmission, NAK, expiry, xid matching, stopping.
module Hybrid.Properties.DhcpProperties

open System
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Generators
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private okOr (r: Result<'a, 'e>) =
    match r with
    | Ok v -> v
    | Error e -> failwithf "test value refused: %A" e

/// Kubernetes UIDs (UUIDs, as the API server writes them) and odd ones a lab or a test might use.
let private genUid =
    Gen.frequency
        [ 6, Gen.choose (0, Int32.MaxValue) |> Gen.two |> Gen.map (fun (a, b) -> Guid(a, int16 b, int16 (b >>> 16), Array.init 8 (fun i -> byte (a >>> i))).ToString())
          1, Gen.elements [ ""; "x"; "default-svc"; "ZZZZZZZZ-not-hex"; "0123456"; "ABCDEF0123456789" ] ]

let private genMacBytes = Gen.arrayOfLength 6 (Gen.choose (0, 255) |> Gen.map byte)

/// A unicast, non-zero MAC, as bytes.
let private genUnicastMacBytes =
    genMacBytes |> Gen.map (fun b -> b[0] <- b[0] &&& 0xFEuy; (if b |> Array.forall ((=) 0uy) then b[5] <- 1uy); b)

let private macOf (bytes: byte array) = Mac.ofBytes bytes |> okOr

let private genMac = genUnicastMacBytes |> Gen.map macOf

/// The three spellings kube-vip accepts, in any letter case.
let private spell (bytes: byte array) : Gen<string> =
    gen {
        let! form = Gen.elements [ ':'; '-'; '.' ]
        let! upper = bool 1 1
        let hex = bytes |> Array.map (fun b -> b.ToString "x2")
        let text =
            if form = '.' then String.Join(".", [ hex[0] + hex[1]; hex[2] + hex[3]; hex[4] + hex[5] ])
            else String.Join(string form, hex)
        return if upper then text.ToUpperInvariant() else text
    }

let private dhcpService (uid: string) =
    { service "default" "nginx-dhcp" with Uid = uid; LoadBalancerIP = Some "0.0.0.0" }

let private genHostname =
    Gen.elements [ "mydhcp-test"; "a"; "web.example.com"; "X_Y"; String('h', 255) ]

let private genIdentity: Gen<DhcpIdentity> =
    gen {
        let! uid = genUid
        let! hostname = Gen.frequency [ 1, Gen.constant None; 1, genHostname |> Gen.map Some ]
        let s = dhcpService uid
        let s = match hostname with Some h -> annotate Annotations.LoadBalancerHostname h s | None -> s
        return DhcpIdentity.ofService s |> okOr
    }

/// Short timings (as a test would configure) and RFC 2131's own.
let private genTiming: Gen<DhcpTiming> =
    Gen.oneof
        [ Gen.constant DhcpTiming.Default
          gen {
              let! jitter = Gen.choose (0, 200)
              let! first = Gen.choose (2 * jitter + 1, 2 * jitter + 2_000)
              let! max = Gen.choose (first, first * 20)
              let! requests = Gen.choose (1, 5)
              let! reboots = Gen.choose (1, 3)
              let! floor = Gen.choose (1, 60_000)
              return DhcpTiming.create (int64 first) (int64 max) (int64 jitter) requests reboots (int64 floor) |> okOr
          } ]

let private genXid = Gen.choose (0, Int32.MaxValue) |> Gen.map (uint32 >> Xid)

let private genEntropy (timing: DhcpTiming) =
    Gen.map2
        (fun xid j -> { Xid = xid; Jitter = j })
        genXid
        (Gen.frequency
            [ 4, Gen.choose (int -timing.MaxJitter, int timing.MaxJitter) |> Gen.map int64
              1, Gen.elements [ -timing.MaxJitter; timing.MaxJitter; Int64.MinValue / 4L; Int64.MaxValue / 4L ] ])

let private input (event: DhcpEvent) (now: Instant) (entropy: Entropy) = { Event = event; Now = now; Entropy = entropy }

let private genLeaseLength =
    Gen.frequency
        [ 8, Gen.choose (1, 86_400) |> Gen.map (fun s -> LeaseLength.Finite(int64 s * 1000L))
          1, Gen.elements [ LeaseLength.Finite 120_000L; LeaseLength.Finite 1_000L ]
          1, Gen.constant LeaseLength.Infinite ]

let private genFiniteLength = Gen.choose (1, 86_400) |> Gen.map (fun s -> LeaseLength.Finite(int64 s * 1000L))

/// A lease granted at `start`, with or without the server's T1/T2.
let private genLeaseOf (lengths: Gen<LeaseLength>) (start: Instant) : Gen<Lease> =
    gen {
        let! address = genUsableV4
        let! server = genUsableV4
        let! serverMac = genMac
        let! length = lengths
        let! t1t2 = Gen.elements [ None, None; Some 3_000L, Some 5_000L ]
        return
            { Address = address
              PrefixLength = Some 24
              Routers = [ server ]
              Server = server
              Hop = { Ip = server; Mac = serverMac }
              Length = length
              Start = start
              Deadlines = Dhcp.deadlines start length (fst t1t2) (snd t1t2) }
    }

let private genLease = genLeaseOf genLeaseLength

let private genTransaction (now: Instant) (timing: DhcpTiming) =
    gen {
        let! xid = genXid
        let! age = Gen.choose (0, 100_000)
        let! attempts = Gen.choose (1, 6)
        let! ahead = Gen.choose (1, int timing.MaxRetransmit)
        return
            { Xid = xid
              Began = now - int64 age
              FirstSentAt = now - int64 (age / 2)
              Attempts = attempts
              RetransmitAt = now + int64 ahead }
    }

let private AllPhases = [ "Idle"; "Init"; "Selecting"; "Requesting"; "Rebooting"; "Bound"; "Renewing"; "Rebinding"; "Stopped" ]

/// A client at instant `now` in one of the named phases (deadlines still ahead), its leases of the given
/// lengths.
let private genClientWith (phases: string list) (lengths: Gen<LeaseLength>) : Gen<DhcpState * Instant> =
    gen {
        let! identity = genIdentity
        let! timing = genTiming
        let now = 10_000_000L
        let! tx = genTransaction now timing
        let! lease = genLeaseOf lengths (now - 1L)
        let! address = genUsableV4
        let! server = genUsableV4
        let! serverMac = genMac
        let! hint = Gen.elements [ None; Some address ]
        let! name = Gen.elements phases
        let phase =
            match name with
            | "Idle" -> DhcpPhase.Idle
            | "Init" -> DhcpPhase.Init(now + 500L, hint)
            | "Selecting" -> DhcpPhase.Selecting(tx, hint)
            | "Requesting" -> DhcpPhase.Requesting(tx, { Address = address; Server = server; Hop = { Ip = server; Mac = serverMac } })
            | "Rebooting" -> DhcpPhase.Rebooting(tx, address)
            | "Bound" -> DhcpPhase.Bound lease
            | "Renewing" -> DhcpPhase.Renewing(tx, lease)
            | "Rebinding" -> DhcpPhase.Rebinding(tx, lease)
            | _ -> DhcpPhase.Stopped
        let! naks = Gen.elements [ 0; 0; 1; 3 ]
        return { Dhcp.create identity timing with Phase = phase; ConsecutiveNaks = naks }, now
    }

/// A client in any phase.
let private genClient = genClientWith AllPhases genLeaseLength

/// A client in one of the named phases, holding (if any) a lease that ends.
let private genClientIn (phases: string list) = genClientWith phases genFiniteLength

let private sends (commands: DhcpCommand list) =
    commands |> List.choose (function DhcpCommand.Send m -> Some m | _ -> None)

let private phaseName (s: DhcpState) = Dhcp.phaseName s.Phase

/// The transaction of a phase that has one.
let private transactionOf (phase: DhcpPhase) =
    match phase with
    | DhcpPhase.Selecting(tx, _) | DhcpPhase.Requesting(tx, _) | DhcpPhase.Rebooting(tx, _) | DhcpPhase.Renewing(tx, _) | DhcpPhase.Rebinding(tx, _) -> Some tx
    | _ -> None

/// A server message answering the client's current transaction (right xid and chaddr), sent by the server
/// itself on the client's link.
let private answer (state: DhcpState) (kind: ReplyKind) (yiaddr: Ip) (server: Ip) (serverMac: Mac) (length: LeaseLength) =
    let xid = transactionOf state.Phase |> Option.map _.Xid |> Option.defaultValue (Xid 0u)
    { Kind = kind
      Xid = xid
      ClientMac = state.Identity.Mac
      YourIp = (if kind = ReplyKind.Nak then V4 0u else yiaddr)
      ServerId = Some server
      Hop = { Ip = server; Mac = serverMac }
      LeaseTime = (if kind = ReplyKind.Nak then None else Some length)
      RenewalTime = None
      RebindingTime = None
      SubnetMask = Some(V4 0xFFFFFF00u)
      Routers = [ server ]
      Message = (if kind = ReplyKind.Nak then Some "wrong address" else None) }

/// The address the phase holds or is about to use (for answers that keep it).
let private addressOf (phase: DhcpPhase) (fallback: Ip) =
    match phase with
    | DhcpPhase.Requesting(_, offer) -> offer.Address
    | DhcpPhase.Rebooting(_, a) -> a
    | DhcpPhase.Bound l | DhcpPhase.Renewing(_, l) | DhcpPhase.Rebinding(_, l) -> l.Address
    | _ -> fallback

let private heldLease (state: DhcpState) = Dhcp.lease state

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Identity
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<Property(MaxTest = 300)>]
let ``the MAC of a Service is locally administered unicast and the same on every node`` () =
    forAll (Gen.two genUid) (fun (uid, other) ->
        let mac = Mac.forService uid
        let first = mac.Bytes[0]
        allOf
            [ holds (sprintf "%O unicast" mac) (first &&& 1uy = 0uy && Mac.isUnicast mac)
              holds (sprintf "%O locally administered" mac) (first &&& 2uy = 2uy && Mac.isLocallyAdministered mac)
              holds "computed again from the UID alone" (Mac.forService (String(uid.ToCharArray())) = mac)
              holds "another UID, another MAC" (uid = other || Mac.forService other <> mac)
              holds "what the identity uses" ((DhcpIdentity.ofService (dhcpService uid) |> okOr).Mac = mac) ]
        |> Prop.classify (uid.Length = 36) "UUID"
        |> Prop.classify (uid.Length <> 36) "other UID")

[<Property>]
let ``a valid kube-vip.io/hwaddr is the MAC in any of kube-vip's spellings`` () =
    forAll (genUnicastMacBytes |> Gen.bind (fun b -> spell b |> Gen.map (fun t -> b, t))) (fun (bytes, text) ->
        let s = dhcpService "uid-1" |> annotate Annotations.HwAddr (" " + text + " ")
        match DhcpIdentity.ofService s with
        | Ok identity ->
            allOf
                [ holds (sprintf "%O from %s" identity.Mac text) (identity.Mac.Bytes = bytes)
                  holds "printed as ip prints it" (identity.Mac.ToString() = String.Join(":", bytes |> Array.map (fun b -> b.ToString "x2")))
                  holds "not derived from the UID" (bytes <> (Mac.forService "uid-1").Bytes) ]
        | Error e -> holds (sprintf "%s refused: %A" text e) false)

[<Property>]
let ``a bad kube-vip.io/hwaddr is a typed error naming it, never a different MAC`` () =
    let genBad =
        Gen.oneof
            [ genMacBytes |> Gen.map (fun b -> b[0] <- b[0] ||| 1uy; b) |> Gen.bind spell |> Gen.map (fun t -> t, MacProblem.GroupAddress)
              Gen.elements [ "00:00:00:00:00:00", MacProblem.AllZeros; "0000.0000.0000", MacProblem.AllZeros; "ff:ff:ff:ff:ff:ff", MacProblem.GroupAddress ]
              Gen.elements
                  [ "00:00:6c:12:34", MacProblem.Unparsable // five octets
                    "00:00:6c:12:34:56:78:9a", MacProblem.Unparsable // EUI-64: Go parses it, Ethernet cannot use it
                    "00:00:6c:12:34:5g", MacProblem.Unparsable
                    "0:0:6c:12:34:56", MacProblem.Unparsable
                    "00:00-6c:12:34:56", MacProblem.Unparsable
                    "random", MacProblem.Unparsable ] ]
    forAll genBad (fun (text, problem) ->
        match DhcpIdentity.ofService (dhcpService "uid-1" |> annotate Annotations.HwAddr text) with
        | Error [ DhcpIdentityError.InvalidHwAddr(t, p) as e ] ->
            holds (sprintf "%A" e) (t = text && p = problem && (DhcpIdentityError.describe e).Contains text)
        | other -> holds (sprintf "%s gave %A" text other) false
        |> Prop.classify (problem = MacProblem.Unparsable) "unparsable"
        |> Prop.classify (problem = MacProblem.GroupAddress) "group")

[<Property>]
let ``the client id is the hostname's bytes when the Service names a host, else type 1 and the MAC`` () =
    forAll (Gen.map2 (fun uid h -> uid, h) genUid (Gen.frequency [ 1, Gen.constant None; 2, genHostname |> Gen.map Some ])) (fun (uid, hostname) ->
        let s = dhcpService uid
        let s = match hostname with Some h -> annotate Annotations.LoadBalancerHostname h s | None -> s
        let identity = DhcpIdentity.ofService s |> okOr
        match hostname with
        | Some h ->
            allOf
                [ holds "client id = hostname bytes (kube-vip)" (identity.ClientId.Bytes = Text.Encoding.ASCII.GetBytes h)
                  holds "option 12" (identity.Hostname |> Option.map _.Value = Some h) ]
        | None ->
            allOf
                [ holds "client id = 01 + MAC" (identity.ClientId.Bytes = Array.append [| 1uy |] identity.Mac.Bytes)
                  holds "no option 12" identity.Hostname.IsNone ]
        |> Prop.classify hostname.IsSome "hostname")

[<Property>]
let ``a hostname the option cannot carry is a typed error`` () =
    let genBad = Gen.elements [ "has space"; "tab\there"; "ümlaut"; String('h', 256); "new\nline" ]
    forAll genBad (fun text ->
        match DhcpIdentity.ofService (dhcpService "uid-1" |> annotate Annotations.LoadBalancerHostname text) with
        | Error [ DhcpIdentityError.InvalidHostname(t, _) ] -> holds "names the text" (t = text)
        | other -> holds (sprintf "%A" other) false)

[<Property(MaxTest = 300)>]
let ``the macvlan is vip- and eight hex digits of the UID, a valid Linux name`` () =
    forAll genUid (fun uid ->
        let name = (DhcpIdentity.ofService (dhcpService uid) |> okOr).Interface.Value
        let digits = name.Substring 4
        let looksLikeUuid = uid.Length >= 8 && uid.Substring(0, 8) |> Seq.forall Char.IsAsciiHexDigit
        allOf
            [ holds name (name.StartsWith "vip-" && digits.Length = 8 && digits |> Seq.forall (fun c -> Char.IsAsciiDigit c || (c >= 'a' && c <= 'f')))
              holds "kube-vip's name for a UUID" (not looksLikeUuid || digits = uid.Substring(0, 8).ToLowerInvariant())
              holds "accepted by the name rules" (InterfaceName.create name |> Result.isOk)
              holds "at most 15 bytes" (name.Length <= 15) ]
        |> Prop.classify looksLikeUuid "UUID")

[<Property>]
let ``kube-vip.io/macvlanName is the macvlan when Linux accepts the name, else a typed error`` () =
    let cases =
        [ "dhcp0", None
          "vip-web", None
          "a", None
          String('n', 15), None
          String('n', 16), Some(InterfaceNameProblem.NameTooLong 16)
          "has/slash", Some(InterfaceNameProblem.ForbiddenCharacter '/')
          "has:colon", Some(InterfaceNameProblem.ForbiddenCharacter ':')
          "eth%d", Some(InterfaceNameProblem.ForbiddenCharacter '%')
          "in side", Some(InterfaceNameProblem.ForbiddenCharacter ' ')
          ".", Some InterfaceNameProblem.ReservedName
          "..", Some InterfaceNameProblem.ReservedName
          "müller", Some(InterfaceNameProblem.ForbiddenCharacter 'ü') ]
    forAll (Gen.elements cases) (fun (text, problem) ->
        let result = DhcpIdentity.ofService (dhcpService "uid-1" |> annotate Annotations.MacvlanName text)
        match problem, result with
        | None, Ok identity -> holds text (identity.Interface.Value = text)
        | Some p, Error [ DhcpIdentityError.InvalidMacvlanName(t, q) ] -> holds (sprintf "%s: %A" text q) (t = text && q = p)
        | _ -> holds (sprintf "%s gave %A" text result) false
        |> Prop.classify problem.IsNone "valid")

[<Property>]
let ``every bad DHCP annotation is reported at once`` () =
    let genBad = Gen.three (bool 1 1)
    forAll genBad (fun (badMac, badName, badHost) ->
        let s = dhcpService "uid-1"
        let s = if badMac then annotate Annotations.HwAddr "01:00:5e:00:00:01" s else s
        let s = if badName then annotate Annotations.MacvlanName "far-too-long-a-name" s else s
        let s = if badHost then annotate Annotations.LoadBalancerHostname "two words" s else s
        let expected = [ badMac; badName; badHost ] |> List.filter id |> List.length
        match DhcpIdentity.ofService s with
        | Ok _ -> holds "no annotation is bad" (expected = 0)
        | Error errors -> holds (sprintf "%A" errors) (errors.Length = expected))

[<Property>]
let ``the known address is the IPv4 of kube-vip.io/requestedIP or of the status`` () =
    let genCase =
        gen {
            let! a = genUsableV4
            let! b = genUsableV4
            let! where = Gen.elements [ "annotation"; "status"; "both"; "none"; "v6 only" ]
            return a, b, where
        }
    forAll genCase (fun (a, b, where) ->
        let s = dhcpService "uid-1"
        let ingress ip = { Ip = Ip.format ip; IpMode = Some "VIP"; Ports = [] }
        let s =
            match where with
            | "annotation" -> annotate Annotations.RequestedIP (Ip.format a) s
            | "status" -> { s with Ingress = [ ingress a ] }
            | "both" -> { annotate Annotations.RequestedIP (Ip.format a) s with Ingress = [ ingress b ] }
            | "v6 only" -> annotate Annotations.RequestedIP "2001:db8::1" s
            | _ -> s
        let expected = if where = "none" || where = "v6 only" then None else Some a
        holds (sprintf "%s: %A" where (DhcpIdentity.knownAddress s)) (DhcpIdentity.knownAddress s = expected)
        |> Prop.classify (where = "both") "annotation wins over status")

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Timers
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<Property(MaxTest = 500)>]
let ``T1 and T2 are the server's when sane, else 1/2 and 7/8 of the lease, always before expiry`` () =
    let genCase =
        gen {
            let! lease = Gen.choose (2, 864_000) |> Gen.map (fun s -> int64 s * 1000L)
            let option = Gen.frequency [ 2, Gen.constant None; 3, Gen.choose (1, 1_000_000) |> Gen.map (fun s -> Some(int64 s * 1000L)) ]
            let! t1 = option
            let! t2 = option
            let! start = Gen.choose (0, 1_000_000) |> Gen.map int64
            return lease, t1, t2, start
        }
    forAll genCase (fun (lease, t1, t2, start) ->
        match Dhcp.deadlines start (LeaseLength.Finite lease) t1 t2 with
        | None -> holds "a finite lease has deadlines" false
        | Some d ->
            let renew, rebind = d.RenewAt - start, d.RebindAt - start
            let saneT2 = t2 |> Option.filter (fun t -> t < lease)
            let saneT1 = t1 |> Option.filter (fun t -> t < rebind)
            allOf
                [ holds "expires one lease after the start" (d.ExpiresAt = start + lease)
                  holds (sprintf "start < renew %d < rebind %d < expiry %d" renew rebind lease) (0L < renew && renew < rebind && rebind < lease)
                  holds "the server's T2 when shorter than the lease, else 7/8" (rebind = defaultArg saneT2 (lease * 7L / 8L))
                  holds "the server's T1 when before T2, else 1/2 of the lease or, when T2 comes earlier, 1/2 of T2"
                      (renew = defaultArg saneT1 (if lease / 2L < rebind then lease / 2L else rebind / 2L)) ]
            |> Prop.classify saneT1.IsSome "server T1 used"
            |> Prop.classify saneT2.IsSome "server T2 used"
            |> Prop.classify (t1.IsSome && saneT1.IsNone) "server T1 ignored"
            |> Prop.classify (rebind <= lease / 2L) "T2 before half the lease")

[<Property>]
let ``an infinite lease is never renewed and never expires`` () =
    let genCase = Gen.map3 (fun c l t -> c, l, t) genClient (genLease 0L) (Gen.choose (0, Int32.MaxValue))
    forAll genCase (fun ((client, now), lease, later) ->
        let lease = { lease with Length = LeaseLength.Infinite; Deadlines = Dhcp.deadlines now LeaseLength.Infinite (Some 1000L) (Some 2000L) }
        let bound = { client with Phase = DhcpPhase.Bound lease }
        let next, commands = Dhcp.step bound (input DhcpEvent.Tick (now + int64 later) { Xid = Xid 1u; Jitter = 0L })
        allOf
            [ holds "no deadlines, whatever T1/T2 the server sent" lease.Deadlines.IsNone
              holds (sprintf "%A" commands) (next = bound && commands.IsEmpty) ])

[<Property>]
let ``lease times count from the first transmission of the REQUEST, not from the answer`` () =
    forAll (Gen.map3 (fun c d l -> c, d, l) (genClientIn [ "Requesting"; "Rebooting" ]) (Gen.choose (0, 30_000)) (Gen.choose (10, 86_400))) (fun ((client, now), delay, seconds) ->
        let asked =
            match client.Phase with
            | DhcpPhase.Requesting(tx, offer) -> Some(tx, offer.Address)
            | DhcpPhase.Rebooting(tx, address) -> Some(tx, address)
            | _ -> None
        match asked with
        | Some(tx, address) ->
            let length = int64 seconds * 1000L
            let reply = answer client ReplyKind.Ack address (v4 198 18 0 1) (macOf [| 2uy; 0uy; 0uy; 0uy; 0uy; 1uy |]) (LeaseLength.Finite length)
            let next, commands = Dhcp.step client (input (DhcpEvent.Received reply) (now + int64 delay) { Xid = Xid 1u; Jitter = 0L })
            match Dhcp.lease next, commands with
            | Some lease, DhcpCommand.Leased(leased, LeaseChange.Obtained) :: _ ->
                allOf
                    [ holds "lease start = first REQUEST" (lease.Start = tx.FirstSentAt && leased = lease)
                      holds "expiry from the first REQUEST" (lease.Deadlines |> Option.map _.ExpiresAt = Some(tx.FirstSentAt + length)) ]
            | _ -> holds (sprintf "not bound: %A" commands) false
            |> Prop.classify (delay > 0) "answer came later"
        | None -> holds (sprintf "generated %s" (phaseName client)) false)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Retransmission
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Runs an unanswered client from Start, ticking it at every WakeAt; returns the send instants and kinds.
let private runUnanswered (client: DhcpState) (known: Ip option) (entropies: Entropy list) =
    let start = 1_000L
    let rec go state now (entropies: Entropy list) acc =
        match entropies with
        | [] -> List.rev acc, state
        | e :: rest ->
            let event = if now = start then DhcpEvent.Start known else DhcpEvent.Tick
            let next, commands = Dhcp.step state (input event now e)
            let acc = (sends commands |> List.map (fun m -> now, m)) @ acc
            match commands |> List.tryPick (function DhcpCommand.WakeAt t -> Some t | _ -> None) with
            | Some t -> go next t rest acc
            | None -> List.rev acc, next
    go client start entropies []

[<Property(MaxTest = 200)>]
let ``discovery never gives up: DISCOVERs forever, doubling from the first delay to the cap, within the jitter`` () =
    let genRun = gen {
        let! identity = genIdentity
        let! timing = genTiming
        let! entropies = Gen.listOfLength 40 (genEntropy timing)
        return Dhcp.create identity timing, entropies }
    forAll genRun (fun (client, entropies) ->
        let timing = client.Timing
        let sent, final = runUnanswered client None entropies
        let gaps = sent |> List.pairwise |> List.map (fun ((a, _), (b, _)) -> b - a)
        let expectedBase n = min timing.MaxRetransmit (timing.FirstRetransmit * (pown 2L (min n 40)))
        allOf
            [ holds "one DISCOVER per wake-up, forever" (sent.Length = entropies.Length && sent |> List.forall (fun (_, m) -> m.Kind = RequestKind.Discover))
              holds (sprintf "still selecting: %s" (phaseName final)) (match final.Phase with DhcpPhase.Selecting _ -> true | _ -> false)
              holds "one transaction: the same xid on every retransmission" (sent |> List.map (fun (_, m) -> m.Xid) |> List.distinct |> List.length = 1)
              holds (sprintf "gap n within the jitter of min(first * 2^n, cap): %A" (List.truncate 8 gaps))
                  (gaps |> List.mapi (fun n g -> abs (g - expectedBase n) <= timing.MaxJitter && g >= 1L) |> List.forall id)
              holds "the secs field counts from the first DISCOVER" (sent |> List.forall (fun (t, m) -> m.Seconds = int (min 65_535L ((t - fst sent.Head) / 1000L)))) ]
        |> Prop.classify (timing = DhcpTiming.Default) "RFC timing")

[<Property>]
let ``an unanswered REQUEST for an offer is retransmitted, then discovery starts over`` () =
    forAll (Gen.map2 (fun c e -> c, e) (genClientIn [ "Requesting" ]) (Gen.listOfLength 8 (genEntropy DhcpTiming.Default))) (fun ((client, _), entropies) ->
        match client.Phase with
        | DhcpPhase.Requesting(tx, offer) ->
            let timing = client.Timing
            let rec go state (es: Entropy list) acc =
                match es, transactionOf state.Phase with
                | e :: rest, Some tx ->
                    let next, commands = Dhcp.step state (input DhcpEvent.Tick tx.RetransmitAt e)
                    go next rest (acc @ [ next, sends commands ])
                | _ -> acc
            let steps = go client entropies []
            let restarted = steps |> List.tryFindIndex (fun (s, _) -> match s.Phase with DhcpPhase.Selecting _ -> true | _ -> false)
            match restarted with
            | None -> holds "never restarted" false
            | Some i ->
                let requests = steps |> List.take i |> List.collect snd
                let _, restart = steps[i]
                allOf
                    [ holds (sprintf "%d retransmissions" requests.Length) (requests.Length = max 0 (timing.RequestAttempts - tx.Attempts))
                      holds "each REQUEST asks for the offer from its server" (requests |> List.forall (fun m -> m.Kind = RequestKind.Request && m.RequestedIp = Some offer.Address && m.ServerId = Some offer.Server && m.Xid = tx.Xid))
                      holds "then a DISCOVER with a new xid" (match restart with [ m ] -> m.Kind = RequestKind.Discover && m.Xid <> tx.Xid | _ -> false) ]
                |> Prop.classify (requests.Length > 0) "retransmitted first"
        | _ -> holds (sprintf "generated %s" (phaseName client)) false)

[<Property>]
let ``an unanswered INIT-REBOOT falls back to a DISCOVER asking for the known address`` () =
    forAll (Gen.map3 (fun i t a -> i, t, a) genIdentity genTiming genUsableV4) (fun (identity, timing, known) ->
        let entropies = List.init (timing.RebootAttempts + 1) (fun i -> { Xid = Xid(uint32 i); Jitter = 0L })
        let sent, final = runUnanswered (Dhcp.create identity timing) (Some known) entropies
        let reboots, rest = sent |> List.partition (fun (_, m) -> m.Kind = RequestKind.Request)
        allOf
            [ holds "RebootAttempts INIT-REBOOT REQUESTs" (reboots.Length = timing.RebootAttempts)
              holds "each asks for the known address, broadcast, without server or ciaddr"
                  (reboots |> List.forall (fun (_, m) -> m.RequestedIp = Some known && m.ServerId = None && m.ClientIp = None && m.Destination = Destination.Broadcast))
              holds "then a DISCOVER asking for it" (match rest with [ _, m ] -> m.Kind = RequestKind.Discover && m.RequestedIp = Some known | _ -> false)
              holds (phaseName final) (match final.Phase with DhcpPhase.Selecting(_, Some a) -> a = known | _ -> false) ])

[<Property>]
let ``retransmission timing is refused when jitter could make a delay non-positive`` () =
    forAll (Gen.three (Gen.choose (-5, 100) |> Gen.map int64)) (fun (first, max, jitter) ->
        let result = DhcpTiming.create first max jitter 4 2 60_000L
        let acceptable = jitter >= 0L && first > 2L * jitter && max >= first
        holds (sprintf "%A" result) (Result.isOk result = acceptable)
        |> Prop.classify acceptable "accepted")

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Which message in which state (RFC 2131 §4.4, table 5)
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Makes the client transmit what its phase sends: Start when idle, else a tick at its deadline.
let private transmitNow (client: DhcpState) (now: Instant) (known: Ip option) =
    let at = Dhcp.nextDeadline client.Phase |> Option.defaultValue now
    let event = if client.Phase = DhcpPhase.Idle then DhcpEvent.Start known else DhcpEvent.Tick
    Dhcp.step client (input event at { Xid = Xid 77u; Jitter = 0L })

[<Property(MaxTest = 300)>]
let ``every message carries the Service's identity: chaddr, client id, hostname`` () =
    forAll (Gen.map2 (fun c k -> c, k) genClient (Gen.elements [ None; Some(v4 198 18 64 120) ])) (fun ((client, now), known) ->
        let next, commands = transmitNow client now known
        let released = Dhcp.step client (input (DhcpEvent.Stop StopMode.ReleaseLease) now { Xid = Xid 78u; Jitter = 0L }) |> snd
        let messages = sends commands @ sends released
        messages
        |> List.map (fun m ->
            holds (sprintf "%A in %s" m.Kind (phaseName client))
                (m.ClientMac = client.Identity.Mac && m.ClientId = client.Identity.ClientId && m.Hostname = client.Identity.Hostname))
        |> allOf
        |> Prop.classify (not messages.IsEmpty) "sent something"
        |> Prop.classify (phaseName next <> phaseName client) "changed phase")

[<Property(MaxTest = 300)>]
let ``renewing unicasts to the leasing server and rebinding broadcasts, both with ciaddr only`` () =
    forAll (Gen.map2 (fun c t -> c, t) (genClientIn [ "Bound" ]) (Gen.choose (0, 1000))) (fun ((client, _), slack) ->
        match client.Phase with
        | DhcpPhase.Bound({ Deadlines = Some d } as lease) ->
            let renewing, c1 = Dhcp.step client (input DhcpEvent.Tick (d.RenewAt + int64 slack % (d.RebindAt - d.RenewAt)) { Xid = Xid 5u; Jitter = 0L })
            let rebinding, c2 = Dhcp.step renewing (input DhcpEvent.Tick (d.RebindAt + int64 slack % (d.ExpiresAt - d.RebindAt)) { Xid = Xid 6u; Jitter = 0L })
            match sends c1, sends c2 with
            | [ renew ], [ rebind ] ->
                allOf
                    [ holds "T1: renewing" (match renewing.Phase with DhcpPhase.Renewing _ -> true | _ -> false)
                      holds "T2: rebinding" (match rebinding.Phase with DhcpPhase.Rebinding _ -> true | _ -> false)
                      holds "renew goes to the server in a frame to its MAC" (renew.Destination = Destination.Unicast(lease.Server, lease.Hop))
                      holds "rebind is broadcast" (rebind.Destination = Destination.Broadcast)
                      holds "both REQUESTs with ciaddr = the address" (renew.Kind = RequestKind.Request && rebind.Kind = RequestKind.Request && renew.ClientIp = Some lease.Address && rebind.ClientIp = Some lease.Address)
                      holds "neither names a requested address nor a server" (renew.RequestedIp = None && rebind.RequestedIp = None && renew.ServerId = None && rebind.ServerId = None)
                      holds "a new transaction for each" (renew.Xid <> rebind.Xid) ]
            | a, b -> holds (sprintf "sent %A then %A" a b) false
        | _ -> holds (sprintf "generated %s" (phaseName client)) false)

[<Property(MaxTest = 400)>]
let ``every unicast message is preceded by an ARP request from the leased address to the hop`` () =
    forAll (Gen.map2 (fun c late -> c, late) genClient (Gen.choose (0, 200_000))) (fun ((client, now), late) ->
        let at = (Dhcp.nextDeadline client.Phase |> Option.defaultValue now) + int64 late
        let _, ticked = Dhcp.step client (input DhcpEvent.Tick at { Xid = Xid 21u; Jitter = 0L })
        let _, released = Dhcp.step client (input (DhcpEvent.Stop StopMode.ReleaseLease) now { Xid = Xid 22u; Jitter = 0L })
        let check (commands: DhcpCommand list) =
            let indexed = List.indexed commands
            indexed
            |> List.choose (fun (i, c) ->
                match c with
                | DhcpCommand.Send({ Destination = Destination.Unicast(_, hop) } as m) ->
                    let before = if i > 0 then Some commands[i - 1] else None
                    Some(holds (sprintf "%A before unicast %A" before m.Kind) (before = Some(DhcpCommand.Resolve(hop, m.ClientIp.Value))))
                | DhcpCommand.Resolve _ ->
                    Some(holds "a Resolve is followed by its unicast" (i + 1 < commands.Length && (match commands[i + 1] with DhcpCommand.Send { Destination = Destination.Unicast _ } -> true | _ -> false)))
                | _ -> None)
        let unicasts = (ticked @ released) |> List.filter (function DhcpCommand.Send { Destination = Destination.Unicast _ } -> true | _ -> false)
        allOf (check ticked @ check released)
        |> Prop.classify (not unicasts.IsEmpty) "unicast sent")

[<Property>]
let ``discovery broadcasts a DISCOVER and requests the offer with its server, without ciaddr`` () =
    forAll (Gen.map3 (fun i a s -> i, a, s) genIdentity genUsableV4 genUsableV4) (fun (identity, offered, server) ->
        let client = Dhcp.create identity DhcpTiming.Default
        let selecting, c1 = Dhcp.step client (input (DhcpEvent.Start None) 0L { Xid = Xid 9u; Jitter = 0L })
        let offer = answer selecting ReplyKind.Offer offered server (macOf [| 2uy; 0uy; 0uy; 0uy; 0uy; 1uy |]) (LeaseLength.Finite 120_000L)
        let requesting, c2 = Dhcp.step selecting (input (DhcpEvent.Received offer) 50L { Xid = Xid 10u; Jitter = 0L })
        match sends c1, sends c2 with
        | [ discover ], [ request ] ->
            allOf
                [ holds "DISCOVER broadcast without ciaddr" (discover.Kind = RequestKind.Discover && discover.Destination = Destination.Broadcast && discover.ClientIp = None && discover.ServerId = None)
                  holds "REQUEST for the offered address from its server" (request.Kind = RequestKind.Request && request.RequestedIp = Some offered && request.ServerId = Some server)
                  holds "broadcast, no ciaddr, the DISCOVER's xid" (request.Destination = Destination.Broadcast && request.ClientIp = None && request.Xid = discover.Xid)
                  holds "both ask for mask, router, lease, server, T1, T2" (discover.ParameterRequests = [ 1uy; 3uy; 51uy; 54uy; 58uy; 59uy ] && request.ParameterRequests = discover.ParameterRequests)
                  holds (phaseName requesting) (match requesting.Phase with DhcpPhase.Requesting(_, o) -> o.Address = offered | _ -> false) ]
        | a, b -> holds (sprintf "%A %A" a b) false)

[<Property>]
let ``a full exchange leases the server's address and reports it once`` () =
    forAll (Gen.map3 (fun i a s -> i, a, s) genIdentity genUsableV4 genUsableV4) (fun (identity, offered, server) ->
        let serverMac = macOf [| 2uy; 0uy; 0uy; 0uy; 0uy; 1uy |]
        let c0 = Dhcp.create identity DhcpTiming.Default
        let c1, _ = Dhcp.step c0 (input (DhcpEvent.Start None) 0L { Xid = Xid 9u; Jitter = 0L })
        let c2, _ = Dhcp.step c1 (input (DhcpEvent.Received(answer c1 ReplyKind.Offer offered server serverMac (LeaseLength.Finite 120_000L))) 10L { Xid = Xid 10u; Jitter = 0L })
        let c3, commands = Dhcp.step c2 (input (DhcpEvent.Received(answer c2 ReplyKind.Ack offered server serverMac (LeaseLength.Finite 120_000L))) 20L { Xid = Xid 11u; Jitter = 0L })
        match commands with
        | [ DhcpCommand.Leased(lease, LeaseChange.Obtained); DhcpCommand.WakeAt t ] ->
            allOf
                [ holds "the offered address" (lease.Address = offered && lease.Server = server && lease.Hop = { Ip = server; Mac = serverMac })
                  holds "mask /24 from option 1" (lease.PrefixLength = Some 24)
                  holds "wake at T1" (Some t = (lease.Deadlines |> Option.map _.RenewAt))
                  holds "bound" (Dhcp.lease c3 = Some lease) ]
        | other -> holds (sprintf "%A" other) false)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// NAK, expiry, renewal
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<Property(MaxTest = 400)>]
let ``a NAK restarts discovery and reports any address it took away`` () =
    forAll (genClientIn [ "Requesting"; "Rebooting"; "Renewing"; "Rebinding" ]) (fun (client, now) ->
        match transactionOf client.Phase with
        | Some _ when (match client.Phase with DhcpPhase.Selecting _ -> false | _ -> true) ->
            let nak = answer client ReplyKind.Nak (V4 0u) (v4 198 18 0 1) (macOf [| 2uy; 0uy; 0uy; 0uy; 0uy; 1uy |]) LeaseLength.Infinite
            let next, commands = Dhcp.step client (input (DhcpEvent.Received nak) now { Xid = Xid 3u; Jitter = 0L })
            let lost = commands |> List.choose (function DhcpCommand.Lost(a, r) -> Some(a, r) | _ -> None)
            let expectedLost =
                match client.Phase with
                | DhcpPhase.Rebooting(_, a) -> [ a, LostReason.Refused(Some "wrong address") ]
                | DhcpPhase.Renewing(_, l) | DhcpPhase.Rebinding(_, l) -> [ l.Address, LostReason.Refused(Some "wrong address") ]
                | _ -> []
            let firstNak = client.ConsecutiveNaks = 0
            allOf
                [ holds (sprintf "lost %A" lost) (lost = expectedLost)
                  holds "no lease after a NAK" (Dhcp.lease next).IsNone
                  holds "one more NAK counted" (next.ConsecutiveNaks = client.ConsecutiveNaks + 1)
                  (if firstNak then
                       holds (sprintf "first NAK: DISCOVER at once, %s" (phaseName next))
                           (match next.Phase, sends commands with DhcpPhase.Selecting(_, None), [ d ] -> d.Kind = RequestKind.Discover | _ -> false)
                   else
                       holds (sprintf "repeated NAK: discovery waits, %A" next.Phase)
                           (match next.Phase with DhcpPhase.Init(at, None) -> at - now >= client.Timing.FirstRetransmit - client.Timing.MaxJitter | _ -> false)
                       .&. holds "nothing sent yet" (sends commands).IsEmpty) ]
            |> Prop.classify firstNak "first NAK"
            |> Prop.classify (not expectedLost.IsEmpty) "address lost"
        | _ -> holds (sprintf "generated %s" (phaseName client)) false)

[<Property>]
let ``a lease resets the NAK count`` () =
    forAll (genClientIn [ "Requesting" ]) (fun (client, now) ->
        match client.Phase with
        | DhcpPhase.Requesting(_, offer) ->
            let ack = answer client ReplyKind.Ack offer.Address offer.Server offer.Hop.Mac (LeaseLength.Finite 60_000L)
            let next, _ = Dhcp.step client (input (DhcpEvent.Received ack) now { Xid = Xid 3u; Jitter = 0L })
            holds (sprintf "%d NAKs" next.ConsecutiveNaks) (next.ConsecutiveNaks = 0 && (Dhcp.lease next).IsSome)
            |> Prop.classify (client.ConsecutiveNaks > 0) "after NAKs"
        | _ -> holds (sprintf "generated %s" (phaseName client)) false)

[<Property(MaxTest = 300)>]
let ``expiry reports the address lost and starts over asking for it`` () =
    forAll (Gen.map2 (fun c late -> c, late) (genClientIn [ "Bound"; "Renewing"; "Rebinding" ]) (Gen.choose (0, 100_000))) (fun ((client, _), late) ->
        match heldLease client with
        | Some({ Deadlines = Some d } as lease) ->
            let next, commands = Dhcp.step client (input DhcpEvent.Tick (d.ExpiresAt + int64 late) { Xid = Xid 4u; Jitter = 0L })
            allOf
                [ holds "lost: expired" (commands |> List.contains (DhcpCommand.Lost(lease.Address, LostReason.Expired)))
                  holds "DISCOVER asking for the old address"
                      (match sends commands with [ m ] -> m.Kind = RequestKind.Discover && m.RequestedIp = Some lease.Address && m.ClientIp = None | _ -> false)
                  holds (phaseName next) (match next.Phase with DhcpPhase.Selecting _ -> true | _ -> false) ]
            |> Prop.classify (match client.Phase with DhcpPhase.Bound _ -> true | _ -> false) "from Bound"
            |> Prop.classify (match client.Phase with DhcpPhase.Rebinding _ -> true | _ -> false) "from Rebinding"
            |> Prop.classify (match client.Phase with DhcpPhase.Renewing _ -> true | _ -> false) "from Renewing"
        | _ -> holds (sprintf "generated %s" (phaseName client)) false)

[<Property(MaxTest = 300)>]
let ``a renewal ACK extends the lease on the same address from the renewal's first REQUEST`` () =
    forAll (Gen.map2 (fun c l -> c, l) (genClientIn [ "Renewing"; "Rebinding" ]) (Gen.choose (10, 86_400))) (fun ((client, now), seconds) ->
        match client.Phase with
        | DhcpPhase.Renewing(tx, held) | DhcpPhase.Rebinding(tx, held) ->
            let length = int64 seconds * 1000L
            let newServer = v4 198 18 0 99
            let ack = answer client ReplyKind.Ack held.Address newServer held.Hop.Mac (LeaseLength.Finite length)
            let next, commands = Dhcp.step client (input (DhcpEvent.Received ack) now { Xid = Xid 3u; Jitter = 0L })
            match commands with
            | [ DhcpCommand.Leased(lease, LeaseChange.Extended); DhcpCommand.WakeAt _ ] ->
                allOf
                    [ holds "same address" (lease.Address = held.Address)
                      holds "from the renewal's first REQUEST" (lease.Start = tx.FirstSentAt && lease.Deadlines |> Option.map _.ExpiresAt = Some(tx.FirstSentAt + length))
                      holds "the answering server is the one to renew with next" (lease.Server = newServer)
                      holds "bound" (match next.Phase with DhcpPhase.Bound l -> l = lease | _ -> false) ]
            | other -> holds (sprintf "%A" other) false
            |> Prop.classify (match client.Phase with DhcpPhase.Renewing _ -> true | _ -> false) "renewing"
        | _ -> holds (sprintf "generated %s" (phaseName client)) false)

[<Property>]
let ``an ACK for another address than the one held reports the old one lost and the new one obtained`` () =
    forAll (genClientIn [ "Renewing"; "Rebinding" ]) (fun (client, now) ->
        match client.Phase with
        | DhcpPhase.Renewing(_, held) | DhcpPhase.Rebinding(_, held) ->
            let other = if held.Address = v4 198 18 7 7 then v4 198 18 7 8 else v4 198 18 7 7
            let ack = answer client ReplyKind.Ack other held.Server held.Hop.Mac (LeaseLength.Finite 60_000L)
            let _, commands = Dhcp.step client (input (DhcpEvent.Received ack) now { Xid = Xid 3u; Jitter = 0L })
            match commands with
            | [ DhcpCommand.Lost(a, LostReason.Replaced b); DhcpCommand.Leased(l, LeaseChange.Obtained); DhcpCommand.WakeAt _ ] -> holds "old lost, new leased" (a = held.Address && b = other && l.Address = other)
            | c -> holds (sprintf "%A" c) false
        | _ -> holds (sprintf "generated %s" (phaseName client)) false)

[<Property(MaxTest = 400)>]
let ``a tick leaves no deadline due: T1 renews, T2 rebinds, retransmissions are rescheduled`` () =
    forAll (Gen.map2 (fun c late -> c, late) genClient (Gen.choose (0, 200_000))) (fun ((client, now), late) ->
        let at = (Dhcp.nextDeadline client.Phase |> Option.defaultValue now) + int64 late
        let next, commands = Dhcp.step client (input DhcpEvent.Tick at { Xid = Xid 12u; Jitter = 0L })
        let wake = commands |> List.tryPick (function DhcpCommand.WakeAt t -> Some t | _ -> None)
        allOf
            [ holds (sprintf "next deadline %A after %d" (Dhcp.nextDeadline next.Phase) at) (Dhcp.nextDeadline next.Phase |> Option.forall (fun t -> t > at))
              holds "WakeAt is the new deadline, last" (wake = Dhcp.nextDeadline next.Phase && (wake.IsNone || List.last commands = DhcpCommand.WakeAt wake.Value)) ]
        |> Prop.classify (phaseName next <> phaseName client) "phase changed"
        |> Prop.classify (match next.Phase with DhcpPhase.Renewing _ -> true | _ -> false) "to Renewing"
        |> Prop.classify (match next.Phase with DhcpPhase.Rebinding _ -> true | _ -> false) "to Rebinding")

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Matching and stopping
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<Property(MaxTest = 500)>]
let ``replies with another xid or another chaddr are ignored`` () =
    let genCase =
        gen {
            let! client, now = genClient
            let! kind = Gen.elements [ ReplyKind.Offer; ReplyKind.Ack; ReplyKind.Nak ]
            let! wrong = Gen.elements [ "xid"; "chaddr"; "both" ]
            let! otherMac = genMac
            return client, now, kind, wrong, otherMac
        }
    forAll genCase (fun (client, now, kind, wrong, otherMac) ->
        let a = addressOf client.Phase (v4 198 18 0 50)
        let right = answer client kind a (v4 198 18 0 1) otherMac (LeaseLength.Finite 60_000L)
        let xid = Xid(right.Xid.Value + 1u)
        let mac = if otherMac = client.Identity.Mac then macOf [| 2uy; 9uy; 9uy; 9uy; 9uy; 9uy |] else otherMac
        let reply =
            match wrong with
            | "xid" -> { right with Xid = xid }
            | "chaddr" -> { right with ClientMac = mac }
            | _ -> { right with Xid = xid; ClientMac = mac }
        let next, commands = Dhcp.step client (input (DhcpEvent.Received reply) now { Xid = Xid 1u; Jitter = 0L })
        allOf
            [ holds "state unchanged" (next = client)
              holds (sprintf "only the wake-up: %A" commands) (commands |> List.forall (function DhcpCommand.WakeAt _ -> true | _ -> false)) ]
        |> Prop.classify (kind = ReplyKind.Ack) "ACK"
        |> Prop.classify (wrong = "chaddr") "chaddr")

[<Property(MaxTest = 500)>]
let ``a reply is acted on only in the state that waits for it`` () =
    forAll (Gen.map2 (fun c k -> c, k) genClient (Gen.elements [ ReplyKind.Offer; ReplyKind.Ack; ReplyKind.Nak ])) (fun ((client, now), kind) ->
        let a = addressOf client.Phase (v4 198 18 0 50)
        let reply = answer client kind a (v4 198 18 0 1) (macOf [| 2uy; 0uy; 0uy; 0uy; 0uy; 1uy |]) (LeaseLength.Finite 60_000L)
        let next, _ = Dhcp.step client (input (DhcpEvent.Received reply) now { Xid = Xid 1u; Jitter = 0L })
        let waits =
            match client.Phase, kind with
            | DhcpPhase.Selecting _, ReplyKind.Offer -> true
            | (DhcpPhase.Requesting _ | DhcpPhase.Rebooting _ | DhcpPhase.Renewing _ | DhcpPhase.Rebinding _), (ReplyKind.Ack | ReplyKind.Nak) -> true
            | _ -> false
        holds (sprintf "%A in %s → %s" kind (phaseName client) (phaseName next)) ((next <> client) = waits)
        |> Prop.classify waits "acted on")

[<Property(MaxTest = 400)>]
let ``stopping with release sends one RELEASE to the server only while a lease is held`` () =
    forAll (Gen.map2 (fun c late -> c, late) genClient (Gen.elements [ 0L; 1L; 200_000_000L ])) (fun ((client, now), late) ->
        let at = now + late
        let next, commands = Dhcp.step client (input (DhcpEvent.Stop StopMode.ReleaseLease) at { Xid = Xid 13u; Jitter = 0L })
        let held =
            heldLease client |> Option.filter (fun l -> l.Deadlines |> Option.forall (fun d -> at < d.ExpiresAt))
        allOf
            [ holds "stopped" (next.Phase = DhcpPhase.Stopped)
              (match held, commands with
               | Some lease, [ DhcpCommand.Resolve _; DhcpCommand.Send m ] ->
                   holds "RELEASE of the address to its server"
                       (m.Kind = RequestKind.Release && m.ClientIp = Some lease.Address && m.ServerId = Some lease.Server
                        && m.Destination = Destination.Unicast(lease.Server, lease.Hop) && m.RequestedIp = None && m.ParameterRequests.IsEmpty)
               | None, [] -> holds "nothing to release" true
               | _ -> holds (sprintf "held %A, sent %A" held commands) false) ]
        |> Prop.classify held.IsSome "lease held"
        |> Prop.classify ((heldLease client).IsSome && held.IsNone) "lease already expired")

[<Property>]
let ``stopping to hand over keeps the lease: nothing is sent`` () =
    forAll genClient (fun (client, now) ->
        let next, commands = Dhcp.step client (input (DhcpEvent.Stop StopMode.KeepLease) now { Xid = Xid 13u; Jitter = 0L })
        holds (sprintf "%A" commands) (next.Phase = DhcpPhase.Stopped && commands.IsEmpty)
        |> Prop.classify (heldLease client).IsSome "lease held")

[<Property>]
let ``a stopped client ignores every input`` () =
    let genEvent = Gen.elements [ DhcpEvent.Start None; DhcpEvent.Tick; DhcpEvent.Stop StopMode.ReleaseLease; DhcpEvent.Stop StopMode.KeepLease ]
    forAll (Gen.map2 (fun c e -> c, e) genClient genEvent) (fun ((client, now), event) ->
        let stopped = { client with Phase = DhcpPhase.Stopped }
        let next, commands = Dhcp.step stopped (input event (now + 1_000_000L) { Xid = Xid 1u; Jitter = 0L })
        holds (sprintf "%A" commands) (next = stopped && commands.IsEmpty))

[<Property(MaxTest = 300)>]
let ``a new transaction never reuses the xid of the one it replaces`` () =
    forAll (genClientIn [ "Selecting"; "Requesting"; "Rebooting"; "Renewing"; "Rebinding" ]) (fun (client, now) ->
        match transactionOf client.Phase with
        | Some tx ->
            // The shell happens to draw the current xid again: the transaction that replaces it must differ.
            let entropy = { Xid = tx.Xid; Jitter = 0L }
            let deadline = Dhcp.nextDeadline client.Phase |> Option.defaultValue now
            let next, _ = Dhcp.step client (input DhcpEvent.Tick (deadline + 10_000_000L) entropy)
            match transactionOf next.Phase with
            | Some tx' when tx'.Began <> tx.Began -> holds (sprintf "%A then %A" tx.Xid tx'.Xid) (tx'.Xid <> tx.Xid) |> Prop.classify true "replaced"
            | Some tx' -> holds "a retransmission keeps its xid" (tx'.Xid = tx.Xid) |> Prop.classify true "retransmitted"
            | None -> holds "no transaction after the tick" true |> Prop.classify true "ended"
        | None -> holds (sprintf "generated %s" (phaseName client)) false)

[<Property>]
let ``start confirms a known address with INIT-REBOOT and otherwise discovers`` () =
    forAll (Gen.map3 (fun i t k -> i, t, k) genIdentity genTiming (Gen.elements [ None; Some(v4 198 18 64 120); Some(V4 0u); Some(v4 224 0 0 1) ])) (fun (identity, timing, known) ->
        let next, commands = Dhcp.step (Dhcp.create identity timing) (input (DhcpEvent.Start known) 0L { Xid = Xid 1u; Jitter = 0L })
        let usable = known |> Option.filter (fun a -> (Ip.unusable a).IsNone)
        match usable, sends commands with
        | Some a, [ m ] -> holds "INIT-REBOOT" (m.Kind = RequestKind.Request && m.RequestedIp = Some a && (match next.Phase with DhcpPhase.Rebooting _ -> true | _ -> false))
        | None, [ m ] -> holds "DISCOVER" (m.Kind = RequestKind.Discover && m.RequestedIp = None && (match next.Phase with DhcpPhase.Selecting _ -> true | _ -> false))
        | _, c -> holds (sprintf "%A" c) false
        |> Prop.classify usable.IsSome "known address")

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// A client against a model server that drops messages
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// A cooperating server with one address for this client; `drops` says which of its answers are lost (in
/// order). Runs the client from Start, ticking it at each deadline, for `steps` ticks; answers arrive 5 ms
/// after the message they answer. Returns the final state and the Leased/Lost commands in order.
let private runAgainstServer (client: DhcpState) (address: Ip) (server: Ip) (length: Duration) (drops: bool list) (steps: int) =
    let serverMac = macOf [| 2uy; 0uy; 0uy; 0uy; 0uy; 1uy |]
    let state = ref client
    let drops = ref drops
    let draws = ref 0u
    let events = ResizeArray<DhcpCommand>()
    let apply event at =
        draws.Value <- draws.Value + 1u
        let next, commands = Dhcp.step state.Value (input event at { Xid = Xid(draws.Value * 7919u); Jitter = 0L })
        state.Value <- next
        commands
    let reply (m: ClientMessage) =
        let kind =
            match m.Kind with
            | RequestKind.Discover -> Some ReplyKind.Offer
            | RequestKind.Request -> Some ReplyKind.Ack
            | RequestKind.Release -> None
        kind |> Option.map (fun k -> { answer state.Value k address server serverMac (LeaseLength.Finite length) with Xid = m.Xid; ClientMac = m.ClientMac })
    let rec deliver (commands: DhcpCommand list) at =
        for c in commands do
            match c with
            | DhcpCommand.Leased _ | DhcpCommand.Lost _ -> events.Add c
            | DhcpCommand.Send m ->
                let dropped =
                    match drops.Value with
                    | d :: rest -> drops.Value <- rest; d
                    | [] -> false
                match reply m with
                | Some r when not dropped -> deliver (apply (DhcpEvent.Received r) (at + 5L)) (at + 5L)
                | _ -> ()
            | DhcpCommand.WakeAt _ | DhcpCommand.Resolve _ -> ()
    deliver (apply (DhcpEvent.Start None) 0L) 0L
    for _ in 1..steps do
        match Dhcp.nextDeadline state.Value.Phase with
        | Some at -> deliver (apply DhcpEvent.Tick at) at
        | None -> ()
    state.Value, List.ofSeq events

[<Property(MaxTest = 200)>]
let ``against a server that answers, the client obtains its address and never loses it while some renewal gets through`` () =
    let genRun =
        gen {
            let! identity = genIdentity
            let! address = genUsableV4
            let! server = genUsableV4
            let! seconds = Gen.choose (120, 3_600)
            // At most two answers lost in a row: RFC timing always leaves room for another renewal or rebind.
            let! drops = Gen.listOfLength 60 (Gen.frequency [ 4, Gen.constant false; 1, Gen.constant true ])
            let drops = drops |> List.mapi (fun i d -> d && i % 3 <> 2)
            return identity, address, server, int64 seconds * 1000L, drops
        }
    forAll genRun (fun (identity, address, server, length, drops) ->
        let final, events = runAgainstServer (Dhcp.create identity DhcpTiming.Default) address server length drops 40
        let obtained = events |> List.filter (function DhcpCommand.Leased(_, LeaseChange.Obtained) -> true | _ -> false)
        let extended = events |> List.filter (function DhcpCommand.Leased(_, LeaseChange.Extended) -> true | _ -> false)
        allOf
            [ holds (sprintf "obtained once: %A" obtained) (obtained.Length = 1)
              holds "always the server's address" (events |> List.forall (function DhcpCommand.Leased(l, _) -> l.Address = address | _ -> true))
              holds (sprintf "never lost: %A" (events |> List.filter (function DhcpCommand.Lost _ -> true | _ -> false))) (events |> List.forall (function DhcpCommand.Lost _ -> false | _ -> true))
              holds "renewed along the way" (not extended.IsEmpty)
              holds (sprintf "holds the lease at the end (%s)" (phaseName final)) (Dhcp.lease final).IsSome ]
        |> Prop.classify (extended.Length >= 3) "renewed three times or more"
        |> Prop.classify (drops |> List.take 10 |> List.exists id) "answers lost during acquisition")
