// The VIPs a node began or stopped answering for between two of its states: what the metrics count as
// takeovers and hand-overs. Derived, never stored: nothing here changes a decision.
namespace Hybrid.Domain

/// One change of what this node's kernel answers for.
type HoldChange =
    /// Began answering for a VIP another node held before; `silence`: how long that node had not been heard on
    /// the LAN by then (None when it was never heard by this incarnation).
    | TookOver of ip: Ip * from: string * silence: Duration option
    /// Began answering for a VIP nobody else held before (a new VIP, or this node's own from before).
    | Began of ip: Ip
    /// Stopped answering for a VIP (released, moved to another node, stood aside, deposed or stopping).
    | HandedOver of ip: Ip

[<RequireQualifiedAccess>]
module HoldChanges =
    /// The addresses only in `now` and only in `was`, both in address order (the lists are in address order).
    let rec private differ (was: Ip list) (now: Ip list) (began: Ip list) (ended: Ip list) =
        match was, now with
        | [], [] -> List.rev began, List.rev ended
        | w :: rest, [] -> differ rest [] began (w :: ended)
        | [], n :: rest -> differ [] rest (n :: began) ended
        | w :: restWas, n :: restNow ->
            let order = compare w n
            if order = 0 then differ restWas restNow began ended
            elif order < 0 then differ restWas now began (w :: ended)
            else differ was restNow (n :: began) ended

    /// What changed from `before` to `after` (two states of one node, `after` the later), in address order.
    let between (before: NodeState) (after: NodeState) : HoldChange list =
        if LanguagePrimitives.PhysicalEquality before.Kernel.Vips after.Kernel.Vips then []
        else
            let began, ended = differ before.Kernel.HeldVips after.Kernel.HeldVips [] []
            let began =
                began
                |> List.map (fun ip ->
                    match after.Kernel.Vips[ip].TakenFrom with
                    | Some from when from <> after.Self ->
                        TookOver(ip, from, after.Lan.Peers.TryFind from |> Option.map (fun p -> after.Now - p.HeardAt))
                    | _ -> Began ip)
            began @ List.map HandedOver ended
