/// The pool ConfigMap (kube-system/kubevip, kube-vip-cloud-provider's format): reading, validation, and which
/// entries apply to a namespace.
module Hybrid.Properties.PoolConfigProperties

open Xunit
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators
open Hybrid.Properties.PoolBasics
open Hybrid.Properties.PoolGenerators

/// One bad entry to add to good data, and the problem it must be reported with.
type private Injection =
    /// Appended to an existing cidr- or range- value.
    | BadItem of key: string * item: string * PoolProblem
    /// A key of its own.
    | BadKey of key: string * value: string * PoolProblem

let private badCidrs =
    [ "10.0.0.0/33", PoolProblem.NotACidr(LengthTooLong 32)
      "fd00::/129", PoolProblem.NotACidr(LengthTooLong 128)
      "10.0.0.7", PoolProblem.NotACidr MissingSlash
      "10.0.0.0/024", PoolProblem.NotACidr LengthNotParsed
      "10.0.0/24", PoolProblem.NotACidr AddressNotParsed
      "127.0.0.0/8", PoolProblem.NoUsableAddress
      "fe80::/64", PoolProblem.NoUsableAddress ]

let private badRanges =
    [ "10.0.0.5", PoolProblem.NotARange MissingDash
      "10.0.0.9-10.0.0.5", PoolProblem.NotARange StartAfterEnd
      "10.0.0.1-fd00::1", PoolProblem.NotARange FamiliesDiffer
      "ten-10.0.0.1", PoolProblem.NotARange StartNotParsed
      "10.0.0.1-10.0.0.300", PoolProblem.NotARange EndNotParsed
      "224.0.0.1-224.0.0.9", PoolProblem.NoUsableAddress ]

let private genInjection (data: Map<string, string>) : Gen<Injection> =
    let poolKeys = data |> Map.toList |> List.map fst |> List.filter (fun k -> k.StartsWith "cidr-" || k.StartsWith "range-")
    let item =
        gen {
            let! k = Gen.elements poolKeys
            let! text, problem = Gen.elements (if k.StartsWith "cidr-" then badCidrs else badRanges)
            return BadItem(k, text, problem)
        }
    let key =
        Gen.elements
            [ BadKey("cidr_global", "10.9.0.0/24", PoolProblem.UnknownKey)
              BadKey("ranges-team-a", "10.9.0.1-10.9.0.9", PoolProblem.UnknownKey)
              BadKey("serch-order", "desc", PoolProblem.UnknownKey)
              BadKey("cidr-Team_A", "10.9.0.0/24", PoolProblem.NotANamespace)
              BadKey("range-", "10.9.0.1-10.9.0.9", PoolProblem.NotANamespace)
              BadKey("allow-share--team", "true", PoolProblem.NotANamespace)
              BadKey("allow-share-team-z", "yes", PoolProblem.NotABoolean)
              BadKey("interface-team-z", "eth 0", PoolProblem.NotAnInterfaceName)
              BadKey("interface-global", "an-interface-name-far-too-long", PoolProblem.NotAnInterfaceName) ]
        |> Gen.map (fun i ->
            match i with
            | BadKey("interface-global", _, _) when data.ContainsKey "interface-global" -> BadKey("interface-team-y", "a/b", PoolProblem.NotAnInterfaceName)
            | other -> other)
    let settings =
        [ if not (data.ContainsKey Pools.SearchOrderKey) then BadKey(Pools.SearchOrderKey, "random", PoolProblem.NotASearchOrder)
          if not (data.ContainsKey Pools.SkipEndIpsKey) then BadKey(Pools.SkipEndIpsKey, "maybe", PoolProblem.NotABoolean) ]
    Gen.frequency [ 3, item; 2, key; if not settings.IsEmpty then 1, Gen.elements settings ]

let private inject (data: Map<string, string>) (injection: Injection) =
    match injection with
    | BadItem(k, text, _) -> data.Add(k, data[k] + ", " + text)
    | BadKey(k, v, _) -> data.Add(k, v)

[<Property(MaxTest = 300)>]
let ``validation keeps every good entry when some are bad, and reports each bad one with its key and item`` () =
    let genCase =
        gen {
            let! spec = genPoolSpecWith genSharingFlags
            let data = poolData spec
            let! n = Gen.choose (1, 4)
            let! injections = Gen.listOfLength n (genInjection data)
            // One injection per key (a second BadKey on one key would replace the first).
            let injections = injections |> List.distinctBy (function BadKey(k, _, _) -> "key:" + k | BadItem(k, t, _) -> "item:" + k + t)
            return data, injections
        }
    forAll genCase (fun (data, injections) ->
        let good = Pools.read data
        let bad = Pools.read (injections |> List.fold inject data)
        let expected =
            injections
            |> List.map (function
                | BadItem(k, t, p) -> { Key = k; Item = t; Problem = p }
                | BadKey(k, v, p) -> { Key = k; Item = v; Problem = p })
            |> List.sortBy (fun e -> e.Key, e.Item)
        allOf
            [ holds (sprintf "good data has errors %A" good.Errors) good.Errors.IsEmpty
              holds (sprintf "the good entries read differently:\n%A\nvs\n%A" good.Config bad.Config) (good.Config = bad.Config)
              holds (sprintf "errors %A, expected %A" bad.Errors expected) ((bad.Errors |> List.sortBy (fun e -> e.Key, e.Item)) = expected)
              holds "strict validation refuses" (Pools.validate (injections |> List.fold inject data) = Error bad.Errors) ]
        |> Prop.classify (injections |> List.exists (function BadItem _ -> true | _ -> false)) "bad items among good ones"
        |> Prop.classify (injections |> List.exists (function BadKey _ -> true | _ -> false)) "bad keys"
        |> Prop.classify (injections.Length > 1) "several bad entries")

[<Property>]
let ``a namespace's own entries win over the global ones, key by key`` () =
    let genCase =
        gen {
            let! nsPool = bool 1 1
            let! globalPool = bool 1 1
            let! nsShare = Gen.elements [ None; Some true; Some false ]
            let! globalShare = Gen.elements [ None; Some true; Some false ]
            let! nsIface = Gen.elements [ None; Some "eth1" ]
            let! globalIface = Gen.elements [ None; Some "eth2" ]
            return nsPool, globalPool, nsShare, globalShare, nsIface, globalIface
        }
    forAll genCase (fun (nsPool, globalPool, nsShare, globalShare, nsIface, globalIface) ->
        let data =
            Map.ofList
                [ if nsPool then "range-team-a", "10.0.0.1-10.0.0.9"
                  if globalPool then "cidr-global", "10.0.1.0/24"
                  match nsShare with Some b -> "allow-share-team-a", string b | None -> ()
                  match globalShare with Some b -> "allow-share-global", string b | None -> ()
                  match nsIface with Some i -> "interface-team-a", i | None -> ()
                  match globalIface with Some i -> "interface-global", i | None -> () ]
        let config = (Pools.read data).Config
        let pool = Pools.poolFor config "team-a" |> Option.map _.Scope
        let expectedPool = if nsPool then Some(OneNamespace "team-a") elif globalPool then Some AllNamespaces else None
        let expectedShare = match nsShare |> Option.orElse globalShare with Some true -> SharingAllowed | _ -> SharingNotAllowed
        allOf
            [ holds (sprintf "pool %A, expected %A" pool expectedPool) (pool = expectedPool)
              holds "sharing" (Pools.sharingFor config "team-a" = expectedShare)
              holds "interface" (Pools.interfaceFor config "team-a" = (nsIface |> Option.orElse globalIface))
              holds "another namespace takes only global entries"
                  (Pools.poolFor config "team-b" |> Option.map _.Scope = (if globalPool then Some AllNamespaces else None)) ]
        |> Prop.classify (nsPool && globalPool) "both pools"
        |> Prop.classify (nsShare.IsSome && globalShare.IsSome) "both sharing flags")

[<Property>]
let ``a namespace whose pool entries are all bad gets no address, not the global pool's`` () =
    forAll (Gen.map2 (fun a b -> a, b) (Gen.elements (badCidrs |> List.map fst)) (Gen.elements [ "cidr-team-a"; "range-team-a" ])) (fun (badItem, k) ->
        let data = Map [ "cidr-global", "10.0.1.0/24"; k, badItem ]
        let read = Pools.read data
        let s = { service "team-a" "s" with Ports = [ tcp 80 ] }
        let outcome = PoolAssignment.assign DefaultConfig read.Config [] [ { Service = s; Families = []; FamilyPolicy = SingleStack } ]
        let verdicts = AddressPolicy.verdicts DefaultConfig read.Config [] [ annotate Annotations.LoadBalancerIPs "10.0.1.7" s ]
        allOf
            [ holds (sprintf "errors %A" read.Errors) (read.Errors |> List.forall (fun e -> e.Key = k))
              holds (sprintf "assigned %A" outcome) (outcome = [ s.Key, WaitForAddress(FamiliesUnavailable(OneNamespace "team-a", [ IPv4, FamilyNotInPool ])) ])
              holds (sprintf "verdicts %A" verdicts)
                  (verdicts = [ { Service = s.Key; Verdicts = [ Static(v4 10 0 1 7), AddressRefused(AddressRefusal.OutsidePool(OneNamespace "team-a")) ] } ]) ])

[<Property>]
let ``an exhausted pool's warning names the pool the Service draws from, its namespace's or the global one`` () =
    forAll (Gen.elements [ true; false ]) (fun own ->
        let key = if own then "range-team-a" else "range-global"
        let read = Pools.read (Map [ key, "10.0.1.7-10.0.1.7" ])
        let first = { service "team-a" "first" with Ports = [ tcp 80 ]; Annotations = Map [ Annotations.LoadBalancerIPs, "10.0.1.7" ] }
        let waiting = { service "team-a" "second" with Ports = [ tcp 81 ] }
        let outcome = PoolAssignment.assign DefaultConfig read.Config [] [ for s in [ first; waiting ] -> { Service = s; Families = []; FamilyPolicy = SingleStack } ]
        let messages = outcome |> List.collect (snd >> PoolWarning.ofAssignment) |> List.map (PoolWarning.message (Some "team-a"))
        let named = if own then "the pool of namespace team-a (" else "the global pool ("
        allOf
            [ holds (sprintf "one warning: %A" messages) (messages.Length = 1)
              holds (sprintf "%A names %s" messages named) (messages |> List.forall (fun m -> m.Contains named && m.Contains "in use")) ]
        |> Prop.classify own "the namespace's own pool")

[<Property>]
let ``0.0.0.0/32 among IPv4 addresses is reported and the addresses are used`` () =
    forAll (Gen.elements [ "cidr-global", "0.0.0.0/32, 10.0.0.8/29"; "range-global", "10.0.0.8-10.0.0.15,0.0.0.0/32" ]) (fun (k, v) ->
        let read = Pools.read (Map [ k, v ])
        let pool = Pools.poolFor read.Config "any"
        allOf
            [ holds (sprintf "%A" read.Errors) (read.Errors = [ { Key = k; Item = "0.0.0.0/32"; Problem = PoolProblem.DhcpAmongAddresses } ])
              holds (sprintf "%A" pool) (pool |> Option.exists (fun p -> Pools.offers p (v4 10 0 0 9) && p.V4 <> Some ViaDhcp)) ])

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// kube-vip-cloud-provider's documented examples read the way its README says
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private readOk (pairs: (string * string) list) =
    let r = Pools.read (Map.ofList pairs)
    Assert.Empty(r.Errors)
    r.Config

let private offered (config: PoolConfig) (ns: string) (family: IpFamily) : string list =
    match Pools.poolFor config ns |> Option.bind (fun p -> Pools.familyPool p family) with
    | Some(FromAddresses set) ->
        [ for r in IpSet.ranges set do
              let mutable a = Some r.First
              while a.IsSome do
                  yield Ip.format a.Value
                  a <- if a.Value = r.Last then None else Ip.next a.Value ]
    | _ -> []

let private firstAssigned (config: PoolConfig) (ns: string) (families: IpFamily list) (policy: IpFamilyPolicy) =
    let s = service ns "svc"
    match PoolAssignment.assign DefaultConfig config [] [ { Service = s; Families = families; FamilyPolicy = policy } ] with
    | [ _, AssignAddresses a ] -> PoolAssignment.annotation a
    | other -> sprintf "%A" other

[<Fact>]
let ``per-namespace CIDRs: each namespace draws from its own`` () =
    let config =
        readOk [ "cidr-default", "192.168.0.200/29"; "cidr-development", "192.168.0.210/29"; "cidr-finance", "192.168.0.220/29"
                 "cidr-testing", "192.168.0.230/29" ]
    Assert.Equal("192.168.0.200", firstAssigned config "default" [] SingleStack)
    Assert.Equal("192.168.0.208", firstAssigned config "development" [] SingleStack)
    // A host address with a prefix means its block, as Go's netipx reads it: .220/29 is .216-.223.
    Assert.Equal("192.168.0.216", firstAssigned config "finance" [] SingleStack)
    Assert.Equal("192.168.0.224", firstAssigned config "testing" [] SingleStack)
    Assert.Equal(None, Pools.poolFor config "other")

[<Fact>]
let ``a global range with search-order desc gives its last address first`` () =
    let config = readOk [ "range-global", "192.168.0.200-192.168.0.202"; "search-order", "desc" ]
    Assert.Equal("192.168.0.202", firstAssigned config "any" [] SingleStack)

[<Fact>]
let ``skip-end-ips-in-cidr: 192.168.0.200/29 offers .201 to .206`` () =
    let config = readOk [ "cidr-default", "192.168.0.200/29"; "skip-end-ips-in-cidr", "true" ]
    Assert.Equal<string list>([ for i in 201..206 -> sprintf "192.168.0.%d" i ], offered config "default" IPv4)

[<Fact>]
let ``multiple pools and overlapping ranges merge`` () =
    Assert.Equal<string list>([ for i in 200..207 -> sprintf "192.168.0.%d" i ], offered (readOk [ "cidr-global", "192.168.0.200/30,192.168.0.200/29" ]) "x" IPv4)
    Assert.Equal<string list>([ "2001::10"; "2001::11"; "2001::12"; "2001::13" ], offered (readOk [ "cidr-global", "2001::12/127,2001::10/127" ]) "x" IPv6)
    Assert.Equal<string list>([ for i in 10..13 -> sprintf "192.168.0.%d" i ], offered (readOk [ "range-global", "192.168.0.10-192.168.0.11,192.168.0.10-192.168.0.13" ]) "x" IPv4)
    let mixed = readOk [ "cidr-global", "192.168.0.200/30,2001::10/127" ]
    Assert.Equal<string list>([ "192.168.0.200"; "192.168.0.201"; "192.168.0.202"; "192.168.0.203" ], offered mixed "x" IPv4)
    Assert.Equal<string list>([ "2001::10"; "2001::11" ], offered mixed "x" IPv6)

[<Fact>]
let ``dual-stack PreferDualStack with IPv6 first gets the IPv6 address first`` () =
    let config = readOk [ "range-default", "192.168.0.10-192.168.0.11,2001::10-2001::11" ]
    Assert.Equal("2001::10,192.168.0.10", firstAssigned config "default" [ IPv6; IPv4 ] PreferDualStack)
    Assert.Equal("192.168.0.10,2001::10", firstAssigned config "default" [ IPv4; IPv6 ] RequireDualStack)

[<Fact>]
let ``the special DHCP CIDR gives 0.0.0.0, in a cidr- or a range- key`` () =
    Assert.Equal("0.0.0.0", firstAssigned (readOk [ "cidr-global", "0.0.0.0/32" ]) "any" [] SingleStack)
    Assert.Equal("0.0.0.0", firstAssigned (readOk [ "range-global", "0.0.0.0/32" ]) "any" [] SingleStack)

[<Fact>]
let ``allow-share and interfaces per namespace fall back to global`` () =
    let config = readOk [ "cidr-default", "192.168.0.200/29"; "cidr-development", "192.168.0.210/29"; "allow-share-development", "true"
                          "interface-default", "eth3"; "interface-global", "eth5" ]
    Assert.Equal(SharingAllowed, Pools.sharingFor config "development")
    Assert.Equal(SharingNotAllowed, Pools.sharingFor config "default")
    Assert.Equal(Some "eth3", Pools.interfaceFor config "default")
    Assert.Equal(Some "eth5", Pools.interfaceFor config "development")
