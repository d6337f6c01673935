/// The address policy as the protocol applies it: what the desired state lets into groups (and so what any
/// node may ever announce), the Warnings it carries, how a registration publishes the VIP interface, and
/// that a node fed the policy's sources decides nothing about Services before it has all of them.
module Hybrid.Properties.AddressPolicyWiringProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators
open Hybrid.Properties.PoolBasics
open Hybrid.Properties.PoolGenerators

/// One group per address (svc_election), so that every address a Service is given shows as a group.
let private ElectionConfig = configWith [ "svc_election", "true" ]

let private memberAddresses (desired: Desired) (key: ServiceKey) =
    match desired.States.TryFind key with
    | Some(Member(ips, _)) -> ips
    | _ -> []

let private warnedAbout (desired: Desired) (key: ServiceKey) (address: Ip) =
    desired.AddressWarnings.TryFind key
    |> Option.defaultValue []
    |> List.exists (fun w ->
        match w with
        | AddressNotAnnounced(Static a, _) -> a = address
        | _ -> false)

[<Property(MaxTest = 300)>]
let ``a refused address is in no group and warned about: reserved ones always, with pools those outside the namespace's pool that were not announced before`` () =
    let genCase =
        gen {
            let! pools = genPoolSpec
            let! configured = bool 2 1
            let! network = genNetworkWith 1
            let reserved = oracleReserved network |> Set.toList
            let ask = Gen.frequency [ 1, Gen.map2 (fun a b -> AsksStatic([ a ], b)) (Gen.elements reserved) (bool 1 1); 4, genAsk ]
            let! specs = genServiceSpecs genSingleStack ask 1 10
            return pools, configured, network, specs
        }
    forAll genCase (fun (spec, configured, network, specs) ->
        // Everybody may share, so that only the reserved and pool rules refuse.
        let spec = { spec with Sharing = [ "global", true ] }
        let pools = if configured then readPools spec else Pools.none
        let poolsOn = Pools.configured pools
        let desired =
            Desired.computeWithPolicy ElectionConfig { Pools = pools; Network = network } Map.empty (specs |> List.map toService) []
        let reserved = oracleReserved network
        let grouped = desired.Groups |> List.collect _.Addresses |> Set.ofList
        let inPool (ns: string) (a: Ip) = oracleScope spec ns |> Option.exists (fun scope -> oracleOffers spec scope a)
        let refusedOf (s: ServiceSpec) =
            match s.Ask with
            | AsksStatic(ips, announced) ->
                ips |> List.filter (fun a -> reserved.Contains a || (poolsOn && not (inPool s.Key.Namespace a) && not announced))
            | _ -> []
        allOf
            [ holds (sprintf "a reserved address is in a group: %A" (Set.intersect grouped reserved)) (Set.intersect grouped reserved).IsEmpty
              for s in specs do
                  let given = memberAddresses desired s.Key
                  for a in given do
                      holds (sprintf "%O was given reserved %s" s.Key (Ip.format a)) (not (reserved.Contains a))
                      holds (sprintf "%O was given %s outside its pool, never announced" s.Key (Ip.format a))
                          (not poolsOn || inPool s.Key.Namespace a || (match s.Ask with AsksStatic(_, announced) -> announced | _ -> true))
                  for a in refusedOf s do
                      holds (sprintf "%O keeps refused %s" s.Key (Ip.format a)) (not (List.contains a given))
                      holds (sprintf "%O has no Warning for refused %s" s.Key (Ip.format a)) (warnedAbout desired s.Key a)
                  match s.Ask with
                  | AsksStatic(ips, _) when ips.Length = (refusedOf s).Length ->
                      holds (sprintf "%O: every address refused, but %A" s.Key (desired.States.TryFind s.Key)) (desired.States.TryFind s.Key = Some Refused)
                  | _ -> () ]
        |> Prop.classify poolsOn "pools configured"
        |> Prop.classify (specs |> List.exists (fun s -> (refusedOf s).Length > 0)) "some address refused"
        |> Prop.classify (specs |> List.exists (fun s -> s.Ask |> function AsksStatic(ips, true) -> ips |> List.exists (fun a -> poolsOn && not (inPool s.Key.Namespace a) && not (reserved.Contains a)) | _ -> false)) "kept: announced before pools")

[<Property(MaxTest = 200)>]
let ``the desired state without a policy is the desired state with no pools and no reserved addresses`` () =
    let genCase = genServiceSpecs genSingleStack genAsk 1 10
    forAll genCase (fun specs ->
        let services = specs |> List.map toService
        Desired.compute ElectionConfig services [] = Desired.computeWithPolicy ElectionConfig { Pools = Pools.none; Network = [] } Map.empty services [])

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Registrations publish the VIP interface
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private genFacts: Gen<InterfaceFacts> =
    let genAddress =
        Gen.oneof
            [ Gen.map2 (fun a p -> { Address = a; PrefixLength = p }) genUsableV4 (Gen.choose (8, 32))
              Gen.map2 (fun a p -> { Address = a; PrefixLength = p }) genUsableV6 (Gen.choose (48, 128)) ]
    Gen.map2 (fun addresses gateways -> { Addresses = addresses; Gateways = gateways }) (Gen.listOf genAddress) (Gen.listOf genUsableIp)

let private registration (facts: InterfaceFacts) : Registration =
    { Node = "node-a"
      Incarnation = Incarnation 7UL
      Term = 3L
      State = Joined
      Fence = LanFence
      Fingerprint = "f"
      Members = Map [ "node-b", 2L ]
      Deposing = None
      Interface = facts }

let private asRecord (write: LeaseWrite) : Hybrid.Domain.LeaseRecord =
    { Name = write.Name
      Version = "1"
      Holder = write.Holder
      Transitions = write.Transitions
      Labels = write.Labels
      Annotations = write.Annotations |> Map.toSeq |> Seq.choose (fun (k, v) -> v |> Option.map (fun v -> k, v)) |> Map.ofSeq }

[<Property>]
let ``a registration records its VIP interface's addresses and gateways and reads them back, in canonical order`` () =
    forAll genFacts (fun facts ->
        let written = Registration.write "hybrid-node-node-a" None 1 (registration facts)
        let read = Registration.read (asRecord written)
        let expected = InterfaceFacts.normalise facts
        allOf
            [ holds (sprintf "read back %A" read) (read = Ok(registration expected))
              holds "read back in the same order whatever the reading order" (InterfaceFacts.normalise { facts with Addresses = List.rev facts.Addresses; Gateways = List.rev facts.Gateways } = expected) ]
        |> Prop.classify facts.Addresses.IsEmpty "no addresses"
        |> Prop.classify (not facts.Gateways.IsEmpty) "gateways")

[<Property>]
let ``a registration written before the address policy reads as an interface with nothing to refuse, and a garbled one is refused`` (garbage: bool) =
    let written = asRecord (Registration.write "hybrid-node-node-a" None 1 (registration InterfaceFacts.none))
    let older = { written with Annotations = written.Annotations |> Map.filter (fun k _ -> k <> LeaseKeys.VipAddresses && k <> LeaseKeys.VipGateways) }
    if garbage then
        let bad = { older with Annotations = older.Annotations.Add(LeaseKeys.VipAddresses, "198.18.0.11/33") }
        Registration.read bad = Error(BadField(LeaseKeys.VipAddresses, "198.18.0.11/33"))
    else Registration.read older = Ok(registration InterfaceFacts.none)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// The node waits for the policy's sources
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private exampleService =
    annotate Annotations.LoadBalancerIPs "198.18.0.220" (service "default" "web")

/// Drives one node through its start and every list, feeding the policy sources chosen.
let private started (pools: bool) (nodes: bool) (vipInterface: bool) : NodeState =
    let inputs =
        [ Started(Incarnation 1UL, [], true, 10L)
          KernelCompleted(InstallFence [], Applied, [], 11L)
          ServicesListed([ exampleService ], 12L)
          SlicesListed([], 13L)
          LeasesListed([], 14L)
          if pools then PoolConfigObserved(None, 15L)
          if nodes then NodesListed([ { Name = "node-a"; Addresses = [ v4 198 18 0 11 ]; Labels = Map.empty } ], 16L)
          if vipInterface then InterfaceRead({ Addresses = [ { Address = v4 198 18 0 11; PrefixLength = 24 } ]; Gateways = [ v4 198 18 0 1 ] }, 17L) ]
    inputs |> List.fold (fun s input -> fst (Protocol.step s input)) (Protocol.awaitingAddressPolicy (Protocol.create DefaultConfig))

[<Property>]
let ``a node fed the policy's sources decides nothing about Services until the pool ConfigMap, the Nodes and its VIP interface are all in`` (pools: bool, nodes: bool, vipInterface: bool) =
    let s = started pools nodes vipInterface
    let all = pools && nodes && vipInterface
    let decided = s.Desired.States.ContainsKey exampleService.Key
    (decided = all)
    |> Prop.label (sprintf "pools %b, nodes %b, interface %b: decided %b" pools nodes vipInterface decided)
    |> Prop.classify all "all sources in"

[<Property>]
let ``a node's registration publishes its VIP interface when it joins, and again when the interface changes`` () =
    let facts = { Addresses = [ { Address = v4 198 18 0 11; PrefixLength = 24 } ]; Gateways = [ v4 198 18 0 1 ] }
    let moved = { facts with Addresses = [ { Address = v4 198 18 0 12; PrefixLength = 24 } ] }
    let s = started true true false
    let s, joinCommands = Protocol.step s (InterfaceRead(facts, 20L))
    let publishes (expected: InterfaceFacts) (commands: Command list) =
        commands
        |> List.tryPick (fun c ->
            match c with
            | WriteLease(id, write) when write.Name = LeaseNames.registration "node-a" -> Some(id, write)
            | _ -> None)
        |> Option.filter (fun (_, write) ->
            match Registration.read (asRecord write) with
            | Ok r -> r.Interface = expected
            | Error _ -> false)
    match publishes facts joinCommands with
    | None -> false |> Prop.label (sprintf "the join does not publish the interface: %A" joinCommands)
    | Some(id, write) ->
        let record = { asRecord write with Version = "2" }
        let s, _ = Protocol.step s (WriteCompleted(id, Written(Some record), 0.5, 21L))
        let s, _ = Protocol.step s (LeaseUpserted(record, 22L))
        let _, refreshCommands = Protocol.step s (InterfaceRead(moved, 23L))
        (publishes moved refreshCommands).IsSome |> Prop.label (sprintf "no refresh with the moved address: %A" refreshCommands)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Assignment sees each Service's IP families
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<Property(MaxTest = 200)>]
let ``assignment in the desired state follows each Service's ipFamilies and ipFamilyPolicy`` () =
    let genCase =
        gen {
            let! pools = genPoolSpec
            let! specs = genServiceSpecs genAnyStack genAsk 1 10
            return pools, specs
        }
    forAll genCase (fun (spec, specs) ->
        let families = specs |> List.map (fun s -> s.Key, (s.Families, s.FamilyPolicy)) |> Map.ofList
        let desired =
            Desired.computeWithPolicy ElectionConfig { Pools = readPools spec; Network = [] } families (specs |> List.map toService) []
        let specOf = specs |> List.map (fun s -> s.Key, s) |> Map.ofList
        let familyOf (r: AddressRequest) =
            match r with
            | Static a -> Ip.family a
            | Dhcp(f, _) -> f
        let given =
            desired.AddressAssignments
            |> List.choose (fun (key, outcome) -> match outcome with AssignAddresses a -> Some(specOf[key], a.Addresses |> List.map familyOf) | _ -> None)
        allOf
            [ for s, fs in given do
                  holds (sprintf "%O asked %A %A, got %A" s.Key s.Families s.FamilyPolicy fs) (s.Families.IsEmpty || fs |> List.forall (fun f -> List.contains f s.Families))
                  if s.FamilyPolicy = RequireDualStack then holds (sprintf "%O requires both, got %A" s.Key fs) (List.sort fs = [ IPv4; IPv6 ])
                  if s.FamilyPolicy = SingleStack then holds (sprintf "%O is single-stack, got %A" s.Key fs) (fs.Length = 1)
                  match s.Families, fs with
                  | primary :: _, first :: _ when List.contains primary fs -> holds (sprintf "%O: primary %A not first in %A" s.Key primary fs) (first = primary)
                  | _ -> () ]
        |> Prop.classify (given |> List.exists (fun (_, fs) -> fs.Length = 2)) "dual-stack given"
        |> Prop.classify given.IsEmpty "nothing assigned")
