// Address pools: kube-vip-cloud-provider's ConfigMap read into validated pools, and the pool each namespace uses.
namespace Hybrid.Domain

open System

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Pools as configured
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Where a ConfigMap entry applies: every namespace (`cidr-global`) or one (`cidr-<namespace>`).
type PoolScope =
    | AllNamespaces
    | OneNamespace of string

    override s.ToString() =
        match s with
        | AllNamespaces -> "global"
        | OneNamespace ns -> ns

/// The addresses a pool offers in one family.
type FamilyPool =
    /// `0.0.0.0/32`: the LAN's DHCP server chooses each Service's address (IPv4 only, as in
    /// kube-vip-cloud-provider); the Service is given `0.0.0.0`.
    | ViaDhcp
    /// These addresses (never empty; unusable ones, and with skip-end-ips-in-cidr the ends of IPv4 CIDRs,
    /// already taken out).
    | FromAddresses of IpSet

/// The pool of one scope: its `cidr-` and `range-` entries together. A family the entries do not mention
/// is None: the scope's Services cannot have an address of that family.
type AddressPool =
    { Scope: PoolScope
      V4: FamilyPool option
      V6: FamilyPool option }

/// `search-order`: which free address a Service is given.
type SearchOrder =
    /// The lowest free address (the default).
    | LowestFirst
    /// `desc`: the highest free address.
    | HighestFirst

/// `skip-end-ips-in-cidr`: whether the first and last address of an IPv4 CIDR entry are handed out.
type CidrEnds =
    | KeepCidrEnds
    | SkipCidrEnds

/// `allow-share-<scope>`: whether Services of a namespace may share addresses with other namespaces'.
type AddressSharing =
    | SharingAllowed
    | SharingNotAllowed

/// The pool ConfigMap, validated.
type PoolConfig =
    { Pools: Map<PoolScope, AddressPool>
      Sharing: Map<PoolScope, AddressSharing>
      /// `interface-<scope>`: the interface Services of the scope are announced on.
      Interfaces: Map<PoolScope, string>
      SearchOrder: SearchOrder
      CidrEnds: CidrEnds }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// What can be wrong with an entry
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Why a `start-end` item is not a range.
type RangeProblem =
    | MissingDash
    | StartNotParsed
    | EndNotParsed
    | FamiliesDiffer
    | StartAfterEnd

/// What is wrong with one entry (a key, or one item of a comma list).
[<RequireQualifiedAccess>]
type PoolProblem =
    /// Not a key kube-vip-cloud-provider defines (a typo would otherwise go unnoticed).
    | UnknownKey
    /// The part after `cidr-`, `range-`, `allow-share-` or `interface-` is neither `global` nor a
    /// namespace name.
    | NotANamespace
    /// A pool key with nothing in it: the scope has a pool with no address.
    | EmptyValue
    | NotACidr of CidrProblem
    | NotARange of RangeProblem
    /// Every address of the item is unusable as a VIP (loopback, multicast, link-local, reserved), or
    /// was a skipped CIDR end.
    | NoUsableAddress
    /// `0.0.0.0/32` (DHCP) next to IPv4 addresses in one scope; the addresses are used.
    | DhcpAmongAddresses
    /// Not one of Go's strconv.ParseBool spellings (true, false, 1, 0, t, f, …), as the cloud provider reads them.
    | NotABoolean
    /// `search-order` other than `asc` or `desc`.
    | NotASearchOrder
    /// Not a Linux interface name (1–15 bytes, no '/', ':' or white space, not "." or "..").
    | NotAnInterfaceName

/// One bad entry: the key, the offending item (the whole value for key-level problems), and the problem.
type PoolConfigError =
    { Key: string
      Item: string
      Problem: PoolProblem }

/// The ConfigMap read leniently: every good entry is used, every bad one reported.
type PoolRead =
    { Config: PoolConfig
      Errors: PoolConfigError list }

[<RequireQualifiedAccess>]
module PoolProblem =
    let private cidr problem =
        match problem with
        | MissingSlash -> "not a CIDR (address/length)"
        | AddressNotParsed -> "its address is not an IPv4 or IPv6 address"
        | LengthNotParsed -> "its prefix length is not a number"
        | LengthTooLong maximum -> "its prefix length is longer than " + string maximum

    let private range problem =
        match problem with
        | MissingDash -> "not a range (first-last)"
        | StartNotParsed -> "its first address is not an IPv4 or IPv6 address"
        | EndNotParsed -> "its last address is not an IPv4 or IPv6 address"
        | FamiliesDiffer -> "its first and last addresses are of different families"
        | StartAfterEnd -> "its first address comes after its last"

    let describe problem =
        match problem with
        | PoolProblem.UnknownKey -> "not a key of the pool ConfigMap (ignored)"
        | PoolProblem.NotANamespace -> "the key names neither \"global\" nor a namespace (ignored)"
        | PoolProblem.EmptyValue -> "empty: the pool has no address"
        | PoolProblem.NotACidr p -> cidr p + " (ignored)"
        | PoolProblem.NotARange p -> range p + " (ignored)"
        | PoolProblem.NoUsableAddress -> "no address in it can be a VIP (ignored)"
        | PoolProblem.DhcpAmongAddresses -> "0.0.0.0/32 (DHCP) next to IPv4 addresses: the addresses are used"
        | PoolProblem.NotABoolean -> "not true or false (false is used)"
        | PoolProblem.NotASearchOrder -> "not asc or desc (asc is used)"
        | PoolProblem.NotAnInterfaceName -> "not an interface name (ignored)"

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Reading the ConfigMap
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<RequireQualifiedAccess>]
module Pools =
    /// Where kube-vip-cloud-provider keeps its pools (its defaults).
    let ConfigMapNamespace = "kube-system"
    let ConfigMapName = "kubevip"

    let CidrPrefix = "cidr-"
    let RangePrefix = "range-"
    let AllowSharePrefix = "allow-share-"
    let InterfacePrefix = "interface-"
    let SearchOrderKey = "search-order"
    let SkipEndIpsKey = "skip-end-ips-in-cidr"
    let GlobalScope = "global"

    /// The DHCP marker: a pool of exactly this block hands out 0.0.0.0.
    let DhcpMarker = "0.0.0.0/32"

    /// No ConfigMap: no pool, so no assignment and no pool rule (the rules that hold whatever the pools
    /// still apply).
    let none: PoolConfig =
        { Pools = Map.empty
          Sharing = Map.empty
          Interfaces = Map.empty
          SearchOrder = LowestFirst
          CidrEnds = KeepCidrEnds }

    // ── Keys ────────────────────────────────────────────────────────────────────────────────────────

    type private Key =
        | CidrKey of PoolScope
        | RangeKey of PoolScope
        | AllowShareKey of PoolScope
        | InterfaceKey of PoolScope
        | SearchOrderSetting
        | SkipEndIpsSetting

    /// A namespace name is a DNS-1123 label.
    let private isNamespace (s: string) =
        s.Length >= 1 && s.Length <= 63
        && s |> Seq.forall (fun c -> Char.IsAsciiLetterLower c || Char.IsAsciiDigit c || c = '-')
        && s[0] <> '-' && s[s.Length - 1] <> '-'

    let private scopeOf (rest: string) =
        if rest = GlobalScope then Ok AllNamespaces
        elif isNamespace rest then Ok(OneNamespace rest)
        else Error PoolProblem.NotANamespace

    let private classify (key: string) : Result<Key, PoolProblem> =
        let scoped (prefix: string) make =
            if key.StartsWith(prefix, StringComparison.Ordinal) then Some(scopeOf (key.Substring prefix.Length) |> Result.map make)
            else None
        if key = SearchOrderKey then Ok SearchOrderSetting
        elif key = SkipEndIpsKey then Ok SkipEndIpsSetting
        else
            [ AllowSharePrefix, AllowShareKey; CidrPrefix, CidrKey; RangePrefix, RangeKey; InterfacePrefix, InterfaceKey ]
            |> List.tryPick (fun (prefix, make) -> scoped prefix make)
            |> Option.defaultValue (Error PoolProblem.UnknownKey)

    // ── Values ──────────────────────────────────────────────────────────────────────────────────────

    let private items (value: string) =
        value.Split ',' |> Array.map _.Trim() |> Array.filter (String.IsNullOrEmpty >> not) |> List.ofArray

    let private parseBool (text: string) =
        match text.Trim() with
        | "1" | "t" | "T" | "true" | "TRUE" | "True" -> Some true
        | "0" | "f" | "F" | "false" | "FALSE" | "False" -> Some false
        | _ -> None

    let private isInterfaceName (s: string) =
        s.Length >= 1 && Text.Encoding.UTF8.GetByteCount s <= 15 && s <> "." && s <> ".."
        && s |> Seq.forall (fun c -> c <> '/' && c <> ':' && not (Char.IsWhiteSpace c) && not (Char.IsControl c))

    /// Every usable VIP address in a block.
    let private usable = IpSet.ofCidrs UnusableAddress.blocks

    /// One item of a pool entry: DHCP, or addresses.
    type private PoolItem =
        | DhcpItem
        | AddressItem of IpSet

    let private cidrItem (ends: CidrEnds) (text: string) : Result<PoolItem, PoolProblem> =
        match Cidr.parse text with
        | Error p -> Error(PoolProblem.NotACidr p)
        | Ok _ when text = DhcpMarker -> Ok DhcpItem
        | Ok c ->
            let block = IpRange.ofCidr c
            let hosts =
                match ends, Ip.next block.First, Ip.previous block.Last with
                // A /30 or wider IPv4 block: its first address is the network's, its last the broadcast.
                | SkipCidrEnds, Some second, Some beforeLast when Cidr.family c = IPv4 && c.Length <= 30 ->
                    IpRange.create second beforeLast
                | _ -> Some block
            Ok(AddressItem(IpSet.ofRanges (Option.toList hosts)))

    let private rangeItem (text: string) : Result<PoolItem, PoolProblem> =
        if text = DhcpMarker then Ok DhcpItem
        else
            match text.Split '-' with
            | [| a; b |] ->
                match Ip.tryParse (a.Trim()), Ip.tryParse (b.Trim()) with
                | None, _ -> Error(PoolProblem.NotARange StartNotParsed)
                | _, None -> Error(PoolProblem.NotARange EndNotParsed)
                | Some first, Some last when Ip.family first <> Ip.family last -> Error(PoolProblem.NotARange FamiliesDiffer)
                | Some first, Some last ->
                    match IpRange.create first last with
                    | Some r -> Ok(AddressItem(IpSet.ofRanges [ r ]))
                    | None -> Error(PoolProblem.NotARange StartAfterEnd)
            | _ -> Error(PoolProblem.NotARange MissingDash)

    /// An item's usable addresses, or NoUsableAddress when none is left.
    let private usableItem (item: PoolItem) : Result<PoolItem, PoolProblem> =
        match item with
        | DhcpItem -> Ok DhcpItem
        | AddressItem set ->
            let kept = IpSet.difference set usable
            if IpSet.isEmpty kept then Error PoolProblem.NoUsableAddress else Ok(AddressItem kept)

    // ── Stages ──────────────────────────────────────────────────────────────────────────────────────

    /// The settings that shape how pool entries read, with their errors.
    let private globalSettings (data: Map<string, string>) =
        let order, orderErrors =
            match data.TryFind SearchOrderKey with
            | None -> LowestFirst, []
            | Some v ->
                match v.Trim().ToLowerInvariant() with
                | "desc" -> HighestFirst, []
                | "asc" -> LowestFirst, []
                | _ -> LowestFirst, [ { Key = SearchOrderKey; Item = v; Problem = PoolProblem.NotASearchOrder } ]
        let ends, endErrors =
            match data.TryFind SkipEndIpsKey with
            | None -> KeepCidrEnds, []
            | Some v ->
                match parseBool v with
                | Some true -> SkipCidrEnds, []
                | Some false -> KeepCidrEnds, []
                | None -> KeepCidrEnds, [ { Key = SkipEndIpsKey; Item = v; Problem = PoolProblem.NotABoolean } ]
        order, ends, orderErrors @ endErrors

    /// One scope's pool from its keys' items (in key order, cidr- before range-).
    let private poolOf (scope: PoolScope) (entries: (string * string * PoolItem) list) =
        let v4 = entries |> List.choose (fun (_, _, i) -> match i with AddressItem s -> Some(IpSet.ofFamily IPv4 s) | DhcpItem -> None)
        let v6 = entries |> List.choose (fun (_, _, i) -> match i with AddressItem s -> Some(IpSet.ofFamily IPv6 s) | DhcpItem -> None)
        let v4Set = v4 |> List.fold IpSet.union IpSet.empty
        let v6Set = v6 |> List.fold IpSet.union IpSet.empty
        let dhcp = entries |> List.filter (fun (_, _, i) -> i = DhcpItem)
        let familyPool set = if IpSet.isEmpty set then None else Some(FromAddresses set)
        let v4Pool, errors =
            match familyPool v4Set, dhcp with
            | Some addresses, [] -> Some addresses, []
            | Some addresses, markers ->
                Some addresses, markers |> List.map (fun (key, item, _) -> { Key = key; Item = item; Problem = PoolProblem.DhcpAmongAddresses })
            | None, [] -> None, []
            | None, _ -> Some ViaDhcp, []
        { Scope = scope; V4 = v4Pool; V6 = familyPool v6Set }, errors

    /// A key of the ConfigMap that was recognised, with its value.
    type private Entry = { Key: string; Value: string; Kind: Key }

    /// Every key classified: the recognised entries, and an error for each key that is not.
    let private entries (data: Map<string, string>) : Entry list * PoolConfigError list =
        let classified =
            data
            |> Map.toList
            |> List.filter (fun (k, _) -> k <> SearchOrderKey && k <> SkipEndIpsKey)
            |> List.map (fun (k, v) -> k, v, classify k)
        classified |> List.choose (fun (k, v, c) -> match c with Ok kind -> Some { Key = k; Value = v; Kind = kind } | Error _ -> None),
        classified |> List.choose (fun (k, v, c) -> match c with Error p -> Some { Key = k; Item = v; Problem = p } | Ok _ -> None)

    /// The pools: every cidr- and range- entry item by item, then each scope's items together.
    let private pools (ends: CidrEnds) (recognised: Entry list) : AddressPool list * PoolConfigError list =
        let poolEntries =
            recognised
            |> List.choose (fun e ->
                match e.Kind with
                | CidrKey scope -> Some(scope, e, cidrItem ends)
                | RangeKey scope -> Some(scope, e, rangeItem)
                | _ -> None)
        let read (scope, e: Entry, parse) =
            match items e.Value with
            | [] -> [], [ { Key = e.Key; Item = e.Value; Problem = PoolProblem.EmptyValue } ]
            | texts ->
                let results = texts |> List.map (fun t -> t, parse t |> Result.bind usableItem)
                results |> List.choose (fun (t, r) -> match r with Ok i -> Some(scope, (e.Key, t, i)) | Error _ -> None),
                results |> List.choose (fun (t, r) -> match r with Error p -> Some { Key = e.Key; Item = t; Problem = p } | Ok _ -> None)
        let parsed, itemErrors = poolEntries |> List.map read |> List.unzip
        let parsed = List.concat parsed
        let pools, poolErrors =
            poolEntries
            |> List.map (fun (scope, _, _) -> scope)
            |> List.distinct
            |> List.map (fun scope -> parsed |> List.filter (fun (s, _) -> s = scope) |> List.map snd |> poolOf scope)
            |> List.unzip
        pools, List.concat itemErrors @ List.concat poolErrors

    /// The allow-share- entries.
    let private sharing (recognised: Entry list) : (PoolScope * AddressSharing) list * PoolConfigError list =
        let results =
            recognised
            |> List.choose (fun e ->
                match e.Kind with
                | AllowShareKey scope ->
                    match parseBool e.Value with
                    | Some true -> Some(Ok(scope, SharingAllowed))
                    | Some false -> Some(Ok(scope, SharingNotAllowed))
                    | None -> Some(Error { Key = e.Key; Item = e.Value; Problem = PoolProblem.NotABoolean })
                | _ -> None)
        results |> List.choose (function Ok x -> Some x | Error _ -> None), results |> List.choose (function Error x -> Some x | Ok _ -> None)

    /// The interface- entries.
    let private interfaces (recognised: Entry list) : (PoolScope * string) list * PoolConfigError list =
        let results =
            recognised
            |> List.choose (fun e ->
                match e.Kind with
                | InterfaceKey scope when isInterfaceName (e.Value.Trim()) -> Some(Ok(scope, e.Value.Trim()))
                | InterfaceKey _ -> Some(Error { Key = e.Key; Item = e.Value; Problem = PoolProblem.NotAnInterfaceName })
                | _ -> None)
        results |> List.choose (function Ok x -> Some x | Error _ -> None), results |> List.choose (function Error x -> Some x | Ok _ -> None)

    /// Reads the ConfigMap's data leniently: every good entry is used and every bad one reported, in key
    /// order. A scope whose pool keys are all bad still has its (empty) pool, so its Services get no
    /// address rather than the global pool's.
    let read (data: Map<string, string>) : PoolRead =
        let order, ends, settingErrors = globalSettings data
        let recognised, keyErrors = entries data
        let pools, poolErrors = pools ends recognised
        let sharing, sharingErrors = sharing recognised
        let interfaces, interfaceErrors = interfaces recognised
        { Config =
            { Pools = pools |> List.map (fun p -> p.Scope, p) |> Map.ofList
              Sharing = Map.ofList sharing
              Interfaces = Map.ofList interfaces
              SearchOrder = order
              CidrEnds = ends }
          Errors = settingErrors @ keyErrors @ poolErrors @ sharingErrors @ interfaceErrors |> List.sortBy _.Key }

    /// Strict reading, for a check before applying a ConfigMap: the configuration only when every entry is good.
    let validate (data: Map<string, string>) : Result<PoolConfig, PoolConfigError list> =
        let r = read data
        if r.Errors.IsEmpty then Ok r.Config else Error r.Errors

    // ── Lookups ─────────────────────────────────────────────────────────────────────────────────────

    /// Whether any pool is configured; only then do the pool rules apply and does assignment run.
    let configured (config: PoolConfig) = not config.Pools.IsEmpty

    /// The pool a namespace's Services use: the namespace's own (its cidr- and range- keys) when it has
    /// one, else the global one, else none. A namespace pool replaces the global one; it does not add to it.
    let poolFor (config: PoolConfig) (ns: string) : AddressPool option =
        config.Pools.TryFind(OneNamespace ns) |> Option.orElse (config.Pools.TryFind AllNamespaces)

    /// allow-share-<namespace>, else allow-share-global, else not allowed.
    let sharingFor (config: PoolConfig) (ns: string) : AddressSharing =
        config.Sharing.TryFind(OneNamespace ns)
        |> Option.orElse (config.Sharing.TryFind AllNamespaces)
        |> Option.defaultValue SharingNotAllowed

    /// interface-<namespace>, else interface-global.
    let interfaceFor (config: PoolConfig) (ns: string) : string option =
        config.Interfaces.TryFind(OneNamespace ns) |> Option.orElse (config.Interfaces.TryFind AllNamespaces)

    let familyPool (pool: AddressPool) (family: IpFamily) : FamilyPool option =
        match family with
        | IPv4 -> pool.V4
        | IPv6 -> pool.V6

    /// Whether the pool offers this address (a DHCP family offers none: the LAN's server chooses).
    let offers (pool: AddressPool) (ip: Ip) : bool =
        match familyPool pool (Ip.family ip) with
        | Some(FromAddresses set) -> IpSet.contains set ip
        | Some ViaDhcp
        | None -> false
