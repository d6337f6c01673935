/// Blocks of addresses: CIDRs (System.Net.IPNetwork is the oracle), ranges and sets (address-by-address
/// membership is the oracle), and the unusable addresses as blocks.
module Hybrid.Properties.AddressBlockProperties

open System.Net
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators
open Hybrid.Properties.PoolBasics
open Hybrid.Properties.PoolGenerators

let private bytesOf (address: Ip) =
    match address with
    | V4 v -> [| byte (v >>> 24); byte (v >>> 16); byte (v >>> 8); byte v |]
    | V6(hi, lo) -> [| for w in [ hi; lo ] do for shift in 56 .. -8 .. 0 do byte (w >>> shift) |]

let private dotNet (address: Ip) = IPAddress(bytesOf address)

/// An address, a prefix length of its family, and addresses to probe: the block's ends and their
/// neighbours, and random ones.
let private genBlockCase =
    gen {
        let! address = genIp
        let maximum = Ip.hostPrefix (Ip.family address)
        let! length = Gen.frequency [ 3, Gen.choose (0, maximum); 1, Gen.elements [ 0; 1; maximum - 1; maximum ] ]
        let! randoms = Gen.listOfLength 4 (if Ip.family address = IPv4 then genV4 else genV6)
        return address, length, randoms
    }

[<Property(MaxTest = 500)>]
let ``a CIDR holds exactly the addresses System.Net.IPNetwork holds`` () =
    forAll genBlockCase (fun (address, length, randoms) ->
        match Cidr.containing address length with
        | None -> holds "no block for a valid length" false
        | Some c ->
            // IPNetwork refuses a base address with host bits set: the block's Network must be aligned.
            let net = IPNetwork(dotNet c.Network, length)
            let last = Cidr.last c
            // IPv4-mapped IPv6 probes are left out: System.Net's IPNetwork.Contains compares them as IPv4
            // addresses (it says 51e5::/16 holds ::ffff:0.0.39.90), so it is no reference for them.
            let probes =
                [ address; c.Network; last ] @ randoms @ List.choose id [ Ip.previous c.Network; Ip.next last ]
                |> List.filter (fun p -> not (dotNet p).IsIPv4MappedToIPv6)
            allOf
                [ holds "contains its address" (Cidr.contains c address)
                  for p in probes do
                      holds (sprintf "%O and %s: domain %b, System.Net %b" c (Ip.format p) (Cidr.contains c p) (net.Contains(dotNet p)))
                          (Cidr.contains c p = net.Contains(dotNet p))
                  holds "the range of a CIDR runs from its network to its last address"
                      ((IpRange.ofCidr c).First = c.Network && (IpRange.ofCidr c).Last = last) ]
            |> Prop.classify (length = 0) "the whole family"
            |> Prop.classify (length = Ip.hostPrefix (Ip.family address)) "one address")

[<Property(MaxTest = 300)>]
let ``Cidr.parse reads address/length with the block's alignment, and refuses everything else`` () =
    let genText =
        Gen.oneof
            [ genBlockCase |> Gen.map (fun (a, l, _) -> sprintf "%s/%d" (Ip.format a) l, Some(a, l))
              Gen.elements
                  [ "10.0.0.0"; "10.0.0.0/"; "/24"; "10.0.0.0/33"; "::/129"; "10.0.0.0/-1"; "10.0.0.0/+8"; "10.0.0.0/08"
                    "10.0.0.0/8/8"; "10.0.0/8"; "10.0.0.0/ 8"; "fe80::1%eth0/64"; "10.0.0.0/1000" ]
              |> Gen.map (fun t -> t, None) ]
    forAll genText (fun (text, expected) ->
        match Cidr.parse text, expected with
        | Ok c, Some(a, l) ->
            allOf
                [ holds (sprintf "%s read as %O" text c) (c.Length = l && Cidr.contains c a && Some c = Cidr.containing a l)
                  holds (sprintf "%O does not read back" c) (Cidr.parse (string c) = Ok c) ]
        | Error _, None -> holds "refused" true
        | other, _ -> holds (sprintf "%s: %A" text other) false
        |> Prop.classify expected.IsNone "not a CIDR")

/// Ranges inside 10.0.0.0/26 and fd00::/122, so that membership can be checked address by address.
let private genSmallRange =
    gen {
        let! family = Gen.frequency [ 3, Gen.constant IPv4; 1, Gen.constant IPv6 ]
        let! a = Gen.choose (0, 63)
        let! span = Gen.frequency [ 2, Gen.constant 0; 3, Gen.choose (1, 8); 1, Gen.choose (9, 63) ]
        let b = min 63 (a + span)
        return
            match IpRange.create (inFamily family a) (inFamily family b) with
            | Some r -> r
            | None -> failwith "generator built a reversed range"
    }

let private Small = [ for f in [ IPv4; IPv6 ] do for n in 0..64 -> inFamily f n ]

let private inAny (ranges: IpRange list) (a: Ip) = ranges |> List.exists (fun r -> r.First <= a && a <= r.Last)

/// Sorted, disjoint and never adjacent: the one way to write a set.
let private canonical (s: IpSet) =
    IpSet.ranges s
    |> List.pairwise
    |> List.forall (fun (x, y) -> IpRange.family x <> IpRange.family y || (match Ip.next x.Last with Some n -> n < y.First | None -> false))

[<Property(MaxTest = 300)>]
let ``address sets hold exactly the addresses of their ranges, under union and difference`` () =
    let genCase = Gen.map2 (fun a b -> a, b) (Gen.listOf genSmallRange) (Gen.listOf genSmallRange)
    forAll genCase (fun (ra, rb) ->
        let a, b = IpSet.ofRanges ra, IpSet.ofRanges rb
        let union, difference = IpSet.union a b, IpSet.difference a b
        allOf
            [ for x in Small do
                  holds (sprintf "%s in %O" (Ip.format x) a) (IpSet.contains a x = inAny ra x)
                  holds (sprintf "%s in the union" (Ip.format x)) (IpSet.contains union x = (inAny ra x || inAny rb x))
                  holds (sprintf "%s in the difference" (Ip.format x)) (IpSet.contains difference x = (inAny ra x && not (inAny rb x)))
              holds (sprintf "not canonical: %O %O %O" a union difference) (canonical a && canonical union && canonical difference)
              holds "the order of ranges does not matter" (IpSet.ofRanges (List.rev ra) = a) ]
        |> Prop.classify (ra.Length > 1) "several ranges"
        |> Prop.classify (not (IpSet.isEmpty a) && IpSet.isEmpty difference) "difference empties the set")

[<Property(MaxTest = 500)>]
let ``the unusable blocks hold exactly the addresses Ip.unusable refuses`` () =
    let blocks = UnusableAddress.blocks
    let edges = blocks |> List.collect (fun c -> [ Some c.Network; Some(Cidr.last c); Ip.previous c.Network; Ip.next (Cidr.last c) ] |> List.choose id)
    let genCase = Gen.oneof [ genIp; genUsableIp; genUnusableIp |> Gen.map fst; Gen.elements edges ]
    forAll genCase (fun address ->
        let inBlocks = blocks |> List.exists (fun c -> Cidr.contains c address)
        holds (sprintf "%s: in a block %b, unusable %A" (Ip.format address) inBlocks (Ip.unusable address)) (inBlocks = (Ip.unusable address).IsSome)
        |> Prop.classify inBlocks "unusable"
        |> Prop.classify (List.contains address edges) "at a block's edge")

[<Property>]
let ``next and previous step by one address and stop at the family's ends`` () =
    forAll (Gen.oneof [ genIp; Gen.elements [ V4 0u; V4 System.UInt32.MaxValue; V6(0UL, 0UL); V6(System.UInt64.MaxValue, System.UInt64.MaxValue); V6(0UL, System.UInt64.MaxValue); V6(1UL, 0UL) ] ]) (fun address ->
        let asNumber (a: Ip) = System.Numerics.BigInteger(Array.append (Array.rev (bytesOf a)) [| 0uy |])
        let top = System.Numerics.BigInteger.Pow(2I, (if Ip.family address = IPv4 then 32 else 128)) - 1I
        let n = asNumber address
        allOf
            [ holds "next" (match Ip.next address with Some b -> asNumber b = n + 1I && Ip.family b = Ip.family address | None -> n = top)
              holds "previous" (match Ip.previous address with Some b -> asNumber b = n - 1I && Ip.family b = Ip.family address | None -> n = 0I)
              holds "inverse" (Ip.next address |> Option.bind Ip.previous |> Option.forall ((=) address)) ])
