/// What the pool and address-policy properties share beyond Generators.fs: a configuration and plain Services.
module Hybrid.Properties.PoolBasics

open System
open FsCheck
open FsCheck.FSharp
open Hybrid.Domain
open Hybrid.Properties.Generators

// The checking helpers (holds, allOf, forAll, distinct, someOf, bool), Now and KeyText come from Generators.fs.

let BaseEnv = [ "vip_nodename", "node-a"; "svc_enable", "true"; "lan_key", KeyText ]

let configWith (pairs: (string * string) list) : Config =
    match Config.parse (Map.ofList (BaseEnv @ pairs)) None with
    | Ok c -> c
    | Error errors -> failwithf "test configuration rejected: %A" errors

let DefaultConfig = configWith []

let v4 (a: int) (b: int) (c: int) (d: int) = V4((uint32 a <<< 24) ||| (uint32 b <<< 16) ||| (uint32 c <<< 8) ||| uint32 d)

let ip (text: string) =
    match Ip.tryParse text with
    | Some ip -> ip
    | None -> failwithf "bad test address %s" text

// Addresses: any, usable as a VIP, and never usable, each with its classification.

let genWord16 = Gen.choose (0, 0xFFFF) |> Gen.map uint16

let genOctet = Gen.frequency [ 3, Gen.choose (0, 255); 1, Gen.elements [ 0; 1; 9; 10; 99; 100; 127; 128; 254; 255 ] ]

/// Any 32-bit value: uniformly, or octet by octet with the boundary octets likely.
let genV4Value: Gen<uint32> =
    Gen.oneof
        [ Gen.map2 (fun (hi: uint16) (lo: uint16) -> (uint32 hi <<< 16) ||| uint32 lo) genWord16 genWord16
          Gen.four genOctet |> Gen.map (fun (a, b, c, d) -> (uint32 a <<< 24) ||| (uint32 b <<< 16) ||| (uint32 c <<< 8) ||| uint32 d) ]

let genV4 = genV4Value |> Gen.map V4

/// One 16-bit group of an IPv6 address; zero is common so that zero runs of every length occur.
let genGroup =
    Gen.frequency [ 5, Gen.constant 0us; 1, Gen.constant 0xFFFFus; 2, Gen.choose (1, 16) |> Gen.map uint16; 4, genWord16 ]

let groupsToIp (groups: uint16 array) =
    let word (gs: uint16 seq) = gs |> Seq.fold (fun acc g -> (acc <<< 16) ||| uint64 g) 0UL
    V6(word groups[0..3], word groups[4..7])

let groupsOf (ip: Ip) =
    match ip with
    | V6(hi, lo) -> [| for w in [ hi; lo ] do for shift in [ 48; 32; 16; 0 ] -> uint16 ((w >>> shift) &&& 0xFFFFUL) |]
    | V4 _ -> invalidArg "ip" "not IPv6"

let genV6Groups = Gen.arrayOfLength 8 genGroup

/// Any 128-bit value: structured (zero runs likely) or uniformly random.
let genV6 =
    Gen.oneof
        [ genV6Groups |> Gen.map groupsToIp
          Gen.arrayOfLength 8 genWord16 |> Gen.map groupsToIp ]

let genIp = Gen.oneof [ genV4; genV6 ]

/// IPv4 addresses that can be VIPs, from explicit ranges.
let genUsableV4 =
    Gen.oneof
        [ Gen.map2 (fun c d -> v4 192 168 c d) (Gen.choose (0, 255)) (Gen.choose (1, 254))
          Gen.map3 (fun b c d -> v4 10 b c d) (Gen.choose (0, 255)) (Gen.choose (0, 255)) (Gen.choose (1, 254))
          Gen.map2 (fun c d -> v4 198 (18 + c % 2) c d) (Gen.choose (0, 255)) (Gen.choose (1, 254)) ]

/// IPv6 addresses that can be VIPs (documentation and unique-local ranges).
let genUsableV6 =
    Gen.oneof
        [ Gen.map2 (fun (a: uint16) (b: uint16) -> V6(0x20010db800000000UL ||| uint64 a, uint64 b)) genWord16 genWord16
          Gen.map2 (fun (a: uint16) (b: uint16) -> V6(0xfd00000000000000UL ||| (uint64 a <<< 16), uint64 b + 1UL)) genWord16 genWord16 ]

let genUsableIp = Gen.oneof [ genUsableV4; genUsableV6 ]

/// Addresses that can never be VIPs, each with the classification it must get (every reason equally likely).
let genUnusableIp: Gen<Ip * UnusableAddress> =
    let v6 hiBits (a: uint16) (b: uint16) = V6(hiBits ||| (uint64 a <<< 40), uint64 b)
    Gen.oneof
        [ Gen.oneof [ Gen.map3 (fun b c d -> v4 127 b c d) genOctet genOctet genOctet; Gen.constant (V6(0UL, 1UL)) ] |> Gen.map (fun a -> a, Loopback)
          Gen.oneof [ Gen.map3 (fun a b d -> v4 (224 + a % 16) b 0 d) genOctet genOctet genOctet; Gen.map2 (v6 0xff00000000000000UL) genWord16 genWord16 ]
          |> Gen.map (fun a -> a, Multicast)
          Gen.oneof
              [ Gen.map2 (fun c d -> v4 169 254 c d) genOctet genOctet
                Gen.map2 (fun (a: uint16) (b: uint16) -> V6(0xfe80000000000000UL ||| (uint64 (a &&& 0x3Fus) <<< 48), uint64 b)) genWord16 genWord16 ]
          |> Gen.map (fun a -> a, LinkLocal)
          Gen.constant (V4 0xFFFFFFFFu, Broadcast)
          Gen.oneof [ Gen.map3 (fun a b c -> v4 (240 + a % 15) b c 1) genOctet genOctet genOctet; Gen.map2 (fun b c -> v4 0 (b % 255 + 1) c 0) genOctet genOctet ]
          |> Gen.map (fun a -> a, ReservedRange)
          genV4Value |> Gen.map (fun v -> V6(0UL, 0xFFFF00000000UL ||| uint64 v), MappedIPv4) ]

/// Texts that are not addresses at all (each must be reported verbatim).
let genGarbage: Gen<string> =
    Gen.oneof
        [ Gen.elements
              [ "abc"; "1.2.3"; "1.2.3.4.5"; "256.1.1.1"; "01.2.3.4"; "1.2.3.-1"; "1..2.3"; "example.com"; "::g"
                "1:2:3:4:5:6:7:8:9"; "1:2:3:4:5:6:7"; ":::"; "1::2::3"; "fe80::1%eth0"; "0x7f.0.0.1"; "1.2.3.4:80"
                "[2001:db8::1]"; "12345::"; "1.2.3.4 5" ]
          // Random words over letters that are not hex digits, so they can never parse.
          Gen.listOfLength 5 (Gen.elements [ 'g'; 'h'; 'k'; 'q'; 'x'; 'z'; '-' ]) |> Gen.map (fun cs -> "n" + String(Array.ofList cs)) ]

let genCidr: Gen<string> =
    Gen.oneof
        [ Gen.map2 (fun ip p -> sprintf "%s/%d" (Ip.format ip) p) genV4 (Gen.choose (0, 32))
          Gen.map2 (fun ip p -> sprintf "%s/%d" (Ip.format ip) p) genV6 (Gen.choose (0, 128)) ]

/// Surrounding whitespace the annotation parser must tolerate.
let genPadding = Gen.elements [ ""; ""; " "; "  "; "\t"; " \t " ]

let pad (text: string) : Gen<string> = Gen.map2 (fun l r -> l + text + r) genPadding genPadding

let key (ns: string) (name: string) : ServiceKey = { Namespace = ns; Name = name }
let tcp port : ServicePort = { Protocol = "TCP"; Port = port }
let udp port : ServicePort = { Protocol = "UDP"; Port = port }

let WebSelector = Map [ "app", "web" ]
let DbSelector = Map [ "app", "db" ]

/// A plain LoadBalancer Service asking for nothing yet.
let service (ns: string) (name: string) : Service =
    { Key = key ns name
      Uid = ns + "-" + name
      CreatedAt = 0L
      Type = "LoadBalancer"
      Class = None
      Annotations = Map.empty
      LoadBalancerIP = None
      Ports = [ tcp 80 ]
      Policy = Cluster
      Selector = WebSelector
      Ingress = []
      ChangedSeenAt = 0L }

let annotate (k: string) (v: string) (s: Service) = { s with Annotations = s.Annotations.Add(k, v) }

let PortPool = [ tcp 80; tcp 81; udp 80; tcp 443 ]

/// One or two ports from a pool of four, so that collisions on (protocol, port) are common.
let genPorts = someOf 1 2 PortPool

let genPolicy = Gen.frequency [ 2, Gen.constant Cluster; 1, Gen.constant Local ]
let genSelector = Gen.frequency [ 3, Gen.constant WebSelector; 1, Gen.constant DbSelector ]
