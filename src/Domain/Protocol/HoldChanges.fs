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
    let private held (s: NodeState) =
        s.Kernel.Vips |> Map.filter (fun _ v -> v.Held) |> Map.keys |> Set.ofSeq

    /// What changed from `before` to `after` (two states of one node, `after` the later), in address order.
    let between (before: NodeState) (after: NodeState) : HoldChange list =
        if LanguagePrimitives.PhysicalEquality before.Kernel.Vips after.Kernel.Vips then []
        else
            let was, now = held before, held after
            let began =
                Set.difference now was
                |> Set.toList
                |> List.map (fun ip ->
                    match after.Kernel.Vips[ip].TakenFrom with
                    | Some from when from <> after.Self ->
                        TookOver(ip, from, after.Lan.Peers.TryFind from |> Option.map (fun p -> after.Now - p.HeardAt))
                    | _ -> Began ip)
            let ended = Set.difference was now |> Set.toList |> List.map HandedOver
            began @ ended
