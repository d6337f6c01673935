/// Rule 7: Plan.compute. Plans converge under the shell model (PlanModel), VIPs are only added by the
/// holder while its fence allows it, removals, warnings, and stopping.
module Hybrid.Properties.PlanProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators
open Hybrid.Properties.PlanModel

let private hasLeaseWrites (plan: Plan) = plan.Actions |> List.exists isLeaseWrite

let private describeRun (rounds: (Snapshot * Plan) list) =
    rounds |> List.mapi (fun i (_, p) -> sprintf "plan %d: %A" i p.Actions) |> String.concat "\n"

[<Property>]
let ``applying a plan without lease writes and planning again gives no actions`` () =
    // Healthy nodes mostly reach a plan without lease writes after one round; the property looks at the
    // first plan of the run that has none.
    forAll genAnySnapshot (fun s ->
        let rounds = run 4 s
        match rounds |> List.tryFind (fun (_, p) -> not (hasLeaseWrites p)) with
        | Some(state, plan) ->
            let again = Plan.compute (apply plan state)
            holds (sprintf "after %A\nstill %A" plan.Actions again.Actions) again.Actions.IsEmpty
            |> Prop.classify (not plan.Actions.IsEmpty) "plan had actions"
            |> Prop.classify plan.Actions.IsEmpty "plan was empty"
            |> Prop.classify (fst rounds.Head = state) "first plan"
        | None -> holds (sprintf "lease writes in every round:\n%s" (describeRun rounds)) false)

[<Property>]
let ``repeated apply and plan converges within three rounds and stays empty`` () =
    forAll genAnySnapshot (fun s ->
        let rounds = run 3 s
        let last, lastPlan = List.last rounds
        let settled = if lastPlan.Actions.IsEmpty then Some last else None
        match settled with
        | None -> holds (sprintf "not converged after 3 rounds:\n%s" (describeRun rounds)) false
        | Some steady ->
            let next = apply lastPlan steady
            let stays = [ Plan.compute next; Plan.compute (apply (Plan.compute next) next) ]
            allOf
                [ holds "an empty plan changes nothing" (next = { steady with EmittedWarnings = lastPlan.ActiveWarnings })
                  holds (sprintf "stays empty: %A" (stays |> List.map _.Actions)) (stays |> List.forall _.Actions.IsEmpty) ]
            |> Prop.collect (sprintf "%d rounds" (rounds.Length - 1))
            |> Prop.classify (hasLeaseWrites (snd rounds.Head)) "lease writes")

[<Property>]
let ``a VIP is never added on a node that does not hold its group`` () =
    forAll (Gen.frequency [ 1, genSnapshot; 3, genEvolvedSnapshot ]) (fun s ->
        let plan = Plan.compute s
        let mayWrite = Fence.mayWriteAddress s.Config.Timing s.Self.Fence s.Now
        let holdingIps =
            plan.Desired.Groups |> List.filter (fun g -> plan.Roles[g.Id] = Holding) |> List.collect _.Addresses |> Set.ofList
        let writes = plan.Actions |> List.choose (function AddVip(a, _, _) | RefreshVip(a, _, _) -> Some a | _ -> None)
        let announces = plan.Actions |> List.choose (function Announce a -> Some a | _ -> None)
        allOf
            [ for a in writes do
                  holds (sprintf "writes %s without holding its group" (Ip.format a)) (holdingIps.Contains a)
                  holds (sprintf "writes %s while the fence forbids it" (Ip.format a)) mayWrite
              for a in announces do holds (sprintf "announces %s without holding its group" (Ip.format a)) (holdingIps.Contains a) ]
        |> Prop.classify (not writes.IsEmpty) "adds or refreshes"
        |> Prop.classify (not holdingIps.IsEmpty && not mayWrite) "holding but may not write"
        |> Prop.classify (holdingIps.IsEmpty) "holds nothing")

[<Property>]
let ``at most one node announces each VIP`` () =
    forAll genAnySnapshot (fun s ->
        // Every node as the shared observations see it, each with its own VIPs: the nodes named by a lease
        // still have theirs; the others keep a stale copy of everything.
        let all = (PlanV4 @ [ PlanV6; DhcpLeased ]) |> List.map ip
        let nodes =
            nodesOf s
            |> List.map (fun n ->
                let t = asNode n s
                { t with
                    Self = { t.Self with Fence = FreshFence; Claims = s.Leases |> List.filter (fun l -> l.Holder = Some n) |> List.map (fun l -> l.Name, ({ Epoch = FreshFence.Epoch; From = None }: Claim)) |> Map.ofList }
                    Vips = all |> List.map (fun a -> { Ip = a; Prefix = Ip.hostPrefix (Ip.family a); ExpiresAt = None; Announce = None }) })
        let announcers =
            nodes
            |> List.collect (fun t ->
                Plan.compute t
                |> _.Actions
                |> List.choose (function AddVip(a, _, _) | RefreshVip(a, _, _) | Announce a -> Some(a, t.Self.Node) | _ -> None))
            |> List.distinct
            |> List.groupBy fst
        allOf [ for (a, ns) in announcers do holds (sprintf "%s announced by %A" (Ip.format a) (List.map snd ns)) (ns.Length = 1) ]
        |> Prop.classify (not announcers.IsEmpty) "something announced")

[<Property>]
let ``lease writes carry the observed version as their precondition`` () =
    forAll genAnySnapshot (fun s ->
        let plan = Plan.compute s
        let version name = s.Leases |> List.tryFind (fun l -> l.Name = name) |> Option.map _.Version
        let writes = plan.Actions |> List.filter isLeaseWrite
        allOf
            [ for w in writes do
                  match w with
                  | ClaimLease(name, expected, _, _) -> holds (sprintf "%A vs %A" w (version name)) (expected = version name)
                  | ReleaseLease(name, v) | DeleteLease(name, v) -> holds (sprintf "%A vs %A" w (version name)) (Some v = version name)
                  | _ -> holds "not a lease write" false ]
        |> Prop.classify (writes |> List.exists (function ClaimLease(_, None, _, _) -> true | _ -> false)) "creates a lease"
        |> Prop.classify (writes |> List.exists (function ClaimLease(_, Some _, _, _) -> true | _ -> false)) "takes a lease over"
        |> Prop.classify (writes |> List.exists (function ReleaseLease _ -> true | _ -> false)) "releases"
        |> Prop.classify (writes |> List.exists (function DeleteLease _ -> true | _ -> false)) "deletes a stale lease")

/// A healthy cluster where every service is ours, asks for a pool address and has serving endpoints on
/// every node: eligibility cannot change when a service goes away.
let private genServedCluster =
    gen {
        let! s = genHealthySnapshot
        let nodes = nodesOf s
        let! keys = genKeys 1 6
        let! services =
            keys
            |> Gen.collectToList (fun k ->
                genPlanService nodes k
                |> Gen.bind (fun svc ->
                    Gen.elements (PlanV4 @ [ PlanV4[0] + "," + PlanV6 ])
                    |> Gen.map (fun a ->
                        { svc with
                            Type = "LoadBalancer"
                            Class = None
                            Annotations = Map [ Annotations.LoadBalancerIPs, a ]
                            LoadBalancerIP = None })))
        let slices =
            services
            |> List.map (fun svc ->
                { Service = svc.Key
                  Endpoints = nodes |> List.map (fun n -> { NodeName = Some n; Conditions = { Ready = Some true; Serving = None; Terminating = None } }) })
        let! gone = Gen.elements services
        return { s with Services = services; Slices = slices }, gone
    }

[<Property>]
let ``removing a service removes its VIP unless another admitted service still uses that IP`` () =
    forAll genServedCluster (fun (s, gone) ->
        let steady = converge 6 s
        let after = { steady with Services = steady.Services |> List.filter (fun x -> x.Key <> gone.Key) }
        let plan = Plan.compute after
        let stillUsed =
            plan.Desired.States |> Map.toList |> List.collect (fun (_, st) -> match st with Member(ips, _) -> ips | _ -> []) |> Set.ofList
        let removed = plan.Actions |> List.choose (function RemoveVip(a, _) -> Some a | _ -> None) |> Set.ofList
        let mine = steady.Vips |> List.map _.Ip
        let goneIps = match (Plan.compute steady).Desired.States[gone.Key] with Member(ips, _) -> ips | _ -> []
        allOf
            [ for a in mine do
                  if stillUsed.Contains a then holds (sprintf "%s removed though still used" (Ip.format a)) (not (removed.Contains a))
                  else holds (sprintf "%s kept though unused" (Ip.format a)) (removed.Contains a) ]
        |> Prop.classify (goneIps |> List.exists (fun a -> List.contains a mine && stillUsed.Contains a)) "IP still shared"
        |> Prop.classify (goneIps |> List.exists (fun a -> List.contains a mine && not (stillUsed.Contains a))) "IP freed"
        |> Prop.classify (goneIps |> List.forall (fun a -> not (List.contains a mine))) "not announced here")

[<Property>]
let ``every skipped service of ours yields exactly one Warning Event and foreign ones none`` () =
    forAll genHealthySnapshot (fun s ->
        let desired = Desired.compute s.Config s.Services s.Slices
        // Over the whole cluster: every live node plans; the Service's janitor is the one that reports.
        let emitted = everyNode s |> List.collect (fun t -> warnings (Plan.compute t))
        let skipped = desired.States |> Map.toList |> List.choose (fun (k, st) -> match st with Skipped r -> Some(k, r) | _ -> None)
        allOf
            [ for (k, reason) in skipped do
                  let mine = emitted |> List.filter (fun e -> e.Service = k)
                  match SkipReason.audience reason with
                  | Ours eventReason ->
                      holds (sprintf "%O (%A) got %A" k reason mine)
                          (mine.Length = 1 && mine.Head.Reason = eventReason && mine.Head.Message = SkipReason.describe reason)
                  | NotOurs -> holds (sprintf "foreign %O (%A) got %A" k reason mine) mine.IsEmpty ]
        |> Prop.classify (skipped |> List.exists (fun (_, r) -> SkipReason.audience r <> NotOurs)) "skipped, ours"
        |> Prop.classify (skipped |> List.exists (fun (_, r) -> SkipReason.audience r = NotOurs)) "not ours")

[<Property>]
let ``each warning is emitted once and the steady state emits nothing`` () =
    forAll genAnySnapshot (fun s ->
        let rounds = run 5 s
        let emitted = rounds |> List.collect (snd >> warnings)
        let repeated = emitted |> List.countBy id |> List.filter (fun (_, n) -> n > 1)
        let steady = apply (snd (List.last rounds)) (fst (List.last rounds))
        allOf
            [ holds (sprintf "emitted more than once: %A" repeated) repeated.IsEmpty
              holds "steady state emits nothing" (warnings (Plan.compute steady)).IsEmpty ]
        |> Prop.classify (not emitted.IsEmpty) "warnings emitted")

[<Property>]
let ``a node whose VIP interface is down or which is shutting down never adds a VIP and releases what it holds`` () =
    let genCase =
        gen {
            let! s = genHealthySnapshot
            let! why = Gen.elements [ "link down"; "shutting down"; "both" ]
            // Leases naming this node for some of the pool's groups, claimed in the current epoch, and most
            // of their VIPs on the interface.
            let! mine = someOf 0 3 (PlanV4 @ [ PlanV6 ])
            let names = mine |> List.map (ip >> LeaseNames.group)
            let names = if s.Config.Election then names else (if mine.IsEmpty then [] else [ s.Config.LeaseName ])
            let leases = s.Leases |> List.filter (fun l -> not (List.contains l.Name names))
            let own = names |> List.map (fun n -> { Name = n; Holder = Some s.Self.Node; Version = "9"; ChangedSeenAt = Now - 100L })
            let claims = names |> List.map (fun n -> n, ({ Epoch = FreshFence.Epoch; From = None }: Claim)) |> Map.ofList
            let! onInterface = someOf 0 mine.Length mine
            let! vips = onInterface |> Gen.collectToList genVip
            return
                why,
                { s with
                    Leases = leases @ own
                    Vips = vips @ (s.Vips |> List.filter (fun v -> not (List.contains (Ip.format v.Ip) onInterface)))
                    Self = { s.Self with LinkUp = (why = "shutting down"); ShuttingDown = (why <> "link down"); Claims = claims } }
        }
    forAll genCase (fun (why, s) ->
        let plan = Plan.compute s
        let actions = plan.Actions
        let index a = actions |> List.findIndex ((=) a)
        let myGroups = plan.Desired.Groups |> List.filter (fun g -> s.Leases |> List.exists (fun l -> l.Name = g.Id && l.Holder = Some s.Self.Node))
        let after = apply plan s
        allOf
            [ holds "no AddVip, RefreshVip, Announce or ClaimLease"
                  (actions |> List.forall (function AddVip _ | RefreshVip _ | Announce _ | ClaimLease _ -> false | _ -> true))
              holds "every VIP withdrawn" after.Vips.IsEmpty
              for g in myGroups do
                  let release = actions |> List.tryFind (function ReleaseLease(id, _) -> id = g.Id | _ -> false)
                  holds (sprintf "%s not released: %A" g.Id actions) release.IsSome
                  for a in g.Addresses do
                      match actions |> List.tryFind ((=) (RemoveVip(a, Ip.hostPrefix (Ip.family a)))) with
                      | Some removal -> holds (sprintf "%s withdrawn after its lease was released" (Ip.format a)) (index removal < index release.Value)
                      | None -> holds (sprintf "%s was not on the interface" (Ip.format a)) (s.Vips |> List.forall (fun v -> v.Ip <> a)) ]
        |> Prop.classify (why = "link down") "link down"
        |> Prop.classify (why = "shutting down") "shutting down"
        |> Prop.classify (myGroups |> List.exists (fun g -> g.Addresses |> List.exists (fun a -> s.Vips |> List.exists (fun v -> v.Ip = a)))) "withdraws a VIP")

[<Property>]
let ``a converged holder has exactly the VIPs of the groups it holds, and writes their status`` () =
    forAll genHealthySnapshot (fun s ->
        let steady = converge 6 s
        let plan = Plan.compute steady
        let held = plan.Desired.Groups |> List.filter (fun g -> plan.Roles[g.Id] = Holding)
        let expected = held |> List.collect _.Addresses |> Set.ofList
        let members = plan.Desired.States |> Map.toList |> List.choose (fun (k, st) -> match st with Member(ips, _) -> Some(k, ips) | _ -> None)
        allOf
            [ holds (sprintf "VIPs %A, held %A" (steady.Vips |> List.map _.Ip) expected) ((steady.Vips |> List.map _.Ip |> Set.ofList) = expected)
              if not steady.Config.DisableServiceUpdates then
                  for (k, ips) in members do
                      if plan.Roles[plan.Desired.GroupOf[ips.Head]] = Holding && expected.Contains ips.Head then
                          let svc = steady.Services |> List.find (fun x -> x.Key = k)
                          holds (sprintf "%O status %A" k svc.Ingress)
                              (svc.Annotations.TryFind Annotations.VipHost = Some steady.Self.Node
                               && svc.Ingress |> List.exists (fun e -> e.Ip = Ip.format ips.Head && e.Ports = svc.Ports)) ]
        |> Prop.classify (not held.IsEmpty) "holds something"
        |> Prop.classify (held.Length > 1) "holds several groups")

[<Property>]
let ``a VIP written now disappears by itself before the fence lapses`` () =
    forAll (Gen.frequency [ 1, genSnapshot; 3, genEvolvedSnapshot ]) (fun s ->
        let plan = Plan.compute s
        let t = s.Config.Timing
        let writes = plan.Actions |> List.choose (function AddVip(a, _, l) | RefreshVip(a, _, l) -> Some(a, l) | _ -> None)
        allOf
            [ for (a, lifetime) in writes do
                  match s.Self.Fence.LastRenewalStartedAt with
                  | Some started ->
                      holds (sprintf "%s written at %d for %d ms: gone by %d, fence lapses at %d" (Ip.format a) s.Now lifetime (s.Now + lifetime + Timing.KernelExpirySlack) (started + t.RenewDeadline))
                          (s.Now + lifetime + Timing.KernelExpirySlack <= started + t.RenewDeadline)
                  | None -> holds "written without any renewal" false ]
        |> Prop.classify (not writes.IsEmpty) "writes a VIP")

[<Property>]
let ``nothing falls due before the plan's next wake-up`` () =
    let genCase =
        gen {
            let! s = genAnySnapshot
            let steady = converge 6 s
            let wake = (Plan.compute steady).NextWakeAt
            let! t =
                match wake with
                | Some w when w > steady.Now + 1L -> Gen.choose64 (steady.Now + 1L, w - 1L)
                | Some _ -> Gen.constant steady.Now
                | None -> Gen.choose64 (steady.Now + 1L, steady.Now + 10000L)
            return steady, wake, t
        }
    forAll genCase (fun (steady, wake, t) ->
        let later = Plan.compute { steady with Now = t }
        holds (sprintf "at %d (wake-up %A, planned at %d): %A" t wake steady.Now later.Actions) later.Actions.IsEmpty
        |> Prop.classify wake.IsNone "no wake-up"
        |> Prop.classify (wake.IsSome && t > steady.Now) "before the wake-up")

/// An API server without the LoadBalancerIPMode feature (Kubernetes before 1.30, where it was alpha and off)
/// drops status.loadBalancer.ingress[].ipMode from what it stores; an unset ipMode means "VIP".
let private withoutIpMode (s: Snapshot) =
    { s with Services = s.Services |> List.map (fun x -> { x with Ingress = x.Ingress |> List.map (fun e -> { e with IpMode = None }) }) }

[<Property>]
let ``status converges when the API server drops ipMode (Kubernetes before 1.30)`` () =
    forAll (Gen.frequency [ 1, genSnapshot; 3, genEvolvedSnapshot ] |> Gen.map withoutIpMode) (fun s ->
        let rounds = runWith withoutIpMode 4 s
        let _, last = List.last rounds
        holds (sprintf "not converged:\n%s" (describeRun rounds)) last.Actions.IsEmpty
        |> Prop.classify (rounds |> List.exists (fun (_, p) -> p.Actions |> List.exists (function WriteStatus(_, ingress, _) -> not ingress.IsEmpty | _ -> false))) "status written")

/// One node alone holding one VIP for `horizon` ms: it renews its heartbeat every P (instantly) and plans
/// exactly when the shell would: on a renewal, or at NextWakeAt; after executing a non-empty plan it plans
/// again at once (NextWakeAt describes the state the plan was computed from, so only the NextWakeAt of an
/// empty plan is a promise). Returns the instants of every announcement, and a description of the first
/// instant the VIP was missing or past its lifetime.
let private holdAlone (timing: Timing) (arpRate: Duration) (horizon: Duration) =
    let svc = { service "default" "web" with LoadBalancerIP = Some "192.168.0.220" }
    let config = { configFor "node-a" true with Timing = timing; ArpRate = arpRate; DisableServiceUpdates = true }
    let renewalAt t = t / timing.RetryPeriod * timing.RetryPeriod
    let at (s: Snapshot) t =
        let r = renewalAt t
        { s with
            Now = t
            Heartbeats = [ { Node = "node-a"; Holder = Some "node-a"; Version = string r; ChangedSeenAt = r } ]
            Self = { s.Self with Fence = { s.Self.Fence with LastRenewalStartedAt = Some r } } }
    let start =
        { Config = config
          Now = 0L
          Services = [ svc ]
          Slices = [ { Service = svc.Key; Endpoints = [ { NodeName = Some "node-a"; Conditions = { Ready = Some true; Serving = None; Terminating = None } } ] } ]
          Heartbeats = []
          Leases = []
          Self = { Node = "node-a"; Fence = { Epoch = 1L; LastRenewalStartedAt = Some 0L }; Claims = Map.empty; LinkUp = true; ShuttingDown = false }
          Vips = []
          EmittedWarnings = Set.empty }
    let rec loop (s: Snapshot) (t: Instant) (announced: Instant list) (problem: string option) =
        if t > horizon || problem.IsSome then List.rev announced, problem
        else
            let s = at s t
            let rec settle (s: Snapshot) (announced: Instant list) k =
                let plan = Plan.compute s
                let announced = (plan.Actions |> List.filter (function Announce _ -> true | _ -> false) |> List.map (fun _ -> t)) @ announced
                let s = apply plan s
                if k < 4 && not plan.Actions.IsEmpty then settle s announced (k + 1) else s, announced, plan
            let s, announced, plan = settle s announced 0
            let problem =
                match s.Vips with
                | [ v ] when v.ExpiresAt |> Option.exists (fun e -> e > t) -> None
                | _ when announced.IsEmpty -> None // not added yet
                | vips -> Some(sprintf "at %d: VIPs %A" t vips)
            let next = [ Some(renewalAt t + timing.RetryPeriod); plan.NextWakeAt ] |> List.choose id |> List.filter (fun w -> w > t) |> List.min
            loop s next announced problem
    loop start 0L [] None

[<Property>]
let ``a new holder announces at once, repeats at 250, 750 and 1500 ms, then every vip_arpRate, and never lets its VIP expire`` () =
    let genCase = Gen.map2 (fun t r -> t, int64 r) genAcceptedTiming (Gen.oneof [ Gen.choose (500, 5000); Gen.elements [ 500; 3000 ] ])
    forAll genCase (fun (timing, arpRate) ->
        let horizon = 20000L
        let announced, problem = holdAlone timing arpRate horizon
        match announced with
        | [] -> holds "never announced" false
        | first :: _ ->
            let expected =
                [ for offset in Announcements.Burst -> first + offset ]
                @ [ for k in 1L .. 100L do
                        let t = first + List.last Announcements.Burst + k * arpRate
                        if t <= horizon then t ]
            allOf
                [ holds (sprintf "announced at %A, expected %A" announced expected) (announced = expected)
                  holds (defaultArg problem "") problem.IsNone ]
            |> Prop.classify (arpRate = 500L) "vip_arpRate 500"
            |> Prop.classify (timing = DefaultTiming) "default timing")

[<Property>]
let ``no missing-endpoint warning for a service that changed less than the grace period ago`` () =
    forAll PlanModel.genAnySnapshot (fun s ->
        let plan = Plan.compute s
        let byKey = s.Services |> List.map (fun svc -> svc.Key, svc) |> Map.ofList
        let endpointWarnings =
            plan.ActiveWarnings
            |> Set.filter (fun w -> w.Reason = "NoServingEndpoint" || w.Reason = "NoEligibleNode")
            |> Set.toList
        let fresh =
            endpointWarnings
            |> List.filter (fun w -> s.Now - byKey[w.Service].ChangedSeenAt < Plan.EndpointGrace)
        holds (sprintf "warned within the grace: %A" fresh) fresh.IsEmpty
        |> Prop.classify (not endpointWarnings.IsEmpty) "some endpoint warning"
        |> Prop.classify (s.Services |> List.exists (fun svc -> s.Now - svc.ChangedSeenAt < Plan.EndpointGrace)) "a service within the grace")

[<Property>]
let ``a heartbeat renewal that does not matter changes no action of any plan`` () =
    forAll PlanModel.genAnySnapshot (fun s ->
        let renewedAt = s.Now
        let cases =
            s.Heartbeats
            |> List.map (fun hb ->
                let renewed = { hb with Version = hb.Version + "r"; ChangedSeenAt = renewedAt }
                let matters = Heartbeat.changeMatters s.Config.Timing (Some hb) renewed s.Now
                hb, renewed, matters)
        let quiet = cases |> List.filter (fun (_, _, matters) -> not matters)
        let before = (Plan.compute s).Actions
        let violations =
            quiet
            |> List.filter (fun (hb, renewed, _) ->
                let after = { s with Heartbeats = s.Heartbeats |> List.map (fun h -> if h.Node = hb.Node then renewed else h) }
                (Plan.compute after).Actions <> before)
        holds (sprintf "renewals that did not matter changed the plan: %A" (violations |> List.map (fun (h, _, _) -> h.Node))) violations.IsEmpty
        |> Prop.classify (not quiet.IsEmpty) "some renewal does not matter"
        |> Prop.classify (cases |> List.exists (fun (_, _, m) -> m)) "some renewal matters")

[<Property>]
let ``a plan that holds back a VIP of a held group waits for the next renewal`` () =
    forAll PlanModel.genAnySnapshot (fun s ->
        let plan = Plan.compute s
        let observed = s.Vips |> List.map _.Ip |> Set.ofList
        let added = plan.Actions |> List.choose (function AddVip(ip, _, _) -> Some ip | _ -> None) |> Set.ofList
        let heldBack =
            plan.Desired.Groups
            |> List.filter (fun g -> plan.Roles[g.Id] = Holding)
            |> List.collect _.Addresses
            |> List.filter (fun ip -> not (observed.Contains ip) && not (added.Contains ip))
        (if heldBack.IsEmpty then holds "nothing held back" true
         else holds (sprintf "held back %A but not waiting for a renewal" heldBack) plan.WaitsForRenewal)
        |> Prop.classify (not heldBack.IsEmpty) "a VIP held back")
