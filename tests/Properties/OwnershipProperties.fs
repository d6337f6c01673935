/// Ownership (docs/PROTOCOL.md §4): who should hold each group, from observations every node shares. A live,
/// eligible holder keeps its group (until, once the cluster is still, it holds more than the load bound); an orphaned group goes to the best-ranked live eligible node under the load
/// bound, oldest group first; successors claim after a stagger; janitors and rankings are rendezvous hashing.
module Hybrid.Properties.OwnershipProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private timing = DefaultTiming

/// Nodes with how each stands, groups, their Leases (or the Leases' recent deletion): what one node observed.
type private Fleet =
    { Nodes: string list
      Standings: Map<string, Standing>
      Groups: Group list
      Leases: Map<GroupId, ObservedGroupLease>
      Absent: Map<GroupId, AbsentGroupLease> }

    member f.Standing(node: string) = defaultArg (f.Standings.TryFind node) Unregistered
    member f.Live = f.Nodes |> List.filter (fun n -> f.Standing n = Live)

let private genStanding =
    Gen.frequency [ 12, Gen.constant Live; 2, Gen.constant Silent; 1, Gen.constant Aside; 1, Gen.constant Gone; 1, Gen.constant OutOfForce; 1, Gen.constant Excluded ]

let private genLease (holders: string list) (id: GroupId) : Gen<ObservedGroupLease option * AbsentGroupLease option> =
    gen {
        let! age = chooseL 0L 5000L
        let! version = Gen.choose (1, 99)
        let lease holder =
            { Holder = holder |> Option.map (fun n -> { Node = n; Incarnation = Some(Incarnation 1UL) }); Version = sprintf "l%d" version; Transitions = 1; ChangedSeenAt = Now - age }
        return!
            Gen.frequency
                [ 2, Gen.constant (None, None)
                  1, Gen.constant (Some(lease None), None)
                  6, Gen.elements holders |> Gen.map (fun h -> Some(lease (Some h)), None)
                  1, Gen.elements (None :: (holders |> List.map Some)) |> Gen.map (fun h -> None, Some { Since = Now - age; LastHolder = h |> Option.map (fun n -> { Node = n; Incarnation = None }) }) ]
    }

let private genGroups (nodes: string list) (addresses: Ip list) =
    addresses
    |> Gen.collectToList (fun a ->
        Gen.map3 (fun e age created -> { group a e (Now - age) with CreatedAt = int64 created }) (genEligibility nodes) (chooseL 0L 3000L) (Gen.choose (0, 5)))

let private genFleetWith (genStandingOf: Gen<Standing>) (maxGroups: int) : Gen<Fleet> =
    gen {
        let! n = Gen.choose (1, NodePool.Length)
        let nodes = List.take n NodePool
        let! standings = Gen.listOfLength n genStandingOf
        let! addresses = someOf 1 maxGroups GroupPool
        let! groups = genGroups nodes addresses
        let! leases = groups |> Gen.collectToList (fun g -> genLease (nodes @ [ "node-unregistered" ]) g.Id |> Gen.map (fun l -> g.Id, l))
        return
            { Nodes = nodes
              Standings = List.zip nodes standings |> Map.ofList
              Groups = groups
              Leases = leases |> List.choose (fun (id, (l, _)) -> l |> Option.map (fun l -> id, l)) |> Map.ofList
              Absent = leases |> List.choose (fun (id, (_, a)) -> a |> Option.map (fun a -> id, a)) |> Map.ofList }
    }

let private genFleet = genFleetWith genStanding 8

let private assign (f: Fleet) = Ownership.assign Now timing f.Standing f.Live f.Leases f.Absent f.Groups

let private liveEligible (f: Fleet) (g: Group) = f.Live |> List.filter (fun n -> Eligibility.allows n g.Eligibility)

/// The node an assignment gives the group to (the holder, or the first successor), if any.
let private target (a: Assignment) =
    match a with
    | HeldBy h -> Some h
    | Orphaned(successors, _, _) -> List.tryHead successors
    | _ -> None

let private caseOf (a: Assignment) =
    match a with
    | HeldBy _ -> "held"
    | HolderLeaving _ -> "holder leaving"
    | HolderSilent _ -> "holder silent"
    | Orphaned _ -> "orphaned"
    | NoCandidate _ -> "no candidate"

[<Property>]
let ``a group's assignment follows how its Lease holder stands`` () =
    forAll genFleet (fun f ->
        let assignments = assign f
        allOf
            [ for g in f.Groups do
                  let a = assignments[g.Id]
                  let orphanedSince since previous =
                      match a with
                      | Orphaned(_, s, p) -> s = since && p = previous
                      | NoCandidate _ -> (liveEligible f g).IsEmpty
                      | _ -> false
                  let ok =
                      match f.Leases.TryFind g.Id, f.Absent.TryFind g.Id with
                      | Some lease, _ ->
                          match lease.Holder with
                          | Some h ->
                              match f.Standing h.Node with
                              | Live when Eligibility.allows h.Node g.Eligibility -> a = HeldBy h.Node
                              | Live | OutOfForce | Excluded -> a = HolderLeaving h.Node
                              | Silent | Unregistered -> a = HolderSilent h.Node
                              | Gone | Aside -> orphanedSince lease.ChangedSeenAt (Some h.Node)
                          | None -> orphanedSince lease.ChangedSeenAt None
                      | None, Some gone ->
                          // A deleted Lease: its last live eligible holder gets D_L to create it again.
                          match gone.LastHolder with
                          | Some h when f.Standing h.Node = Live && Eligibility.allows h.Node g.Eligibility && Now < gone.Since + timing.LanLeaseDuration ->
                              a = HeldBy h.Node
                          | last -> orphanedSince (gone.Since + timing.LanLeaseDuration) (last |> Option.map _.Node)
                      | None, None -> orphanedSince g.ChangedSeenAt None
                  holds (sprintf "%s: %A with lease %A, absent %A" g.Id a (f.Leases.TryFind g.Id) (f.Absent.TryFind g.Id)) ok ]
        |> fun p ->
            [ "held"; "holder leaving"; "holder silent"; "orphaned"; "no candidate" ]
            |> List.fold (fun p case -> p |> Prop.classify (f.Groups |> List.exists (fun g -> caseOf assignments[g.Id] = case)) case) p)

[<Property>]
let ``an orphaned group goes to live eligible nodes only, and no candidate means none exists, saying why`` () =
    forAll genFleet (fun f ->
        let assignments = assign f
        allOf
            [ for g in f.Groups do
                  let candidates = liveEligible f g
                  match assignments[g.Id] with
                  | Orphaned(successors, _, _) ->
                      holds (sprintf "%s successors %A, live eligible %A" g.Id successors candidates)
                          (not successors.IsEmpty && List.sort successors = List.sort candidates)
                  | NoCandidate reason ->
                      let anyEligible =
                          match g.Eligibility with
                          | NoServingEndpoint -> false
                          | NodesWithEndpoint nodes -> not nodes.IsEmpty
                          | AnyNode _ -> true
                      let expected =
                          if not anyEligible then NoEligibleNode g.Eligibility
                          else
                              match g.Eligibility with
                              | NodesWithEndpoint nodes -> NoLiveEligibleNode(Set.toList nodes)
                              | _ -> NoLiveEligibleNode []
                      holds (sprintf "%s: %A but %A" g.Id reason candidates) (candidates.IsEmpty && reason = expected)
                  | HeldBy h -> holds (sprintf "%s held by %s" g.Id h) (List.contains h candidates)
                  | HolderLeaving h | HolderSilent h -> holds (sprintf "%s: %s is not a candidate" g.Id h) (not (List.contains h candidates)) ]
        |> Prop.classify (f.Standings |> Map.exists (fun _ s -> s <> Live)) "some node not live"
        |> Prop.classify (f.Groups |> List.exists (fun g -> match assignments[g.Id] with NoCandidate _ -> true | _ -> false)) "some group unserved")

[<Property>]
let ``the first successor is the best-ranked live eligible node not above its share; the others follow in rank order`` () =
    forAll genFleet (fun f ->
        let spread = Ownership.spread f.Live f.Groups
        // Groups are dealt oldest first; `dealt` counts what each node got before the group at hand.
        let ordered = f.Groups |> List.sortBy (fun g -> g.CreatedAt, g.Id) |> List.filter (fun g -> not (liveEligible f g).IsEmpty)
        let checks, _ =
            ordered
            |> List.mapFold
                (fun (dealt: Map<string, int>) g ->
                    let ranked = Rendezvous.preference g.Id (liveEligible f g)
                    let count n = defaultArg (dealt.TryFind n) 0
                    match spread.TryFind g.Id with
                    | Some(chosen :: rest) ->
                        let better = ranked |> List.takeWhile ((<>) chosen)
                        holds (sprintf "%s: chose %s (had %d) over %A" g.Id chosen (count chosen) (better |> List.map (fun n -> n, count n)))
                            (List.contains chosen ranked
                             && better |> List.forall (fun n -> count n > count chosen)
                             && rest = (ranked |> List.filter ((<>) chosen))),
                        dealt.Add(chosen, count chosen + 1)
                    | other -> holds (sprintf "%s: %A" g.Id other) false, dealt)
                Map.empty
        allOf (holds "only servable groups" (spread.Count = ordered.Length) :: checks)
        |> Prop.classify (ordered |> List.exists (fun g -> spread[g.Id].Head <> (Rendezvous.preference g.Id (liveEligible f g)).Head)) "some node passed over for its load")

[<Property>]
let ``with every node eligible no node is dealt more than its share of 1.1 times the mean, rounded up`` () =
    let genCase =
        gen {
            let! nodes = someOf 1 6 NodePool
            let! count = Gen.choose (1, 60)
            let! start = Gen.choose (1, 200)
            let! created = Gen.listOfLength count (Gen.choose (0, 3))
            return nodes, [ for i, c in List.indexed created -> { group (v4 10 1 ((i + start) / 250) ((i + start) % 250 + 1)) (AnyNode ServingEndpointExists) Now with CreatedAt = int64 c } ]
        }
    forAll genCase (fun (nodes, groups) ->
        let loads = Ownership.spread nodes groups |> Map.toList |> List.map (snd >> List.head) |> List.countBy id
        let share = max 1 (int (ceil (1.1 * float groups.Length / float nodes.Length)))
        holds (sprintf "loads %A, share %d" loads share) (loads |> List.forall (fun (_, n) -> n <= share))
        |> Prop.classify (groups.Length > nodes.Length) "more groups than nodes")

/// 1,000 groups over 10 live nodes (names and addresses varied); the load per node.
let private balance (nodes: string list) (addresses: Ip list) =
    let groups = addresses |> List.map (fun a -> group a (AnyNode ServingEndpointExists) Now)
    let loads = Ownership.spread nodes groups |> Map.toList |> List.map (snd >> List.head) |> List.countBy id |> Map.ofList
    nodes |> List.map (fun n -> defaultArg (loads.TryFind n) 0)

[<Property(MaxTest = 20)>]
let ``1000 groups over 10 nodes put no node above 1.1 times the mean`` () =
    let genCase =
        gen {
            let! prefix = Gen.elements [ "node-"; "worker"; "k8s-w"; "ip-10-0-0-" ]
            let! numbers = Gen.choose (0, 1000)
            let nodes = [ for i in 0..9 -> sprintf "%s%d" prefix (numbers + i * 7) ]
            let! baseValue = genV4Value
            let! stride = Gen.choose (0, 500) |> Gen.map (fun k -> uint32 (2 * k + 1))
            return nodes, [ for i in 0u .. 999u -> V4(baseValue + i * stride) ]
        }
    forAll genCase (fun (nodes, addresses) ->
        let loads = balance nodes (addresses |> List.distinct)
        holds (sprintf "loads %A" loads) (List.sum loads = (List.distinct addresses).Length && List.max loads <= 110))

[<Property>]
let ``every node computing from the same observations agrees, in whatever order it holds them`` () =
    let genCase =
        gen {
            let! f = genFleet
            let! groups = Gen.shuffle f.Groups
            let! live = Gen.shuffle f.Live
            return f, List.ofArray groups, List.ofArray live
        }
    forAll genCase (fun (f, groups, live) ->
        let reference = assign f
        let other = Ownership.assign Now timing f.Standing live f.Leases f.Absent groups
        holds (sprintf "%A\nvs\n%A" reference other) (reference = other)
        |> Prop.classify (f.Groups.Length > 1 && f.Live.Length > 1) "several groups and nodes")

[<Property>]
let ``an orphaned group goes to the same nodes whatever the other groups' Leases say`` () =
    // Nodes see each other's claims at different moments; where a group goes must not depend on them, or nodes
    // disagree during a burst of new groups and race for the same ones.
    let genCase =
        gen {
            let! f = genFleet
            let! kept = someOf 1 f.Groups.Length f.Groups
            let keptIds = kept |> List.map _.Id |> Set.ofList
            let! others =
                f.Groups
                |> List.filter (fun g -> not (keptIds.Contains g.Id))
                |> Gen.collectToList (fun g -> genLease (f.Nodes @ [ "node-unregistered" ]) g.Id |> Gen.map (fun l -> g.Id, l))
            let leases = others |> List.fold (fun (m: Map<_, _>) (id, (l, _)) -> match l with Some l -> m.Add(id, l) | None -> m.Remove id) f.Leases
            return f, keptIds, { f with Leases = leases }
        }
    forAll genCase (fun (f, kept, changed) ->
        let before = assign f
        let after = assign changed
        let compared =
            [ for id in kept do
                  match before[id], after[id] with
                  | Orphaned(s1, _, _), Orphaned(s2, _, _) -> yield id, s1, s2
                  | _ -> () ]
        allOf [ for (id, s1, s2) in compared -> holds (sprintf "%s: %A before, %A after" id s1 s2) (s1 = s2) ]
        |> Prop.classify (not compared.IsEmpty) "some kept group orphaned"
        |> Prop.classify (changed.Leases <> f.Leases) "other Leases changed")

[<Property>]
let ``a newer group never changes where the older groups go`` () =
    // During a burst of new Services every node has seen a different prefix of them; each must still name the
    // same node for every group it has seen.
    let genCase =
        gen {
            let! f = genFleet
            let! extra = someOf 1 3 [ for i in 20..30 -> v4 10 0 1 i ]
            let newest = f.Groups |> List.map _.CreatedAt |> List.fold max 0L
            let! added =
                extra
                |> Gen.collectToList (fun a ->
                    Gen.map2 (fun e later -> { group a e Now with CreatedAt = newest + int64 later }) (genEligibility f.Nodes) (Gen.choose (1, 3)))
            return f, added
        }
    forAll genCase (fun (f, added) ->
        let before = Ownership.spread f.Live f.Groups
        let after = Ownership.spread f.Live (f.Groups @ added)
        allOf [ for KeyValue(id, s) in before -> holds (sprintf "%s: %A before, %A after" id s after[id]) (after[id] = s) ]
        |> Prop.classify (before.Count > 2) "several older groups servable")

[<Property>]
let ``a live eligible holder keeps its group when nodes join, others fall silent, or other groups change`` () =
    let genCase =
        gen {
            let! f = genFleet
            let! joiners = Gen.choose (0, 3)
            let! silenced = someOf 0 2 f.Nodes
            let! dropped = someOf 0 f.Groups.Length f.Groups
            let! extra = someOf 0 3 [ for i in 20..30 -> v4 10 0 1 i ]
            let! added = extra |> Gen.collectToList (fun a -> genEligibility (f.Nodes @ [ "node-new-1" ]) |> Gen.map (fun e -> group a e Now))
            return f, joiners, silenced, dropped, added
        }
    forAll genCase (fun (f, joiners, silenced, dropped, added) ->
        let before = assign f
        let held = f.Groups |> List.choose (fun g -> match before[g.Id] with HeldBy h -> Some(g, h) | _ -> None)
        let holders = held |> List.map snd |> Set.ofList
        let newcomers = [ for i in 1..joiners -> sprintf "node-new-%d" i ]
        // Nodes that are not holders fall silent; newcomers are live.
        let standings =
            (silenced |> List.filter (fun n -> not (holders.Contains n)) |> List.fold (fun (m: Map<_, _>) n -> m.Add(n, Silent)) f.Standings)
            |> fun m -> newcomers |> List.fold (fun (m: Map<_, _>) n -> m.Add(n, Live)) m
        let droppedIds = dropped |> List.map _.Id |> Set.ofList
        let groups = (f.Groups |> List.filter (fun g -> not (droppedIds.Contains g.Id) || held |> List.exists (fun (h, _) -> h.Id = g.Id))) @ added
        let changed = { f with Nodes = f.Nodes @ newcomers; Standings = standings; Groups = groups }
        let after = assign changed
        allOf [ for (g, h) in held -> holds (sprintf "%s moved from %s to %A" g.Id h after[g.Id]) (after[g.Id] = HeldBy h) ]
        |> Prop.classify (not held.IsEmpty) "some group held"
        |> Prop.classify (joiners > 0) "nodes joined"
        |> Prop.classify (not dropped.IsEmpty || not added.IsEmpty) "other groups changed")

[<Property>]
let ``when a holder falls silent only its groups wait for its deposition, and once deposed only they move`` () =
    let genCase =
        gen {
            let! f = genFleetWith (Gen.constant Live) 12
            let! victim = Gen.elements f.Nodes
            return { f with Leases = Map.empty; Absent = Map.empty }, victim
        }
    forAll genCase (fun (f, victim) ->
        // Every servable group is claimed by the node the assignment names.
        let first = assign f
        let holders = f.Groups |> List.choose (fun g -> target first[g.Id] |> Option.map (fun h -> g.Id, h)) |> Map.ofList
        let leases = holders |> Map.map (fun _ h -> { Holder = Some { Node = h; Incarnation = Some(Incarnation 1UL) }; Version = "1"; Transitions = 1; ChangedSeenAt = Now })
        let settled = { f with Leases = leases }
        let silent = assign { settled with Standings = settled.Standings.Add(victim, Silent) }
        let deposed = assign { settled with Standings = settled.Standings.Add(victim, Gone) }
        allOf
            [ for g in f.Groups do
                  match holders.TryFind g.Id with
                  | Some h when h = victim ->
                      holds (sprintf "%s of silent %s: %A" g.Id victim silent[g.Id]) (silent[g.Id] = HolderSilent victim)
                      holds (sprintf "%s of deposed %s: %A" g.Id victim deposed[g.Id])
                          (match deposed[g.Id] with
                           | Orphaned(successors, _, Some previous) -> previous = victim && not (List.contains victim successors)
                           | NoCandidate _ -> true
                           | _ -> false)
                  | Some h ->
                      holds (sprintf "%s held by %s moved: %A / %A" g.Id h silent[g.Id] deposed[g.Id]) (silent[g.Id] = HeldBy h && deposed[g.Id] = HeldBy h)
                  | None -> holds (sprintf "%s unserved" g.Id) (match deposed[g.Id] with NoCandidate _ -> true | _ -> false) ]
        |> Prop.classify (holders |> Map.exists (fun _ h -> h = victim)) "victim held groups"
        |> Prop.classify (holders |> Map.forall (fun _ h -> h <> victim)) "victim held nothing")

[<Property>]
let ``the first successor claims as soon as the group is orphaned, and each next one a lease duration after the one before`` () =
    // A better-ranked successor that stays silent for D_L is presumed unable to claim; the next one steps in.
    forAll (Gen.map2 (fun since rank -> since, rank) (chooseL 0L 1_000_000L) (Gen.choose (0, 6))) (fun (since, rank) ->
        let due r = Ownership.claimDue timing since r
        allOf
            [ holds "the first at once" (due 0 = since)
              holds (sprintf "rank %d at %d, rank %d at %d" rank (due rank) (rank + 1) (due (rank + 1))) (due (rank + 1) - due rank = timing.LanLeaseDuration) ])

// ── Rendezvous ranking and janitors ─────────────────────────────────────────────────────────────────

let private genKey = Gen.oneof [ Gen.elements GroupPool |> Gen.map LeaseNames.group; Gen.elements AllKeys |> Gen.map string ]

[<Property>]
let ``a preference ranks every node once, whatever order the nodes come in, and removing one never reorders the others`` () =
    let genCase =
        gen {
            let! key = genKey
            let! nodes = someOf 1 6 NodePool
            let! shuffled = Gen.shuffle nodes
            let! removed = Gen.elements nodes
            return key, nodes, List.ofArray shuffled, removed
        }
    forAll genCase (fun (key, nodes, shuffled, removed) ->
        let ranked = Rendezvous.preference key nodes
        allOf
            [ holds "a permutation" (List.sort ranked = List.sort nodes)
              holds "order of input irrelevant" (Rendezvous.preference key shuffled = ranked)
              holds "removal keeps the others' order" (Rendezvous.preference key (nodes |> List.filter ((<>) removed)) = (ranked |> List.filter ((<>) removed))) ])

[<Property>]
let ``the janitor of a key is its best-ranked live node, the same for every observer, and none when nobody is live`` () =
    let genCase =
        gen {
            let! key = genKey
            let! live = someOf 0 6 NodePool
            let! shuffled = Gen.shuffle live
            let! other = Gen.elements NodePool
            return key, live, List.ofArray shuffled, other
        }
    forAll genCase (fun (key, live, shuffled, other) ->
        let janitor = Ownership.janitor live key
        allOf
            [ holds "best-ranked" (janitor = List.tryHead (Rendezvous.preference key live))
              holds "every observer agrees" (Ownership.janitor shuffled key = janitor)
              holds "none without live nodes" (janitor.IsNone = live.IsEmpty)
              // Another node leaving does not change the janitor.
              if janitor <> Some other then
                  holds "stable when another node leaves" (Ownership.janitor (live |> List.filter ((<>) other)) key = janitor) ]
        |> Prop.classify live.IsEmpty "nobody live")

[<Property(MaxTest = 20)>]
let ``rankings spread keys evenly: over 600 keys each of 6 nodes ranks first between half and twice its share`` () =
    forAll (Gen.elements [ "node-"; "worker"; "ip-10-0-0-" ]) (fun prefix ->
        let nodes = [ for i in 1..6 -> sprintf "%s%d" prefix i ]
        let firsts = [ for i in 0..599 -> Rendezvous.preference (LeaseNames.group (v4 198 18 (i / 250) (i % 250 + 1))) nodes |> List.head ] |> List.countBy id |> Map.ofList
        holds (sprintf "%A" firsts) (nodes |> List.forall (fun n -> let c = defaultArg (firsts.TryFind n) 0 in c >= 50 && c <= 200)))

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Rebalancing: bounded loads restored once the cluster is still
// ════════════════════════════════════════════════════════════════════════════════════════════════════

let private settle = 4500L

/// Live nodes, groups held by them with a skew (one node took far more than its share while the others
/// were slow), Leases and the live set still for a while or not yet.
type private Skewed =
    { Nodes: string list
      Groups: Group list
      Leases: Map<GroupId, ObservedGroupLease>
      LiveSince: Instant }

let private genSkewed : Gen<Skewed> =
    gen {
        let! n = Gen.choose (2, NodePool.Length)
        let nodes = List.take n NodePool
        let! count = Gen.choose (2, 40)
        let! groups =
            [ 1..count ]
            |> Gen.collectToList (fun i ->
                Gen.map2 (fun e created -> { group (v4 10 0 1 i) e (Now - 60_000L) with CreatedAt = int64 created })
                    (Gen.frequency [ 6, Gen.constant (AnyNode ServingEndpointExists); 1, genEligibility nodes ]) (Gen.choose (0, 5)))
        let! greedy = Gen.elements nodes
        // Heavy skew (a node took most) or mild (the imbalance a failover leaves).
        let! skew = Gen.elements [ 1; 3 ]
        let! leases =
            groups
            |> Gen.collectToList (fun g ->
                gen {
                    let eligible = nodes |> List.filter (fun x -> Eligibility.allows x g.Eligibility)
                    let! holder =
                        if eligible.IsEmpty then Gen.constant None
                        elif List.contains greedy eligible then Gen.frequency [ skew, Gen.constant (Some greedy); 1, Gen.elements eligible |> Gen.map Some ]
                        else Gen.elements eligible |> Gen.map Some
                    let! age = Gen.frequency [ 3, chooseL (settle + 1L) 60_000L; 1, chooseL 0L settle ]
                    return
                        holder
                        |> Option.map (fun h ->
                            g.Id,
                            { Holder = Some { Node = h; Incarnation = Some(Incarnation 1UL) }; Version = "v1"; Transitions = 1; ChangedSeenAt = Now - age })
                })
        let! liveAge = Gen.frequency [ 4, chooseL (settle + 1L) 60_000L; 1, chooseL 0L settle ]
        return { Nodes = nodes; Groups = groups; Leases = leases |> List.choose id |> Map.ofList; LiveSince = Now - liveAge }
    }

let private assignSkewed (k: Skewed) =
    Ownership.assign Now timing (fun n -> if List.contains n k.Nodes then Live else Unregistered) k.Nodes k.Leases Map.empty k.Groups

let private loadsOf (assignments: Map<GroupId, Assignment>) =
    assignments |> Map.toList |> List.choose (fun (_, a) -> match a with HeldBy h -> Some h | _ -> None) |> List.countBy id |> Map.ofList

/// ⌈1.1 · groups / nodes⌉ over the groups some live node may hold (the bound the spread deals by).
let private boundOf (k: Skewed) =
    let servable = k.Groups |> List.filter (fun g -> k.Nodes |> List.exists (fun n -> Eligibility.allows n g.Eligibility)) |> List.length
    max 1 ((servable * 11 + k.Nodes.Length * 10 - 1) / (k.Nodes.Length * 10))

[<Property(MaxTest = 400)>]
let ``a group moves for balance only in gross imbalance, from a holder above the load bound to another live eligible node below the bound, once still, never beyond the excess or the room`` () =
    Prop.forAll (Arb.fromGen genSkewed) (fun k ->
        let assignments = assignSkewed k
        let moves, due = Ownership.rebalance Now settle k.LiveSince k.Nodes k.Leases k.Groups assignments
        let loads = loadsOf assignments
        let load n = defaultArg (loads.TryFind n) 0
        let bound = boundOf k
        let dealt = Ownership.spread k.Nodes k.Groups
        let given = moves |> Map.toList |> List.countBy (fun (_, (from, _)) -> from)
        let taken = moves |> Map.toList |> List.countBy (fun (_, (_, target)) -> target)
        let still (gid: GroupId) = Now >= k.LiveSince + settle && Now >= k.Leases[gid].ChangedSeenAt + settle
        let overloaded = loads |> Map.exists (fun _ l -> l > bound)
        let mean = float (k.Groups |> List.filter (fun g -> dealt.ContainsKey g.Id) |> List.length) / float k.Nodes.Length
        // Gross: a holder above 1.5 times the mean, or a node below half of it while a holder is above the bound.
        let gross =
            loads |> Map.exists (fun _ l -> float l > 1.5 * mean)
            || (overloaded && k.Nodes |> List.exists (fun n -> float (load n) < mean / 2.0))
        [ holds (sprintf "moves without gross imbalance (loads %A, mean %.1f)" loads mean) (moves.IsEmpty || gross)
          for KeyValue(gid, (from, target)) in moves do
              holds (sprintf "%s moves from %s, which does not hold it: %A" gid from assignments[gid]) (assignments[gid] = HeldBy from)
              holds (sprintf "%s moves from %s with %d ≤ bound %d" gid from (load from) bound) (load from > bound)
              holds (sprintf "%s moves to %s, which may not hold it" gid target)
                  (target <> from && List.contains target k.Nodes && Eligibility.allows target (k.Groups |> List.find (fun g -> g.Id = gid)).Eligibility)
              holds (sprintf "%s moves to %s with %d ≥ bound %d" gid target (load target) bound) (load target < bound)
              holds (sprintf "%s moves before the cluster is still" gid) (still gid)
          for from, n in given do
              holds (sprintf "%s gives %d, above its excess %d" from n (load from - bound)) (n <= load from - bound)
          for target, n in taken do
              holds (sprintf "%s takes %d, above its room %d" target n (bound - load target)) (n <= bound - load target)
          holds (sprintf "due %A is not in the future" due) (due |> Option.forall (fun t -> t > Now)) ]
        |> allOf
        |> Prop.classify overloaded "a node above the bound"
        |> Prop.classify (overloaded && not gross) "mild imbalance"
        |> Prop.classify (not moves.IsEmpty) "groups move"
        |> Prop.classify (overloaded && moves.IsEmpty && due.IsSome) "moves wait for stillness")

[<Property(MaxTest = 300)>]
let ``moving groups for balance until nothing moves leaves no gross imbalance that a move to a node below the bound could mend`` () =
    Prop.forAll (Arb.fromGen genSkewed) (fun k ->
        let still = { k with LiveSince = Now - 60_000L; Leases = k.Leases |> Map.map (fun _ l -> { l with ChangedSeenAt = Now - 60_000L }) }
        let step (k: Skewed) =
            let moves, _ = Ownership.rebalance Now settle k.LiveSince k.Nodes k.Leases k.Groups (assignSkewed k)
            moves,
            { k with
                Leases =
                    moves
                    |> Map.fold (fun (leases: Map<GroupId, ObservedGroupLease>) gid (_, target) ->
                        leases.Add(gid, { leases[gid] with Holder = Some { Node = target; Incarnation = Some(Incarnation 1UL) } })) k.Leases }
        let rec settleAll (k: Skewed) rounds =
            let moves, next = step k
            if moves.IsEmpty || rounds = 0 then k, rounds else settleAll next (rounds - 1)
        let final, roundsLeft = settleAll still 40
        let assignments = assignSkewed final
        let loads = loadsOf assignments
        let load n = defaultArg (loads.TryFind n) 0
        let bound = boundOf final
        let dealt = Ownership.spread final.Nodes final.Groups
        let mean = float dealt.Count / float final.Nodes.Length
        let gross =
            loads |> Map.exists (fun _ l -> float l > 1.5 * mean)
            || (loads |> Map.exists (fun _ l -> l > bound) && final.Nodes |> List.exists (fun n -> float (load n) < mean / 2.0))
        let stuck =
            if not gross then []
            else
                final.Groups
                |> List.choose (fun g ->
                    match assignments.TryFind g.Id with
                    | Some(HeldBy h) when load h > bound ->
                        final.Nodes
                        |> List.tryFind (fun n -> n <> h && load n < bound && Eligibility.allows n g.Eligibility)
                        |> Option.map (fun t -> g.Id, h, t)
                    | _ -> None)
        let initially = loadsOf (assignSkewed still) |> Map.exists (fun _ l -> l > bound)
        (holds (sprintf "still rebalancing after 40 rounds") (roundsLeft > 0)
         .&. holds (sprintf "groups held above the bound though dealt to a node below it: %A (loads %A, bound %d)" stuck loads bound) stuck.IsEmpty)
        |> Prop.classify initially "a node started above the bound"
        |> Prop.classify (initially && roundsLeft < 40) "groups moved")
