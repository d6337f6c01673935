/// A dual-stack Service's addresses are announced from one node: its IPv6 address's group follows the group
/// of its IPv4 address (svc_election). Each keeps its own Lease, so no address ever changes Lease while the
/// cluster runs; the follower is dealt, taken over and finally moved to wherever its leader is.
module Hybrid.Properties.FollowProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

/// Services 0..count-1: dual-stack (198.18.0.(10+i), fd00::(10+i)) or single-stack, some sharing the IPv6
/// address of an older one on another port.
let private genServices =
    gen {
        let! count = Gen.choose (1, 6)
        let! kinds = Gen.listOfLength count (Gen.elements [ "dual"; "dual"; "v4"; "v6"; "shares-v6" ])
        return
            kinds
            |> List.mapi (fun i kind ->
                let v4, v6 = sprintf "198.18.0.%d" (10 + i), sprintf "fd00::%x" (0x10 + i)
                let addresses, port =
                    match kind with
                    | "dual" -> [ v4; v6 ], 80
                    | "v4" -> [ v4 ], 80
                    | "v6" -> [ v6 ], 80
                    | _ -> [ v4; "fd00::10" ], 8000 + i
                { service "default" (sprintf "svc-%d" i) with
                    Annotations = Map [ Annotations.LoadBalancerIPs, String.concat "," addresses ]
                    Ports = [ { Protocol = "TCP"; Port = port } ]
                    CreatedAt = int64 i })
    }

[<Property>]
let ``the IPv6 group of a dual-stack Service follows the group of its IPv4 address, and nothing else follows`` () =
    forAll (Gen.zip genServices (Gen.elements [ true; false ])) (fun (services, election) ->
        let config = configWith [ "svc_election", (if election then "true" else "false") ]
        let desired = Desired.compute config services (services |> List.map (readyOn [ "node-a" ]))
        let expected =
            if not election then Map.empty
            else
                // The oldest admitted Service with two addresses names the leader of its IPv6 group.
                services
                |> List.filter (fun s -> match desired.States.TryFind s.Key with Some(Member(_ :: _ :: _, _)) -> true | _ -> false)
                |> List.sortBy _.CreatedAt
                |> List.fold (fun (acc: Map<GroupId, GroupId>) s ->
                    match desired.States[s.Key] with
                    | Member(v4 :: v6 :: _, _) when not (acc.ContainsKey(LeaseNames.group v6)) -> acc.Add(LeaseNames.group v6, LeaseNames.group v4)
                    | _ -> acc) Map.empty
        let actual = desired.Groups |> List.choose (fun g -> g.Follows |> Option.map (fun l -> g.Id, l)) |> Map.ofList
        holds (sprintf "follows %A, expected %A" actual expected) (actual = expected)
        |> Prop.classify (not expected.IsEmpty) "some group follows"
        |> Prop.classify (services |> List.exists (fun s -> s.Ports.Head.Port >= 8000)) "an IPv6 address shared")

/// Leaders (IPv4 groups) and followers (IPv6 groups) over random eligibilities.
let private genPairs =
    gen {
        let! nodes = someOf 2 5 NodePool
        let! count = Gen.choose (1, 8)
        let! pairs =
            Gen.listOfLength count (Gen.zip (genEligibility nodes) (Gen.frequency [ 3, genEligibility nodes |> Gen.map Some; 1, Gen.constant None ]))
        let groups =
            pairs
            |> List.mapi (fun i (leaderEligibility, followerEligibility) ->
                let leader = group (v4 198 18 0 (10 + i)) leaderEligibility 0L
                match followerEligibility with
                | Some e -> [ leader; { group (ip (sprintf "fd00::%x" (0x10 + i))) e 0L with Follows = Some leader.Id } ]
                | None -> [ leader ])
            |> List.concat
        return nodes, groups
    }

[<Property>]
let ``a follower is dealt to its leader's node whenever that node is eligible for it, and followers move no leader`` () =
    forAll genPairs (fun (nodes, groups) ->
        let spread = Ownership.spread nodes groups
        let leadersOnly = Ownership.spread nodes (groups |> List.filter (fun g -> g.Follows.IsNone))
        let followers = groups |> List.filter (fun g -> g.Follows.IsSome)
        let together =
            followers
            |> List.choose (fun f ->
                match spread.TryFind f.Follows.Value, spread.TryFind f.Id with
                | Some(leader :: _), Some(first :: _) when Eligibility.allows leader f.Eligibility -> Some(f.Id, (leader = first))
                | _ -> None)
        allOf
            [ holds (sprintf "apart: %A" (together |> List.filter (snd >> not))) (together |> List.forall snd)
              holds "the leaders go where they would without followers" (leadersOnly |> Map.forall (fun id s -> spread.TryFind id = Some s)) ]
        |> Prop.classify (not together.IsEmpty) "a follower with an eligible leader node")

[<Property>]
let ``an orphaned follower goes first to the live node that holds its leader, when it may`` () =
    forAll genPairs (fun (nodes, groups) ->
        let holderOf = groups |> List.mapi (fun i g -> g.Id, nodes[i % nodes.Length]) |> Map.ofList
        // Every leader's Lease names a node; every follower's Lease is empty (a Service just became dual-stack).
        let leases =
            groups
            |> List.map (fun g ->
                g.Id,
                ({ Holder = (if g.Follows.IsNone then Some { Node = holderOf[g.Id]; Incarnation = None } else None)
                   Version = "1"; Transitions = 0; ChangedSeenAt = 0L }: ObservedGroupLease))
            |> Map.ofList
        let assignments = Ownership.assign Now DefaultTiming (fun _ -> Live) nodes leases Map.empty groups
        let checks =
            groups
            |> List.filter (fun g -> g.Follows.IsSome)
            |> List.map (fun f ->
                let leader = f.Follows.Value
                let leaderHolder = holderOf[leader]
                let leaderHeld = (match assignments[leader] with HeldBy h -> h = leaderHolder | _ -> false)
                match assignments[f.Id] with
                | Orphaned(first :: _, _, _) when leaderHeld && Eligibility.allows leaderHolder f.Eligibility ->
                    holds (sprintf "%s goes to %s, its leader is held by %s" f.Id first leaderHolder) (first = leaderHolder)
                | Orphaned _ | NoCandidate _ -> holds "" true
                | other -> holds (sprintf "%s: %A" f.Id other) false)
        allOf checks |> Prop.classify (not checks.IsEmpty) "followers")

[<Property>]
let ``a follower held apart from its leader moves to the leader's holder once both have been still, and never before`` () =
    let genCase =
        gen {
            let! nodes = someOf 2 5 NodePool
            let! leaderHolder = Gen.elements nodes
            let! followerHolder = Gen.elements nodes
            let! stillFor = chooseL 0L 10_000L
            let! eligibleForLeader = Gen.elements [ true; true; false ]
            return nodes, leaderHolder, followerHolder, stillFor, eligibleForLeader
        }
    forAll genCase (fun (nodes, leaderHolder, followerHolder, stillFor, eligibleForLeader) ->
        let settle = 4500L
        let leader = group (v4 198 18 0 10) (AnyNode ServingEndpointExists) 0L
        let followerEligibility =
            if eligibleForLeader then AnyNode ServingEndpointExists else NodesWithEndpoint(Set.ofList nodes |> Set.remove leaderHolder)
        let follower = { group (ip "fd00::10") followerEligibility 0L with Follows = Some leader.Id }
        let changedAt = Now - stillFor
        let lease holder : ObservedGroupLease = { Holder = Some { Node = holder; Incarnation = None }; Version = "1"; Transitions = 0; ChangedSeenAt = changedAt }
        let leases = Map [ leader.Id, lease leaderHolder; follower.Id, lease followerHolder ]
        let assignments = Map [ leader.Id, HeldBy leaderHolder; follower.Id, HeldBy followerHolder ]
        let moves, due = Ownership.follow Now settle 0L leases [ leader; follower ] assignments
        let apart = leaderHolder <> followerHolder && eligibleForLeader
        let expected = if apart && stillFor >= settle then Map [ follower.Id, (followerHolder, leaderHolder) ] else Map.empty
        allOf
            [ holds (sprintf "moves %A, expected %A" moves expected) (moves = expected)
              holds (sprintf "next due %A" due) (due = (if apart && stillFor < settle then Some(changedAt + settle) else None)) ]
        |> Prop.classify apart "apart"
        |> Prop.classify (apart && stillFor >= settle) "moves")
