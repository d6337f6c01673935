/// Rule 3: addresses. Parsing and formatting (System.Net is the oracle here; the domain may not use it),
/// classification, and what a Service's annotation / spec.loadBalancerIP / DHCP lease ask for.
module Hybrid.Properties.AddressProperties

open System
open System.Net
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

/// The address as System.Net sees it (network byte order).
let private bytesOf (address: Ip) =
    match address with
    | V4 v -> [| byte (v >>> 24); byte (v >>> 16); byte (v >>> 8); byte v |]
    | V6(hi, lo) -> [| for w in [ hi; lo ] do for shift in 56 .. -8 .. 0 do byte (w >>> shift) |]

let private dotNet (address: Ip) = IPAddress(bytesOf address)

let private dotNetParse (text: string) =
    match IPAddress.TryParse text with
    | true, a -> Some((nonNull a).GetAddressBytes())
    | _ -> None

[<Property>]
let ``format and tryParse round-trip for every IPv4 address`` () =
    forAll genV4 (fun address ->
        let text = Ip.format address
        holds (sprintf "%s parsed as %A" text (Ip.tryParse text)) (Ip.tryParse text = Some address)
        |> Prop.classify ((Ip.unusable address).IsNone) "usable"
        |> Prop.classify ((Ip.unusable address).IsSome) "unusable")

[<Property>]
let ``format and tryParse round-trip for every IPv6 address`` () =
    forAll genV6 (fun address ->
        let text = Ip.format address
        holds (sprintf "%s parsed as %A" text (Ip.tryParse text)) (Ip.tryParse text = Some address)
        |> Prop.classify (text.Contains "::") "compressed"
        |> Prop.classify (not (text.Contains "::")) "eight groups")

[<Property>]
let ``well-formed IPv4 text parses like System.Net.IPAddress`` () =
    forAll genV4Value (fun value ->
        let text = dotted value
        allOf
            [ holds (sprintf "domain: %s -> %A" text (Ip.tryParse text)) (Ip.tryParse text = Some(V4 value))
              holds (sprintf "System.Net: %s" text) (dotNetParse text = Some(bytesOf (V4 value))) ])

[<Property>]
let ``well-formed IPv6 text parses like System.Net.IPAddress`` () =
    forAll (genV6Groups |> Gen.bind (fun gs -> genV6Text gs |> Gen.map (fun t -> gs, t))) (fun (groups, text) ->
        let expected = groupsToIp groups
        allOf
            [ holds (sprintf "domain: %s -> %A, expected %A" text (Ip.tryParse text) expected) (Ip.tryParse text = Some expected)
              holds (sprintf "System.Net disagrees on %s" text) (dotNetParse text = Some(bytesOf expected)) ]
        |> Prop.classify (text.Contains "::") "with ::"
        |> Prop.classify (text.Contains ".") "with a dotted-quad tail"
        |> Prop.classify (text <> text.ToLowerInvariant()) "upper-case hex")

[<Property>]
let ``format writes the canonical text System.Net writes`` () =
    forAll genIp (fun address ->
        let mine = Ip.format address
        let theirs = (dotNet address).ToString()
        // System.Net writes some IPv6 addresses with a dotted-quad tail (::ffff:a.b.c.d, ::a.b.c.d, ISATAP);
        // RFC 5952 allows either form, so for those only the value must agree.
        let embedded = theirs.Contains '.' && Ip.family address = IPv6
        (if embedded then holds (sprintf "%s vs %s" mine theirs) (dotNetParse mine = Some(bytesOf address))
         else holds (sprintf "domain %s, System.Net %s" mine theirs) (mine = theirs))
        |> Prop.classify (Ip.family address = IPv4) "IPv4"
        |> Prop.classify (Ip.family address = IPv6 && not embedded) "IPv6"
        |> Prop.classify embedded "IPv6 System.Net writes with an IPv4 tail")

[<Property>]
let ``leading zeros in IPv4 octets are refused rather than read as octal`` () =
    // System.Net reads 010.1.1.1 as 8.1.1.1 (octal); kube-vip's Go parser refuses it. Hybrid refuses it.
    forAll (Gen.map2 (fun v k -> v, k) genV4Value (Gen.choose (0, 3))) (fun (value, k) ->
        let octets = (dotted value).Split '.'
        octets[k] <- "0" + octets[k]
        let text = String.Join(".", octets)
        holds (sprintf "%s -> %A" text (Ip.tryParse text)) (Ip.tryParse text = None))

[<Property>]
let ``unusable addresses are classified like System.Net classifies them`` () =
    let genCase = Gen.frequency [ 3, genUnusableIp |> Gen.map (fun (a, r) -> a, Some r); 1, genUsableIp |> Gen.map (fun a -> a, None) ]
    forAll genCase (fun (address, expected) ->
        let n = dotNet address
        let dotNetSays =
            match expected with
            | Some Loopback -> IPAddress.IsLoopback n
            | Some Multicast -> Ip.family address = IPv4 || n.IsIPv6Multicast
            | Some LinkLocal -> Ip.family address = IPv4 || n.IsIPv6LinkLocal
            | Some MappedIPv4 -> n.IsIPv4MappedToIPv6
            | Some _ -> true
            | None -> not (IPAddress.IsLoopback n || n.IsIPv6Multicast || n.IsIPv6LinkLocal || n.IsIPv4MappedToIPv6)
        allOf
            [ holds (sprintf "%s classified %A, expected %A" (Ip.format address) (Ip.unusable address) expected) (Ip.unusable address = expected)
              holds (sprintf "System.Net disagrees about %s" (Ip.format address)) dotNetSays ]
        |> Prop.collect (match expected with Some r -> sprintf "%A" r | None -> "usable"))

// ── What a Service asks for ─────────────────────────────────────────────────────────────────────────

let private text (address: Ip) : Gen<string> =
    match address with
    | V4 v -> Gen.constant (dotted v)
    | V6 _ -> genV6Text (groupsOf address)

[<Property>]
let ``the loadbalancerIPs annotation wins over spec.loadBalancerIP`` () =
    let genCase =
        gen {
            let! fromAnnotation = Gen.oneof [ genUsableIp |> Gen.map Some; Gen.constant None ]
            let! fromSpec = genUsableIp
            let! annotationText = match fromAnnotation with Some a -> text a |> Gen.bind pad | None -> Gen.elements [ ""; "  " ]
            let! specText = text fromSpec
            return fromAnnotation, annotationText, fromSpec, specText
        }
    forAll genCase (fun (fromAnnotation, annotationText, fromSpec, specText) ->
        let s = { service "default" "svc" with LoadBalancerIP = Some specText } |> annotate Annotations.LoadBalancerIPs annotationText
        let expected = Requested [ Static(defaultArg fromAnnotation fromSpec) ]
        holds (sprintf "%A" (Addresses.requested s)) (Addresses.requested s = expected)
        |> Prop.classify fromAnnotation.IsSome "annotation set"
        |> Prop.classify fromAnnotation.IsNone "annotation blank: spec used")

[<Property>]
let ``addresses tolerate whitespace, collapse duplicates and keep IPv4 first`` () =
    let genCase =
        gen {
            let! a = genUsableV4
            let! b = Gen.oneof [ genUsableV6 |> Gen.map Some; Gen.constant None ]
            let! copiesA = Gen.choose (1, 3)
            let! copiesB = Gen.choose (1, 2)
            let! blanks = Gen.choose (0, 2)
            let! items =
                [ yield! List.replicate copiesA (text a)
                  match b with
                  | Some b -> yield! List.replicate copiesB (text b)
                  | None -> ()
                  yield! List.replicate blanks (Gen.constant "") ]
                |> Gen.sequenceToList
            let! items = items |> Gen.collectToList pad
            let! shuffled = Gen.shuffle items
            let! viaSpec = bool 1 3
            return a, b, String.Join(",", shuffled), viaSpec
        }
    forAll genCase (fun (a, b, list, viaSpec) ->
        let s = service "default" "svc"
        let s = if viaSpec then { s with LoadBalancerIP = Some list } else annotate Annotations.LoadBalancerIPs list s
        let expected = Requested(Static a :: (b |> Option.map Static |> Option.toList))
        holds (sprintf "%A gave %A" list (Addresses.requested s)) (Addresses.requested s = expected)
        |> Prop.classify b.IsSome "dual stack"
        |> Prop.classify (list.Split(',').Length > (if b.IsSome then 2 else 1)) "duplicates or blanks")

[<Property>]
let ``0.0.0.0 and :: request DHCP and the already-leased address is the one advertised`` () =
    let genCase =
        gen {
            let! families = Gen.elements [ [ IPv4 ]; [ IPv6 ]; [ IPv4; IPv6 ] ]
            let! leasedV4 = genUsableV4
            let! leasedV6 = genUsableV6
            let! otherV4 = genUsableV4
            // Where the lease is recorded: nowhere yet, kube-vip.io/requestedIP, status ingress, or both
            // (then the annotation wins).
            let! source = Gen.elements [ "none"; "annotation"; "ingress"; "both" ]
            let! spelled = families |> Gen.collectToList (fun f -> if f = IPv4 then Gen.constant "0.0.0.0" else Gen.elements [ "::"; "0::0"; "0:0:0:0:0:0:0:0" ] |> Gen.bind pad)
            return families, leasedV4, leasedV6, otherV4, source, String.Join(",", spelled)
        }
    forAll genCase (fun (families, leasedV4, leasedV6, otherV4, source, request) ->
        let leasedOf f = if f = IPv4 then leasedV4 else leasedV6
        let recorded = families |> List.map (leasedOf >> Ip.format) |> String.concat ","
        let s = { service "default" "dhcp" with LoadBalancerIP = Some request }
        let s =
            match source with
            | "annotation" -> annotate Annotations.RequestedIP recorded s
            | "ingress" -> { s with Ingress = families |> List.map (fun f -> ({ Ip = Ip.format (leasedOf f); IpMode = None; Ports = [] }: IngressEntry)) }
            | "both" ->
                { annotate Annotations.RequestedIP recorded s with
                    Ingress = [ ({ Ip = Ip.format otherV4; IpMode = None; Ports = [] }: IngressEntry) ] }
            | _ -> s
        let leased f = if source = "none" then None else Some(leasedOf f)
        let expected = Requested(families |> List.map (fun f -> Dhcp(f, leased f)))
        let state = (Desired.compute DefaultConfig [ s ] []).States[s.Key]
        let expectedState =
            if source = "none" then AwaitingAddress families else Member(families |> List.map leasedOf, [])
        allOf
            [ holds (sprintf "requested %A" (Addresses.requested s)) (Addresses.requested s = expected)
              holds (sprintf "state %A, expected %A" state expectedState) (state = expectedState) ]
        |> Prop.classify (source = "none") "no lease yet"
        |> Prop.classify (source <> "none") "leased"
        |> Prop.classify (families.Length = 2) "both families")

/// One offending item: garbage, a CIDR, or an address that cannot be a VIP.
let private genBadItem =
    Gen.oneof
        [ genGarbage |> Gen.map (fun t -> t, "not an IPv4 or IPv6 address")
          genCidr |> Gen.map (fun t -> t, "CIDR")
          genUnusableIp |> Gen.map (fun (a, r) -> Ip.format a, UnusableAddress.describe r) ]

[<Property>]
let ``garbage, CIDRs and unusable addresses are InvalidAddress carrying the offending text`` () =
    let genCase =
        gen {
            let! bad, problem = genBadItem
            let! good = someOf 0 2 [ "192.168.0.10"; "2001:db8::10" ]
            let! items = Gen.shuffle (bad :: good)
            let! items = items |> Array.toList |> Gen.collectToList pad
            let! viaSpec = bool 1 2
            return bad, problem, String.Join(",", items), viaSpec
        }
    forAll genCase (fun (bad, problem, list, viaSpec) ->
        let s = service "default" "svc"
        let s = if viaSpec then { s with LoadBalancerIP = Some list } else annotate Annotations.LoadBalancerIPs list s
        let state = (Desired.compute DefaultConfig [ s ] []).States[s.Key]
        match state with
        | Skipped(InvalidAddress(t, p) as reason) ->
            allOf
                [ holds (sprintf "carries %A, offending %A" t bad) (t = bad.Trim())
                  holds (sprintf "problem %A should mention %A" p problem) (p.Contains problem)
                  holds "ours: a Warning Event" (SkipReason.audience reason = Ours EventReason.InvalidAddress)
                  holds "described with the text" ((SkipReason.describe reason).Contains(bad.Trim())) ]
        | other -> holds (sprintf "%A gave %A" list other) false
        |> Prop.classify (problem = "CIDR") "CIDR"
        |> Prop.classify (problem.StartsWith "not an") "garbage"
        |> Prop.classify (problem <> "CIDR" && not (problem.StartsWith "not an")) "unusable address")

[<Property>]
let ``two addresses of one family are InvalidAddress carrying the text`` () =
    let genCase =
        gen {
            let! family = Gen.elements [ IPv4; IPv6 ]
            let! first = if family = IPv4 then genUsableV4 |> Gen.map (Ip.format >> Some) else genUsableV6 |> Gen.map (Ip.format >> Some)
            let! firstIsDhcp = bool 1 3
            let first = if firstIsDhcp then Some(if family = IPv4 then "0.0.0.0" else "::") else first
            let! second = if family = IPv4 then genUsableV4 else genUsableV6
            let! other = Gen.elements [ None; Some(if family = IPv4 then "2001:db8::9" else "192.168.7.9") ]
            let! items = Gen.shuffle ([ first.Value; Ip.format second ] @ Option.toList other)
            return String.Join(", ", items), family, first.Value, Ip.format second
        }
    forAll genCase (fun (list, family, first, second) ->
        let s = annotate Annotations.LoadBalancerIPs list (service "default" "svc")
        match (Desired.compute DefaultConfig [ s ] []).States[s.Key] with
        | Skipped(InvalidAddress(t, p)) when first = second -> holds (sprintf "duplicates must collapse: %s %s" t p) false
        | Skipped(InvalidAddress(t, p)) ->
            holds (sprintf "%A / %A" t p) (t.Contains first && t.Contains second && p.Contains(if family = IPv4 then "IPv4" else "IPv6"))
        | Member([ _ ], _) when first = second -> holds "same address twice" true
        | other -> holds (sprintf "%A gave %A" list other) false
        |> Prop.classify (family = IPv4) "two IPv4"
        |> Prop.classify (family = IPv6) "two IPv6"
        |> Prop.classify (first = "0.0.0.0" || first = "::") "DHCP and a static address")

/// Texts near the grammar: tokens that make valid addresses, glued in arbitrary order.
let private genNearAddress =
    Gen.listOf (Gen.elements [ "0"; "1"; "7f"; "ff"; "FFFF"; "12345"; "255"; "256"; "01"; "00"; ":"; "::"; "."; "a"; "g"; "%"; "/"; " " ])
    |> Gen.map (String.concat "")

[<Property(MaxTest = 1000)>]
let ``every text the domain accepts System.Net reads as the same address`` () =
    forAll (Gen.oneof [ genNearAddress; genIp |> Gen.bind (fun a -> match a with V4 v -> Gen.constant (dotted v) | V6 _ -> genV6Text (groupsOf a)) ]) (fun text ->
        match Ip.tryParse text with
        | Some address ->
            allOf
                [ holds (sprintf "domain reads %A as %s, System.Net as %A" text (Ip.format address) (dotNetParse text)) (dotNetParse text = Some(bytesOf address))
                  holds "round trip" (Ip.tryParse (Ip.format address) = Some address) ]
            |> Prop.classify true "accepted"
        | None -> holds "refused" true |> Prop.classify true "refused")

// ── Prefixes ────────────────────────────────────────────────────────────────────────────────────────

[<Property>]
let ``vip_subnet sets the prefix VIPs are added with: one value for its family, or IPv4 then IPv6`` () =
    let genCase =
        Gen.oneof
            [ Gen.choose (1, 32) |> Gen.map (fun p -> Gen.elements [ string p; "/" + string p ], (p, 128))
              Gen.choose (33, 128) |> Gen.map (fun p -> Gen.elements [ string p; "/" + string p ], (32, p))
              Gen.map2 (fun a b -> Gen.elements [ sprintf "%d,%d" a b; sprintf "/%d,/%d" a b; sprintf "/%d, /%d" a b ], (a, b)) (Gen.choose (1, 32)) (Gen.choose (1, 128)) ]
        |> Gen.bind (fun (text, expected) -> text |> Gen.map (fun t -> t, expected))
    forAll (Gen.map2 (fun c a -> c, a) genCase genUsableIp) (fun ((text, (v4, v6)), address) ->
        match parseEnv [ "vip_subnet", text ] with
        | Ok c ->
            let expected = if Ip.family address = IPv4 then v4 else v6
            holds (sprintf "%s: %d,%d; %s gets /%d" text c.PrefixV4 c.PrefixV6 (Ip.format address) (Desired.prefix c address))
                (c.PrefixV4 = v4 && c.PrefixV6 = v6 && Desired.prefix c address = expected)
        | Error e -> holds (sprintf "%s refused: %A" text e) false
        |> Prop.classify (text.Contains ",") "both families")
