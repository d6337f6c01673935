/// Rules 6 and 7 together: several agents share one API server. Every round, each running agent plans from
/// the same observations, then the agents execute their plans one after the other against the shared state
/// (so a plan may be stale by the time it runs: a lease write whose version changed meanwhile fails with a
/// conflict and is skipped, as the API server would refuse it).
module Hybrid.Properties.ClusterProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators
open Hybrid.Properties.PlanModel

/// What one agent keeps to itself.
type Agent =
    { Self: SelfState
      Vips: VipState list
      Emitted: Set<ServiceEvent> }

/// The API server's objects (in `Shared`, whose own Self/Vips are unused) and the running agents.
type Cluster =
    { Shared: Snapshot
      Agents: Map<string, Agent> }

let private viewOf (c: Cluster) (node: string) : Snapshot =
    let a = c.Agents[node]
    { c.Shared with
        Config = { c.Shared.Config with NodeName = node }
        Self = a.Self
        Vips = a.Vips
        EmittedWarnings = a.Emitted }

/// Executes one agent's plan against the current shared state; lease writes that meet a newer version fail.
let private execute (c: Cluster) (node: string) (plan: Plan) : Cluster * int =
    let mutable conflicts = 0
    let run (s: Snapshot) (action: Action) =
        try
            step s action
        with ShellRefused _ when isLeaseWrite action ->
            conflicts <- conflicts + 1
            s
    let s = plan.Actions |> List.fold run (viewOf c node)
    let s = { s with EmittedWarnings = plan.ActiveWarnings }
    // The heartbeat loop releases when the link is down; a stopping agent's stop sequence releases it (the
    // shell does so before its plan; the others see both only in the next round either way).
    let heartbeats =
        match Heartbeat.decide s.Self.LinkUp s.Self.ShuttingDown with
        | Renew -> s.Heartbeats
        | ReleaseHeartbeat
        | LeaveToStop ->
            s.Heartbeats |> List.map (fun h -> if h.Node = node && h.Holder.IsSome then { h with Holder = None; Version = h.Version + "-released"; ChangedSeenAt = s.Now } else h)
    { Shared = { c.Shared with Services = s.Services; Leases = s.Leases; Heartbeats = heartbeats }
      Agents = c.Agents.Add(node, { Self = s.Self; Vips = s.Vips; Emitted = s.EmittedWarnings }) },
    conflicts

/// Which agents hold each address right now.
let private onInterfaces (c: Cluster) =
    c.Agents |> Map.toList |> List.collect (fun (n, a) -> a.Vips |> List.map (fun v -> v.Ip, n)) |> List.groupBy fst |> List.map (fun (ip, ns) -> ip, List.map snd ns)

/// Runs rounds until every agent's plan is empty; checks after every single execution that no address is
/// on two agents. Returns the final cluster, the number of rounds, conflicts, and any violation seen.
let private simulate (maxRounds: int) (c: Cluster) =
    let rec round k (c: Cluster) conflicts =
        let nodes = c.Agents |> Map.toList |> List.map fst
        let plans = nodes |> List.map (fun n -> n, Plan.compute (viewOf c n))
        if plans |> List.forall (fun (_, p) -> p.Actions.IsEmpty) then Ok(c, k, conflicts)
        elif k = maxRounds then Error(sprintf "not converged after %d rounds: %A" k (plans |> List.map (fun (n, p) -> n, p.Actions)))
        else
            let folder state (n, plan) =
                match state with
                | Error e -> Error e
                | Ok(c, conflicts) ->
                    let c, more = execute c n plan
                    match onInterfaces c |> List.tryFind (fun (_, ns) -> ns.Length > 1) with
                    | Some(ip, ns) -> Error(sprintf "round %d, after %s: %s on %A" k n (Ip.format ip) ns)
                    | None -> Ok(c, conflicts + more)
            match plans |> List.fold folder (Ok(c, conflicts)) with
            | Ok(c, conflicts) -> round (k + 1) c conflicts
            | Error e -> Error e
    round 0 c 0

/// A cluster from a generated snapshot: the nodes whose heartbeat is live run an agent (fresh fence, claims
/// for some of the leases naming them, no VIPs yet); the others are down (or released) long enough that
/// every takeover is due.
let private genCluster =
    gen {
        let! s = genSnapshot
        let timing = s.Config.Timing
        let running = s.Heartbeats |> List.filter (fun h -> h.Holder = Some h.Node && s.Now - h.ChangedSeenAt < timing.LeaseDuration) |> List.map _.Node
        let! agents =
            running
            |> Gen.collectToList (fun n ->
                s.Leases
                |> List.filter (fun l -> l.Holder = Some n)
                |> Gen.collectToList (fun l -> bool 1 1 |> Gen.map (fun keep -> if keep then Some(l.Name, ({ Epoch = FreshFence.Epoch; From = None }: Claim)) else None))
                |> Gen.map (fun claims ->
                    n,
                    { Self = { Node = n; Fence = FreshFence; Claims = claims |> List.choose id |> Map.ofList; LinkUp = true; ShuttingDown = false }
                      Vips = []
                      Emitted = Set.empty }))
        let old = s.Now - 5L * timing.LeaseDuration
        return
            { Shared =
                { s with
                    Leases = s.Leases |> List.map (fun l -> { l with ChangedSeenAt = min l.ChangedSeenAt old })
                    // A Lease naming a released node is taken D after the release was seen: date releases back too.
                    Heartbeats =
                        s.Heartbeats
                        |> List.map (fun h -> if List.contains h.Node running then h else { h with ChangedSeenAt = min h.ChangedSeenAt old }) }
              Agents = Map.ofList agents }
    }

/// Checks the converged cluster: one holder per servable group, its VIPs on it and nowhere else, statuses.
let private settled (c: Cluster) =
    let desired = Desired.compute c.Shared.Config c.Shared.Services c.Shared.Slices
    let running = c.Agents |> Map.toList |> List.map fst
    let holderOf (g: Group) = c.Shared.Leases |> List.tryFind (fun l -> l.Name = g.Id) |> Option.bind _.Holder
    let carriers a = c.Agents |> Map.toList |> List.filter (fun (_, ag) -> ag.Vips |> List.exists (fun v -> v.Ip = a)) |> List.map fst
    allOf
        [ for g in desired.Groups do
              let eligible = running |> List.filter (fun n -> Eligibility.allows n g.Eligibility)
              if eligible.IsEmpty then
                  for a in g.Addresses do
                      holds (sprintf "%s unservable but on %A" (Ip.format a) (carriers a)) (carriers a).IsEmpty
              else
                  match holderOf g with
                  | Some h when List.contains h eligible ->
                      for a in g.Addresses do
                          holds (sprintf "%s of %s held by %s is on %A" (Ip.format a) g.Id h (carriers a)) (carriers a = [ h ])
                  | other -> holds (sprintf "%s: lease names %A, running eligible nodes %A" g.Id other eligible) false
          if not c.Shared.Config.DisableServiceUpdates then
              for svc in c.Shared.Services do
                  match desired.States[svc.Key] with
                  | Member(ips, _) ->
                      let g = desired.Groups |> List.find (fun g -> g.Id = desired.GroupOf[ips.Head])
                      match holderOf g with
                      | Some h when List.contains ips.Head g.Addresses && List.contains h running ->
                          holds (sprintf "%O: vipHost %A, holder %s" svc.Key (svc.Annotations.TryFind Annotations.VipHost) h)
                              (svc.Annotations.TryFind Annotations.VipHost = Some h
                               && svc.Ingress |> List.exists (fun e -> e.Ip = Ip.format ips.Head))
                      | _ -> ()
                  | _ -> () ]

[<Property>]
let ``a cluster of agents converges to one holder per group with its VIPs on it, never on two nodes`` () =
    forAll genCluster (fun cluster ->
        match simulate 8 cluster with
        | Error e -> holds e false
        | Ok(final, rounds, conflicts) ->
            settled final
            |> Prop.collect (sprintf "%d rounds" rounds)
            |> Prop.classify (conflicts > 0) "lease write conflicts"
            |> Prop.classify (final.Agents.Count > 1) "several agents")

[<Property>]
let ``when a holder stops gracefully its groups move and no VIP is ever on two nodes`` () =
    let genCase =
        gen {
            let! c = genCluster
            let! stopping = if c.Agents.IsEmpty then Gen.constant None else Gen.elements (c.Agents |> Map.toList |> List.map fst) |> Gen.map Some
            return c, stopping
        }
    forAll genCase (fun (cluster, stopping) ->
        match simulate 8 cluster with
        | Error e -> holds e false
        | Ok(steady, _, _) ->
            match stopping with
            | None -> holds "no agent" true
            | Some node ->
                let held = steady.Agents[node].Vips |> List.map _.Ip
                let a = steady.Agents[node]
                let stoppingCluster = { steady with Agents = steady.Agents.Add(node, { a with Self = { a.Self with ShuttingDown = true } }) }
                match simulate 8 stoppingCluster with
                | Error e -> holds e false
                | Ok(final, _, _) ->
                    let desired = Desired.compute final.Shared.Config final.Shared.Services final.Shared.Slices
                    let others = final.Agents |> Map.remove node
                    let servable (ip: Ip) =
                        desired.GroupOf.TryFind ip
                        |> Option.bind (fun id -> desired.Groups |> List.tryFind (fun g -> g.Id = id))
                        |> Option.exists (fun g -> others |> Map.exists (fun n _ -> Eligibility.allows n g.Eligibility))
                    allOf
                        [ holds "the stopping agent withdrew everything" final.Agents[node].Vips.IsEmpty
                          // Its group leases (svc_leasename is a group lease only when svc_election=false).
                          let mine =
                              final.Shared.Leases
                              |> List.filter (fun l ->
                                  l.Holder = Some node
                                  && (l.Name.StartsWith LeaseNames.VipPrefix || (not final.Shared.Config.Election && l.Name = final.Shared.Config.LeaseName)))
                          holds (sprintf "and released its leases: %A" mine) mine.IsEmpty
                          for ip in held do
                              if servable ip then
                                  holds (sprintf "%s taken over" (Ip.format ip)) (others |> Map.exists (fun _ ag -> ag.Vips |> List.exists (fun v -> v.Ip = ip))) ]
                    |> Prop.classify (not held.IsEmpty) "the stopping agent held VIPs"
                    |> Prop.classify (final.Agents.Count > 1) "others can take over")
