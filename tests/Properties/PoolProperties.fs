/// Address pools: assignment (which address an unaddressed Service is given) and enforcement (which
/// requested addresses may be announced). Oracles decide membership address by address over the small
/// universe of PoolGenerators, independently of the domain's range arithmetic.
module Hybrid.Properties.PoolProperties

open Xunit
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators
open Hybrid.Properties.PoolBasics
open Hybrid.Properties.PoolGenerators

let private assignAll (spec: PoolSpec) (network: NodeNetwork list) (specs: ServiceSpec list) =
    PoolAssignment.assign DefaultConfig (readPools spec) network (specs |> List.map toPoolService)

let private staticsOf (outcome: AssignOutcome) =
    match outcome with
    | AssignAddresses a -> a.Addresses |> List.choose (function Static ip -> Some ip | Dhcp _ -> None)
    | WaitForAddress _ -> []

let private waits (outcomes: (ServiceKey * AssignOutcome) list) =
    outcomes |> List.exists (fun (_, o) -> match o with WaitForAddress _ -> true | _ -> false)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Assignment
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// What the oracle expects for a single-stack Service.
type private Expected =
    | ExpectAddress of Ip
    | ExpectDhcp
    | ExpectWait of IpFamily * FamilyShortfall
    | ExpectNoPool

/// Single-stack Services, oldest first: the first free address of the namespace's pool (its own, else the
/// global one) in search order, found by walking the whole universe.
let private expectSingleStack (spec: PoolSpec) (network: NodeNetwork list) (specs: ServiceSpec list) =
    let mutable used = Set.union (set (specs |> List.collect claimed)) (oracleReserved network)
    [ for s in byAge specs |> unaddressedOurs do
          match oracleScope spec s.Key.Namespace with
          | None -> s.Key, ExpectNoPool
          | Some scope ->
              let family =
                  match s.Families with
                  | f :: _ -> f
                  | [] -> if not (oracleHasFamily scope IPv4) && oracleHasFamily scope IPv6 then IPv6 else IPv4
              if family = IPv4 && oracleDhcp scope then s.Key, ExpectDhcp
              elif not (oracleHasFamily scope family) then s.Key, ExpectWait(family, FamilyNotInPool)
              else
                  let free = Universe family |> List.filter (fun a -> oracleOffers spec scope a && not (used.Contains a))
                  match (if spec.Descending then List.rev free else free) with
                  | first :: _ ->
                      used <- used.Add first
                      s.Key, ExpectAddress first
                  | [] -> s.Key, ExpectWait(family, PoolExhausted) ]

let private asExpected (outcome: AssignOutcome) =
    match outcome with
    | AssignAddresses { Addresses = [ Static ip ] } -> Some(ExpectAddress ip)
    | AssignAddresses { Addresses = [ Dhcp(IPv4, None) ] } -> Some ExpectDhcp
    | WaitForAddress(FamiliesUnavailable(_, [ f, why ])) -> Some(ExpectWait(f, why))
    | WaitForAddress NoPoolApplies -> Some ExpectNoPool
    | _ -> None

[<Property(MaxTest = 300)>]
let ``assignment gives the lowest free address of the namespace's pool, or the highest with search-order desc`` () =
    let genCase =
        gen {
            let! spec = genPoolSpec
            let! network = genNetwork
            let! specs = genServiceSpecs genSingleStack (genAskFrom (offeredBy spec)) 1 14
            return spec, network, specs
        }
    forAll genCase (fun (spec, network, specs) ->
        let actual = assignAll spec network specs
        let expected = expectSingleStack spec network specs
        let skipped =
            expected |> List.exists (fun (k, e) ->
                match e, oracleScope spec k.Namespace with
                | ExpectAddress a, Some scope ->
                    let family = Ip.family a
                    let earlier = Universe family |> List.filter (fun b -> oracleOffers spec scope b && (if spec.Descending then b > a else b < a))
                    not earlier.IsEmpty
                | _ -> false)
        allOf
            [ holds (sprintf "decided for %A, expected for %A" (List.map fst actual) (List.map fst expected)) (List.map fst actual = List.map fst expected)
              for (k, outcome), (_, e) in List.zip actual expected do
                  holds (sprintf "%O: %A, expected %A" k outcome e) (asExpected outcome = Some e) ]
        |> Prop.classify spec.Descending "search-order desc"
        |> Prop.classify skipped "used or reserved addresses skipped"
        |> Prop.classify (expected |> List.exists (fun (_, e) -> match e with ExpectWait(_, PoolExhausted) -> true | _ -> false)) "a pool exhausted"
        |> Prop.classify (expected |> List.exists (fun (_, e) -> match e with ExpectNoPool | ExpectDhcp | ExpectWait(_, FamilyNotInPool) -> true | _ -> false)) "no pool, DHCP or no such family")

[<Property(MaxTest = 300)>]
let ``assignment never hands out an address in use, reserved, or outside the namespace's pool`` () =
    let genCase =
        gen {
            let! spec = genPoolSpec
            let! network = genNetwork
            let! specs = genServiceSpecs genAnyStack (genAskFrom (offeredBy spec)) 1 14
            return spec, network, specs
        }
    forAll genCase (fun (spec, network, specs) ->
        let outcomes = assignAll spec network specs
        let inUse = set (specs |> List.collect claimed)
        let reserved = oracleReserved network
        let given = outcomes |> List.collect (fun (k, o) -> staticsOf o |> List.map (fun a -> k, a))
        let kinds = specs |> List.map _.Ask
        allOf
            [ for k, a in given do
                  let scope = oracleScope spec k.Namespace
                  holds (sprintf "%O got %s, which is in use" k (Ip.format a)) (not (inUse.Contains a))
                  holds (sprintf "%O got %s, which is reserved" k (Ip.format a)) (not (reserved.Contains a))
                  holds (sprintf "%O got %s, outside its pool %A" k (Ip.format a) scope) (scope |> Option.exists (fun s -> oracleOffers spec s a))
              holds (sprintf "one address given twice: %A" given) ((given |> List.map snd |> List.distinct).Length = given.Length) ]
        |> Prop.classify (kinds |> List.exists (function AsksDhcp(Some _, _) -> true | _ -> false)) "DHCP leases in use"
        |> Prop.classify (kinds |> List.exists (function OtherClass _ | IgnoredWith _ -> true | _ -> false)) "other load balancers' addresses"
        |> Prop.classify (kinds |> List.exists (function NoLongerLoadBalancer _ -> true | _ -> false)) "released addresses"
        |> Prop.classify (not reserved.IsEmpty) "node addresses"
        |> Prop.classify (given.Length >= 3) "three or more addresses given")

[<Property>]
let ``an address leased by DHCP is never assigned, wherever the lease is recorded`` () =
    let genCase =
        gen {
            let! first = Gen.choose (1, 250)
            let! size = Gen.choose (1, 4)
            let! leasedAt = Gen.choose (0, size - 1)
            let! record = Gen.elements [ InRequestedIp; InStatus ]
            let! waiting = Gen.choose (size, size + 1)
            return first, size, leasedAt, record, waiting
        }
    forAll genCase (fun (first, size, leasedAt, record, waiting) ->
        let spec = { Scopes = [ { Scope = "global"; Cidrs = []; Ranges = [ RangeSpec(u4 first, u4 (first + size - 1)) ] } ]; Sharing = []; Descending = false; SkipEnds = false }
        let leased = u4 (first + leasedAt)
        let dhcp = { Key = key "team-a" "dhcp"; CreatedAt = 5L; Ask = AsksDhcp(Some leased, record); Ports = [ tcp 80 ]; Policy = Cluster; Families = [ IPv4 ]; FamilyPolicy = SingleStack }
        let newcomers = [ for i in 1..waiting -> { dhcp with Key = key "team-b" (sprintf "s%d" i); CreatedAt = int64 i; Ask = AsksNothing } ]
        let outcomes = assignAll spec [] (dhcp :: newcomers)
        let given = outcomes |> List.collect (snd >> staticsOf)
        allOf
            [ holds (sprintf "the lease %s was given: %A" (Ip.format leased) outcomes) (not (List.contains leased given))
              holds (sprintf "%d of %d free addresses given" given.Length (size - 1)) (given.Length = size - 1)
              holds "the rest wait, the pool exhausted"
                  (outcomes |> List.filter (fun (_, o) -> staticsOf o = []) |> List.forall (fun (_, o) -> (match o with WaitForAddress(FamiliesUnavailable(_, [ IPv4, PoolExhausted ])) -> true | _ -> false))) ]
        |> Prop.classify (record = InStatus) "lease only in status"
        |> Prop.classify (size = 1) "the lease is the whole pool")

[<Property>]
let ``skip-end-ips-in-cidr never hands out a CIDR's network or broadcast address`` () =
    let genCase =
        gen {
            // Disjoint blocks: /28, /29 or /30 at distinct 32-address slots.
            let! slots = someOf 1 3 [ 0..7 ]
            let! blocks = slots |> Gen.collectToList (fun slot -> Gen.choose (28, 30) |> Gen.map (fun bits -> CidrSpec(u4 (slot * 32), bits)))
            let! services = Gen.choose (1, 20)
            return blocks, services
        }
    forAll genCase (fun (blocks, services) ->
        let spec = { Scopes = [ { Scope = "global"; Cidrs = blocks; Ranges = [] } ]; Sharing = []; Descending = false; SkipEnds = true }
        let specs = [ for i in 1..services -> { Key = key "team-a" (sprintf "s%02d" i); CreatedAt = int64 i; Ask = AsksNothing; Ports = [ tcp 80 ]; Policy = Cluster; Families = [ IPv4 ]; FamilyPolicy = SingleStack } ]
        let given = assignAll spec [] specs |> List.collect (snd >> staticsOf)
        let ends =
            blocks |> List.collect (function
                | CidrSpec(a, bits) -> [ a; u4 (low a + (1 <<< (32 - bits)) - 1) ]
                | _ -> [])
        let capacity = blocks |> List.sumBy (function CidrSpec(_, bits) -> (1 <<< (32 - bits)) - 2 | _ -> 0)
        allOf
            [ holds (sprintf "an end given: %A" (given |> List.filter (fun a -> List.contains a ends))) (given |> List.forall (fun a -> not (List.contains a ends)))
              holds (sprintf "%d given, capacity %d" given.Length capacity) (given.Length = min services capacity) ]
        |> Prop.classify (services >= capacity) "every host address given")

[<Property(MaxTest = 200)>]
let ``assignment does not depend on the order Services are listed`` () =
    let genCase =
        gen {
            let! spec = genPoolSpecWith genSharingFlags
            let! network = genNetwork
            let! specs = genServiceSpecs genAnyStack genAsk 1 14
            let! shuffled = Gen.shuffle specs
            return spec, network, specs, List.ofArray shuffled
        }
    forAll genCase (fun (spec, network, specs, shuffled) ->
        let a = assignAll spec network specs
        let b = assignAll spec network shuffled
        holds (sprintf "%A\nvs\n%A" a b) (a = b)
        |> Prop.classify (waits a) "some Service waits")

[<Property(MaxTest = 200)>]
let ``a later Service never changes what an earlier one gets`` () =
    let genCase =
        gen {
            let! spec = genPoolSpecWith genSharingFlags
            let! network = genNetwork
            let! specs = genServiceSpecs genAnyStack genAsk 1 12
            let latest = specs |> List.map _.CreatedAt |> List.fold max 0L
            let! newcomer = genServiceSpecWith genAnyStack (Gen.constant AsksNothing) (key "team-c" "newcomer")
            return spec, network, specs, { newcomer with CreatedAt = latest + 1L }
        }
    forAll genCase (fun (spec, network, specs, newcomer) ->
        let before = assignAll spec network specs
        let after = assignAll spec network (specs @ [ newcomer ]) |> List.filter (fun (k, _) -> k <> newcomer.Key)
        holds (sprintf "%A\nbecame\n%A" before after) (before = after))

[<Property(MaxTest = 200)>]
let ``what assignment writes, enforcement allows and the port rules admit, and assigning again gives nothing new`` () =
    let genCase =
        gen {
            let! spec = genPoolSpecWith genSharingOften
            let! network = genNetwork
            let! specs = genServiceSpecs genAnyStack (genAskFrom (offeredBy spec)) 1 14
            return spec, network, specs
        }
    forAll genCase (fun (spec, network, specs) ->
        let pools = readPools spec
        let outcomes = assignAll spec network specs
        let assigned = outcomes |> List.choose (fun (k, o) -> match o with AssignAddresses _ -> Some k | _ -> None)
        let applied = specs |> List.map (toService >> applyAssignment (Map.ofList outcomes))
        let verdicts = AddressPolicy.verdicts DefaultConfig pools network applied |> List.map (fun v -> v.Service, v) |> Map.ofList
        let candidates = applied |> List.choose (fun s -> match Addresses.requested s with Requested rs when Admission.interest DefaultConfig s = Interested -> Some(s, Addresses.advertised rs) | _ -> None)
        let sharing = Sharing.resolve candidates
        let again = PoolAssignment.assign DefaultConfig pools network (applied |> List.map (fun s -> { Service = s; Families = []; FamilyPolicy = SingleStack }))
        let shared = outcomes |> List.exists (fun (_, o) -> match o with AssignAddresses a -> not a.Shared.IsEmpty | _ -> false)
        allOf
            [ for k in assigned do
                  holds (sprintf "%O: enforcement says %A" k verdicts[k].Verdicts) (verdicts[k].Verdicts |> List.forall (fun (_, v) -> v = AddressAllowed))
                  match sharing.TryFind k with
                  | Some v -> holds (sprintf "%O: port rules say %A" k v) (v = Admitted)
                  | None -> ()
              holds (sprintf "assigned again: %A" again) (again |> List.forall (fun (k, _) -> not (List.contains k assigned))) ]
        |> Prop.classify shared "an address shared (allow-share)"
        |> Prop.classify (assigned.Length >= 2) "two or more assigned")

[<Property>]
let ``dual-stack gets one address of each family when asked, primary family first`` () =
    let genCase =
        gen {
            // A pool with neither family would be no pool at all.
            let! v4, v6 = Gen.elements [ for a in [ "free"; "full"; "none" ] do for b in [ "free"; "full"; "none" ] do if (a, b) <> ("none", "none") then a, b ]
            let! families = Gen.elements [ [ IPv4; IPv6 ]; [ IPv6; IPv4 ]; [] ]
            let! policy = Gen.elements [ PreferDualStack; RequireDualStack ]
            return v4, v6, families, policy
        }
    forAll genCase (fun (v4, v6, families, policy) ->
        // Each family's pool is one address; "full" gives it to an earlier Service.
        let items = [ if v4 <> "none" then RangeSpec(u4 10, u4 10)
                      if v6 <> "none" then RangeSpec(u6 10, u6 10) ]
        let spec = { Scopes = [ { Scope = "global"; Cidrs = []; Ranges = items } ]; Sharing = []; Descending = false; SkipEnds = false }
        let holder ips = { Key = key "team-a" "holder"; CreatedAt = 0L; Ask = AsksStatic(ips, false); Ports = [ tcp 80 ]; Policy = Cluster; Families = []; FamilyPolicy = SingleStack }
        let taken = [ if v4 = "full" then u4 10
                      if v6 = "full" then u6 10 ]
        let service = { Key = key "team-b" "dual"; CreatedAt = 1L; Ask = AsksNothing; Ports = [ tcp 80 ]; Policy = Cluster; Families = families; FamilyPolicy = policy }
        let outcome = assignAll spec [] ([ service ] @ (if taken.IsEmpty then [] else [ holder taken ])) |> List.exactlyOne |> snd
        let available f = (if f = IPv4 then v4 else v6) = "free"
        let order = if families.IsEmpty then [ IPv4; IPv6 ] else families
        let expected = order |> List.filter available |> List.map (fun f -> Static(if f = IPv4 then u4 10 else u6 10))
        let complete = expected.Length = 2
        match outcome with
        | AssignAddresses a ->
            holds (sprintf "%A given, expected %A" a.Addresses expected)
                (a.Addresses = expected && (complete || (policy = PreferDualStack && not expected.IsEmpty)))
        | WaitForAddress(FamiliesUnavailable(_, missing)) ->
            holds (sprintf "waits for %A though %A could be given" missing expected)
                ((policy = RequireDualStack && not complete || expected.IsEmpty)
                 && (missing |> List.map fst |> List.forall (available >> not)))
        | other -> holds (sprintf "%A" other) false
        |> Prop.classify complete "both families free"
        |> Prop.classify (not complete && policy = PreferDualStack) "PreferDualStack short of a family"
        |> Prop.classify (not complete && policy = RequireDualStack) "RequireDualStack short of a family")

[<Property>]
let ``with allow-share a Service joins an earlier compatible address only when both namespaces allow it`` () =
    let genCase =
        gen {
            let! holderNs = Gen.elements [ "team-a"; "team-b" ]
            let! newNs = Gen.elements [ "team-a"; "team-b" ]
            let! flags = genSharingFlags
            let! clash = bool 1 2
            return holderNs, newNs, flags, clash
        }
    forAll genCase (fun (holderNs, newNs, flags, clash) ->
        let spec = { Scopes = [ { Scope = "global"; Cidrs = []; Ranges = [ RangeSpec(u4 10, u4 20) ] } ]; Sharing = flags; Descending = false; SkipEnds = false }
        let holder = { Key = key holderNs "holder"; CreatedAt = 0L; Ask = AsksStatic([ u4 15 ], false); Ports = [ tcp 80 ]; Policy = Cluster; Families = []; FamilyPolicy = SingleStack }
        let newcomer = { holder with Key = key newNs "new"; CreatedAt = 1L; Ask = AsksNothing; Ports = [ (if clash then tcp 80 else tcp 443) ] }
        let outcome = assignAll spec [] [ holder; newcomer ] |> List.exactlyOne |> snd
        let mayShare = oracleShares spec newNs && oracleShares spec holderNs && not clash
        let expected = if mayShare then u4 15 else u4 10
        holds (sprintf "%A, expected %s" outcome (Ip.format expected)) (staticsOf outcome = [ expected ])
        |> Prop.classify mayShare "shared"
        |> Prop.classify (not mayShare && clash) "ports clash"
        |> Prop.classify (not mayShare && not clash) "sharing not allowed"
        |> Prop.classify (holderNs <> newNs) "across namespaces")

[<Fact>]
let ``no pool configured: nothing is assigned`` () =
    let s = toPoolService { Key = key "team-a" "s"; CreatedAt = 0L; Ask = AsksNothing; Ports = [ tcp 80 ]; Policy = Cluster; Families = []; FamilyPolicy = SingleStack }
    Assert.Empty(PoolAssignment.assign DefaultConfig Pools.none [] [ s ])
    let onlySettings = (Pools.read (Map [ "search-order", "desc"; "allow-share-global", "true" ])).Config
    Assert.Empty(PoolAssignment.assign DefaultConfig onlySettings [] [ s ])

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Enforcement
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private judge (pools: PoolConfig) (network: NodeNetwork list) (services: Service list) =
    AddressPolicy.verdicts DefaultConfig pools network services |> List.map (fun v -> v.Service, v.Verdicts) |> Map.ofList

/// The facts behind a Reserved refusal hold for the address.
let private reservedTruly (network: NodeNetwork list) (address: Ip) (why: ReservedAddress) =
    let node n = network |> List.find (fun x -> x.Node = n)
    match why with
    | ReservedAddress.NodeAddress n -> List.contains address (node n).StatusAddresses
    | ReservedAddress.InterfaceAddress n -> (node n).InterfaceAddresses |> List.exists (fun a -> a.Address = address)
    | ReservedAddress.Gateway n -> List.contains address (node n).Gateways
    | ReservedAddress.SubnetNetwork(n, c) -> address = c.Network && (node n).InterfaceAddresses |> List.exists (fun a -> Cidr.containing a.Address a.PrefixLength = Some c)
    | ReservedAddress.SubnetBroadcast(n, c) -> address = Cidr.last c && (node n).InterfaceAddresses |> List.exists (fun a -> Cidr.containing a.Address a.PrefixLength = Some c)

[<Property(MaxTest = 300)>]
let ``enforcement refuses every node, interface, gateway, network and broadcast address, whatever the pools and even if announced`` () =
    let genCase =
        gen {
            let! network = genNetworkWith 1
            let reserved = oracleReserved network |> Set.toList
            let! configured = bool 1 1
            let! specs = genServiceSpecs genSingleStack (Gen.frequency [ 2, Gen.map2 (fun a b -> AsksStatic([ a ], b)) (Gen.elements reserved) (bool 1 1); 1, genAsk ]) 1 8
            return network, configured, specs
        }
    forAll genCase (fun (network, configured, specs) ->
        // Configured: one pool that offers the whole universe, so that only the reserved rule can refuse.
        let pools =
            if configured then (Pools.read (Map [ "cidr-global", "10.0.0.0/24,fd00::/120"; "allow-share-global", "true" ])).Config
            else Pools.none
        let verdicts = judge pools network (specs |> List.map toService)
        let reserved = oracleReserved network
        allOf
            [ for k, vs in Map.toList verdicts do
                  for request, verdict in vs do
                      match request, verdict with
                      | Static a, AddressRefused(AddressRefusal.Reserved why) ->
                          holds (sprintf "%O: %s refused as %A" k (Ip.format a) why) (reserved.Contains a && reservedTruly network a why)
                      | Static a, _ -> holds (sprintf "%O: reserved %s got %A" k (Ip.format a) verdict) (not (reserved.Contains a))
                      | Dhcp(_, Some a), AddressRefused(AddressRefusal.Reserved _) -> holds "reserved lease" (reserved.Contains a)
                      | Dhcp(_, Some a), _ -> holds (sprintf "%O: reserved lease %s got %A" k (Ip.format a) verdict) (not (reserved.Contains a))
                      | Dhcp(_, None), _ -> () ]
        |> Prop.classify configured "pools configured"
        |> Prop.classify (specs |> List.exists (fun s -> match s.Ask with AsksStatic([ a ], true) -> reserved.Contains a | _ -> false)) "a reserved address already announced")

[<Property(MaxTest = 300)>]
let ``with pools configured, an address outside the namespace's pool is refused, or kept with a warning if already announced`` () =
    let genCase = Gen.map3 (fun p n s -> p, n, s) genPoolSpec genNetwork (genServiceSpecs genSingleStack genAsk 1 12)
    forAll genCase (fun (spec, network, specs) ->
        // Everybody may share, so that only the pool and reserved rules decide.
        let spec = { spec with Sharing = [ "global", true ] }
        let verdicts = judge (readPools spec) network (specs |> List.map toService)
        let reserved = oracleReserved network
        let outcomes = verdicts |> Map.toList |> List.collect snd
        allOf
            [ for s in specs do
                  match s.Ask, verdicts.TryFind s.Key with
                  | AsksStatic(ips, announced), Some vs ->
                      for request, verdict in vs do
                          match request with
                          | Static a ->
                              let inPool = oracleScope spec s.Key.Namespace |> Option.exists (fun scope -> oracleOffers spec scope a)
                              let expected =
                                  if reserved.Contains a then (function AddressRefused(AddressRefusal.Reserved _) -> true | _ -> false)
                                  elif inPool then (fun v -> v = AddressAllowed)
                                  elif announced then (function AddressKept(AddressRefusal.OutsidePool _ | AddressRefusal.NoPoolForNamespace) -> true | _ -> false)
                                  else (function AddressRefused(AddressRefusal.OutsidePool _ | AddressRefusal.NoPoolForNamespace) -> true | _ -> false)
                              holds (sprintf "%O %s (in pool %b, announced %b, reserved %b): %A" s.Key (Ip.format a) inPool announced (reserved.Contains a) verdict) (expected verdict)
                          | Dhcp _ -> ()
                  | AsksDhcp _, Some vs ->
                      let offersDhcp = oracleScope spec s.Key.Namespace |> Option.exists oracleDhcp
                      for _, verdict in vs do
                          match verdict with
                          | AddressRefused(AddressRefusal.Reserved _) -> ()
                          | v -> holds (sprintf "%O DHCP (pool offers DHCP %b): %A" s.Key offersDhcp v) ((v = AddressAllowed) = offersDhcp)
                  | _, Some vs -> holds (sprintf "%O is not ours but judged %A" s.Key vs) false
                  | _ -> () ]
        |> Prop.classify (outcomes |> List.exists (fun (_, v) -> match v with AddressKept _ -> true | _ -> false)) "kept: announced before"
        |> Prop.classify (outcomes |> List.exists (fun (_, v) -> match v with AddressRefused(AddressRefusal.OutsidePool _) -> true | _ -> false)) "refused: outside pool"
        |> Prop.classify (outcomes |> List.exists (fun (_, v) -> v = AddressAllowed)) "some allowed")

[<Property>]
let ``sharing an address across namespaces needs allow-share for both, whatever the pools`` () =
    let genCase =
        gen {
            let! namespaces = Gen.two (Gen.elements [ "team-a"; "team-b"; "team-c" ])
            let! flags = genSharingFlags
            let! configured = bool 1 1
            let! announced = bool 1 2
            let! foreignEarlier = bool 1 4
            return namespaces, flags, configured, announced, foreignEarlier
        }
    forAll genCase (fun ((nsA, nsB), flags, configured, announced, foreignEarlier) ->
        let spec = { Scopes = (if configured then [ { Scope = "global"; Cidrs = [ CidrSpec(u4 0, 24) ]; Ranges = [] } ] else []); Sharing = flags; Descending = false; SkipEnds = false }
        let pools = (Pools.read (poolData spec)).Config
        let earlierAsk = if foreignEarlier then OtherClass(u4 50) else AsksStatic([ u4 50 ], true)
        let earlier = { Key = key nsA "first"; CreatedAt = 0L; Ask = earlierAsk; Ports = [ tcp 80 ]; Policy = Cluster; Families = []; FamilyPolicy = SingleStack }
        let later = { earlier with Key = key nsB "second"; CreatedAt = 1L; Ask = AsksStatic([ u4 50 ], announced); Ports = [ tcp 81 ] }
        let verdicts = judge pools [] (List.map toService [ later; earlier ])
        let allowed = nsA = nsB || (oracleShares spec nsA && oracleShares spec nsB)
        let laterVerdict = verdicts[later.Key] |> List.exactlyOne |> snd
        let expected =
            if allowed then AddressAllowed
            elif announced then AddressKept(AddressRefusal.SharedAcrossNamespaces earlier.Key)
            else AddressRefused(AddressRefusal.SharedAcrossNamespaces earlier.Key)
        allOf
            [ holds (sprintf "later: %A, expected %A" laterVerdict expected) (laterVerdict = expected)
              if not foreignEarlier then holds "earlier allowed" (verdicts[earlier.Key] = [ Static(u4 50), AddressAllowed ]) ]
        |> Prop.classify (nsA = nsB) "same namespace"
        |> Prop.classify (nsA <> nsB && allowed) "both namespaces allow sharing"
        |> Prop.classify (not allowed) "refused or kept"
        |> Prop.classify foreignEarlier "the earlier one is another load balancer's")

[<Property(MaxTest = 200)>]
let ``enforcement does not depend on the order Services are listed`` () =
    let genCase =
        gen {
            let! spec = genPoolSpecWith genSharingFlags
            let! network = genNetwork
            let! specs = genServiceSpecs genAnyStack genAsk 1 14
            let! shuffled = Gen.shuffle specs
            return spec, network, specs, List.ofArray shuffled
        }
    forAll genCase (fun (spec, network, specs, shuffled) ->
        let pools = readPools spec
        let a = AddressPolicy.verdicts DefaultConfig pools network (List.map toService specs)
        let b = AddressPolicy.verdicts DefaultConfig pools network (List.map toService shuffled)
        holds (sprintf "%A\nvs\n%A" a b) (a = b)
        |> Prop.classify (a |> List.exists (fun v -> v.Verdicts |> List.exists (fun (_, x) -> x <> AddressAllowed))) "something refused")

[<Property>]
let ``the exclusion label keeps a node from holding VIPs unless told to ignore it`` () =
    let genCase =
        gen {
            let! labelled = bool 1 1
            let! value = Gen.elements [ ""; "true"; "false"; "anything" ]
            let! policy = Gen.elements [ HonourExclusionLabel; IgnoreExclusionLabel ]
            let! others = someOf 0 2 [ "kubernetes.io/hostname", "node-1"; "node-role.kubernetes.io/control-plane", "" ]
            return labelled, value, policy, others
        }
    forAll genCase (fun (labelled, value, policy, others) ->
        let labels = Map.ofList (others @ (if labelled then [ NodeExclusion.Label, value ] else []))
        let expected = if labelled && policy = HonourExclusionLabel then ExcludedByLabel else MayHoldVips
        holds (sprintf "%A with %A" labels policy) (NodeExclusion.eligibility policy labels = expected)
        |> Prop.classify (labelled && value = "false") "labelled \"false\" (present: excluded, as Kubernetes reads it)")
