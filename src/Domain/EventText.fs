// Event reasons and the bounds the API server puts on Event text.
namespace Hybrid.Domain

open System
open System.Text

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Warning Event reasons
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// The reason of every Warning Event Hybrid emits; `WarningReason.name` is the stable CamelCase text that
/// `kubectl get events --field-selector reason=…` and alerts match on.
[<RequireQualifiedAccess>]
type WarningReason =
    // On a Service: its address request
    | InvalidAddress
    | PortConflict
    | PolicyConflict
    | SelectorConflict
    // On a Service: who may announce it
    | LocalNeedsElection
    | NoServingEndpoint
    | NoEligibleNode
    | EligibleNodesNotLive
    | NoLiveNode
    // On a Service: address pools
    | AddressNotInPool
    | AddressReserved
    | AddressSharingRefused
    | AddressOutsidePolicyKept
    | NoAddressPool
    | AddressPoolExhausted
    // On the pool ConfigMap
    | InvalidAddressPool

[<RequireQualifiedAccess>]
module WarningReason =
    let name (reason: WarningReason) : string =
        match reason with
        | WarningReason.InvalidAddress -> "InvalidAddress"
        | WarningReason.PortConflict -> "PortConflict"
        | WarningReason.PolicyConflict -> "PolicyConflict"
        | WarningReason.SelectorConflict -> "SelectorConflict"
        | WarningReason.LocalNeedsElection -> "LocalNeedsElection"
        | WarningReason.NoServingEndpoint -> "NoServingEndpoint"
        | WarningReason.NoEligibleNode -> "NoEligibleNode"
        | WarningReason.EligibleNodesNotLive -> "EligibleNodesNotLive"
        | WarningReason.NoLiveNode -> "NoLiveNode"
        | WarningReason.AddressNotInPool -> "AddressNotInPool"
        | WarningReason.AddressReserved -> "AddressReserved"
        | WarningReason.AddressSharingRefused -> "AddressSharingRefused"
        | WarningReason.AddressOutsidePolicyKept -> "AddressOutsidePolicyKept"
        | WarningReason.NoAddressPool -> "NoAddressPool"
        | WarningReason.AddressPoolExhausted -> "AddressPoolExhausted"
        | WarningReason.InvalidAddressPool -> "InvalidAddressPool"

    let all: WarningReason list =
        [ WarningReason.InvalidAddress; WarningReason.PortConflict; WarningReason.PolicyConflict
          WarningReason.SelectorConflict; WarningReason.LocalNeedsElection; WarningReason.NoServingEndpoint
          WarningReason.NoEligibleNode; WarningReason.EligibleNodesNotLive; WarningReason.NoLiveNode
          WarningReason.AddressNotInPool; WarningReason.AddressReserved; WarningReason.AddressSharingRefused
          WarningReason.AddressOutsidePolicyKept; WarningReason.NoAddressPool; WarningReason.AddressPoolExhausted
          WarningReason.InvalidAddressPool ]

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Event text within the API server's limits
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<RequireQualifiedAccess>]
module EventText =
    /// events.k8s.io/v1 refuses an Event whose `note` exceeds this many bytes of UTF-8 (the API server's
    /// validation counts bytes, not characters).
    let NoteLimitBytes = 1024

    /// events.k8s.io/v1 refuses an Event whose `reason` exceeds this many bytes.
    let ReasonLimitBytes = 128

    /// Appended where text was cut.
    let CutMark = " [...]"

    let byteCount (text: string) = Encoding.UTF8.GetByteCount text

    /// The text with every lone UTF-16 surrogate replaced by U+FFFD, which is what a JSON encoder makes of
    /// it on the wire anyway; counting bytes is only exact on text that encodes as it is.
    let private wellFormed (text: string) =
        let sb = StringBuilder(text.Length)
        let mutable i = 0
        while i < text.Length do
            let c = text[i]
            if Char.IsHighSurrogate c && i + 1 < text.Length && Char.IsLowSurrogate text[i + 1] then
                sb.Append(c).Append(text[i + 1]) |> ignore
                i <- i + 2
            elif Char.IsSurrogate c then
                sb.Append '\uFFFD' |> ignore
                i <- i + 1
            else
                sb.Append c |> ignore
                i <- i + 1
        sb.ToString()

    /// The longest prefix of whole characters (never half a surrogate pair) within `budget` bytes of UTF-8.
    let private prefixWithin (budget: int) (text: string) =
        let mutable used = 0
        let mutable i = 0
        let mutable stop = false
        while not stop && i < text.Length do
            let width = if Char.IsHighSurrogate text[i] then 2 else 1
            let bytes = Encoding.UTF8.GetByteCount(text.AsSpan(i, width))
            if used + bytes > budget then stop <- true
            else
                used <- used + bytes
                i <- i + width
        text.Substring(0, i)

    /// The text as valid UTF-8 of at most `limitBytes` bytes: unchanged when it fits, otherwise its longest
    /// prefix of whole characters followed by CutMark (a limit smaller than the mark cuts without it).
    let truncate (limitBytes: int) (text: string) : string =
        let text = wellFormed text
        if byteCount text <= limitBytes then text
        elif limitBytes < byteCount CutMark then prefixWithin (max 0 limitBytes) text
        else prefixWithin (limitBytes - byteCount CutMark) text + CutMark

    /// A message that fits an Event's note.
    let note (text: string) : string = truncate NoteLimitBytes text

    /// How text from a user (an annotation, a ConfigMap value) is quoted inside a message: at most 256
    /// bytes of it, so that the rest of the message survives.
    let quote (text: string) : string = "\"" + truncate 256 text + "\""
