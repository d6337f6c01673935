// Port sharing: which Services may share one IP.
namespace Hybrid.Domain

open System

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Port sharing: several Services on one IP
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Verdict of the sharing rule for one Service.
type ShareVerdict =
    | Admitted
    | Rejected of SkipReason

[<RequireQualifiedAccess>]
module Sharing =
    /// Services are admitted in this order: oldest first, then by namespace/name. Earlier ones always win.
    let order (service: Service) = service.CreatedAt, service.Key.Namespace, service.Key.Name

    /// The same order as a comparison (tuples compare through F#'s generic comparison, which is slow).
    let compareOrder (a: Service) (b: Service) =
        match compare a.CreatedAt b.CreatedAt with
        | 0 -> compare a.Key b.Key
        | c -> c

    /// Why `later` cannot join `earlier` on `ip`, if it cannot.
    let conflict (ip: Ip) (earlier: Service) (later: Service) : SkipReason option =
        let taken = set earlier.Ports
        match later.Ports |> List.tryFind taken.Contains with
        | Some port -> Some(PortConflict(earlier.Key, port, ip))
        | None when earlier.Policy <> later.Policy -> Some(PolicyConflict(earlier.Key, ip))
        | None when later.Policy = Local && earlier.Selector <> later.Selector -> Some(SelectorConflict(earlier.Key, ip))
        | None -> None

    /// Resolves every Service that has addresses: admits in order, rejecting a Service that conflicts with
    /// one admitted before it on any of its addresses. Monotonic: a later Service never changes the fate of
    /// an earlier one; independent of input order.
    let verdicts (candidates: (Service * Ip list) list) : (ServiceKey * ShareVerdict) list =
        // Admitted services per IP, in admission order (a local table: see Index for why not a Map).
        let onIp = System.Collections.Generic.Dictionary<Ip, Service list>()
        let admittedOn ip =
            match onIp.TryGetValue ip with
            | true, admitted -> admitted
            | _ -> []
        candidates
        |> List.sortWith (fun (a, _) (b, _) -> compareOrder a b)
        |> List.map (fun (service, ips) ->
            let found = ips |> List.tryPick (fun ip -> admittedOn ip |> List.tryPick (fun earlier -> conflict ip earlier service))
            match found with
            | Some reason -> service.Key, Rejected reason
            | None ->
                for ip in ips do
                    onIp[ip] <- admittedOn ip @ [ service ]
                service.Key, Admitted)

    /// The verdicts as a map.
    let resolve (candidates: (Service * Ip list) list) : Map<ServiceKey, ShareVerdict> = verdicts candidates |> Map.ofList
