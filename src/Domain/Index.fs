// Read-only lookup tables for the hot paths of a plan.
namespace Hybrid.Domain

open System.Collections.Generic

/// A lookup table built once and only read afterwards. F#'s Map compares keys through the generic
/// comparer (several type tests per comparison), which made plans for thousands of Services slow; a
/// hash table keyed by IEquatable keys is an order of magnitude cheaper, and nothing outside the function
/// that builds it can observe that it is mutable.
[<RequireQualifiedAccess>]
module Index =
    let ofSeq (pairs: seq<'K * 'V>) : IReadOnlyDictionary<'K, 'V> =
        let d = Dictionary<'K, 'V>(EqualityComparer<'K>.Default)
        for k, v in pairs do
            d[k] <- v
        d :> IReadOnlyDictionary<'K, 'V>

    let ofMap (map: Map<'K, 'V>) : IReadOnlyDictionary<'K, 'V> = map |> Map.toSeq |> ofSeq

    let keys (items: seq<'K>) : IReadOnlySet<'K> = HashSet<'K>(items, EqualityComparer<'K>.Default) :> IReadOnlySet<'K>

    /// Groups values by key, keeping the first-appearance order of keys and the input order within a group.
    let groupBy (key: 'T -> 'K) (items: 'T list) : ('K * 'T list) list =
        let groups = Dictionary<'K, ResizeArray<'T>>(EqualityComparer<'K>.Default)
        let order = ResizeArray<'K>()
        for item in items do
            let k = key item
            match groups.TryGetValue k with
            | true, g -> g.Add item
            | _ ->
                groups[k] <- ResizeArray [ item ]
                order.Add k
        [ for k in order -> k, List.ofSeq groups[k] ]

    let tryFind (key: 'K) (index: IReadOnlyDictionary<'K, 'V>) : 'V option =
        match index.TryGetValue key with
        | true, v -> Some v
        | _ -> None
