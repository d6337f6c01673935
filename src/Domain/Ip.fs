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

    /// The address after this one in its family, or None after the family's last address.
    let next ip : Ip option =
        match ip with
        | V4 UInt32.MaxValue -> None
        | V4 v -> Some(V4(v + 1u))
        | V6(UInt64.MaxValue, UInt64.MaxValue) -> None
        | V6(hi, UInt64.MaxValue) -> Some(V6(hi + 1UL, 0UL))
        | V6(hi, lo) -> Some(V6(hi, lo + 1UL))

    /// The address before this one in its family, or None before the family's first address.
    let previous ip : Ip option =
        match ip with
        | V4 0u -> None
        | V4 v -> Some(V4(v - 1u))
        | V6(0UL, 0UL) -> None
        | V6(hi, 0UL) -> Some(V6(hi - 1UL, UInt64.MaxValue))
        | V6(hi, lo) -> Some(V6(hi, lo - 1UL))

    /// A DNS-subdomain-safe rendering, used in Lease names: dots for IPv4, fixed-width dashed hex for IPv6
    /// (so that distinct addresses can never collide and the name always ends in a hex digit).
    let toNameSegment ip =
        match ip with
        | V4 _ -> format ip
        | V6(hi, lo) -> groupsOf hi lo |> List.map (fun g -> g.ToString "x4") |> String.concat "-"

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Blocks of addresses: CIDRs, ranges, and sets of ranges
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Why a text is not a CIDR.
type CidrProblem =
    | MissingSlash
    | AddressNotParsed
    | LengthNotParsed
    | LengthTooLong of maximum: int

/// An aligned block address/length. The address is the block's first address: a host address written
/// with a prefix (192.168.0.201/29) means its block (192.168.0.200/29), as Go's netipx reads it.
[<CustomEquality; CustomComparison>]
type Cidr =
    private
        { network: Ip
          length: int }

    member c.Network = c.network
    member c.Length = c.length

    override c.ToString() = Ip.format c.network + "/" + string c.length

    override a.Equals(other: obj) =
        match other with
        | :? Cidr as b -> a.network = b.network && a.length = b.length
        | _ -> false

    override c.GetHashCode() = HashCode.Combine(c.network, c.length)

    interface IComparable with
        member a.CompareTo(other: obj | null) =
            match other with
            | :? Cidr as b ->
                match Ip.Order(a.network, b.network) with
                | 0 -> compare a.length b.length
                | n -> n
            | _ -> 1

/// The addresses from First to Last inclusive, both of one family.
[<CustomEquality; CustomComparison>]
type IpRange =
    private
        { first: Ip
          last: Ip }

    member r.First = r.first
    member r.Last = r.last

    override r.ToString() = if r.first = r.last then Ip.format r.first else Ip.format r.first + "-" + Ip.format r.last

    override a.Equals(other: obj) =
        match other with
        | :? IpRange as b -> a.first = b.first && a.last = b.last
        | _ -> false

    override r.GetHashCode() = HashCode.Combine(r.first, r.last)

    interface IComparable with
        member a.CompareTo(other: obj | null) =
            match other with
            | :? IpRange as b ->
                match Ip.Order(a.first, b.first) with
                | 0 -> Ip.Order(a.last, b.last)
                | n -> n
            | _ -> 1

/// A set of addresses as ranges in address order (IPv4 first), disjoint and never adjacent, so that two
/// sets with the same addresses are equal.
[<CustomEquality; NoComparison>]
type IpSet =
    private
        { ranges: IpRange list }

    member s.Ranges = s.ranges

    override s.ToString() = s.ranges |> List.map string |> String.concat ","

    override a.Equals(other: obj) =
        match other with
        | :? IpSet as b -> a.ranges = b.ranges
        | _ -> false

    override s.GetHashCode() = s.ranges |> List.fold (fun h r -> HashCode.Combine(h, r)) 17

[<RequireQualifiedAccess>]
module Cidr =
    let private maskV4 length = if length = 0 then 0u else UInt32.MaxValue <<< (32 - length)

    let private maskWord (bits: int) = if bits <= 0 then 0UL elif bits >= 64 then UInt64.MaxValue else UInt64.MaxValue <<< (64 - bits)

    let private networkOf ip length =
        match ip with
        | V4 v -> V4(v &&& maskV4 length)
        | V6(hi, lo) -> V6(hi &&& maskWord length, lo &&& maskWord (length - 64))

    /// The block of `length` bits that contains `ip`; None when the length does not fit the family.
    let containing (ip: Ip) (length: int) : Cidr option =
        if length < 0 || length > Ip.hostPrefix (Ip.family ip) then None
        else Some { network = networkOf ip length; length = length }

    /// The block's last address (for IPv4 blocks of /30 and wider, the broadcast address).
    let last (c: Cidr) : Ip =
        match c.network with
        | V4 v -> V4(v ||| ~~~(maskV4 c.length))
        | V6(hi, lo) -> V6(hi ||| ~~~(maskWord c.length), lo ||| ~~~(maskWord (c.length - 64)))

    let family (c: Cidr) = Ip.family c.network

    let contains (c: Cidr) (ip: Ip) = Ip.family ip = family c && networkOf ip c.length = c.network

    /// Reads address/length. The length is decimal without a sign or leading zeros, as Go's netip reads it.
    let parse (text: string) : Result<Cidr, CidrProblem> =
        match text.Split '/' with
        | [| address; bits |] ->
            match Ip.tryParse address with
            | None -> Error AddressNotParsed
            | Some ip ->
                let digits = bits.Length > 0 && bits.Length <= 3 && bits |> Seq.forall Char.IsAsciiDigit && not (bits.Length > 1 && bits[0] = '0')
                if not digits then Error LengthNotParsed
                else
                    let maximum = Ip.hostPrefix (Ip.family ip)
                    match containing ip (int bits) with
                    | Some c -> Ok c
                    | None -> Error(LengthTooLong maximum)
        | _ -> Error MissingSlash

[<RequireQualifiedAccess>]
module IpRange =
    /// The range first..last; None when the families differ or first comes after last.
    let create (first: Ip) (last: Ip) : IpRange option =
        if Ip.family first <> Ip.family last || Ip.Order(first, last) > 0 then None
        else Some { first = first; last = last }

    let single (ip: Ip) : IpRange = { first = ip; last = ip }

    let ofCidr (c: Cidr) : IpRange = { first = c.Network; last = Cidr.last c }

    let family (r: IpRange) = Ip.family r.first

    let contains (r: IpRange) (ip: Ip) = Ip.Order(r.first, ip) <= 0 && Ip.Order(ip, r.last) <= 0

    /// Whether b starts at most one address after a ends (then the two are one range).
    let internal touches (a: IpRange) (b: IpRange) =
        Ip.family a.first = Ip.family b.first
        && match Ip.next a.last with
           | None -> true
           | Some after -> Ip.Order(b.first, after) <= 0

[<RequireQualifiedAccess>]
module IpSet =
    let empty: IpSet = { ranges = [] }

    let private later (a: Ip) (b: Ip) = if Ip.Order(a, b) >= 0 then a else b

    /// The set of the addresses in any of the ranges.
    let ofRanges (ranges: IpRange seq) : IpSet =
        let sorted = ranges |> Seq.sortWith (fun a b -> Ip.Order(a.First, b.First)) |> List.ofSeq
        let merged =
            sorted
            |> List.fold
                (fun acc r ->
                    match acc with
                    | current :: rest when IpRange.touches current r -> { current with last = later current.Last r.Last } :: rest
                    | _ -> r :: acc)
                []
            |> List.rev
        { ranges = merged }

    let ofCidrs (cidrs: Cidr seq) = cidrs |> Seq.map IpRange.ofCidr |> ofRanges

    let ranges (s: IpSet) = s.Ranges

    let isEmpty (s: IpSet) = s.Ranges.IsEmpty

    let contains (s: IpSet) (ip: Ip) = s.Ranges |> List.exists (fun r -> IpRange.contains r ip)

    let union (a: IpSet) (b: IpSet) = ofRanges (a.Ranges @ b.Ranges)

    /// The part of one range outside another: nothing, one piece or two.
    let private cut (r: IpRange) (hole: IpRange) : IpRange list =
        if Ip.family r.First <> Ip.family hole.First || Ip.Order(hole.Last, r.First) < 0 || Ip.Order(r.Last, hole.First) < 0 then [ r ]
        else
            [ if Ip.Order(r.First, hole.First) < 0 then
                  match Ip.previous hole.First with
                  | Some before -> { first = r.First; last = before }
                  | None -> ()
              if Ip.Order(hole.Last, r.Last) < 0 then
                  match Ip.next hole.Last with
                  | Some after -> { first = after; last = r.Last }
                  | None -> () ]

    /// The addresses of `a` that are not in `b`.
    let difference (a: IpSet) (b: IpSet) : IpSet =
        let rest = b.Ranges |> List.fold (fun pieces hole -> pieces |> List.collect (fun r -> cut r hole)) a.Ranges
        { ranges = rest }

    /// Only the addresses of one family.
    let ofFamily (family: IpFamily) (s: IpSet) : IpSet = { ranges = s.Ranges |> List.filter (fun r -> IpRange.family r = family) }

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

    /// Every address Ip.unusable refuses, as blocks (to take them out of address pools).
    let blocks: Cidr list =
        let block network length : Cidr = { network = network; length = length }
        [ block (V4 0x00000000u) 8 // 0.0.0.0/8: unspecified and reserved
          block (V4 0x7F000000u) 8 // 127.0.0.0/8: loopback
          block (V4 0xA9FE0000u) 16 // 169.254.0.0/16: link-local
          block (V4 0xE0000000u) 3 // 224.0.0.0/3: multicast, reserved, broadcast
          block (V6(0UL, 0UL)) 127 // :: and ::1
          block (V6(0UL, 0xFFFF00000000UL)) 96 // ::ffff:0:0/96: IPv4-mapped
          block (V6(0xFE80000000000000UL, 0UL)) 10 // fe80::/10: link-local
          block (V6(0xFF00000000000000UL, 0UL)) 8 ] // ff00::/8: multicast
