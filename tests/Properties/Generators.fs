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

/// The instant every generated snapshot is taken at.
let Now: Instant = 1_000_000L

let BaseEnv = [ "vip_nodename", "node-a"; "svc_enable", "true" ]

/// Parses BaseEnv overridden by `pairs` (later pairs win).
let parseEnv (pairs: (string * string) list) = Config.parse (Map.ofList (BaseEnv @ pairs))

let configWith (pairs: (string * string) list) : Config =
    match parseEnv pairs with
    | Ok c -> c
    | Error errors -> failwithf "test configuration rejected: %A" errors

let DefaultConfig = configWith []
let DefaultTiming = DefaultConfig.Timing

let configFor (node: string) (election: bool) : Config = { DefaultConfig with NodeName = node; Election = election }

/// Timings Timing.create accepts (with at least 20 ms of margin in the inequality, so that whole-millisecond
/// clocks cannot decide), or Hybrid's defaults.
let genAcceptedTiming: Gen<Timing> =
    Gen.frequency
        [ 1, Gen.constant DefaultTiming
          3,
          gen {
              // R must leave one retry period after a 1 s lifetime and the kernel's expiry slack; D must exceed
              // R by the clock-drift margin (both read from the domain's constants).
              let slack = int Timing.KernelExpirySlack
              let rho = float Timing.ClockDriftPerMille
              let! p = Gen.choose (100, 600)
              let! r = Gen.choose (p + 1000 + slack, p + 2500 + slack)
              let! extra = Gen.choose (20, 600)
              let d = int64 (Math.Ceiling(float r * (1000.0 + rho) / (1000.0 - rho))) + int64 extra
              return
                  match Timing.create d (int64 r) (int64 p) with
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

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Ownership: nodes, heartbeats, groups, leases
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let NodePool = [ "node-a"; "node-b"; "node-c"; "node-d"; "node-e"; "node-f" ]

/// How a node looks to the observer.
type Fate =
    | Alive
    | Dead
    | Gone
    | Unknown

/// A heartbeat observation matching the fate (None: never seen).
let genHeartbeat (timing: Timing) (node: string) (fate: Fate) : Gen<Heartbeat option> =
    let hb holder (age: int) =
        Some { Node = node; Holder = holder; Version = sprintf "hb-%s-%d" node age; ChangedSeenAt = Now - int64 age }
    match fate with
    | Alive -> Gen.choose (0, int timing.LeaseDuration - 1) |> Gen.map (hb (Some node))
    | Dead -> Gen.choose (int timing.LeaseDuration, int timing.LeaseDuration + 5000) |> Gen.map (hb (Some node))
    | Gone -> Gen.choose (0, 5000) |> Gen.map (hb None)
    | Unknown -> Gen.constant None

let genFate = Gen.frequency [ 6, Gen.constant Alive; 2, Gen.constant Dead; 1, Gen.constant Gone; 1, Gen.constant Unknown ]

let heartbeatMap (hbs: Heartbeat option list) = hbs |> List.choose id |> List.map (fun h -> h.Node, h) |> Map.ofList

/// Group addresses for the ownership properties.
let GroupPool = [ for i in 1..12 -> v4 10 0 0 i ]

let genEligibility (nodes: string list) : Gen<Eligibility> =
    Gen.frequency
        [ 5, Gen.constant (AnyNode ServingEndpointExists)
          3, someOf 0 nodes.Length (nodes @ [ "node-x" ]) |> Gen.map (Set.ofList >> NodesWithEndpoint)
          1, Gen.constant NoServingEndpoint ]

let group (address: Ip) (eligibility: Eligibility) (changedSeenAt: Instant) : Group =
    { Id = LeaseNames.group address
      Addresses = [ address ]
      Members = []
      Eligibility = eligibility
      ChangedSeenAt = changedSeenAt
      CreatedAt = 0L }

/// A group Lease naming nobody, a node of the fleet (whatever its fate), or a node nobody has seen.
let genLease (nodes: string list) (id: GroupId) : Gen<GroupLease option> =
    gen {
        let! age = Gen.choose (0, 5000)
        let! version = Gen.choose (1, 99)
        let lease holder = Some { Name = id; Holder = holder; Version = sprintf "l%d" version; ChangedSeenAt = Now - int64 age }
        return!
            Gen.frequency
                [ 2, Gen.constant None
                  1, Gen.constant (lease None)
                  5, Gen.elements nodes |> Gen.map (Some >> lease)
                  1, Gen.constant (lease (Some "node-gone")) ]
    }

/// Nodes with fates, groups with eligibility and leases: what one node observed of the cluster.
type Fleet =
    { Nodes: string list
      Fates: Map<string, Fate>
      View: OwnershipView
      Groups: Group list }

let genFleetWith (genFateOf: Gen<Fate>) (maxGroups: int) : Gen<Fleet> =
    gen {
        let! n = Gen.choose (1, NodePool.Length)
        let nodes = List.take n NodePool
        let! fates = Gen.listOfLength n genFateOf
        let fateMap = List.zip nodes fates |> Map.ofList
        let! hbs = List.zip nodes fates |> Gen.collectToList (fun (node, fate) -> genHeartbeat DefaultTiming node fate)
        let! addresses = someOf 1 maxGroups GroupPool
        let! groups =
            addresses
            |> Gen.collectToList (fun a ->
                Gen.map3 (fun e age created -> { group a e (Now - int64 age) with CreatedAt = int64 created })
                    (genEligibility nodes) (Gen.choose (0, 3000)) (Gen.choose (0, 5)))
        let! leases = groups |> Gen.collectToList (fun g -> genLease nodes g.Id)
        return
            { Nodes = nodes
              Fates = fateMap
              View =
                { Now = Now
                  Timing = DefaultTiming
                  Heartbeats = heartbeatMap hbs
                  Leases = leases |> List.choose id |> List.map (fun l -> l.Name, l) |> Map.ofList }
              Groups = groups }
    }

let genFleet = genFleetWith genFate 8

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Whole snapshots for Plan and Explain
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Addresses the plan scenarios use: three IPv4 VIPs, one IPv6, and the address a DHCP server leases.
let PlanV4 = [ "192.168.0.220"; "192.168.0.221"; "192.168.0.222" ]
let PlanV6 = "2001:db8::220"
let DhcpLeased = "192.168.0.155"
/// A VIP on the interface that no service asks for (left over from an earlier run).
let ForeignVip = "192.168.0.250"
let OtherClass = "example.com/other-lb"

/// What a generated service asks for.
let genAddressText: Gen<string option> =
    Gen.frequency
        [ 8, Gen.elements PlanV4 |> Gen.map Some
          1, Gen.elements PlanV4 |> Gen.map (fun a -> Some(a + "," + PlanV6))
          1, Gen.constant (Some PlanV6)
          1, Gen.constant (Some "0.0.0.0")
          1, Gen.constant None
          1, Gen.elements [ "127.0.0.1"; "not-an-ip"; "192.168.0.0/24"; "192.168.0.220,192.168.0.221" ] |> Gen.map Some ]

/// A service of any kind: ours or not, valid or not, colliding often with the others.
let genPlanService (nodes: string list) (k: ServiceKey) : Gen<Service> =
    gen {
        let! created = Gen.choose (0, 3)
        let! serviceType = Gen.frequency [ 12, Gen.constant "LoadBalancer"; 1, Gen.constant "ClusterIP"; 1, Gen.constant "NodePort" ]
        let! cls = Gen.frequency [ 10, Gen.constant None; 1, Gen.constant (Some Config.DefaultClassName); 1, Gen.constant (Some OtherClass) ]
        let! ignored = bool 1 14
        let! address = genAddressText
        let! viaAnnotation = bool 1 1
        let! ports = genPorts
        let! policy = genPolicy
        let! selector = genSelector
        let! staleIngress = Gen.frequency [ 4, Gen.constant None; 1, Gen.elements (PlanV4 @ [ DhcpLeased ]) |> Gen.map Some ]
        let! vipHost = Gen.frequency [ 4, Gen.constant None; 1, Gen.elements nodes |> Gen.map Some ]
        let! seen = Gen.choose (0, 3000)
        let s = service k.Namespace k.Name
        let s =
            match address with
            | Some a when viaAnnotation -> annotate Annotations.LoadBalancerIPs a s
            | Some a -> { s with LoadBalancerIP = Some a }
            | None -> s
        let s = if ignored then annotate Annotations.Ignore "true" s else s
        let s = match vipHost with Some h -> annotate Annotations.VipHost h s | None -> s
        return
            { s with
                CreatedAt = int64 created
                Type = serviceType
                Class = cls
                Ports = ports
                Policy = policy
                Selector = selector
                Ingress =
                  staleIngress
                  |> Option.map (fun a -> ({ Ip = a; IpMode = Some "VIP"; Ports = ports }: IngressEntry))
                  |> Option.toList
                ChangedSeenAt = Now - int64 seen }
    }

/// Every group Lease name a scenario can produce, plus one for an address nobody uses any more.
let planLeaseNames (config: Config) =
    [ for a in PlanV4 @ [ PlanV6; DhcpLeased; "10.9.9.9" ] -> LeaseNames.group (ip a) ] @ [ config.LeaseName ]

let genAnnounceState: Gen<AnnounceState option> =
    Gen.frequency
        [ 1, Gen.constant None
          3,
          gen {
              let! age = Gen.choose (0, 10000)
              let! sent = Gen.choose (0, 6)
              let! last = Gen.choose (0, age)
              return Some { AddedAt = Now - int64 age; Sent = sent; LastSentAt = Now - int64 last }
          } ]

let genVip (address: string) : Gen<VipState> =
    gen {
        let a = ip address
        let! expires = Gen.frequency [ 3, Gen.choose (-300, 1200) |> Gen.map (fun d -> Some(Now + int64 d)); 1, Gen.constant None ]
        let! announce = genAnnounceState
        return { Ip = a; Prefix = Ip.hostPrefix (Ip.family a); ExpiresAt = expires; Announce = announce }
    }

/// The fence of a node: fresh enough to write addresses, valid but too old to write, lapsed, or never renewed.
let genFence: Gen<Fence> =
    gen {
        let! epoch = Gen.choose (1, 3)
        let! started =
            Gen.frequency
                [ 6, Gen.choose (0, 300) |> Gen.map (fun a -> Some(Now - int64 a))
                  2, Gen.choose (301, int DefaultTiming.RenewDeadline - 1) |> Gen.map (fun a -> Some(Now - int64 a))
                  1, Gen.choose (int DefaultTiming.RenewDeadline, 5000) |> Gen.map (fun a -> Some(Now - int64 a))
                  1, Gen.constant None ]
        return { Epoch = int64 epoch; LastRenewalStartedAt = started }
    }

/// A fence that allows writing addresses now.
let FreshFence: Fence = { Epoch = 2L; LastRenewalStartedAt = Some(Now - 100L) }

/// Claims for the leases that name `self`: current epoch, an older one, or none (a restart).
let genClaims (self: string) (fence: Fence) (leases: GroupLease list) : Gen<Map<GroupId, Claim>> =
    leases
    |> List.filter (fun l -> l.Holder = Some self)
    |> Gen.collectToList (fun l ->
        Gen.frequency
            [ 4, Gen.constant (Some(l.Name, ({ Epoch = fence.Epoch; From = None }: Claim)))
              1, Gen.constant (Some(l.Name, ({ Epoch = fence.Epoch - 1L; From = None }: Claim)))
              1, Gen.constant None ])
    |> Gen.map (List.choose id >> Map.ofList)

/// A whole snapshot as one node sees it: configuration, services, endpoints, heartbeats, leases, its own
/// fence, claims, link and VIPs. Nodes, IPs, ports and names come from small pools.
let genSnapshotWith (genSelfFate: Gen<Fate>) : Gen<Snapshot> =
    gen {
        let! n = Gen.choose (2, 4)
        let nodes = List.take n NodePool
        let! self = Gen.elements nodes
        let! election = bool 3 1
        let! arp = bool 5 1
        let! disableUpdates = bool 1 7
        let config = { configFor self election with Arp = arp; DisableServiceUpdates = disableUpdates }
        let! fates = nodes |> Gen.collectToList (fun node -> if node = self then genSelfFate else genFate)
        let! hbs = List.zip nodes fates |> Gen.collectToList (fun (node, fate) -> genHeartbeat DefaultTiming node fate)
        let! keys = genKeys 0 6
        let! services = keys |> Gen.collectToList (genPlanService nodes)
        // DHCP services: some already leased an address (recorded in kube-vip.io/requestedIP).
        let! services =
            services
            |> Gen.collectToList (fun s ->
                let dhcp =
                    s.LoadBalancerIP = Some "0.0.0.0" || s.Annotations.TryFind Annotations.LoadBalancerIPs = Some "0.0.0.0"
                if dhcp then bool 1 1 |> Gen.map (fun leased -> if leased then annotate Annotations.RequestedIP DhcpLeased s else s)
                else Gen.constant s)
        let! slices = keys |> Gen.collectToList (genSlices (nodes @ [ "node-x" ]))
        let! leases = planLeaseNames config |> Gen.collectToList (genLease (nodes @ [ "node-gone" ]))
        let leases = List.choose id leases
        let! fence = genFence
        let! claims = genClaims self fence leases
        let! linkUp = bool 9 1
        let! shuttingDown = bool 1 9
        let! vipAddresses = someOf 0 3 (PlanV4 @ [ PlanV6; ForeignVip ])
        let! vips = vipAddresses |> Gen.collectToList genVip
        return
            { Config = config
              Now = Now
              Services = services
              Slices = List.concat slices
              Heartbeats = List.choose id hbs
              Leases = leases
              Self =
                { Node = self
                  Fence = fence
                  Claims = claims
                  LinkUp = linkUp
                  ShuttingDown = shuttingDown }
              Vips = vips
              EmittedWarnings = Set.empty }
    }

let genSnapshot = genSnapshotWith (Gen.frequency [ 8, Gen.constant Alive; 1, Gen.constant Dead; 1, Gen.constant Gone; 1, Gen.constant Unknown ])

/// The same node, healthy: live heartbeat, a fence that allows writing, link up, not stopping.
let healthy (s: Snapshot) : Snapshot =
    let me = s.Self.Node
    let hb = { Node = me; Holder = Some me; Version = "hb-self"; ChangedSeenAt = Now - 50L }
    { s with
        Heartbeats = hb :: (s.Heartbeats |> List.filter (fun h -> h.Node <> me))
        Self =
            { s.Self with
                Fence = FreshFence
                LinkUp = true
                ShuttingDown = false
                // Claims keep their age relative to the fence (current stays current, older stays older).
                Claims = s.Self.Claims |> Map.map (fun _ c -> { c with Epoch = c.Epoch - s.Self.Fence.Epoch + FreshFence.Epoch }) } }

let genHealthySnapshot = genSnapshot |> Gen.map healthy

/// The same snapshot as another node of the cluster sees it: same shared observations, its own self state.
let asNode (node: string) (s: Snapshot) : Snapshot =
    { s with
        Config = { s.Config with NodeName = node }
        Self = { s.Self with Node = node; Claims = Map.empty }
        Vips = []
        EmittedWarnings = Set.empty }

/// The nodes a snapshot knows of (heartbeats, leases, and itself).
let nodesOf (s: Snapshot) =
    (s.Self.Node :: (s.Heartbeats |> List.map _.Node)) |> List.distinct

/// Every node of the snapshot as itself, each with a fresh fence and current claims for the leases naming
/// it: the most any node could believe about itself.
let everyNode (s: Snapshot) =
    nodesOf s
    |> List.map (fun n ->
        let t = asNode n s
        let claims =
            t.Leases
            |> List.filter (fun l -> l.Holder = Some n)
            |> List.map (fun l -> l.Name, ({ Epoch = FreshFence.Epoch; From = None }: Claim))
            |> Map.ofList
        { t with Self = { t.Self with Fence = FreshFence; Claims = claims } })
