/// A turn's kernel work costs a few nftables transactions however many VIPs change (each one lists the node's
/// whole ruleset first): the node emits one kernel command per kind of step, over every VIP that takes it, in
/// an order that stops before it starts, and takes each VIP's outcome back as that VIP's own.
module Hybrid.Properties.KernelBatchProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private vipAt i = v4 198 18 1 (10 + i)

/// How many VIPs take each step in one decision: unhold, withdraw, admit, hold; and how many stay held.
type private Mix = { Unhold: int; Withdraw: int; Admit: int; Hold: int; Kept: int }

let private genMix =
    gen {
        let! counts = Gen.listOfLength 5 (Gen.frequency [ 1, Gen.constant 0; 3, Gen.choose (1, 3) ])
        let counts = if List.sum counts.[0..3] = 0 then 1 :: List.tail counts else counts
        return { Unhold = counts[0]; Withdraw = counts[1]; Admit = counts[2]; Hold = counts[3]; Kept = counts[4] }
    }

/// The VIPs of each step, and the node's state and commands of the decision that takes them all at once.
type private MixedDecision =
    { Unholding: Ip list
      Withdrawing: Ip list
      Admitting: Ip list
      Holding: Ip list
      Kept: Ip list
      Services: Map<Ip, Service>
      Node: NodeState
      Commands: Command list }

/// Builds the interesting case directly: a node settled holding every VIP (one Service each), whose kernel is
/// then set as if some VIPs had been withdrawn (to admit), unheld (to hold) or unheld without their Service (to
/// withdraw), while the Services of others it holds are deleted (to unhold): the next decision takes every kind
/// of step.
let private mixedDecision (election: bool) (arp: bool) (mix: Mix) : MixedDecision =
    let counts = [ mix.Unhold; mix.Withdraw; mix.Admit; mix.Hold; mix.Kept ]
    let starts = List.scan (+) 0 counts
    let vips = [ for i in 0 .. List.sum counts - 1 -> vipAt i ]
    let part k = vips[starts[k] .. starts[k + 1] - 1]
    let config = configWith [ "svc_election", (if election then "true" else "false"); "vip_arp", (if arp then "true" else "false") ]
    let services =
        vips
        |> List.mapi (fun i vip -> vip, { service "default" (sprintf "web-%d" i) with LoadBalancerIP = Some(Ip.format vip); Ports = [ tcp 80 ] })
        |> Map.ofList
    let settled =
        SingleNode.start config (Map.values services |> List.ofSeq) (Map.values services |> Seq.map (readyOn [ config.NodeName ]) |> List.ofSeq)
        |> SingleNode.runUntil 3000L
    let unholding, withdrawing, admitting, holding = part 0, part 1, part 2, part 3
    let node = settled.Node
    let unheld ip = List.contains ip withdrawing || List.contains ip holding
    let vipsNow =
        node.Kernel.Vips
        |> Map.filter (fun ip _ -> not (List.contains ip admitting))
        |> Map.map (fun ip v -> if unheld ip then { v with Held = false; Announce = None } else v)
    // As the kernel outcomes that left it so would, the change calls for an ownership pass.
    let node = { node with Kernel = { node.Kernel with Vips = vipsNow }; OwnershipStale = true }
    let now = settled.Now + 1L
    let node, commands = Protocol.apply node [ for ip in unholding @ withdrawing -> ServiceDeleted(services[ip].Key, now) ]
    { Unholding = unholding
      Withdrawing = withdrawing
      Admitting = admitting
      Holding = holding
      Kept = part 4
      Services = services
      Node = node
      Commands = commands }

let private vipsOf (command: KernelCommand) =
    match command with
    | Admit(vips, _) | Withdraw vips -> List.map fst vips
    | Hold ips | Unhold ips -> ips
    | _ -> []

/// The VIP commands of a decision: what takes a VIP from one step to the next.
let private stepCommands (commands: Command list) =
    commands
    |> List.choose (function
        | Kernel(Admit _ | Hold _ | Unhold _ | Withdraw _ as k) -> Some k
        | _ -> None)

[<Property(MaxTest = 40)>]
let ``a decision's kernel work is one command per kind of step over every VIP that takes it, stops before starts`` () =
    forAll (Gen.zip3 (Gen.elements [ true; false ]) (bool 3 1) genMix) (fun (election, arp, mix) ->
        let d = mixedDecision election arp mix
        let kinds =
            stepCommands d.Commands
            |> List.map (function
                | Unhold ips -> "unhold", Set.ofList ips
                | Withdraw vips -> "withdraw", vips |> List.map fst |> Set.ofList
                | Admit(vips, _) -> "admit", vips |> List.map fst |> Set.ofList
                | Hold ips -> "hold", Set.ofList ips
                | k -> sprintf "%A" k, Set.empty)
        let expected =
            [ "unhold", d.Unholding; "withdraw", d.Withdrawing; "admit", d.Admitting; "hold", d.Holding ]
            |> List.filter (fun (_, ips) -> not ips.IsEmpty)
            |> List.map (fun (kind, ips) -> kind, Set.ofList ips)
        let lifetime = d.Node.Config.Timing.AddressLifetime
        let admitted =
            stepCommands d.Commands |> List.collect (function Admit(vips, l) -> [ for _, prefix in vips -> prefix, l ] | _ -> [])
        allOf
            [ holds (sprintf "one command per kind, stops first: %A, expected %A" kinds expected) (kinds = expected)
              holds (sprintf "each VIP once: %A" kinds) (kinds |> List.sumBy (snd >> Set.count) = (expected |> List.sumBy (snd >> Set.count)))
              holds (sprintf "admitted as host addresses with the address lifetime: %A" admitted)
                  (admitted |> List.forall (fun (prefix, l) -> prefix = 32 && l = lifetime))
              holds "every VIP taking a step is pending with it, and only those"
                  (d.Node.Kernel.Vips
                   |> Map.forall (fun ip v ->
                       let step =
                           [ VipStep.Unholding, d.Unholding; VipStep.Withdrawing, d.Withdrawing; VipStep.Admitting, d.Admitting; VipStep.Holding, d.Holding ]
                           |> List.tryPick (fun (step, ips) -> if List.contains ip ips then Some step else None)
                       match step, v.Pending with
                       | Some expected, pending -> pending = Some expected
                       | None, pending -> pending.IsNone || pending = Some VipStep.Announcing || pending = Some VipStep.Refreshing)) ]
        |> Prop.classify (expected.Length >= 3) "three kinds or more at once"
        |> Prop.classify (expected |> List.exists (fun (_, ips) -> ips.Count > 1)) "several VIPs in one command"
        |> Prop.classify election "svc_election")

/// An outcome the shell may report for one VIP of a command.
let private genOutcome (admit: bool) =
    Gen.frequency
        [ yield 4, Gen.constant Applied
          yield 1, Gen.constant (KernelFailed "refused")
          if admit then yield 2, Gen.constant AddressNotOurs ]

/// The same command for one of its VIPs.
let private single (command: KernelCommand) (ip: Ip) =
    match command with
    | Admit(vips, lifetime) -> Admit(vips |> List.filter (fst >> (=) ip), lifetime)
    | Withdraw vips -> Withdraw(vips |> List.filter (fst >> (=) ip))
    | Hold _ -> Hold [ ip ]
    | Unhold _ -> Unhold [ ip ]
    | k -> k

[<Property(MaxTest = 40)>]
let ``a kernel command over several VIPs completes as the same command for each of its VIPs in turn would`` () =
    let genCase =
        gen {
            let! election = Gen.elements [ true; false ]
            let! mix = genMix
            let! outcomes = Gen.listOfLength 16 (genOutcome false)
            let! admitOutcomes = Gen.listOfLength 16 (genOutcome true)
            let! contested = Gen.listOfLength 16 (bool 1 2)
            return election, mix, outcomes, admitOutcomes, contested
        }
    forAll genCase (fun (election, mix, outcomes, admitOutcomes, contested) ->
        let d = mixedDecision election true mix
        // Claims by a peer of some groups this node holds: a contest is withdrawn once no address of it is held.
        let contests =
            List.zip (d.Unholding @ d.Withdrawing @ d.Admitting @ d.Holding @ d.Kept) (List.take (List.sum [ mix.Unhold; mix.Withdraw; mix.Admit; mix.Hold; mix.Kept ]) contested)
            |> List.filter snd
            |> List.choose (fun (ip, _) -> d.Node.Desired.GroupOf.TryFind ip)
            |> List.distinct
            |> List.fold (fun (m: Map<GroupId, Contest>) g -> m.Add(g, { By = "node-b"; ClaimSeq = 7u; Withdrawn = false; BelievedVersion = None })) Map.empty
        let node = { d.Node with Contests = contests }
        let now = node.Now + 1L
        let checks =
            [ for command in stepCommands d.Commands do
                  let ips = vipsOf command
                  let pool = match command with Admit _ -> admitOutcomes | _ -> outcomes
                  let outcomeOf = ips |> List.mapi (fun i ip -> ip, pool[i]) |> Map.ofList
                  let overall = outcomeOf[ips.Head]
                  let except = ips |> List.filter (fun ip -> outcomeOf[ip] <> overall) |> List.map (fun ip -> ip, outcomeOf[ip])
                  let batched = Protocol.apply node [ KernelCompleted(command, overall, except, now) ]
                  let oneByOne = Protocol.apply node [ for ip in ips -> KernelCompleted(single command ip, outcomeOf[ip], [], now) ]
                  yield holds (sprintf "%A with %A except %A: the same node and commands" command overall except) (batched = oneByOne) ]
        allOf checks
        |> Prop.classify (not contests.IsEmpty) "contested groups"
        |> Prop.classify (outcomes |> List.exists ((<>) Applied)) "some VIP went otherwise")

[<Property(MaxTest = 40)>]
let ``an Admit that finds some of its addresses foreign refuses those alone, and admits and holds every other`` () =
    let genCase =
        gen {
            let! election = Gen.elements [ true; false ]
            let! mix = genMix
            let! admit = Gen.choose (2, 5)
            let! foreign = Gen.listOfLength admit (bool 1 1)
            let foreign = if List.contains true foreign then foreign else true :: List.tail foreign
            return election, { mix with Admit = admit }, foreign
        }
    forAll genCase (fun (election, mix, foreignFlags) ->
        let d = mixedDecision election true mix
        let foreign = List.zip d.Admitting foreignFlags |> List.filter snd |> List.map fst |> Set.ofList
        let ours = d.Admitting |> List.filter (foreign.Contains >> not)
        let command = stepCommands d.Commands |> List.find (function Admit _ -> true | _ -> false)
        let node, commands =
            Protocol.apply d.Node [ KernelCompleted(command, Applied, [ for ip in foreign -> ip, AddressNotOurs ], d.Node.Now + 1L) ]
        let warned =
            commands
            |> List.choose (function Emit e when e.Reason = EventReason.AddressInUseOnInterface -> Some e.Service | _ -> None)
            |> Set.ofList
        let named = stepCommands commands |> List.collect vipsOf |> Set.ofList
        let held = stepCommands commands |> List.collect (function Hold ips -> ips | _ -> []) |> Set.ofList
        allOf
            [ holds (sprintf "foreign %A: out of the kernel state, known as foreign" foreign)
                  (foreign |> Set.forall (fun ip -> node.Kernel.Foreign.Contains ip && not (node.Kernel.Vips.ContainsKey ip)))
              holds "no later command names a foreign address" (Set.intersect named foreign).IsEmpty
              holds (sprintf "a Warning for each of their Services alone: %A" warned)
                  (warned = (foreign |> Set.map (fun ip -> d.Services[ip].Key)))
              holds (sprintf "the others admitted and held at once: %A" held)
                  (ours |> List.forall (fun ip -> node.Kernel.Vips.TryFind ip |> Option.exists _.Admitted) && held = Set.ofList ours) ]
        |> Prop.classify (ours.IsEmpty) "every address foreign"
        |> Prop.classify election "svc_election")
