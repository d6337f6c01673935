/// The C# facade (src/Domain.fs) carries the domain's values unchanged: settings, the shell's plain records
/// in, addresses as bytes, frames as datagrams, Lease writes out.
module Hybrid.Properties.FacadeProperties

open System
open System.Collections.Generic
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Facade
open Hybrid.Properties.Generators

let private nullDict: IReadOnlyDictionary<string, string> = Unchecked.defaultof<_>
let private nullString: string = Unchecked.defaultof<_>

let private envOf (pairs: (string * string) list) : IReadOnlyDictionary<string, string> =
    readOnlyDict (Map.toSeq (Map.ofList (BaseEnv @ pairs)))

let private settingsOf (pairs: (string * string) list) =
    match Configuration.Parse(envOf pairs, null, null) with
    | Valid s -> s
    | Invalid errors -> failwithf "%A" errors

let private genEnv =
    someOf 0 6
        [ "vip_nodename", "node-b"; "vip_nodename", "Bad_Node"; "svc_election", "true"; "svc_election", "maybe"
          "lb_class_name", ""; "vip_arpRate", "100"; "vip_leaseduration", "1"; "vip_interface", "eth 0"; "svc_enable", "false"
          "prometheus_server", "nohost"; "vip_subnet", "24"; "enableUPNP", "1"; "lan_interval", "0.2"; "lan_port", "0"
          "vip_servicesinterface", "eth1"; "vip_loglevel", "6"; "svc_namespace", "team"; "lan_key", "short" ]

[<Property>]
let ``the facade reads the environment exactly as Config.parse does`` () =
    forAll genEnv (fun pairs ->
        let env = Map.ofList (BaseEnv @ pairs)
        match Config.parse env None, Configuration.Parse(readOnlyDict (Map.toSeq env), null, null) with
        | Ok c, Valid settings ->
            holds (sprintf "%A" settings)
                (settings.Config = c && settings.NodeName = c.NodeName && settings.Election = c.Election && settings.LeaseName = c.LeaseName
                 && settings.LeaseNamespace = c.LeaseNamespace && Option.ofObj settings.ServiceNamespace = c.ServiceNamespace
                 && Option.ofObj settings.VipInterface = Config.vipInterface c && settings.Arp = c.Arp && settings.LanPort = c.LanPort
                 && settings.HeartbeatIntervalMs = c.Timing.HeartbeatInterval && settings.Upnp = c.Upnp
                 && settings.DisableServiceUpdates = c.DisableServiceUpdates && settings.PrometheusServer = c.PrometheusServer
                 && settings.LogLevel = c.LogLevel && settings.Fingerprint = Config.fingerprint c)
        | Error errors, Invalid out ->
            holds (sprintf "%A vs %A" errors out)
                (List.ofArray out = (errors |> List.map (fun e -> ({ Variable = e.Variable; Value = e.Value; Problem = e.Problem; Message = string e }: SettingError))))
        | a, b -> holds (sprintf "domain %A, facade %A" a b) false
        |> Prop.classify (Config.parse env None |> Result.isOk) "valid")

[<Property>]
let ``the facade hands lan_key_file's content or read problem to the domain`` () =
    let genCase = Gen.elements [ Some OtherKeyText, nullString; Some "garbage", nullString; None, "permission denied"; None, nullString ]
    forAll genCase (fun (content, problem) ->
        let env = readOnlyDict [ "vip_nodename", "node-a"; "svc_enable", "true"; "lan_key_file", "/run/key" ]
        let expected =
            match content with
            | Some c -> Config.parse (Map.ofList [ "vip_nodename", "node-a"; "svc_enable", "true"; "lan_key_file", "/run/key" ]) (Some(KeyFileContent("/run/key", c)))
            | None ->
                Config.parse (Map.ofList [ "vip_nodename", "node-a"; "svc_enable", "true"; "lan_key_file", "/run/key" ])
                    (Some(KeyFileUnreadable("/run/key", (if String.IsNullOrEmpty problem then "cannot be read" else problem))))
        match expected, Configuration.Parse(env, Option.toObj content, problem) with
        | Ok c, Valid s -> holds "same key" (s.Config.ClusterKey = c.ClusterKey)
        | Error errors, Invalid out ->
            holds (sprintf "%A vs %A" errors out) ((errors |> List.map (fun e -> e.Variable, e.Value, e.Problem)) = (out |> List.ofArray |> List.map (fun e -> e.Variable, e.Value, e.Problem)))
        | a, b -> holds (sprintf "%A vs %A" a b) false)

/// What `--print-config` shows, read back as an environment (seconds without their unit, the key itself
/// instead of its id, computed rows left out).
let private readBack (rows: string array array) =
    [ for row in rows do
          match row with
          | [| name; value; _ |] when not (name.StartsWith "(") && name <> "lan_key" -> name, (if value.EndsWith "s" && value.Length > 1 && Char.IsAsciiDigit value[value.Length - 2] then value.TrimEnd 's' else value)
          | _ -> () ]

[<Property>]
let ``the described settings are Config.describe's, and reading them back gives the same settings`` () =
    let valid = genEnv |> Gen.map (List.filter (fun (k, v) -> (match parseEnv [ k, v ] with Ok _ -> true | Error _ -> false)))
    forAll valid (fun pairs ->
        match parseEnv pairs with
        | Ok c ->
            let settings = settingsOf pairs
            let rows = Configuration.Describe settings
            let again = settingsOf (readBack rows)
            allOf
                [ holds "rows" ((rows |> Array.map (fun r -> r[0], r[1], r[2]) |> List.ofArray) = Config.describe c)
                  holds (sprintf "read back:\n%A\nvs\n%A" (Config.describe again.Config) (Config.describe c)) (Config.describe again.Config = Config.describe c)
                  holds "the key is never shown" (rows |> Array.forall (fun r -> not (r[1].Contains KeyText))) ]
        | Error e -> holds (sprintf "%A" e) false)

// ── Observations in ─────────────────────────────────────────────────────────────────────────────────


let private started () =
    let node = ProtocolNode(settingsOf [])
    node.Start(0x1234UL, [||], true, 10L)
    node.Decide() |> ignore
    node

let private genPortInput =
    Gen.map2 (fun protocol port -> ({ Protocol = protocol; Port = port }: PortInput)) (Gen.elements [ nullString; ""; "TCP"; "tcp"; "UDP"; "sctp" ]) (Gen.choose (1, 65535))

let private genDict = Gen.elements [ nullDict; readOnlyDict []; readOnlyDict [ "app", "web" ]; readOnlyDict [ Annotations.LoadBalancerIPs, "192.168.0.220"; "x", "" ] ]

let private genServiceInput =
    gen {
        let! k = Gen.elements AllKeys
        let! created = chooseL 0L 2_000_000_000L
        let! serviceType = Gen.elements [ "LoadBalancer"; "ClusterIP" ]
        let! cls = Gen.elements [ nullString; ""; Config.DefaultClassName ]
        let! annotations = genDict
        let! lbIp = Gen.elements [ nullString; ""; "192.168.0.221" ]
        let! ports = Gen.choose (0, 3) |> Gen.bind (fun n -> Gen.arrayOfLength n genPortInput)
        let! policy = Gen.elements [ nullString; "Cluster"; "Local" ]
        let! selector = genDict
        let! ingress =
            Gen.choose (0, 2)
            |> Gen.bind (fun n ->
                Gen.arrayOfLength n (Gen.map2 (fun a m -> ({ Ip = a; IpMode = m; Ports = [||] }: IngressInput)) (Gen.elements [ "192.168.0.220"; "2001:db8::1" ]) (Gen.elements [ nullString; "VIP"; "Proxy" ])))
        return
            ({ Namespace = k.Namespace
               Name = k.Name
               Uid = "uid-" + k.Name
               CreatedAtUnixSeconds = created
               Type = serviceType
               LoadBalancerClass = cls
               Annotations = annotations
               LoadBalancerIP = lbIp
               Ports = ports
               ExternalTrafficPolicy = policy
               Selector = selector
               Ingress = ingress
               ResourceVersion = "1"
               IpFamilies = null
               IpFamilyPolicy = nullString }: ServiceInput)
    }

/// The Service an input describes, from the rules: empty means unset, an unset protocol is TCP and protocols
/// are upper case, externalTrafficPolicy Local or else Cluster, a null map is empty.
let private expectedService (i: ServiceInput) (seenAt: Instant) : Service =
    let text (s: string | null) = match s with null | "" -> None | s -> Some s
    let map (d: IReadOnlyDictionary<string, string>) = if isNull (box d) then Map.empty else d |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq
    let port (p: PortInput) : ServicePort = { Protocol = (match text p.Protocol with Some t -> t.ToUpperInvariant() | None -> "TCP"); Port = p.Port }
    { Key = key i.Namespace i.Name
      Uid = i.Uid
      CreatedAt = i.CreatedAtUnixSeconds
      Type = i.Type
      Class = text i.LoadBalancerClass
      Annotations = map i.Annotations
      LoadBalancerIP = text i.LoadBalancerIP
      Ports = i.Ports |> Array.map port |> List.ofArray
      Policy = (if i.ExternalTrafficPolicy = "Local" then Local else Cluster)
      Selector = map i.Selector
      Ingress = i.Ingress |> Array.map (fun e -> ({ Ip = e.Ip; IpMode = text e.IpMode; Ports = e.Ports |> Array.map port |> List.ofArray }: IngressEntry)) |> List.ofArray
      ChangedSeenAt = seenAt }

[<Property>]
let ``a Service from the shell reaches the domain as the Service it describes`` () =
    forAll genServiceInput (fun input ->
        let node = started ()
        node.ServicesListed([| input |], 20L)
        node.Decide() |> ignore
        let observed = node.State.View.Services |> Map.tryFind (key input.Namespace input.Name)
        holds (sprintf "%A" observed) (observed = Some(expectedService input 20L))
        |> Prop.classify (isNull input.LoadBalancerClass || input.LoadBalancerClass = "") "no class"
        |> Prop.classify (input.Ports |> Array.exists (fun p -> String.IsNullOrEmpty p.Protocol)) "unset protocol")

[<Property>]
let ``an EndpointSlice from the shell keeps every absent condition absent`` () =
    let genBool = Gen.elements [ Nullable(); Nullable true; Nullable false ]
    let genEndpoint =
        gen {
            let! node = Gen.elements [ nullString; ""; "node-a"; "node-b" ]
            let! ready = genBool
            let! serving = genBool
            let! terminating = genBool
            return ({ NodeName = node; Ready = ready; Serving = serving; Terminating = terminating }: EndpointInput)
        }
    forAll (Gen.choose (0, 4) |> Gen.bind (fun n -> Gen.arrayOfLength n genEndpoint)) (fun endpoints ->
        let node = started ()
        node.SlicesListed([| { Name = "default/web-abc"; Namespace = "default"; ServiceName = "web"; Endpoints = endpoints } |], 20L)
        node.Decide() |> ignore
        let option (n: Nullable<bool>) = if n.HasValue then Some n.Value else None
        let expected =
            { Service = key "default" "web"
              Endpoints =
                endpoints
                |> Array.map (fun e ->
                    { NodeName = (match e.NodeName with null | "" -> None | n -> Some n)
                      Conditions = { Ready = option e.Ready; Serving = option e.Serving; Terminating = option e.Terminating } })
                |> List.ofArray }
        holds (sprintf "%A" node.State.View.Slices) (node.State.View.Slices = Map [ "default/web-abc", expected ]))

[<Property>]
let ``a group Lease from the shell names its holder and incarnation, or nobody`` () =
    let genCase =
        Gen.map2 (fun h i -> h, i) (Gen.elements [ nullString; ""; "node-b" ]) (Gen.elements [ None; Some "00000000000000ab"; Some "garbage" ])
    forAll genCase (fun (holder, incarnation) ->
        let node = started ()
        let name = LeaseNames.group (ip "192.168.0.220")
        let annotations = incarnation |> Option.map (fun i -> LeaseKeys.Incarnation, i) |> Option.toList |> readOnlyDict
        node.LeasesListed([| { Name = name; Version = "7"; Holder = holder; Transitions = 2; Labels = readOnlyDict []; Annotations = annotations } |], 20L)
        node.Decide() |> ignore
        let expected =
            match holder with
            | null | "" -> None
            | h -> Some { Node = h; Incarnation = (if incarnation = Some "00000000000000ab" then Some(Incarnation 0xabUL) else None) }
        match node.State.View.Groups.TryFind name with
        | Some g -> holds (sprintf "%A" g) (g.Holder = expected && g.Version = "7" && g.Transitions = 2)
        | None -> holds "not observed" false)

// ── Addresses, frames and writes out ────────────────────────────────────────────────────────────────

[<Property>]
let ``VIP addresses cross the facade as bytes and come back as the same bytes`` () =
    let bytesOf (a: Ip) =
        match a with
        | V4 v -> [| byte (v >>> 24); byte (v >>> 16); byte (v >>> 8); byte v |]
        | V6(hi, lo) -> [| for w in [ hi; lo ] do for shift in 56 .. -8 .. 0 do byte (w >>> shift) |]
    let genCase =
        Gen.map2 (fun good bad -> good, bad) (someOf 0 4 [ ip "192.168.0.220"; ip "2001:db8::1"; ip "10.0.0.1"; ip "fd00::ff" ]) (Gen.elements [ [||]; [| [| 1uy; 2uy |] |]; [| Array.zeroCreate 5 |] ])
    forAll genCase (fun (addresses, malformed) ->
        let node = ProtocolNode(settingsOf [])
        let existing = Array.append (addresses |> List.map (fun a -> ({ Address = bytesOf a; Prefix = Ip.hostPrefix (Ip.family a) }: ExistingVip)) |> Array.ofList) (malformed |> Array.map (fun b -> ({ Address = b; Prefix = 32 }: ExistingVip)))
        node.Start(1UL, existing, true, 0L)
        let installed =
            node.Decide()
            |> Array.tryPick (fun c ->
                match c with
                | ShellCommand.Kernel(_, KernelAction.InstallFence managed) -> Some managed
                | _ -> None)
        match installed with
        | Some managed ->
            holds (sprintf "%A" managed) ((managed |> Array.map List.ofArray |> List.ofArray) = (addresses |> List.map (bytesOf >> List.ofArray)))
            |> Prop.classify (malformed.Length > 0) "malformed addresses left out"
        | None -> holds "no InstallFence" false)

[<Property>]
let ``a kernel action over several VIPs reports each VIP it went otherwise for, and the node takes every other VIP as the action went`` () =
    // VIPs an earlier process left on the interface, which no Service wants: the first decision withdraws them all
    // in one action, and the shell reports the ones whose address it could not remove.
    let bytesOf (a: Ip) =
        match a with
        | V4 v -> [| byte (v >>> 24); byte (v >>> 16); byte (v >>> 8); byte v |]
        | V6(hi, lo) -> [| for w in [ hi; lo ] do for shift in 56 .. -8 .. 0 do byte (w >>> shift) |]
    let genCase =
        gen {
            let! count = Gen.choose (1, 6)
            let vips = [ for i in 1..count -> if i % 3 = 0 then ip (sprintf "fd00::%d" i) else v4 198 18 0 (200 + i) ]
            let! failing = Gen.listOfLength count (bool 1 2)
            return vips, List.zip vips failing |> List.filter snd |> List.map fst
        }
    forAll genCase (fun (vips, failing) ->
        let node = ProtocolNode(settingsOf [])
        node.Start(1UL, vips |> List.map (fun a -> ({ Address = bytesOf a; Prefix = Ip.hostPrefix (Ip.family a) }: ExistingVip)) |> Array.ofList, true, 10L)
        for c in node.Decide() do
            match c with
            | ShellCommand.Kernel(id, KernelAction.InstallFence _) -> node.KernelCompleted(id, KernelResult.Applied, null, 11L)
            | _ -> ()
        node.ServicesListed([||], 12L)
        node.SlicesListed([||], 12L)
        node.LeasesListed([||], 12L)
        node.PoolConfigObserved(null, 12L)
        node.NodesListed([||], 12L)
        node.InterfaceRead([||], [||], 12L)
        let withdraws =
            node.Decide() |> Array.choose (function ShellCommand.Kernel(id, KernelAction.Withdraw vips) -> Some(id, vips) | _ -> None)
        match withdraws with
        | [| id, action |] ->
            let reports = [| for a in failing -> ({ Address = bytesOf a; Result = KernelResult.Failed; Reason = "EBUSY" }: VipReport) |]
            node.KernelCompleted(id, KernelResult.Applied, null, reports, 13L)
            node.Decide() |> ignore
            let left = node.State.Kernel.Vips |> Map.keys |> Set.ofSeq
            let withdrawn = action |> Array.map (fun v -> List.ofArray v.Address, v.Prefix) |> Set.ofArray
            let expected = vips |> List.map (fun a -> List.ofArray (bytesOf a), Ip.hostPrefix (Ip.family a)) |> Set.ofList
            allOf
                [ holds (sprintf "one Withdraw of every VIP: %A" action) (withdrawn = expected)
                  holds (sprintf "left in the kernel state: %A, failing %A" left failing) (left = Set.ofList failing) ]
            |> Prop.classify (vips.Length > 1) "several VIPs"
            |> Prop.classify (not failing.IsEmpty && failing.Length < vips.Length) "some failed"
        | other -> holds (sprintf "one Withdraw: %A" other) false)

[<Property>]
let ``a datagram that does not decode is counted as dropped, never thrown`` () =
    let genDatagram = Gen.choose (0, 200) |> Gen.bind (fun n -> Gen.arrayOfLength n (Gen.choose (0, 255) |> Gen.map byte))
    forAll (Gen.listOf genDatagram) (fun datagrams ->
        let node = started ()
        let senders = [ for d in datagrams -> node.DatagramReceived(d, 20L) ]
        node.Decide() |> ignore
        allOf
            [ holds (sprintf "dropped %d of %d" node.Summary.FramesDropped datagrams.Length) (node.Summary.FramesDropped = int64 datagrams.Length)
              holds "no sender is named for a frame that does not decode" (senders |> List.forall isNull) ])

[<Property>]
let ``a heartbeat signed with another key is dropped and counted as failing its signature, never heard`` () =
    // Another cluster on the segment, or a stale key: its frames must not count as a member heard.
    let OtherKey = clusterKey OtherKeyText
    forAll (Gen.choose (0, 5)) (fun forged ->
        let node = started ()
        let heartbeat i : Frame =
            { Node = "node-b"; Incarnation = Incarnation 9UL; Seq = uint32 (i + 1); Fingerprint = 0UL; Aside = false
              Part = 0; Parts = 1; Claims = []; Echoes = [] }
        let senders = [ for i in 0 .. forged - 1 -> node.DatagramReceived(FrameCodec.encode OtherKey (heartbeat i), 20L) ]
        node.Decide() |> ignore
        let dropped = node.State.Lan.Dropped
        allOf
            [ holds "a forged frame names no sender" (senders |> List.forall isNull)
              holds (sprintf "%A" dropped) (dropped.TryFind(Undecodable BadSignature) |> Option.defaultValue 0L = int64 forged)
              holds "counted in the summary" (node.Summary.FramesDropped = int64 forged)
              holds "nobody heard" node.State.Lan.Peers.IsEmpty ]
        |> Prop.classify (forged = 0) "none forged")

[<Property>]
let ``the frames a node sends are signed datagrams that decode to this node's heartbeat`` () =
    forAll (Gen.elements [ "node-a"; "n"; String.replicate 60 "x" + ".example" ]) (fun name ->
        let node = ProtocolNode(settingsOf [ "vip_nodename", name ])
        node.Start(0xfeedUL, [||], true, 0L)
        node.ServicesListed([||], 0L)
        node.SlicesListed([||], 0L)
        node.LeasesListed([||], 0L)
        let datagrams = node.Decide() |> Array.collect (function SendDatagrams d -> d | _ -> [||])
        allOf
            [ holds "some datagram" (datagrams.Length > 0)
              for d in datagrams do
                  match FrameCodec.decode Key d with
                  | Ok f -> holds (sprintf "%A" f) (f.Node = name && f.Incarnation = Incarnation 0xfeedUL && d.Length <= FrameCodec.MaxDatagram)
                  | Error e -> holds (sprintf "%A" e) false ])

[<Property>]
let ``an authentic heartbeat names its sender, for the per-peer frame count`` () =
    forAll (Gen.elements [ "node-b"; "n"; String.replicate 60 "x" + ".example" ]) (fun name ->
        let sender = ProtocolNode(settingsOf [ "vip_nodename", name ])
        sender.Start(0xbeefUL, [||], true, 0L)
        sender.ServicesListed([||], 0L)
        sender.SlicesListed([||], 0L)
        sender.LeasesListed([||], 0L)
        let datagrams = sender.Decide() |> Array.collect (function SendDatagrams d -> d | _ -> [||])
        let receiver = started ()
        let senders = [ for d in datagrams -> receiver.DatagramReceived(d, 20L) ]
        allOf
            [ holds "some datagram" (not senders.IsEmpty)
              holds (sprintf "%A" senders) (senders |> List.forall (fun s -> s = name)) ])

[<Property>]
let ``the join the shell is asked to write reads back as this incarnation's Joined registration`` () =
    forAll (Gen.map2 (fun n i -> n, i) (Gen.elements [ "node-a"; "worker-7.example" ]) genUInt64) (fun (name, incarnation) ->
        let node = ProtocolNode(settingsOf [ "vip_nodename", name ])
        node.Start(incarnation, [||], true, 0L)
        node.ServicesListed([||], 0L)
        node.SlicesListed([||], 0L)
        node.LeasesListed([||], 0L)
        // A node joins once it has read its VIP interface, whose facts its registration publishes.
        node.InterfaceRead([||], [||], 0L)
        let writes = node.Decide() |> Array.choose (function ShellCommand.WriteLease(_, w) -> Some w | _ -> None)
        match writes with
        | [| w |] ->
            let annotations = w.Annotations |> Seq.choose (fun kv -> match kv.Value with null -> None | v -> Some(kv.Key, v)) |> Map.ofSeq
            let record: LeaseRecord =
                { Name = w.Name; Version = "1"; Holder = Option.ofObj w.Holder; Transitions = w.Transitions
                  Labels = w.Labels |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq; Annotations = annotations }
            match Registration.read record with
            | Ok r ->
                holds (sprintf "%A" r)
                    (w.Name = LeaseNames.registration name && isNull w.ExpectedVersion && w.Holder = name && r.Node = name
                     && r.State = Joined && r.Incarnation = Incarnation incarnation && r.Fence = LanFence)
            | Error e -> holds (sprintf "%A" e) false
        | other -> holds (sprintf "writes %A" other) false)
