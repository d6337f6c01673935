/// What makes a hand-over quick, step by step on one node: the new holder announces a VIP in the decision
/// that holds it, and a stopping holder tells its peers on the LAN that it answers for nothing the moment
/// its kernel stops answering (the Aside flag), without waiting for its Left registration to travel
/// through the API (docs/PROTOCOL.md §4).
module Hybrid.Properties.HandOverProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private genCase =
    gen {
        let! election = Gen.elements [ true; false ]
        let! arp = Gen.frequency [ 3, Gen.constant true; 1, Gen.constant false ]
        let! count = Gen.choose (1, 4)
        return election, arp, count
    }

/// One node holding `count` VIPs (each its own Service), settled after 3 s.
let private settled (election: bool) (arp: bool) (count: int) =
    let config = configWith [ "svc_election", (if election then "true" else "false"); "vip_arp", (if arp then "true" else "false") ]
    let services =
        [ for i in 1..count ->
              { service "default" (sprintf "web-%d" i) with
                  LoadBalancerIP = Some(Ip.format (v4 198 18 0 (200 + i)))
                  Ports = [ { Protocol = "TCP"; Port = 80 } ] } ]
    let world = SingleNode.start config services (services |> List.map (readyOn [ config.NodeName ])) |> SingleNode.runUntil 3000L
    world, Set [ for i in 1..count -> v4 198 18 0 (200 + i) ]

[<Property(MaxTest = 40)>]
let ``a VIP's first announcement goes out in the decision that holds it, right behind the Hold`` () =
    forAll genCase (fun (election, arp, count) ->
        let world, vips = settled election arp count
        let decisions = List.rev world.Decisions
        // Each VIP of a Hold with what comes that many places behind it: the announcements follow the Hold in its order.
        let held =
            [ for commands in decisions do
                  for i, command in List.indexed commands do
                      match command with
                      | Kernel(Hold ips) ->
                          for j, ip in List.indexed ips do
                              yield ip, List.tryItem (i + 1 + j) commands
                      | _ -> () ]
        let announcedRightBehind (ip, next) =
            match next with
            | Some(Kernel(Announce(a, _))) -> a = ip
            | _ -> false
        let announcements = decisions |> List.concat |> List.filter (function Kernel(Announce _) -> true | _ -> false)
        allOf
            [ holds "every VIP was held" (Set.ofList (List.map fst held) = vips)
              (if arp then holds (sprintf "an announcement right behind each Hold: %A" held) (List.forall announcedRightBehind held)
               else holds (sprintf "vip_arp=false announces nothing: %A" announcements) announcements.IsEmpty) ]
        |> Prop.classify election "svc_election"
        |> Prop.classify (count > 1) "several VIPs"
        |> Prop.classify (not arp) "vip_arp=false")

[<Property(MaxTest = 40)>]
let ``a stopping holder says Aside in the decision its last Unhold completes in, and never while its kernel may still answer`` () =
    forAll genCase (fun (election, arp, count) ->
        let world, vips = settled election arp count
        let before = world.Decisions.Length
        let stopped =
            { world with Now = world.Now + 1L }
            |> SingleNode.deliver [ StopRequested(world.Now + 1L) ]
            |> SingleNode.runUntil (world.Now + 1000L)
        let afterStop = stopped.Decisions |> List.take (stopped.Decisions.Length - before) |> List.rev
        let frames (commands: Command list) = commands |> List.choose (function SendFrame f -> Some f | _ -> None)
        let unholds = afterStop |> List.mapi (fun i c -> i, c) |> List.filter (fun (_, c) -> c |> List.exists (function Kernel(Unhold _) -> true | _ -> false))
        let lastUnholdAt = unholds |> List.map fst |> List.tryLast
        // The outcomes of a decision's commands are the inputs of the decisions right behind it, one each, in
        // order: the last Unhold completes within as many decisions as its own decision had commands.
        let asideAt = afterStop |> List.tryFindIndex (fun c -> frames c |> List.exists _.Aside)
        match lastUnholdAt, asideAt with
        | Some u, Some a ->
            let window = afterStop[u].Length
            allOf
                [ holds (sprintf "Aside (decision %d) only after the last Unhold (decision %d)" a u) (a > u)
                  holds (sprintf "Aside at once: decision %d, within the %d outcomes of decision %d" a window u) (a <= u + window)
                  holds "every VIP was unheld" (unholds |> List.collect (fun (_, c) -> c |> List.collect (function Kernel(Unhold ips) -> ips | _ -> [])) |> Set.ofList = vips) ]
        | _ -> holds (sprintf "an Unhold (%A) and an Aside frame (%A) after the stop" lastUnholdAt asideAt) false
        |> Prop.classify election "svc_election"
        |> Prop.classify (count > 1) "several VIPs")
