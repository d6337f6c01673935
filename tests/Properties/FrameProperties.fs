/// The heartbeat wire format (docs/PROTOCOL.md §1): signed datagrams that carry a frame exactly, split to fit
/// the LAN, and refuse anything altered, truncated or signed with another key without ever throwing.
module Hybrid.Properties.FrameProperties

open System
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private letters = "abcdefghij"

/// Node names as Kubernetes allows them (DNS subdomains, up to 253 characters), short ones likely.
let private genNodeName =
    Gen.frequency
        [ 4, Gen.elements NodePool
          1, Gen.choose (1, 253) |> Gen.map (fun n -> String.init n (fun i -> if i % 10 = 9 && i < n - 1 then "." else string letters.[i % 10])) ]

let private genEcho =
    gen {
        let! m = genUInt32
        let! inc = genUInt32
        // Sequences stay below 2^31 (the top bit carries Refusing): small, large, and the largest.
        let! seq = Gen.frequency [ 3, Gen.choose (0, 1000) |> Gen.map uint32; 1, Gen.choose (0, Int32.MaxValue) |> Gen.map uint32; 1, Gen.constant 0x7FFFFFFFu ]
        let! refusing = bool 1 3
        return { Member = m; Incarnation = inc; Seq = seq; Refusing = refusing }
    }

/// A frame (or a part of one) with any header values, claims and echoes.
let private genFrameWith (maxClaims: int) (maxEchoes: int) =
    gen {
        let! node = genNodeName
        let! inc = genUInt64
        let! seq = Gen.frequency [ 3, Gen.choose (1, 1000) |> Gen.map uint32; 1, genUInt32 ]
        let! fingerprint = genUInt64
        let! aside = bool 1 3
        let! parts = Gen.frequency [ 4, Gen.constant 1; 1, Gen.choose (2, 255) ]
        let! part = Gen.choose (0, parts - 1)
        let! claims = Gen.choose (0, maxClaims) |> Gen.bind (fun n -> Gen.listOfLength n genUInt64)
        let! echoes = Gen.frequency [ 3, Gen.choose (0, 10); 1, Gen.choose (0, maxEchoes) ] |> Gen.bind (fun n -> Gen.listOfLength n genEcho)
        return
            { Node = node
              Incarnation = Incarnation inc
              Seq = seq
              Fingerprint = fingerprint
              Aside = aside
              Part = part
              Parts = parts
              Claims = claims
              Echoes = echoes }
    }

let private genFrame = genFrameWith 20 200

let private OtherKey = clusterKey OtherKeyText

[<Property>]
let ``a frame decodes to exactly the frame that was encoded, Aside flag and Refusing bits included`` () =
    forAll genFrame (fun frame ->
        match FrameCodec.decode Key (FrameCodec.encode Key frame) with
        | Ok decoded -> holds (sprintf "%A\nbecame\n%A" frame decoded) (decoded = frame)
        | Error e -> holds (sprintf "%A" e) false
        |> Prop.classify frame.Aside "aside"
        |> Prop.classify (frame.Echoes |> List.exists _.Refusing) "some echo refusing"
        |> Prop.classify (frame.Echoes |> List.exists (fun e -> e.Seq = 0x7FFFFFFFu)) "largest sequence echoed"
        |> Prop.classify (frame.Parts > 1) "a part of several")

[<Property>]
let ``the Aside flag is bit 0 of the flags byte and Refusing the top bit of an echo's sequence, so every build reads them alike`` () =
    // docs/PROTOCOL.md §1 and the wire layout: magic, version, flags (bit 0 = Aside), ...; each echo is member,
    // incarnation and a sequence whose top bit says Refusing. Read here straight from the bytes.
    forAll genFrame (fun frame ->
        let datagram = FrameCodec.encode Key frame
        let nameLength = int datagram[26]
        let echoesAt = 27 + nameLength + 2 + 8 * frame.Claims.Length + 2
        let refusingBits = [ for i in 0 .. frame.Echoes.Length - 1 -> datagram[echoesAt + 12 * i + 8] &&& 0x80uy <> 0uy ]
        allOf
            [ holds (sprintf "flags byte %02x for Aside %b" datagram[3] frame.Aside) (datagram[3] = (if frame.Aside then 1uy else 0uy))
              holds (sprintf "top bits %A" refusingBits) (refusingBits = (frame.Echoes |> List.map _.Refusing)) ]
        |> Prop.classify frame.Aside "aside"
        |> Prop.classify (frame.Echoes |> List.exists _.Refusing) "some echo refusing")

[<Property>]
let ``a signed datagram whose Aside bit or Refusing bit alone differs decodes to the frame that says so`` () =
    // A sender sets these bits and signs: the receiver must read each of them independently of everything else.
    let genCase =
        gen {
            let! frame = genFrame
            let! target = if frame.Echoes.IsEmpty then Gen.constant None else Gen.frequency [ 1, Gen.constant None; 2, Gen.choose (0, frame.Echoes.Length - 1) |> Gen.map Some ]
            return frame, target
        }
    forAll genCase (fun (frame, target) ->
        let body = FrameCodec.encode Key frame
        let body = body[.. body.Length - 33]
        let expected =
            match target with
            | None ->
                body[3] <- body[3] ^^^ 1uy
                { frame with Aside = not frame.Aside }
            | Some i ->
                let at = 27 + int body[26] + 2 + 8 * frame.Claims.Length + 2 + 12 * i + 8
                body[at] <- body[at] ^^^ 0x80uy
                { frame with Echoes = frame.Echoes |> List.mapi (fun j e -> if j = i then { e with Refusing = not e.Refusing } else e) }
        let datagram = Array.append body (ClusterKey.sign Key body 0 body.Length)
        match FrameCodec.decode Key datagram with
        | Ok decoded -> holds (sprintf "%A" decoded) (decoded = expected)
        | Error e -> holds (sprintf "%A" e) false
        |> Prop.classify target.IsNone "Aside flipped"
        |> Prop.classify target.IsSome "Refusing flipped")

/// A whole frame as the protocol sends it (part 0 of 1): a node's echoes of up to 400 members and its claims.
let private genWholeFrame =
    genFrameWith 100 400 |> Gen.map (fun f -> { f with Part = 0; Parts = 1 })

[<Property>]
let ``a frame split into parts fits the datagram limit, its parts rejoin to the same echoes, and every part carries the claims`` () =
    forAll genWholeFrame (fun frame ->
        let parts = FrameCodec.split frame
        let datagrams = parts |> List.map (FrameCodec.encode Key)
        let decoded = datagrams |> List.map (FrameCodec.decode Key)
        allOf
            [ for d in datagrams do
                  holds (sprintf "datagram of %d bytes (%d claims, %d echoes)" d.Length frame.Claims.Length frame.Echoes.Length) (d.Length <= FrameCodec.MaxDatagram)
              holds "every part decodes" (decoded |> List.forall Result.isOk)
              holds "parts numbered 0..n-1 of n" (parts |> List.mapi (fun i p -> p.Part = i && p.Parts = parts.Length) |> List.forall id)
              holds "echoes rejoin in order" ((parts |> List.collect _.Echoes) = frame.Echoes)
              holds "claims in every part" (parts |> List.forall (fun p -> p.Claims = frame.Claims))
              holds "same header"
                  (parts
                   |> List.forall (fun p ->
                       p.Node = frame.Node && p.Incarnation = frame.Incarnation && p.Seq = frame.Seq
                       && p.Fingerprint = frame.Fingerprint && p.Aside = frame.Aside)) ]
        |> Prop.classify (parts.Length > 1) "split"
        |> Prop.classify (frame.Node.Length > 200) "long node name")

[<Property>]
let ``a datagram altered in any byte is never accepted, and altered past its version it fails the signature`` () =
    let genCase =
        gen {
            let! frame = genFrame
            let length = (FrameCodec.encode Key frame).Length
            let! at = Gen.frequency [ 1, Gen.choose (0, 2); 6, Gen.choose (0, length - 1) ]
            let! mask = Gen.choose (1, 255)
            return frame, at, byte mask
        }
    forAll genCase (fun (frame, at, mask) ->
        let datagram = FrameCodec.encode Key frame
        datagram[at] <- datagram[at] ^^^ mask
        match FrameCodec.decode Key datagram with
        | Ok f -> holds (sprintf "byte %d altered, accepted %A" at f) false
        | Error e -> holds (sprintf "byte %d: %A" at e) (at < 3 || e = BadSignature)
        |> Prop.classify (at < 3) "magic or version"
        |> Prop.classify (at >= datagram.Length - 32) "in the signature")

[<Property>]
let ``a datagram signed with another key fails the signature`` () =
    forAll genFrame (fun frame -> holds "another key" (FrameCodec.decode OtherKey (FrameCodec.encode Key frame) = Error BadSignature))

[<Property>]
let ``a truncated or extended datagram gives an error, never a frame or an exception`` () =
    let genCase =
        gen {
            let! frame = genFrame
            let length = (FrameCodec.encode Key frame).Length
            let! cut = Gen.oneof [ Gen.choose (0, length - 1) |> Gen.map (fun n -> n - length); Gen.choose (1, 40) ]
            return frame, cut
        }
    forAll genCase (fun (frame, change) ->
        let datagram = FrameCodec.encode Key frame
        let altered = if change < 0 then datagram[.. datagram.Length + change - 1] else Array.append datagram (Array.zeroCreate change)
        match FrameCodec.decode Key altered with
        | Ok f -> holds (sprintf "%d bytes of %d accepted as %A" altered.Length datagram.Length f) false
        | Error _ -> holds "refused" true
        |> Prop.classify (change < 0) "truncated"
        |> Prop.classify (change > 0) "extended")

let private genBytes (lo: int) (hi: int) = Gen.choose (lo, hi) |> Gen.bind (fun n -> Gen.arrayOfLength n (Gen.choose (0, 255) |> Gen.map byte))

[<Property(MaxTest = 500)>]
let ``garbage gives an error, never an exception`` () =
    forAll (genBytes 0 300) (fun datagram ->
        match FrameCodec.decode Key datagram with
        | Ok f -> holds (sprintf "garbage accepted as %A" f) false
        | Error e -> holds "refused" true |> Prop.collect (match e with FrameError.Malformed _ -> "Malformed" | e -> sprintf "%A" e))

[<Property(MaxTest = 500)>]
let ``a correctly signed datagram with a malformed body gives an error or a frame, never an exception`` () =
    // What a buggy or hostile holder of the key could send: the right magic and version, a body whose lengths
    // say anything (or agree with each other), a valid signature. Decoding must not throw.
    let genCase =
        gen {
            let! consistent = bool 1 1
            let! nameLength = Gen.frequency [ 2, Gen.choose (0, 255); 3, Gen.choose (0, 12) ]
            let! claims = Gen.frequency [ 3, Gen.choose (0, 4); 1, Gen.choose (0, 70000) ]
            let! echoes = Gen.frequency [ 3, Gen.choose (0, 4); 1, Gen.choose (0, 70000) ]
            let length = 27 + nameLength + 2 + 8 * claims + 2 + 12 * echoes
            let! body = if consistent && length <= 4000 then genBytes length length else genBytes 27 160
            return body, nameLength, claims, echoes
        }
    forAll genCase (fun (body, nameLength, claims, echoes) ->
        let put16 at (v: int) =
            if at + 1 < body.Length then
                body[at] <- byte (v >>> 8)
                body[at + 1] <- byte v
        body[0] <- 0x48uy
        body[1] <- 0x59uy
        body[2] <- FrameCodec.Version
        body[3] <- body[3] &&& 1uy
        body[26] <- byte nameLength
        put16 (27 + nameLength) claims
        put16 (27 + nameLength + 2 + 8 * claims) echoes
        let datagram = Array.append body (ClusterKey.sign Key body 0 body.Length)
        // Anything accepted re-encodes to the same datagram (unless its name was not UTF-8): nothing was read
        // that the datagram does not hold.
        match FrameCodec.decode Key datagram with
        | Ok f -> holds (sprintf "%A" f) (FrameCodec.encode Key f = datagram || f.Node.Contains '\uFFFD') |> Prop.collect "accepted"
        | Error(FrameError.Malformed what) -> holds "malformed" true |> Prop.collect ("Malformed " + what)
        | Error e -> holds (sprintf "%A" e) (e <> BadSignature) |> Prop.collect (sprintf "%A" e))

[<Xunit.Fact>]
let ``members and claimed groups are named by FNV-1a hashes (32 and 64 bits)`` () =
    // The published FNV-1a test vectors: every agent, whatever its version or platform, names them alike.
    Xunit.Assert.Equal(0x811c9dc5u, NodeHash.ofName "")
    Xunit.Assert.Equal(0xe40c292cu, NodeHash.ofName "a")
    Xunit.Assert.Equal(0xbf9cf968u, NodeHash.ofName "foobar")
    Xunit.Assert.Equal(0xcbf29ce484222325UL, GroupHash.ofGroup "")
    Xunit.Assert.Equal(0xaf63dc4c8601ec8cUL, GroupHash.ofGroup "a")
    Xunit.Assert.Equal(0x85944171f73967e8UL, GroupHash.ofGroup "foobar")
