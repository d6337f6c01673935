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
    let resolve (candidates: (Service * Ip list) list) : Map<ServiceKey, ShareVerdict> =
        let step (onIp: Map<Ip, Service list>, verdicts: Map<ServiceKey, ShareVerdict>) (service: Service, ips: Ip list) =
            let found =
                ips
                |> List.tryPick (fun ip ->
                    defaultArg (onIp.TryFind ip) [] |> List.tryPick (fun earlier -> conflict ip earlier service))
            match found with
            | Some reason -> onIp, verdicts.Add(service.Key, Rejected reason)
            | None ->
                let onIp = ips |> List.fold (fun (m: Map<Ip, Service list>) ip -> m.Add(ip, defaultArg (m.TryFind ip) [] @ [ service ])) onIp
                onIp, verdicts.Add(service.Key, Admitted)
        candidates
        |> List.sortBy (fst >> order)
        |> List.fold step (Map.empty, Map.empty)
        |> snd
