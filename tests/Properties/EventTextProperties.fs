/// Event text: within the API server's limits (1,024 bytes of note, 128 of reason), valid UTF-8, and cut
/// visibly. Every message the domain writes, however hostile the input it quotes.
module Hybrid.Properties.EventTextProperties

open System
open System.Text
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators
open Hybrid.Properties.PoolBasics

/// Throws on a lone surrogate: what "valid UTF-8 on the wire" means for a .NET string.
let private strict = UTF8Encoding(false, true)

let private validUtf8 (text: string) =
    try
        strict.GetBytes text |> ignore
        true
    with :? EncoderFallbackException -> false

/// The text as a JSON encoder sends it: lone surrogates become U+FFFD (EnumerateRunes does the same).
let private asSent (text: string) = text.EnumerateRunes() |> Seq.map string |> String.concat ""

/// Text of one- to four-byte characters and lone surrogates, of any length up to a few KiB.
let private genText: Gen<string> =
    let piece =
        Gen.frequency
            [ 6, Gen.elements [ "a"; "Z"; "0"; " "; ","; "/"; "\""; "\\"; "\n" ]
              2, Gen.elements [ "é"; "ß"; "Ж" ] // 2 bytes
              2, Gen.elements [ "€"; "中"; "\u2026" ] // 3 bytes
              1, Gen.elements [ "😀"; "𝄞" ] // 4 bytes, a surrogate pair
              1, Gen.elements [ "\uD800"; "\uDC00"; "\uDBFF" ] ] // lone surrogates
    Gen.frequency [ 1, Gen.listOfLength 0 piece; 4, Gen.choose (1, 400) |> Gen.bind (fun n -> Gen.listOfLength n piece); 1, Gen.choose (300, 1500) |> Gen.bind (fun n -> Gen.listOfLength n piece) ]
    |> Gen.map (String.concat "")

[<Property(MaxTest = 500)>]
let ``truncate gives valid UTF-8 within the limit: the text when it fits, else its longest whole-character prefix and the cut mark`` () =
    let genCase =
        gen {
            let! text = genText
            let size = EventText.byteCount (asSent text)
            let! limit = Gen.frequency [ 2, Gen.choose (0, 1100); 2, Gen.choose (max 0 (size - 8), size + 8); 1, Gen.elements [ 0; 1; 5; 6; 7; 1024 ] ]
            return text, limit
        }
    forAll genCase (fun (text, limit) ->
        let result = EventText.truncate limit text
        let sent = asSent text
        let fits = EventText.byteCount sent <= limit
        let mark = EventText.CutMark
        let markBytes = EventText.byteCount mark
        let kept = if not fits && limit >= markBytes && result.EndsWith mark then result.Substring(0, result.Length - mark.Length) else result
        let nextRune = if kept.Length < sent.Length then Some(Rune.GetRuneAt(sent, kept.Length)) else None
        let budget = if fits then limit elif limit >= markBytes then limit - markBytes else limit
        allOf
            [ holds (sprintf "not valid UTF-8: %A" result) (validUtf8 result)
              holds (sprintf "%d bytes over a limit of %d" (EventText.byteCount result) limit) (EventText.byteCount result <= limit)
              if fits then holds "changed though it fits" (result = sent)
              else
                  holds "cut without the mark" (limit < markBytes || result.EndsWith mark)
                  holds "what is kept is not a prefix of the text" (sent.StartsWith(kept, StringComparison.Ordinal))
                  holds "a whole character more would still have fit"
                      (nextRune |> Option.forall (fun r -> EventText.byteCount kept + r.Utf8SequenceLength > budget)) ]
        |> Prop.classify fits "fits"
        |> Prop.classify (not fits) "cut"
        |> Prop.classify (text <> sent) "lone surrogates"
        |> Prop.classify (not fits && limit < markBytes) "limit below the mark")

[<Property>]
let ``every Event reason is a CamelCase word within the API server's reason limit, and no two are alike`` () =
    let names = EventReason.all |> List.map EventReason.name
    allOf
        // Digits are allowed inside a word (UPnPNoIPv4Address), as in Kubernetes' own reasons.
        [ for n in names do
              holds n (n.Length > 0 && Char.IsAsciiLetterUpper n[0] && n |> Seq.forall Char.IsAsciiLetterOrDigit && EventText.byteCount n <= EventText.ReasonLimitBytes)
          holds "duplicates" ((List.distinct names).Length = names.Length) ]

let private fitsNote (message: string) = EventText.byteCount message <= EventText.NoteLimitBytes && validUtf8 message

/// Names at Kubernetes' own limits: 63-character namespaces and node names of 253.
let private genLongName (limit: int) = Gen.choose (1, limit) |> Gen.map (fun n -> String('n', n))

[<Property(MaxTest = 200)>]
let ``every message the pool rules write fits an Event's note, whatever it quotes`` () =
    let genWarning =
        gen {
            let! text = genText
            let! big = Gen.choose (1, 40)
            let hostile = String.replicate big text
            let! ns = genLongName 63
            let! name = genLongName 63
            let! node = genLongName 253
            let earlier = key ns name
            let subnet = Option.get (Cidr.containing (v4 10 0 0 0) 24)
            return!
                Gen.elements
                    [ PoolEntryInvalid { Key = "cidr-" + ns; Item = hostile; Problem = PoolProblem.NotACidr MissingSlash }
                      PoolEntryInvalid { Key = String('k', 253); Item = hostile; Problem = PoolProblem.DhcpAmongAddresses }
                      AddressNotAnnounced(Static(v4 10 0 0 1), AddressRefusal.Reserved(ReservedAddress.NodeAddress node))
                      AddressNotAnnounced(Static(v4 10 0 0 0), AddressRefusal.Reserved(ReservedAddress.SubnetNetwork(node, subnet)))
                      AddressNotAnnounced(Dhcp(IPv4, None), AddressRefusal.DhcpNotInPool(OneNamespace ns))
                      AddressNotAnnounced(Static(v4 10 0 0 1), AddressRefusal.NoPoolForNamespace)
                      AddressKeptDespitePolicy(ip "fd00::ffff:ffff:ffff:ffff", AddressRefusal.SharedAcrossNamespaces earlier)
                      AddressNotAssigned(FamiliesUnavailable(AllNamespaces, [ IPv4, PoolExhausted; IPv6, FamilyNotInPool ]))
                      AddressNotAssigned NoPoolApplies ]
                |> Gen.map (fun w -> w, ns)
        }
    forAll genWarning (fun (warning, ns) ->
        let message = PoolWarning.message (Some ns) warning
        holds (sprintf "%d bytes: %s" (EventText.byteCount message) message) (fitsNote message && message.Length > 0)
        |> Prop.classify (message.EndsWith EventText.CutMark) "cut")

[<Property(MaxTest = 100)>]
let ``an InvalidAddress message fits an Event's note and quotes the start of the offending annotation`` () =
    let genCase =
        gen {
            let! text = genText
            let! copies = Gen.choose (1, 300)
            return "not-an-address " + String.replicate copies text
        }
    forAll genCase (fun annotation ->
        let s = annotate Annotations.LoadBalancerIPs annotation (service "default" "hostile")
        match (Desired.compute DefaultConfig [ s ] []).States[s.Key] with
        | Skipped reason ->
            let message = SkipReason.describe reason
            allOf
                [ holds (sprintf "%d bytes" (EventText.byteCount message)) (fitsNote message)
                  holds "quotes the start" (message.Contains "not-an-address") ]
            |> Prop.classify (EventText.byteCount annotation > EventText.NoteLimitBytes) "annotation longer than a note"
        | other -> holds (sprintf "%A" other) false)

[<Property>]
let ``the assignment notice fits an Event's note and names the addresses`` () =
    forAll (Gen.map2 (fun n s -> n, s) (genLongName 63) (bool 1 1)) (fun (ns, shared) ->
        let a =
            { Service = key ns "svc"
              Addresses = [ Static(ip "fd00:1:2:3:4:5:6:7"); Static(v4 10 0 0 9) ]
              Shared = (if shared then [ v4 10 0 0 9 ] else [])
              Pool = OneNamespace ns
              Interface = Some "eth0" }
        let message = PoolNotice.assigned a
        holds message (fitsNote message && message.Contains "fd00:1:2:3:4:5:6:7,10.0.0.9"))
