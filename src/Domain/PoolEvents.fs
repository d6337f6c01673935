// Pool events: the Warning Events the pool rules give rise to, with their messages.
namespace Hybrid.Domain

/// A Warning about pools, on the pool ConfigMap or on a Service.
type PoolWarning =
    /// On the ConfigMap: one bad entry (the good ones are used).
    | PoolEntryInvalid of PoolConfigError
    /// On a Service: a requested address (or DHCP) is not announced.
    | AddressNotAnnounced of AddressRequest * AddressRefusal
    /// On a Service: an address a pool or sharing rule refuses stays announced, because it was before.
    | AddressKeptDespitePolicy of Ip * AddressRefusal
    /// On a Service: no address could be assigned from the pools.
    | AddressNotAssigned of PoolWait

[<RequireQualifiedAccess>]
module PoolWarning =
    let reason (warning: PoolWarning) : EventReason =
        match warning with
        | PoolEntryInvalid _ -> EventReason.InvalidAddressPool
        | AddressNotAnnounced(_, AddressRefusal.Reserved _) -> EventReason.AddressReserved
        | AddressNotAnnounced(_, AddressRefusal.SharedAcrossNamespaces _) -> EventReason.AddressSharingRefused
        | AddressNotAnnounced(_, (AddressRefusal.NoPoolForNamespace | AddressRefusal.OutsidePool _ | AddressRefusal.DhcpNotInPool _)) ->
            EventReason.AddressNotInPool
        | AddressKeptDespitePolicy _ -> EventReason.AddressOutsidePolicyKept
        | AddressNotAssigned(FamiliesUnavailable(_, missing)) when missing |> List.exists (fun (_, why) -> why = PoolExhausted) ->
            EventReason.AddressPoolExhausted
        | AddressNotAssigned _ -> EventReason.NoAddressPool

    let private family f =
        match f with
        | IPv4 -> "IPv4"
        | IPv6 -> "IPv6"

    /// The keys that make up a scope's pool, for messages that tell the operator what to edit.
    let private poolKeys (scope: PoolScope) =
        Pools.CidrPrefix + string scope + "/" + Pools.RangePrefix + string scope

    let private poolName (scope: PoolScope) =
        match scope with
        | AllNamespaces -> sprintf "the global pool (%s)" (poolKeys scope)
        | OneNamespace ns -> sprintf "the pool of namespace %s (%s)" ns (poolKeys scope)

    let private configMap = sprintf "%s/%s" Pools.ConfigMapNamespace Pools.ConfigMapName

    let private reserved (why: ReservedAddress) =
        match why with
        | ReservedAddress.NodeAddress node -> sprintf "it is an address of node %s" node
        | ReservedAddress.InterfaceAddress node -> sprintf "it is an address of node %s's VIP interface" node
        | ReservedAddress.Gateway node -> sprintf "it is the default gateway of node %s's VIP interface" node
        | ReservedAddress.SubnetNetwork(node, subnet) -> sprintf "it is the network address of %s, node %s's VIP subnet" (string subnet) node
        | ReservedAddress.SubnetBroadcast(node, subnet) -> sprintf "it is the broadcast address of %s, node %s's VIP subnet" (string subnet) node

    let private refusal (ns: string option) (why: AddressRefusal) =
        match why with
        | AddressRefusal.Reserved r -> reserved r
        | AddressRefusal.NoPoolForNamespace ->
            let scope = ns |> Option.map OneNamespace |> Option.defaultValue AllNamespaces
            sprintf "no address pool applies to this namespace (%s has neither %s nor %s)" configMap (poolKeys scope) (poolKeys AllNamespaces)
        | AddressRefusal.OutsidePool scope -> sprintf "it is outside %s" (poolName scope)
        | AddressRefusal.DhcpNotInPool scope -> sprintf "%s does not hand out DHCP (%s)" (poolName scope) Pools.DhcpMarker
        | AddressRefusal.SharedAcrossNamespaces earlier ->
            sprintf "%s has it, and sharing across namespaces needs %s<namespace> or %sglobal true for both namespaces"
                (string earlier) Pools.AllowSharePrefix Pools.AllowSharePrefix

    let private requested (request: AddressRequest) =
        match request with
        | Static ip -> Ip.format ip
        | Dhcp(f, None) -> sprintf "DHCP (%s)" (family f)
        | Dhcp(f, Some leased) -> sprintf "%s (leased by DHCP, %s)" (Ip.format leased) (family f)

    let private shortfall (pool: PoolScope) (f: IpFamily, why: FamilyShortfall) =
        let where = poolName pool
        match why with
        | FamilyNotInPool -> sprintf "%s has no %s address" where (family f)
        | PoolExhausted -> sprintf "every %s address of %s is in use" (family f) where

    let private sentence (ns: string option) (warning: PoolWarning) =
        match warning with
        | PoolEntryInvalid e -> sprintf "%s: %s: %s" e.Key (EventText.quote e.Item) (PoolProblem.describe e.Problem)
        | AddressNotAnnounced(Dhcp(f, None), why) -> sprintf "DHCP (%s) is refused: %s" (family f) (refusal ns why)
        | AddressNotAnnounced(request, why) -> sprintf "%s is not announced: %s" (requested request) (refusal ns why)
        | AddressKeptDespitePolicy(ip, why) ->
            sprintf "%s stays announced because it already was, but would be refused now: %s" (Ip.format ip) (refusal ns why)
        | AddressNotAssigned NoPoolApplies -> sprintf "no address assigned: %s" (refusal ns AddressRefusal.NoPoolForNamespace)
        | AddressNotAssigned(FamiliesUnavailable(pool, missing)) ->
            sprintf "no address assigned: %s" (missing |> List.map (shortfall pool) |> String.concat "; ")

    /// The message, within an Event's note. `ns` is the namespace of the Service the Event is about (None
    /// for the ConfigMap).
    let message (ns: string option) (warning: PoolWarning) : string = EventText.note (sentence ns warning)

    // ── From decisions to warnings ──────────────────────────────────────────────────────────────────

    /// One warning per bad ConfigMap entry.
    let ofRead (read: PoolRead) : PoolWarning list = read.Errors |> List.map PoolEntryInvalid

    /// The warnings of a Service's address verdicts (none when all are allowed).
    let ofVerdicts (verdicts: ServiceAddressVerdicts) : PoolWarning list =
        verdicts.Verdicts
        |> List.choose (fun (request, verdict) ->
            match verdict, request with
            | AddressAllowed, _ -> None
            | AddressRefused why, _ -> Some(AddressNotAnnounced(request, why))
            | AddressKept why, Static ip
            | AddressKept why, Dhcp(_, Some ip) -> Some(AddressKeptDespitePolicy(ip, why))
            | AddressKept why, Dhcp(_, None) -> Some(AddressNotAnnounced(request, why)))

    let ofAssignment (outcome: AssignOutcome) : PoolWarning list =
        match outcome with
        | AssignAddresses _ -> []
        | WaitForAddress wait -> [ AddressNotAssigned wait ]

[<RequireQualifiedAccess>]
module PoolNotice =
    /// The Normal Event's message when addresses are assigned.
    let assigned (assignment: AddressAssignment) : string =
        let source =
            match assignment.Pool with
            | AllNamespaces -> "the global pool"
            | OneNamespace ns -> sprintf "namespace %s's pool" ns
        let shared =
            match assignment.Shared with
            | [] -> ""
            | ips -> sprintf " (%s shared with other Services, allow-share)" (ips |> List.map Ip.format |> String.concat ", ")
        EventText.note (sprintf "assigned %s from %s%s" (PoolAssignment.annotation assignment) source shared)
