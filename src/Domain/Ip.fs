// Time and IP addresses: parsed and classified here (not with System.Net) so that the rules stay pure.
namespace Hybrid.Domain

open System

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Time
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Milliseconds on ONE node's monotonic clock. Instants from different nodes are never compared: every
/// timing rule is "how long has THIS node observed X", which is what keeps the protocol safe under skew.
type Instant = int64

/// A length of time in milliseconds.
type Duration = int64

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// IP addresses (parsed here, not with System.Net, so that the rules stay in the pure core)
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// IP family of an address.
type IpFamily =
    | IPv4
    | IPv6

/// An IP address in canonical numeric form; equality is address equality, not text equality.
// Ordered IPv4 before IPv6, then numerically. Equality and order are written out because addresses key
// the maps of every plan, and F#'s structural comparison of unions is several times slower.
[<CustomEquality; CustomComparison>]
type Ip =
    | V4 of uint32
    | V6 of hi: uint64 * lo: uint64

    /// IPv4 before IPv6, then numeric order (also what `compare` gives, only faster).
    static member Order(a: Ip, b: Ip) =
        match a, b with
        | V4 x, V4 y -> compare x y
        | V4 _, V6 _ -> -1
        | V6 _, V4 _ -> 1
        | V6(h1, l1), V6(h2, l2) -> if h1 <> h2 then compare h1 h2 else compare l1 l2

    override a.Equals(other: obj) =
        match other with
        | :? Ip as b -> Ip.Order(a, b) = 0
        | _ -> false

    override a.GetHashCode() =
        match a with
        | V4 v -> int v
        | V6(h, l) -> (h ^^^ (l * 31UL)).GetHashCode()

    interface IEquatable<Ip> with
        member a.Equals(b: Ip | null) =
            match b with
            | null -> false
            | b -> Ip.Order(a, b) = 0

    interface IComparable<Ip> with
        member a.CompareTo(b: Ip | null) =
            match b with
            | null -> 1
            | b -> Ip.Order(a, b)

    // Anything that is not an address sorts before every address (a total order, no exception).
    interface IComparable with
        member a.CompareTo(other: obj | null) =
            match other with
            | :? Ip as b -> Ip.Order(a, b)
            | _ -> 1

/// Why an address cannot be a load-balancer VIP.
type UnusableAddress =
    | Unspecified
    | Loopback
    | Multicast
    | LinkLocal
    | Broadcast
    | ReservedRange
    | MappedIPv4

[<RequireQualifiedAccess>]
module Ip =
    let family ip =
        match ip with
        | V4 _ -> IPv4
        | V6 _ -> IPv6

    let private isDigits (s: string) = s.Length > 0 && s |> Seq.forall Char.IsAsciiDigit
    let private isHex (s: string) = s.Length > 0 && s |> Seq.forall Char.IsAsciiHexDigit

    /// Dotted quad, exactly four decimal octets, no leading zeros (they mean octal to some parsers).
    let private parseV4 (s: string) : uint32 option =
        let parts = s.Split '.'
        let octet (p: string) =
            if not (isDigits p) || p.Length > 3 || (p.Length > 1 && p[0] = '0') then None
            else
                let v = int p
                if v > 255 then None else Some(uint32 v)
        if parts.Length <> 4 then None
        else
            match parts |> Array.map octet with
            | [| Some a; Some b; Some c; Some d |] -> Some((a <<< 24) ||| (b <<< 16) ||| (c <<< 8) ||| d)
            | _ -> None

    /// One side of an IPv6 text around "::" as 16-bit groups; an embedded IPv4 tail counts as two groups.
    let private parseGroups (side: string) (allowV4Tail: bool) : uint16 list option =
        if side = "" then Some []
        else
            let parts = side.Split ':' |> List.ofArray
            let rec go acc parts =
                match parts with
                | [] -> Some(List.rev acc)
                | [ last: string ] when allowV4Tail && last.Contains '.' ->
                    parseV4 last
                    |> Option.map (fun v -> List.rev acc @ [ uint16 (v >>> 16); uint16 (v &&& 0xFFFFu) ])
                | (g: string) :: rest when isHex g && g.Length <= 4 -> go (Convert.ToUInt16(g, 16) :: acc) rest
                | _ -> None
            go [] parts

    let private ofGroups (groups: uint16 list) =
        let word (gs: uint16 list) = gs |> List.fold (fun acc g -> (acc <<< 16) ||| uint64 g) 0UL
        V6(word (List.take 4 groups), word (List.skip 4 groups))

    let private parseV6 (s: string) : Ip option =
        if s.Length < 2 || s.Length > 45 || s.Contains '%' then None
        else
            match s.IndexOf "::" with
            | -1 ->
                parseGroups s true
                |> Option.filter (fun gs -> gs.Length = 8)
                |> Option.map ofGroups
            | i when s.IndexOf("::", i + 1) >= 0 -> None
            | i ->
                let left = parseGroups (s.Substring(0, i)) false
                let right = parseGroups (s.Substring(i + 2)) true
                match left, right with
                | Some l, Some r when l.Length + r.Length < 8 ->
                    Some(ofGroups (l @ List.replicate (8 - l.Length - r.Length) 0us @ r))
                | _ -> None

    /// Parses IPv4 dotted-quad or IPv6 (RFC 4291) text; anything else (CIDR, zone, host name) is None.
    let tryParse (text: string) : Ip option =
        if text.Contains ':' then parseV6 text
        else parseV4 text |> Option.map V4

    let private groupsOf hi lo =
        [ for w in [ hi; lo ] do
              for shift in [ 48; 32; 16; 0 ] -> uint16 ((w >>> shift) &&& 0xFFFFUL) ]

    /// Canonical text: dotted quad, or RFC 5952 (lower case, longest zero run as "::").
    let format ip =
        match ip with
        | V4 v ->
            String.Join('.', string (v >>> 24), string ((v >>> 16) &&& 0xFFu), string ((v >>> 8) &&& 0xFFu), string (v &&& 0xFFu))
        | V6(hi, lo) ->
            let groups = groupsOf hi lo |> Array.ofList
            // Longest run of at least two zero groups; the first one wins a tie (RFC 5952 4.2.3).
            let mutable best = (-1, 0)
            let mutable i = 0
            while i < 8 do
                if groups[i] = 0us then
                    let start = i
                    while i < 8 && groups[i] = 0us do
                        i <- i + 1
                    if i - start > snd best && i - start >= 2 then best <- (start, i - start)
                else
                    i <- i + 1
            let hex (gs: uint16 seq) = gs |> Seq.map (fun g -> g.ToString "x") |> String.concat ":"
            match best with
            | (-1, _) -> hex groups
            | (start, len) -> hex groups[.. start - 1] + "::" + hex groups[start + len ..]

    /// Whether the address can be a VIP on a LAN; the reason when it cannot.
    let unusable ip : UnusableAddress option =
        match ip with
        | V4 0u -> Some Unspecified
        | V4 0xFFFFFFFFu -> Some Broadcast
        | V4 v when v >>> 24 = 127u -> Some Loopback
        | V4 v when v >>> 24 = 0u -> Some ReservedRange
        | V4 v when v >>> 28 = 0xEu -> Some Multicast
        | V4 v when v >>> 28 = 0xFu -> Some ReservedRange
        | V4 v when v >>> 16 = 0xA9FEu -> Some LinkLocal
        | V4 _ -> None
        | V6(0UL, 0UL) -> Some Unspecified
        | V6(0UL, 1UL) -> Some Loopback
        | V6(hi, _) when hi >>> 56 = 0xFFUL -> Some Multicast
        | V6(hi, _) when hi >>> 54 = 0x3FAUL -> Some LinkLocal
        | V6(0UL, lo) when lo >>> 32 = 0xFFFFUL -> Some MappedIPv4
        | V6 _ -> None

    /// Host prefix length of the family (a VIP is a single address unless vip_subnet says otherwise).
    let hostPrefix family =
        match family with
        | IPv4 -> 32
        | IPv6 -> 128

    /// A DNS-subdomain-safe rendering, used in Lease names: dots for IPv4, fixed-width dashed hex for IPv6
    /// (so that distinct addresses can never collide and the name always ends in a hex digit).
    let toNameSegment ip =
        match ip with
        | V4 _ -> format ip
        | V6(hi, lo) -> groupsOf hi lo |> List.map (fun g -> g.ToString "x4") |> String.concat "-"

/// How UnusableAddress reads in messages.
[<RequireQualifiedAccess>]
module UnusableAddress =
    let describe reason =
        match reason with
        | Unspecified -> "the unspecified address"
        | Loopback -> "a loopback address"
        | Multicast -> "a multicast address"
        | LinkLocal -> "a link-local address"
        | Broadcast -> "the broadcast address"
        | ReservedRange -> "a reserved address"
        | MappedIPv4 -> "an IPv4-mapped IPv6 address"
