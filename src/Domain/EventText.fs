// Event reasons and the bounds the API server puts on Event text.
namespace Hybrid.Domain

open System
open System.Text

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Text
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// What the domain's texts are made with instead of printf's %d, %A, %O, %c and %f: the agent is a native
/// (AOT) program, and F#'s printf builds its formatter for a value-type argument with code generated at run
/// time, which a native program cannot do (it fails with NotSupportedException). printf's %s is safe.
[<RequireQualifiedAccess>]
module Text =
    /// A text in double quotes, as printf's %A prints a string.
    let quote (text: string) = "\"" + text + "\""

    /// A number with three decimals, whatever the culture.
    let decimals3 (x: float) = x.ToString("F3", Globalization.CultureInfo.InvariantCulture)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Event reasons
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// The reason of every Event Hybrid emits, Normal and Warning; `EventReason.name` is the stable CamelCase
/// text that `kubectl get events --field-selector reason=…` and alerts match on.
[<RequireQualifiedAccess>]
type EventReason =
    // Normal, on a Service: who answers for it, and the address it was given
    | Announced
    | TookOver
    | Withdrawn
    | AddressAssigned
    // Warning, on a Service: its address request
    | InvalidAddress
    | PortConflict
    | PolicyConflict
    | SelectorConflict
    // Warning, on a Service: who may announce it
    | LocalNeedsElection
    | NoServingEndpoint
    | NoEligibleNode
    | EligibleNodesNotLive
    | NoLiveNode
    // Warning, on a Service: address pools and reserved addresses
    | AddressNotInPool
    | AddressReserved
    | AddressSharingRefused
    | AddressOutsidePolicyKept
    | NoAddressPool
    | AddressPoolExhausted
    /// The address is already on the VIP interface of the holder, and Hybrid did not put it there.
    | AddressInUseOnInterface
    // Warning, on a Service that asks for DHCP (0.0.0.0, ::; docs/DHCP.md)
    | InvalidDhcpAnnotation
    | DhcpV6NotSupported
    | DhcpNoLease
    | DhcpLeaseLost
    // Warning, on the pool ConfigMap
    | InvalidAddressPool
    // Warning, on a Service held here: why it is not (fully) forwarded by UPnP (docs/UPNP.md)
    | UPnPDisabled
    | UPnPInvalidAnnotation
    | UPnPNoIPv4Address
    | UPnPUnsupportedProtocol
    | UPnPPortTaken
    | UPnPNoGateway
    | UPnPConflict
    | UPnPNotAuthorized
    | UPnPGatewayUnreachable
    | UPnPMappingFailed

[<RequireQualifiedAccess>]
module EventReason =
    let name (reason: EventReason) : string =
        match reason with
        | EventReason.Announced -> "Announced"
        | EventReason.TookOver -> "TookOver"
        | EventReason.Withdrawn -> "Withdrawn"
        | EventReason.AddressAssigned -> "AddressAssigned"
        | EventReason.InvalidAddress -> "InvalidAddress"
        | EventReason.PortConflict -> "PortConflict"
        | EventReason.PolicyConflict -> "PolicyConflict"
        | EventReason.SelectorConflict -> "SelectorConflict"
        | EventReason.LocalNeedsElection -> "LocalNeedsElection"
        | EventReason.NoServingEndpoint -> "NoServingEndpoint"
        | EventReason.NoEligibleNode -> "NoEligibleNode"
        | EventReason.EligibleNodesNotLive -> "EligibleNodesNotLive"
        | EventReason.NoLiveNode -> "NoLiveNode"
        | EventReason.AddressNotInPool -> "AddressNotInPool"
        | EventReason.AddressReserved -> "AddressReserved"
        | EventReason.AddressSharingRefused -> "AddressSharingRefused"
        | EventReason.AddressOutsidePolicyKept -> "AddressOutsidePolicyKept"
        | EventReason.NoAddressPool -> "NoAddressPool"
        | EventReason.AddressPoolExhausted -> "AddressPoolExhausted"
        | EventReason.AddressInUseOnInterface -> "AddressInUseOnInterface"
        | EventReason.InvalidDhcpAnnotation -> "InvalidDhcpAnnotation"
        | EventReason.DhcpV6NotSupported -> "DhcpV6NotSupported"
        | EventReason.DhcpNoLease -> "DhcpNoLease"
        | EventReason.DhcpLeaseLost -> "DhcpLeaseLost"
        | EventReason.InvalidAddressPool -> "InvalidAddressPool"
        | EventReason.UPnPDisabled -> "UPnPDisabled"
        | EventReason.UPnPInvalidAnnotation -> "UPnPInvalidAnnotation"
        | EventReason.UPnPNoIPv4Address -> "UPnPNoIPv4Address"
        | EventReason.UPnPUnsupportedProtocol -> "UPnPUnsupportedProtocol"
        | EventReason.UPnPPortTaken -> "UPnPPortTaken"
        | EventReason.UPnPNoGateway -> "UPnPNoGateway"
        | EventReason.UPnPConflict -> "UPnPConflict"
        | EventReason.UPnPNotAuthorized -> "UPnPNotAuthorized"
        | EventReason.UPnPGatewayUnreachable -> "UPnPGatewayUnreachable"
        | EventReason.UPnPMappingFailed -> "UPnPMappingFailed"

    let all: EventReason list =
        [ EventReason.Announced; EventReason.TookOver; EventReason.Withdrawn; EventReason.AddressAssigned
          EventReason.InvalidAddress; EventReason.PortConflict; EventReason.PolicyConflict
          EventReason.SelectorConflict; EventReason.LocalNeedsElection; EventReason.NoServingEndpoint
          EventReason.NoEligibleNode; EventReason.EligibleNodesNotLive; EventReason.NoLiveNode
          EventReason.AddressNotInPool; EventReason.AddressReserved; EventReason.AddressSharingRefused
          EventReason.AddressOutsidePolicyKept; EventReason.NoAddressPool; EventReason.AddressPoolExhausted
          EventReason.AddressInUseOnInterface
          EventReason.InvalidDhcpAnnotation; EventReason.DhcpV6NotSupported; EventReason.DhcpNoLease; EventReason.DhcpLeaseLost
          EventReason.InvalidAddressPool; EventReason.UPnPDisabled; EventReason.UPnPInvalidAnnotation
          EventReason.UPnPNoIPv4Address; EventReason.UPnPUnsupportedProtocol; EventReason.UPnPPortTaken
          EventReason.UPnPNoGateway; EventReason.UPnPConflict; EventReason.UPnPNotAuthorized
          EventReason.UPnPGatewayUnreachable; EventReason.UPnPMappingFailed ]

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
    let quote (text: string) : string = Text.quote (truncate 256 text)
