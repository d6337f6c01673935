// LAN heartbeat frames and their wire format (docs/PROTOCOL.md §1): what an agent tells its segment every h.
namespace Hybrid.Domain

open System
open System.Buffers.Binary

/// One run of an agent on a node: new at every process start and every re-registration after a deposition.
[<Struct; CustomEquality; CustomComparison>]
type Incarnation =
    | Incarnation of uint64

    member i.Value = let (Incarnation v) = i in v
    /// The low 32 bits, as echoes carry it.
    member i.Short = uint32 i.Value
    override i.ToString() = i.Value.ToString "x16"
    override a.Equals(other: obj) =
        match other with
        | :? Incarnation as b -> a.Value = b.Value
        | _ -> false
    override i.GetHashCode() = i.Value.GetHashCode()
    interface IEquatable<Incarnation> with
        member a.Equals(b: Incarnation) = a.Value = b.Value
    interface IComparable<Incarnation> with
        member a.CompareTo(b: Incarnation) = compare a.Value b.Value
    interface IComparable with
        member a.CompareTo(other: obj | null) =
            match other with
            | :? Incarnation as b -> compare a.Value b.Value
            | _ -> 1

[<RequireQualifiedAccess>]
module Incarnation =
    let parse (text: string) : Incarnation option =
        match UInt64.TryParse(text, Globalization.NumberStyles.AllowHexSpecifier, Globalization.CultureInfo.InvariantCulture) with
        | true, v when text.Length = 16 -> Some(Incarnation v)
        | _ -> None

/// A heartbeat sequence number; the first frame of an incarnation has 1.
type Seq = uint32

/// What a frame says about one member the sender hears: the member (by name hash), the low 32 bits of its
/// incarnation, and the latest sequence number heard from it. To that member it is an acknowledgement and a
/// grant (docs/PROTOCOL.md §2).
type Echo =
    { Member: uint32
      Incarnation: uint32
      Seq: Seq
      /// The sender deliberately grants nothing newer (it is deposing the member, or finds it deaf): the member
      /// must not take this echo's age for its own deafness to the sender.
      Refusing: bool }

/// One heartbeat frame (or one part of it, when the echoes do not fit one datagram).
type Frame =
    { Node: string
      Incarnation: Incarnation
      Seq: Seq
      /// The sender's settings fingerprint (Config.fingerprint), as a number.
      Fingerprint: uint64
      /// The sender stands aside (isolated, or other settings) and its kernel answers for nothing: a claim
      /// needs no acknowledgement from it, and it holds no group until it claims one again.
      Aside: bool
      Part: int
      Parts: int
      /// Groups the sender claimed and waits to have acknowledged (GroupHash of each).
      Claims: uint64 list
      Echoes: Echo list }

/// Why a datagram was dropped.
type FrameError =
    | TooShort
    | NotAHeartbeat
    | UnsupportedVersion of int
    | Malformed of what: string
    | BadSignature

[<RequireQualifiedAccess>]
module NodeHash =
    /// FNV-1a over the UTF-8 name, 32 bits: how echoes name members.
    let ofName (node: string) : uint32 =
        let mutable h = 2166136261u
        for b in Text.Encoding.UTF8.GetBytes node do
            h <- (h ^^^ uint32 b) * 16777619u
        h

[<RequireQualifiedAccess>]
module GroupHash =
    /// FNV-1a over the UTF-8 group id, 64 bits: how frames name claimed groups.
    let ofGroup (group: string) : uint64 =
        let mutable h = 14695981039346656037UL
        for b in Text.Encoding.UTF8.GetBytes group do
            h <- (h ^^^ uint64 b) * 1099511628211UL
        h

[<RequireQualifiedAccess>]
module FrameCodec =
    let private Magic = 0x4859us // "HY"
    let Version = 2uy
    /// A frame part never exceeds this: the heartbeat socket adds 20 bytes of framing to at most 1,400 in all.
    let MaxDatagram = 1380
    let private SignatureBytes = 32
    let private EchoBytes = 12
    let private ClaimBytes = 8
    let private HeaderBytes = 2 + 1 + 1 + 1 + 1 + 8 + 8 + 4 + 1

    let private fixedBytes (frame: Frame) =
        HeaderBytes + Text.Encoding.UTF8.GetByteCount frame.Node + 2 + 2 + SignatureBytes

    /// How many echoes fit one datagram next to the header, the name and the claims.
    let echoesPerPart (frame: Frame) =
        max 1 ((MaxDatagram - fixedBytes frame - frame.Claims.Length * ClaimBytes) / EchoBytes)

    /// Splits a frame into parts that each fit a datagram. The claims (and the Aside flag) travel in every
    /// part: parts may arrive in any order, and whichever part of a sequence arrives first is the one that
    /// must carry them, because a member echoes the sequence from then on (an echo acknowledges the claims).
    let split (frame: Frame) : Frame list =
        let per = echoesPerPart frame
        match frame.Echoes |> List.chunkBySize per with
        | [] | [ _ ] -> [ { frame with Part = 0; Parts = 1 } ]
        | chunks ->
            chunks
            |> List.mapi (fun i echoes ->
                { frame with
                    Part = i
                    Parts = chunks.Length
                    Echoes = echoes })

    /// The datagram of one part, signed with HMAC-SHA256 under the cluster key.
    let encode (key: ClusterKey) (frame: Frame) : byte array =
        let name = Text.Encoding.UTF8.GetBytes frame.Node
        let length = HeaderBytes + name.Length + 2 + frame.Claims.Length * ClaimBytes + 2 + frame.Echoes.Length * EchoBytes
        let buffer = Array.zeroCreate<byte> (length + SignatureBytes)
        let span = Span buffer
        BinaryPrimitives.WriteUInt16BigEndian(span, Magic)
        buffer[2] <- Version
        buffer[3] <- (if frame.Aside then 1uy else 0uy) // flags: bit 0 = Aside
        buffer[4] <- byte frame.Part
        buffer[5] <- byte frame.Parts
        BinaryPrimitives.WriteUInt64BigEndian(span.Slice 6, frame.Fingerprint)
        BinaryPrimitives.WriteUInt64BigEndian(span.Slice 14, frame.Incarnation.Value)
        BinaryPrimitives.WriteUInt32BigEndian(span.Slice 22, frame.Seq)
        buffer[26] <- byte name.Length
        name.CopyTo(buffer, 27)
        let mutable at = 27 + name.Length
        BinaryPrimitives.WriteUInt16BigEndian(span.Slice at, uint16 frame.Claims.Length)
        at <- at + 2
        for claim in frame.Claims do
            BinaryPrimitives.WriteUInt64BigEndian(span.Slice at, claim)
            at <- at + ClaimBytes
        BinaryPrimitives.WriteUInt16BigEndian(span.Slice at, uint16 frame.Echoes.Length)
        at <- at + 2
        for echo in frame.Echoes do
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice at, echo.Member)
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(at + 4), echo.Incarnation)
            // The top bit of the sequence carries Refusing (sequences never reach 2^31: 6 years at 10 per second).
            BinaryPrimitives.WriteUInt32BigEndian(span.Slice(at + 8), (echo.Seq &&& 0x7FFFFFFFu) ||| (if echo.Refusing then 0x80000000u else 0u))
            at <- at + EchoBytes
        (ClusterKey.sign key buffer 0 length).CopyTo(buffer, length)
        buffer

    /// Checks the signature first (nothing unauthenticated is parsed further), then the layout.
    let decode (key: ClusterKey) (datagram: byte array) : Result<Frame, FrameError> =
        if datagram.Length < HeaderBytes + 4 + SignatureBytes then Error TooShort
        elif BinaryPrimitives.ReadUInt16BigEndian(ReadOnlySpan datagram) <> Magic then Error NotAHeartbeat
        elif datagram[2] <> Version then Error(UnsupportedVersion(int datagram[2]))
        else
            let bodyLength = datagram.Length - SignatureBytes
            let body = ReadOnlySpan(datagram, 0, bodyLength)
            let expected = ClusterKey.sign key datagram 0 bodyLength
            if not (Security.Cryptography.CryptographicOperations.FixedTimeEquals(ReadOnlySpan expected, ReadOnlySpan(datagram, bodyLength, SignatureBytes))) then
                Error BadSignature
            else
                let nameLength = int body[26]
                let claimsAt = 27 + nameLength
                if body.Length < claimsAt + 4 then Error(Malformed "name")
                else
                    let claims = int (BinaryPrimitives.ReadUInt16BigEndian(body.Slice claimsAt))
                    let echoesAt = claimsAt + 2 + claims * ClaimBytes
                    if body.Length < echoesAt + 2 then Error(Malformed "claims")
                    else
                        let echoes = int (BinaryPrimitives.ReadUInt16BigEndian(body.Slice echoesAt))
                        if body.Length <> echoesAt + 2 + echoes * EchoBytes then Error(Malformed "echoes")
                        elif body[4] >= body[5] then Error(Malformed "part")
                        else
                            let name = Text.Encoding.UTF8.GetString(body.Slice(27, nameLength))
                            let claimList =
                                [ for i in 0 .. claims - 1 ->
                                      BinaryPrimitives.ReadUInt64BigEndian(ReadOnlySpan(datagram, claimsAt + 2 + i * ClaimBytes, ClaimBytes)) ]
                            let echoList =
                                [ for i in 0 .. echoes - 1 ->
                                      let at = echoesAt + 2 + i * EchoBytes
                                      let seq = BinaryPrimitives.ReadUInt32BigEndian(ReadOnlySpan(datagram, at + 8, 4))
                                      { Member = BinaryPrimitives.ReadUInt32BigEndian(ReadOnlySpan(datagram, at, 4))
                                        Incarnation = BinaryPrimitives.ReadUInt32BigEndian(ReadOnlySpan(datagram, at + 4, 4))
                                        Seq = seq &&& 0x7FFFFFFFu
                                        Refusing = seq &&& 0x80000000u <> 0u } ]
                            if name.Length = 0 then Error(Malformed "name")
                            else
                                Ok
                                    { Node = name
                                      Incarnation = Incarnation(BinaryPrimitives.ReadUInt64BigEndian(body.Slice 14))
                                      Seq = BinaryPrimitives.ReadUInt32BigEndian(body.Slice 22)
                                      Fingerprint = BinaryPrimitives.ReadUInt64BigEndian(body.Slice 6)
                                      Aside = body[3] &&& 1uy <> 0uy
                                      Part = int body[4]
                                      Parts = int body[5]
                                      Claims = claimList
                                      Echoes = echoList }
