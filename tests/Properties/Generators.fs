/// Shared generators and helpers. Every generator builds its interesting cases directly (small pools of
/// IPs, ports, nodes and names so that collisions are common) instead of filtering random data.
module Hybrid.Properties.Generators

open System
open FsCheck
open FsCheck.FSharp
open Hybrid.Domain

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Checking helpers
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// A labelled boolean: the label is what the failure report shows.
let holds (label: string) (condition: bool) : Property = Prop.label label condition

/// Conjunction of labelled checks (true when the list is empty).
let allOf (checks: Property list) : Property = checks |> List.fold (.&.) (Prop.ofTestable true)

/// Runs a generator through FsCheck (default 100 cases or whatever the attribute says).
let forAll (generator: Gen<'a>) (body: 'a -> 'p) : Property = Prop.forAll (Arb.fromGen generator) body

/// Picks n distinct elements (in random order) without filtering.
let distinct (n: int) (pool: 'a list) : Gen<'a list> =
    Gen.shuffle pool |> Gen.map (fun a -> a |> Seq.truncate n |> List.ofSeq)

/// Picks between lo and hi distinct elements.
let someOf (lo: int) (hi: int) (pool: 'a list) : Gen<'a list> =
    gen {
        let! n = Gen.choose (lo, min hi pool.Length)
        return! distinct n pool
    }

let bool (trueWeight: int) (falseWeight: int) = Gen.frequency [ trueWeight, Gen.constant true; falseWeight, Gen.constant false ]

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Time and configuration
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// The instant every generated observation is dated against.
let Now: Instant = 1_000_000L

/// A cluster key for tests: the base64 text of 32 fixed bytes.
let KeyText = Convert.ToBase64String(Array.init 32 (fun i -> byte (i * 7 + 1)))

/// Another valid key (another id).
let OtherKeyText = Convert.ToBase64String(Array.init 32 (fun i -> byte (255 - i)))

let clusterKey (text: string) =
    match ClusterKey.parse text with
    | Ok k -> k
    | Error e -> failwithf "test key rejected: %s" e

let Key = clusterKey KeyText

/// The smallest environment Hybrid accepts: the node, services mode, the cluster key.
let BaseEnv = [ "vip_nodename", "node-a"; "svc_enable", "true"; "lan_key", KeyText ]

/// Parses BaseEnv overridden by `pairs` (later pairs win), with no key file.
let parseEnv (pairs: (string * string) list) = Config.parse (Map.ofList (BaseEnv @ pairs)) None

let configWith (pairs: (string * string) list) : Config =
    match parseEnv pairs with
    | Ok c -> c
    | Error errors -> failwithf "test configuration rejected: %A" errors

let DefaultConfig = configWith []
let DefaultTiming = DefaultConfig.Timing

let configFor (node: string) (election: bool) : Config = { DefaultConfig with NodeName = node; Election = election }

/// Seconds as the environment spells them, with millisecond precision ("1", "0.25").
let secondsText (ms: int64) = if ms % 1000L = 0L then string (ms / 1000L) else sprintf "%d.%03d" (ms / 1000L) (ms % 1000L)

let chooseL (lo: int64) (hi: int64) = Gen.choose64 (lo, hi)

let genUInt64 = Gen.map2 (fun (a: int) (b: int) -> (uint64 (uint32 a) <<< 32) ||| uint64 (uint32 b)) (Gen.choose (Int32.MinValue, Int32.MaxValue)) (Gen.choose (Int32.MinValue, Int32.MaxValue))

let genUInt32 = Gen.choose (Int32.MinValue, Int32.MaxValue) |> Gen.map uint32

/// A later duration that exceeds `earlier` by the documented margins (docs/PROTOCOL.md §7: ρ = 0.1 %, ε = 10 ms)
/// plus at least `extra` ms, computed in decimals from the document's numbers.
let exceeding (earlier: int64) (extra: int64) =
    int64 (Math.Ceiling((decimal earlier * 1.001m + 10m) / 0.999m)) + extra

/// Timings Timing.create accepts, far from and close to every boundary, or Hybrid's defaults.
let genAcceptedTiming: Gen<Timing> =
    Gen.frequency
        [ 1, Gen.constant DefaultTiming
          4,
          gen {
              let! h = chooseL 10L 1000L
              let! rl = chooseL (2L * h + 2L * Timing.KernelSlack) (2L * h + 2000L)
              let! dl = chooseL 1L 3000L |> Gen.map (exceeding rl)
              let! pa = chooseL 50L 3000L
              let! ra = chooseL (pa + 1L) (pa + 10_000L)
              let! da = chooseL 1L 10_000L |> Gen.map (exceeding ra)
              return
                  match Timing.create h rl dl da ra pa with
                  | Ok t -> t
                  | Error e -> failwithf "generator built a rejected timing %A" e
          } ]

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Addresses
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let v4 (a: int) (b: int) (c: int) (d: int) = V4((uint32 a <<< 24) ||| (uint32 b <<< 16) ||| (uint32 c <<< 8) ||| uint32 d)

let ip (text: string) =
    match Ip.tryParse text with
    | Some ip -> ip
    | None -> failwithf "bad test address %s" text

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

let dotted (v: uint32) = sprintf "%d.%d.%d.%d" (v >>> 24) ((v >>> 16) &&& 0xFFu) ((v >>> 8) &&& 0xFFu) (v &&& 0xFFu)

/// A well-formed RFC 4291 text of an IPv6 address, in one of its many spellings: any letter case, optional
/// leading zeros, "::" over any run of zero groups (also one group, also not the longest), an optional
/// dotted-quad tail.
let genV6Text (groups: uint16 array) : Gen<string> =
    gen {
        let! upper = Gen.elements [ 0; 1; 2 ] // lower, upper, mixed
        let! pad = bool 1 3
        let hex (g: uint16) =
            let s = if pad then g.ToString "x4" else g.ToString "x"
            match upper with
            | 0 -> s
            | 1 -> s.ToUpperInvariant()
            | _ -> String(s |> Seq.mapi (fun i c -> if i % 2 = 0 then Char.ToUpperInvariant c else c) |> Array.ofSeq)
        let! tail = bool 1 3
        let limit = if tail then 6 else 8
        let tailText = dotted ((uint32 groups[6] <<< 16) ||| uint32 groups[7])
        // Every run of consecutive zero groups inside the first `limit` groups is a candidate for "::".
        let runs =
            [ for i in 0 .. limit - 1 do
                  for j in i + 1 .. limit do
                      if groups[i..j - 1] |> Array.forall ((=) 0us) then (i, j) ]
        let! compress = if runs.IsEmpty then Gen.constant None else Gen.frequency [ 1, Gen.constant None; 3, Gen.elements runs |> Gen.map Some ]
        let units (a: int) (b: int) = [ for k in a .. b - 1 -> hex groups[k] ]
        let withTail parts = if tail then parts @ [ tailText ] else parts
        return
            match compress with
            | None -> withTail (units 0 limit) |> String.concat ":"
            | Some(i, j) -> String.concat ":" (units 0 i) + "::" + String.concat ":" (withTail (units j limit))
    }

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

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Services
// ════════════════════════════════════════════════════════════════════════════════════════════════════

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

/// Every key the generators use: two namespaces, names that sort in a known order.
let AllKeys = [ for ns in [ "default"; "prod" ] do for n in [ "a"; "b"; "c"; "d"; "e"; "f" ] -> key ns n ]

let genKeys (lo: int) (hi: int) = someOf lo hi AllKeys

let PortPool = [ tcp 80; tcp 81; udp 80; tcp 443 ]

/// One or two ports from a pool of four, so that collisions on (protocol, port) are common.
let genPorts = someOf 1 2 PortPool

let genPolicy = Gen.frequency [ 2, Gen.constant Cluster; 1, Gen.constant Local ]
let genSelector = Gen.frequency [ 3, Gen.constant WebSelector; 1, Gen.constant DbSelector ]

/// IPs services share in the sharing properties: three IPv4 and one IPv6.
let ShareV4 = [ v4 192 168 0 220; v4 192 168 0 221; v4 192 168 0 222 ]
let ShareV6 = ip "2001:db8::220"

let genShareIps =
    Gen.frequency
        [ 5, Gen.elements ShareV4 |> Gen.map List.singleton
          1, Gen.elements ShareV4 |> Gen.map (fun a -> [ a; ShareV6 ])
          1, Gen.constant [ ShareV6 ] ]

/// A candidate of the sharing rule: a service with its addresses. Creation times collide often, so that
/// the namespace/name tie-break matters.
let genCandidate (k: ServiceKey) : Gen<Service * Ip list> =
    gen {
        let! created = Gen.choose (0, 3)
        let! ports = genPorts
        let! policy = genPolicy
        let! selector = genSelector
        let! ips = genShareIps
        return { service k.Namespace k.Name with CreatedAt = int64 created; Ports = ports; Policy = policy; Selector = selector }, ips
    }

let genCandidates (lo: int) (hi: int) : Gen<(Service * Ip list) list> =
    genKeys lo hi |> Gen.bind (Gen.collectToList genCandidate)

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Endpoints
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let AllConditions =
    [ for r in [ None; Some true; Some false ] do
          for s in [ None; Some true; Some false ] do
              for t in [ None; Some true; Some false ] -> { Ready = r; Serving = s; Terminating = t } ]

let genConditions = Gen.elements AllConditions

/// An endpoint on one of `nodes` (or with no node name), with any conditions.
let genEndpoint (nodes: string list) : Gen<Endpoint> =
    Gen.map2
        (fun node c -> { NodeName = node; Conditions = c })
        (Gen.frequency [ 9, Gen.elements nodes |> Gen.map Some; 1, Gen.constant None ])
        genConditions

/// Zero to three EndpointSlices of a service, one to four endpoints each.
let genSlices (nodes: string list) (k: ServiceKey) : Gen<EndpointSlice list> =
    gen {
        let! n = Gen.frequency [ 1, Gen.constant 0; 3, Gen.constant 1; 2, Gen.constant 2; 1, Gen.constant 3 ]
        return!
            Gen.listOfLength n (Gen.choose (1, 4) |> Gen.bind (fun m -> Gen.listOfLength m (genEndpoint nodes)))
            |> Gen.map (List.map (fun eps -> { Service = k; Endpoints = eps }))
    }


/// Another load balancer's class.
let OtherClass = "example.com/other-lb"

/// What a generated service asks for: mostly a few shared addresses, sometimes DHCP, nothing or garbage.
let genAddressText: Gen<string option> =
    let v4s = [ "192.168.0.220"; "192.168.0.221"; "192.168.0.222" ]
    Gen.frequency
        [ 8, Gen.elements v4s |> Gen.map Some
          1, Gen.elements v4s |> Gen.map (fun a -> Some(a + ",2001:db8::220"))
          1, Gen.constant (Some "2001:db8::220")
          1, Gen.constant (Some "0.0.0.0")
          1, Gen.constant None
          1, Gen.elements [ "127.0.0.1"; "not-an-ip"; "192.168.0.0/24"; "192.168.0.220,192.168.0.221" ] |> Gen.map Some ]

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Nodes and groups
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let NodePool = [ "node-a"; "node-b"; "node-c"; "node-d"; "node-e"; "node-f" ]

/// Group addresses for the ownership properties.
let GroupPool = [ for i in 1..12 -> v4 10 0 0 i ]

let genEligibility (nodes: string list) : Gen<Eligibility> =
    Gen.frequency
        [ 5, Gen.constant (AnyNode ServingEndpointExists)
          3, someOf 0 nodes.Length (nodes @ [ "node-x" ]) |> Gen.map (Set.ofList >> NodesWithEndpoint)
          1, Gen.constant NoServingEndpoint ]

/// An EndpointSlice of `s` with one ready, serving endpoint on each of `nodes`.
let readyOn (nodes: string list) (s: Service) : EndpointSlice =
    { Service = s.Key
      Endpoints = nodes |> List.map (fun n -> { NodeName = Some n; Conditions = { Ready = Some true; Serving = Some true; Terminating = Some false } }) }

let group (address: Ip) (eligibility: Eligibility) (changedSeenAt: Instant) : Group =
    { Id = LeaseNames.group address
      Addresses = [ address ]
      Members = []
      Eligibility = eligibility
      ChangedSeenAt = changedSeenAt
      CreatedAt = 0L
      Follows = None }
