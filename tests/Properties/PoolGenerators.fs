/// Generators for address pools, the network and Services asking for addresses. Everything lives in a small
/// universe (10.0.0.0/24 and fd00::/120) with addresses near its edges likely, so that pools are nearly full,
/// requested addresses collide with pools and node addresses, and subnet ends matter. The oracles here
/// decide membership address by address (masks and comparisons), never with the domain's range arithmetic.
module Hybrid.Properties.PoolGenerators

open FsCheck
open FsCheck.FSharp
open Hybrid.Domain
open Hybrid.Properties.Generators
open Hybrid.Properties.PoolBasics

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// The universe
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// 10.0.0.n
let u4 (n: int) = v4 10 0 0 n

/// fd00::n
let u6 (n: int) = V6(0xfd00000000000000UL, uint64 n)

/// The last number of an address of the universe.
let low (address: Ip) =
    match address with
    | V4 v -> int (v &&& 0xFFu)
    | V6(_, lo) -> int (lo &&& 0xFFUL)

let inFamily (family: IpFamily) n = if family = IPv4 then u4 n else u6 n

let Universe (family: IpFamily) = [ for n in 0..255 -> inFamily family n ]

/// Numbers near the universe's edges and middle, so that pools, requests and node addresses collide.
let genLow = Gen.frequency [ 3, Gen.choose (0, 9); 2, Gen.choose (124, 131); 3, Gen.choose (246, 255); 1, Gen.choose (0, 255) ]

let Namespaces = [ "team-a"; "team-b"; "team-c" ]

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Pools as ConfigMap data, with an oracle
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// One item of a cidr- or range- value.
type ItemSpec =
    | CidrSpec of Ip * int
    | RangeSpec of Ip * Ip
    /// 0.0.0.0/32 (DHCP).
    | DhcpSpec

let itemFamily item =
    match item with
    | CidrSpec(a, _)
    | RangeSpec(a, _) -> Some(Ip.family a)
    | DhcpSpec -> None

let itemText (item: ItemSpec) =
    match item with
    | CidrSpec(a, bits) -> sprintf "%s/%d" (Ip.format a) bits
    | RangeSpec(a, b) -> sprintf "%s-%s" (Ip.format a) (Ip.format b)
    | DhcpSpec -> "0.0.0.0/32"

/// Whether an item offers an address, decided with masks on the address's number.
let itemOffers (skipEnds: bool) (item: ItemSpec) (address: Ip) =
    match item, address with
    | CidrSpec(V4 b, bits), V4 x ->
        let shift = 32 - bits
        let same = bits = 0 || (x >>> shift) = (b >>> shift)
        let hostBits = if shift = 32 then x else x &&& ((1u <<< shift) - 1u)
        let isEnd = hostBits = 0u || hostBits = (if shift = 32 then System.UInt32.MaxValue else (1u <<< shift) - 1u)
        same && not (skipEnds && bits <= 30 && isEnd)
    | CidrSpec(V6(bh, bl), bits), V6(xh, xl) when bits >= 64 ->
        let shift = 128 - bits
        bh = xh && (shift = 64 || (xl >>> shift) = (bl >>> shift))
    | RangeSpec(a, b), x -> Ip.family a = Ip.family x && a <= x && x <= b
    | _ -> false

/// A scope's entries: the items of its cidr- key and of its range- key.
type ScopeSpec =
    { Scope: string
      Cidrs: ItemSpec list
      Ranges: ItemSpec list }

    member s.Items = s.Cidrs @ s.Ranges

type PoolSpec =
    { Scopes: ScopeSpec list
      /// allow-share-<scope> values.
      Sharing: (string * bool) list
      Descending: bool
      SkipEnds: bool }

/// The ConfigMap's data, written the ways an operator writes it (spaces after commas, upper-case booleans).
let poolData (spec: PoolSpec) : Map<string, string> =
    let join items = items |> List.map itemText |> String.concat ", "
    Map.ofList
        [ for s in spec.Scopes do
              if not s.Cidrs.IsEmpty then yield ("cidr-" + s.Scope, join s.Cidrs)
              if not s.Ranges.IsEmpty then yield ("range-" + s.Scope, join s.Ranges)
          for scope, allowed in spec.Sharing -> ("allow-share-" + scope, (if allowed then "true" else "False"))
          if spec.Descending then yield ("search-order", "desc")
          if spec.SkipEnds then yield ("skip-end-ips-in-cidr", "true") ]

let readPools (spec: PoolSpec) : PoolConfig =
    let r = Pools.read (poolData spec)
    if not r.Errors.IsEmpty then failwithf "generated pools rejected: %A" r.Errors
    r.Config

/// The scope a namespace draws from: its own, else global, else none.
let oracleScope (spec: PoolSpec) (ns: string) : ScopeSpec option =
    spec.Scopes |> List.tryFind (fun s -> s.Scope = ns) |> Option.orElse (spec.Scopes |> List.tryFind (fun s -> s.Scope = "global"))

let oracleOffers (spec: PoolSpec) (scope: ScopeSpec) (address: Ip) =
    scope.Items |> List.exists (fun i -> itemOffers spec.SkipEnds i address)

let oracleHasFamily (scope: ScopeSpec) (family: IpFamily) =
    scope.Items |> List.exists (fun i -> itemFamily i = Some family || (i = DhcpSpec && family = IPv4))

let oracleDhcp (scope: ScopeSpec) = scope.Items |> List.contains DhcpSpec

let oracleShares (spec: PoolSpec) (ns: string) =
    spec.Sharing |> List.tryFind (fun (s, _) -> s = ns) |> Option.orElse (spec.Sharing |> List.tryFind (fun (s, _) -> s = "global"))
    |> Option.map snd |> Option.defaultValue false

let genItem (family: IpFamily) : Gen<ItemSpec> =
    Gen.oneof
        [ Gen.map2 (fun n bits -> CidrSpec(inFamily family n, (if family = IPv4 then bits else bits + 96))) genLow
              (Gen.frequency [ 1, Gen.choose (24, 27); 4, Gen.choose (28, 30); 2, Gen.choose (31, 32) ])
          Gen.map2 (fun a span -> RangeSpec(inFamily family a, inFamily family (min 255 (a + span)))) genLow (Gen.frequency [ 1, Gen.constant 0; 4, Gen.choose (1, 6); 1, Gen.choose (7, 40) ]) ]

/// A scope's items: IPv4 and/or IPv6, sometimes DHCP instead of IPv4 addresses.
let genScope (name: string) : Gen<ScopeSpec> =
    gen {
        let! v4 = Gen.frequency [ 5, Gen.choose (1, 3) |> Gen.bind (fun n -> Gen.listOfLength n (genItem IPv4)); 1, Gen.constant []; 1, Gen.constant [ DhcpSpec ] ]
        let! v6 = Gen.frequency [ 2, Gen.choose (1, 2) |> Gen.bind (fun n -> Gen.listOfLength n (genItem IPv6)); 3, Gen.constant [] ]
        let items = v4 @ v6
        let items = if items.IsEmpty then [ CidrSpec(u4 8, 29) ] else items
        let cidrs = items |> List.filter (function RangeSpec _ -> false | _ -> true)
        let ranges = items |> List.filter (function RangeSpec _ -> true | _ -> false)
        return { Scope = name; Cidrs = cidrs; Ranges = ranges }
    }

/// Pools for some of "global", "team-a", "team-b" (team-c never has its own), sharing flags, order, ends.
let genPoolSpecWith (sharing: Gen<(string * bool) list>) : Gen<PoolSpec> =
    gen {
        let! names = someOf 1 3 [ "global"; "team-a"; "team-b" ]
        let! scopes = names |> List.sort |> Gen.collectToList genScope
        let! share = sharing
        let! desc = bool 1 2
        let! skip = bool 1 2
        return { Scopes = scopes; Sharing = share; Descending = desc; SkipEnds = skip }
    }

let genSharingFlags = someOf 0 3 [ "global"; "team-a"; "team-b"; "team-c" ] |> Gen.bind (Gen.collectToList (fun s -> bool 1 1 |> Gen.map (fun b -> s, b)))

let genPoolSpec = genPoolSpecWith (Gen.constant [])

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// The network
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Between lo and 3 nodes on one subnet (prefixes from /24 to /32, so that subnet ends fall inside and
/// outside the universe), each with a status address, a VIP interface address or two, and a gateway.
let genNetworkWith (lo: int) : Gen<NodeNetwork list> =
    gen {
        let! n = Gen.choose (lo, 3)
        let! prefix4 = Gen.elements [ 24; 24; 25; 26; 28; 31; 32 ]
        let! prefix6 = Gen.elements [ 120; 121; 124; 127 ]
        let! gateway = Gen.elements [ 1; 254; 129 ]
        let! nodes =
            [ 1..n ]
            |> Gen.collectToList (fun i ->
                gen {
                    let! status = Gen.listOfLength 1 genLow
                    let! iface = genLow
                    let! iface6 = Gen.frequency [ 2, Gen.constant None; 1, genLow |> Gen.map Some ]
                    return
                        { Node = sprintf "node-%d" i
                          StatusAddresses = status |> List.map u4
                          InterfaceAddresses =
                            [ { Address = u4 iface; PrefixLength = prefix4 }
                              yield! iface6 |> Option.map (fun a -> { Address = u6 a; PrefixLength = prefix6 }) |> Option.toList ]
                          Gateways = [ u4 gateway ] }
                })
        return nodes
    }

let genNetwork = genNetworkWith 0

/// Every reserved address with the facts that reserve it, decided with masks (the oracle).
let oracleReserved (network: NodeNetwork list) : Set<Ip> =
    let ends (a: AddressOnInterface) =
        match a.Address with
        | V4 x when a.PrefixLength <= 30 ->
            let shift = 32 - a.PrefixLength
            let net = (x >>> shift) <<< shift
            [ V4 net; V4(net ||| ((1u <<< shift) - 1u)) ]
        | V6(h, l) when a.PrefixLength >= 64 && a.PrefixLength <= 126 ->
            let shift = 128 - a.PrefixLength
            [ V6(h, (l >>> shift) <<< shift) ]
        | _ -> []
    set
        [ for n in network do
              yield! n.StatusAddresses
              yield! n.Gateways
              for a in n.InterfaceAddresses do
                  a.Address
                  yield! ends a ]

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Services asking for addresses
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Where a DHCP lease is recorded.
type LeaseRecord =
    | InRequestedIp
    | InStatus

/// What a generated Service refers to.
type Ask =
    | AsksNothing
    /// Static addresses, one per family; `announced`: its status lists them.
    | AsksStatic of Ip list * announced: bool
    | AsksDhcp of leased: Ip option * LeaseRecord
    /// Another load balancer's Service (another class) with this address.
    | OtherClass of Ip
    /// kube-vip.io/ignore: "true" with this address (someone else serves it).
    | IgnoredWith of Ip
    /// No longer a LoadBalancer, the annotation left behind: its address is released.
    | NoLongerLoadBalancer of Ip

type ServiceSpec =
    { Key: ServiceKey
      CreatedAt: int64
      Ask: Ask
      Ports: ServicePort list
      Policy: TrafficPolicy
      Families: IpFamily list
      FamilyPolicy: IpFamilyPolicy }

/// The addresses a spec refers to, by construction (the oracle of "in use").
let claimed (spec: ServiceSpec) : Ip list =
    match spec.Ask with
    | AsksNothing
    | NoLongerLoadBalancer _ -> []
    | AsksStatic(ips, _) -> ips
    | AsksDhcp(leased, _) -> Option.toList leased
    | OtherClass a
    | IgnoredWith a -> [ a ]

let ours (spec: ServiceSpec) =
    match spec.Ask with
    | OtherClass _
    | IgnoredWith _
    | NoLongerLoadBalancer _ -> false
    | _ -> true

let ingress (ips: Ip list) : IngressEntry list = ips |> List.map (fun a -> { Ip = Ip.format a; IpMode = Some "VIP"; Ports = [] })

let toService (spec: ServiceSpec) : Service =
    let s = { service spec.Key.Namespace spec.Key.Name with CreatedAt = spec.CreatedAt; Ports = spec.Ports; Policy = spec.Policy }
    let withIps (ips: Ip list) s = annotate Annotations.LoadBalancerIPs (ips |> List.map Ip.format |> String.concat ",") s
    match spec.Ask with
    | AsksNothing -> s
    | AsksStatic(ips, announced) -> { withIps ips s with Ingress = if announced then ingress ips else [] }
    | AsksDhcp(None, _) -> annotate Annotations.LoadBalancerIPs "0.0.0.0" s
    | AsksDhcp(Some leased, InRequestedIp) -> annotate Annotations.LoadBalancerIPs "0.0.0.0" s |> annotate Annotations.RequestedIP (Ip.format leased)
    | AsksDhcp(Some leased, InStatus) -> { annotate Annotations.LoadBalancerIPs "0.0.0.0" s with Ingress = ingress [ leased ] }
    | OtherClass a -> { withIps [ a ] s with Class = Some "example.com/other-lb" }
    | IgnoredWith a -> withIps [ a ] s |> annotate Annotations.Ignore "true"
    | NoLongerLoadBalancer a -> { withIps [ a ] s with Type = "ClusterIP" }

let toPoolService (spec: ServiceSpec) : PoolService =
    { Service = toService spec; Families = spec.Families; FamilyPolicy = spec.FamilyPolicy }

let genStatic: Gen<Ip list> =
    Gen.frequency
        [ 4, genLow |> Gen.map (u4 >> List.singleton)
          1, genLow |> Gen.map (u6 >> List.singleton)
          1, Gen.map2 (fun a b -> [ u4 a; u6 b ]) genLow genLow ]

let genAsk: Gen<Ask> =
    Gen.frequency
        [ 6, Gen.constant AsksNothing
          5, Gen.map2 (fun ips announced -> AsksStatic(ips, announced)) genStatic (bool 1 2)
          2, Gen.map2 (fun leased record -> AsksDhcp(leased, record)) (Gen.frequency [ 3, genLow |> Gen.map (u4 >> Some); 1, Gen.constant None ]) (Gen.elements [ InRequestedIp; InStatus ])
          1, genLow |> Gen.map (u4 >> OtherClass)
          1, genLow |> Gen.map (u4 >> IgnoredWith)
          1, genLow |> Gen.map (u4 >> NoLongerLoadBalancer) ]

/// Every address some scope of the spec offers.
let offeredBy (spec: PoolSpec) : Ip list =
    [ for f in [ IPv4; IPv6 ] do
          for a in Universe f do
              if spec.Scopes |> List.exists (fun scope -> oracleOffers spec scope a) then a ]

/// Asks that mostly take addresses the pools offer, so that pools are nearly full and assignment has to
/// skip: static requests, DHCP leases and other load balancers' addresses among them.
let genAskFrom (offered: Ip list) : Gen<Ask> =
    if offered.IsEmpty then genAsk
    else
        Gen.frequency
            [ 4, Gen.constant AsksNothing
              2, genAsk
              4, Gen.map2 (fun a announced -> AsksStatic([ a ], announced)) (Gen.elements offered) (bool 1 2)
              1, Gen.map2 (fun a record -> AsksDhcp(Some a, record)) (Gen.elements offered) (Gen.elements [ InRequestedIp; InStatus ])
              1, Gen.elements offered |> Gen.map OtherClass ]

/// Sharing allowed everywhere half of the time, otherwise any flags.
let genSharingOften = Gen.frequency [ 1, Gen.constant [ "global", true ]; 1, genSharingFlags ]

/// SingleStack of one named family, or with ipFamilies unset.
let genSingleStack: Gen<IpFamily list * IpFamilyPolicy> =
    Gen.frequency [ 4, Gen.constant ([ IPv4 ], SingleStack); 1, Gen.constant ([ IPv6 ], SingleStack); 1, Gen.constant ([], SingleStack) ]

let genAnyStack: Gen<IpFamily list * IpFamilyPolicy> =
    Gen.frequency
        [ 4, genSingleStack
          1, Gen.elements [ [ IPv4; IPv6 ]; [ IPv6; IPv4 ]; [ IPv4 ]; [] ] |> Gen.map (fun fs -> fs, PreferDualStack)
          1, Gen.elements [ [ IPv4; IPv6 ]; [ IPv6; IPv4 ]; [] ] |> Gen.map (fun fs -> fs, RequireDualStack) ]

let genServiceSpecWith (genStack: Gen<IpFamily list * IpFamilyPolicy>) (genAskOf: Gen<Ask>) (k: ServiceKey) : Gen<ServiceSpec> =
    gen {
        let! created = Gen.choose (0, 3)
        let! ask = genAskOf
        let! ports = genPorts
        let! policy = Gen.frequency [ 4, Gen.constant Cluster; 1, Gen.constant Local ]
        let! families, familyPolicy = genStack
        return { Key = k; CreatedAt = int64 created; Ask = ask; Ports = ports; Policy = policy; Families = families; FamilyPolicy = familyPolicy }
    }

let PoolKeys = [ for ns in Namespaces do for n in [ "a"; "b"; "c"; "d"; "e"; "f" ] -> key ns n ]

let genServiceSpecs (genStack: Gen<IpFamily list * IpFamilyPolicy>) (genAskOf: Gen<Ask>) (lo: int) (hi: int) : Gen<ServiceSpec list> =
    someOf lo hi PoolKeys |> Gen.bind (Gen.collectToList (genServiceSpecWith genStack genAskOf))

/// Services in the order the domain decides them: oldest first, then namespace/name.
let byAge (specs: ServiceSpec list) = specs |> List.sortBy (fun s -> s.CreatedAt, s.Key.Namespace, s.Key.Name)

let unaddressedOurs (specs: ServiceSpec list) = specs |> List.filter (fun s -> s.Ask = AsksNothing)

/// The Service with its assigned addresses written as the assigner writes them.
let applyAssignment (assignments: Map<ServiceKey, AssignOutcome>) (s: Service) : Service =
    match assignments.TryFind s.Key with
    | Some(AssignAddresses a) -> annotate Annotations.LoadBalancerIPs (PoolAssignment.annotation a) s
    | _ -> s
