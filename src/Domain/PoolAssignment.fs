// Pool assignment: the address(es) an unaddressed Service is given from its namespace's pool.
namespace Hybrid.Domain

open System.Collections.Generic

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Inputs and outcomes
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// spec.ipFamilyPolicy.
type IpFamilyPolicy =
    | SingleStack
    | PreferDualStack
    | RequireDualStack

/// A Service as assignment sees it: the observed Service and its IP families.
type PoolService =
    { Service: Service
      /// spec.ipFamilies in order, the primary family first; empty when the API server did not set it.
      Families: IpFamily list
      /// spec.ipFamilyPolicy (SingleStack when absent, as the API server defaults it).
      FamilyPolicy: IpFamilyPolicy }

/// Why one family could not be given.
type FamilyShortfall =
    /// The namespace's pool has no address of the family.
    | FamilyNotInPool
    /// Every address of the family in the pool is in use or reserved.
    | PoolExhausted

/// Why a Service waits for an address.
type PoolWait =
    /// Pools are configured, and none applies to the namespace.
    | NoPoolApplies
    /// The families the Service needs that could not be given (all of them for RequireDualStack and
    /// SingleStack; PreferDualStack waits only when no family can be given).
    | FamiliesUnavailable of pool: PoolScope * missing: (IpFamily * FamilyShortfall) list

/// What to write on a Service: `kube-vip.io/loadbalancerIPs` and the label `implementation=kube-vip`, as
/// kube-vip-cloud-provider writes them, and `kube-vip.io/serviceInterface` when the pool names one.
type AddressAssignment =
    { Service: ServiceKey
      /// In the order to write, the primary family first; Dhcp(IPv4, None) is written 0.0.0.0.
      Addresses: AddressRequest list
      /// The addresses among them that earlier Services already have (allow-share).
      Shared: Ip list
      /// The pool they come from.
      Pool: PoolScope
      /// interface-<namespace>, else interface-global.
      Interface: string option }

/// The assignment decision for one Service of ours that has no address.
type AssignOutcome =
    | AssignAddresses of AddressAssignment
    | WaitForAddress of PoolWait

[<RequireQualifiedAccess>]
module PoolAssignment =
    /// The label kube-vip-cloud-provider puts on the Services it addressed (tools list Services by it).
    let ImplementationLabel = "implementation"
    let ImplementationLabelValue = "kube-vip"

    /// The kube-vip.io/loadbalancerIPs value to write.
    let annotation (assignment: AddressAssignment) : string =
        assignment.Addresses
        |> List.map (fun r ->
            match r with
            | Static ip -> Ip.format ip
            | Dhcp(IPv4, _) -> "0.0.0.0"
            | Dhcp(IPv6, _) -> "::")
        |> String.concat ","

    /// The annotations an assignment writes: the addresses, and the pool's interface when it names one.
    let annotations (assignment: AddressAssignment) : Map<string, string> =
        [ Annotations.LoadBalancerIPs, annotation assignment
          match assignment.Interface with
          | Some name -> Annotations.ServiceInterface, name
          | None -> () ]
        |> Map.ofList

    /// The labels an assignment writes.
    let labels: Map<string, string> = Map.ofList [ ImplementationLabel, ImplementationLabelValue ]

    // ── Stages ──────────────────────────────────────────────────────────────────────────────────────

    let private other family =
        match family with
        | IPv4 -> IPv6
        | IPv6 -> IPv4

    /// Whether a Service needs every family it asks for, or is content with any one.
    type private Need =
        | EveryFamily
        | AnyFamily

    /// The families a Service asks for, primary first. As the cloud provider: SingleStack takes the first
    /// of ipFamilies, or IPv4 when the pool has it and IPv6 otherwise. Unlike it, PreferDualStack asks only
    /// for the families in ipFamilies (kube-proxy forwards only those), both when ipFamilies is empty.
    let private wanted (service: PoolService) (pool: AddressPool) : IpFamily list * Need =
        let families = List.distinct service.Families
        match service.FamilyPolicy, families with
        | SingleStack, primary :: _ -> [ primary ], EveryFamily
        | SingleStack, [] -> [ (if pool.V4.IsNone && pool.V6.IsSome then IPv6 else IPv4) ], EveryFamily
        | PreferDualStack, [] -> [ IPv4; IPv6 ], AnyFamily
        | PreferDualStack, fs -> fs, AnyFamily
        | RequireDualStack, [] -> [ IPv4; IPv6 ], EveryFamily
        | RequireDualStack, [ primary ] -> [ primary; other primary ], EveryFamily
        | RequireDualStack, fs -> fs, EveryFamily

    /// Who refers to an address: a Service of ours that asks for it as a static address (it may be
    /// shared), or anything else (a DHCP lease, a status, another class, an invalid request: never shared).
    type private Holder =
        | Sharer of Service
        | NotShareable

    /// The state of one pass: addresses in use and their holders, growing as Services are given addresses.
    type private Pass =
        { Used: HashSet<Ip>
          Holders: Dictionary<Ip, Holder list>
          Reserved: IReadOnlyDictionary<Ip, ReservedAddress> }

    let private holdersOf (pass: Pass) ip =
        match pass.Holders.TryGetValue ip with
        | true, hs -> hs
        | _ -> []

    let private addHolder (pass: Pass) ip holder = pass.Holders[ip] <- holdersOf pass ip @ [ holder ]

    let private start (config: Config) (network: NodeNetwork list) (services: Service list) : Pass =
        let pass = { Used = HashSet<Ip>(); Holders = Dictionary<Ip, Holder list>(); Reserved = AddressPolicy.reservations network }
        for service in services do
            let statics =
                match Admission.interest config service, Addresses.requested service with
                | Interested, Requested requests -> requests |> List.choose (function Static ip -> Some ip | Dhcp _ -> None)
                | _ -> []
            for ip in AddressPolicy.claimedBy service do
                pass.Used.Add ip |> ignore
                addHolder pass ip (if List.contains ip statics then Sharer service else NotShareable)
        pass

    /// The addresses of the pool that Services of ours already ask for and this one may join: sharing
    /// allowed for every namespace involved, and the port rules of Sharing met with every holder.
    let private shareable (pools: PoolConfig) (pass: Pass) (set: IpSet) (family: IpFamily) (service: Service) : Ip list =
        let ns = service.Key.Namespace
        let shares n = Pools.sharingFor pools n = SharingAllowed
        if not (shares ns) then []
        else
            pass.Holders
            |> Seq.choose (fun kv ->
                let ip = kv.Key
                let fits =
                    Ip.family ip = family
                    && IpSet.contains set ip
                    && not (pass.Reserved.ContainsKey ip)
                    && not kv.Value.IsEmpty
                    && kv.Value
                       |> List.forall (fun h ->
                           match h with
                           | Sharer earlier ->
                               (earlier.Key.Namespace = ns || shares earlier.Key.Namespace)
                               && (Sharing.conflict ip earlier service).IsNone
                           | NotShareable -> false)
                if fits then Some ip else None)
            |> List.ofSeq

    /// The first free address of the pool in search order, skipping used and reserved ones; at most one
    /// step per used or reserved address, however large the pool.
    let private firstFree (order: SearchOrder) (pass: Pass) (set: IpSet) : Ip option =
        let taken ip = pass.Used.Contains ip || pass.Reserved.ContainsKey ip
        // Tail-recursive: compiled to a loop, however many addresses are taken in a row.
        let rec walk (step: Ip -> Ip option) (stop: Ip) (ip: Ip) =
            if not (taken ip) then Some ip
            elif ip = stop then None
            else
                match step ip with
                | Some following -> walk step stop following
                | None -> None
        match order with
        | LowestFirst -> IpSet.ranges set |> List.tryPick (fun r -> walk Ip.next r.Last r.First)
        | HighestFirst -> IpSet.ranges set |> List.rev |> List.tryPick (fun r -> walk Ip.previous r.First r.Last)

    let private preferred (order: SearchOrder) (ips: Ip list) =
        match order, ips with
        | _, [] -> None
        | LowestFirst, _ -> Some(List.minBy id ips)
        | HighestFirst, _ -> Some(List.maxBy id ips)

    /// Where a picked address comes from.
    type private Source =
        | FreeAddress
        | SharedAddress

    /// One family's address: DHCP, an address to share (allow-share), or the first free one.
    let private pick (pools: PoolConfig) (pass: Pass) (pool: AddressPool) (service: Service) (family: IpFamily) =
        match Pools.familyPool pool family with
        | None -> Error FamilyNotInPool
        | Some ViaDhcp -> Ok(Dhcp(family, None), FreeAddress)
        | Some(FromAddresses set) ->
            match preferred pools.SearchOrder (shareable pools pass set family service) with
            | Some ip -> Ok(Static ip, SharedAddress)
            | None ->
                match firstFree pools.SearchOrder pass set with
                | Some ip -> Ok(Static ip, FreeAddress)
                | None -> Error PoolExhausted

    let private decide (pools: PoolConfig) (pass: Pass) (service: PoolService) : AssignOutcome =
        let key = service.Service.Key
        match Pools.poolFor pools key.Namespace with
        | None -> WaitForAddress NoPoolApplies
        | Some pool ->
            let families, need = wanted service pool
            let picks = families |> List.map (fun f -> f, pick pools pass pool service.Service f)
            let given = picks |> List.choose (fun (_, p) -> match p with Ok x -> Some x | Error _ -> None)
            let missing = picks |> List.choose (fun (f, p) -> match p with Error why -> Some(f, why) | Ok _ -> None)
            match need, given, missing with
            | EveryFamily, _, _ :: _
            | AnyFamily, [], _ -> WaitForAddress(FamiliesUnavailable(pool.Scope, missing))
            | _ ->
                AssignAddresses
                    { Service = key
                      Addresses = given |> List.map fst
                      Shared = given |> List.choose (fun (r, source) -> match r, source with Static ip, SharedAddress -> Some ip | _ -> None)
                      Pool = pool.Scope
                      Interface = Pools.interfaceFor pools key.Namespace }

    let private commit (pass: Pass) (service: Service) (outcome: AssignOutcome) =
        match outcome with
        | AssignAddresses a ->
            for r in a.Addresses do
                match r with
                | Static ip ->
                    pass.Used.Add ip |> ignore
                    addHolder pass ip (Sharer service)
                | Dhcp _ -> ()
        | WaitForAddress _ -> ()

    /// Gives every LoadBalancer Service of ours that asks for no address (neither kube-vip.io/loadbalancerIPs
    /// nor spec.loadBalancerIP) an address from its namespace's pool, or the reason it waits. Nothing is
    /// assigned when no pool is configured (another IPAM, or none, is in charge).
    /// - Never an address any LoadBalancer Service refers to (AddressPolicy.claimedBy: set by hand with or
    ///   without the label, of any class, leased by DHCP, in a status), nor a reserved one (a node's, its
    ///   VIP interface's, the gateway, a subnet's network or broadcast); except, where allow-share holds for
    ///   every namespace involved, an address earlier Services of ours have whose ports it can join.
    /// - The lowest free address (search-order: desc, the highest).
    /// - Services oldest first (creationTimestamp, then namespace/name), each seeing the addresses given
    ///   before it: the result does not depend on the order Services are listed, and a later Service never
    ///   changes what an earlier one gets.
    let assign (config: Config) (pools: PoolConfig) (network: NodeNetwork list) (services: PoolService list) : (ServiceKey * AssignOutcome) list =
        if not (Pools.configured pools) then []
        else
            let ordered = services |> List.sortWith (fun a b -> Sharing.compareOrder a.Service b.Service)
            let pass = start config network (ordered |> List.map _.Service)
            ordered
            |> List.filter (fun s -> Admission.interest config s.Service = Interested && Addresses.requested s.Service = NoAddressYet)
            |> List.map (fun s ->
                let outcome = decide pools pass s
                commit pass s.Service outcome
                s.Service.Key, outcome)
