/// Rule 4: several Services on one IP. The earlier Service wins; later ones that collide are skipped with a
/// reason naming the earlier Service and the port.
module Hybrid.Properties.SharingProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private shared (a: Ip list) (b: Ip list) = a |> List.filter (fun x -> List.contains x b)

let private admitted (verdicts: Map<ServiceKey, ShareVerdict>) (candidates: (Service * Ip list) list) =
    candidates |> List.filter (fun (s, _) -> verdicts[s.Key] = Admitted)

let private anyRejected (verdicts: Map<ServiceKey, ShareVerdict>) = verdicts |> Map.exists (fun _ v -> v <> Admitted)

let private anyShared (candidates: (Service * Ip list) list) =
    candidates |> List.exists (fun (s, ips) -> candidates |> List.exists (fun (t, jps) -> s.Key <> t.Key && not (shared ips jps).IsEmpty))

[<Property>]
let ``no admitted pair ever conflicts`` () =
    forAll (genCandidates 0 10) (fun candidates ->
        let verdicts = Sharing.resolve candidates
        let ok = admitted verdicts candidates
        allOf
            [ holds "a verdict for every candidate" (verdicts.Count = candidates.Length)
              for (a, ips) in ok do
                  for (b, jps) in ok do
                      if a.Key <> b.Key then
                          for address in shared ips jps do
                              let clash = a.Ports |> List.filter (fun p -> List.contains p b.Ports)
                              holds (sprintf "%O and %O on %s: ports %A" a.Key b.Key (Ip.format address) clash) clash.IsEmpty
                              holds (sprintf "%O and %O on %s: policies" a.Key b.Key (Ip.format address)) (a.Policy = b.Policy)
                              holds (sprintf "%O and %O on %s: selectors" a.Key b.Key (Ip.format address)) (a.Policy = Cluster || a.Selector = b.Selector) ]
        |> Prop.classify (anyShared candidates) "some IP shared"
        |> Prop.classify (anyRejected verdicts) "some service rejected"
        |> Prop.classify (not (anyRejected verdicts)) "all admitted")

[<Property>]
let ``a later service never changes the fate of an earlier one`` () =
    let genCase =
        gen {
            let! keys = genKeys 1 10
            let! all = keys |> Gen.collectToList genCandidate
            let earlier, later = List.splitAt (keys.Length - 1) all
            let latest = earlier |> List.map (fun (s, _) -> s.CreatedAt) |> List.fold max 0L
            let! delay = Gen.choose (1, 3)
            let newcomer = later.Head |> fun (s, ips) -> { s with CreatedAt = latest + int64 delay }, ips
            return earlier, newcomer
        }
    forAll genCase (fun (earlier, newcomer) ->
        let before = Sharing.resolve earlier
        let after = Sharing.resolve (newcomer :: earlier)
        let changed = earlier |> List.filter (fun (s, _) -> before[s.Key] <> after[s.Key])
        holds (sprintf "fates changed: %A" (changed |> List.map (fun (s, _) -> s.Key, before[s.Key], after[s.Key]))) changed.IsEmpty
        |> Prop.classify (after[(fst newcomer).Key] = Admitted) "newcomer admitted"
        |> Prop.classify (after[(fst newcomer).Key] <> Admitted) "newcomer rejected")

[<Property>]
let ``admitting is monotonic: every prefix in creation order decides as the whole`` () =
    forAll (genCandidates 0 10) (fun candidates ->
        let whole = Sharing.resolve candidates
        let ordered = candidates |> List.sortBy (fst >> Sharing.order)
        allOf
            [ for k in 0 .. ordered.Length do
                  let prefix = List.take k ordered
                  let part = Sharing.resolve prefix
                  holds (sprintf "prefix of %d decides differently" k) (prefix |> List.forall (fun (s, _) -> part[s.Key] = whole[s.Key])) ]
        |> Prop.classify (anyRejected whole) "some service rejected")

[<Property>]
let ``the result does not depend on input order`` () =
    forAll (genCandidates 0 10 |> Gen.bind (fun cs -> Gen.shuffle cs |> Gen.map (fun p -> cs, List.ofArray p))) (fun (candidates, permuted) ->
        Sharing.resolve candidates = Sharing.resolve permuted
        |> holds "verdicts differ between orders"
        |> Prop.classify (anyRejected (Sharing.resolve candidates)) "some service rejected")

[<Property>]
let ``TCP and UDP on the same port may share an IP`` () =
    let genCase =
        gen {
            let! port = Gen.choose (1, 65535)
            let! address = Gen.elements (ShareV6 :: ShareV4)
            let! policy = genPolicy
            let! createdA = Gen.choose (0, 2)
            let! createdB = Gen.choose (0, 2)
            let! keys = distinct 2 AllKeys
            return port, address, policy, createdA, createdB, keys
        }
    forAll genCase (fun (port, address, policy, createdA, createdB, keys) ->
        let mk (k: ServiceKey) created ports = { service k.Namespace k.Name with CreatedAt = int64 created; Ports = ports; Policy = policy }, [ address ]
        let a = mk keys[0] createdA [ tcp port ]
        let b = mk keys[1] createdB [ udp port ]
        let verdicts = Sharing.resolve [ a; b ]
        holds (sprintf "%A" verdicts) (verdicts |> Map.forall (fun _ v -> v = Admitted))
        |> Prop.classify (policy = Local) "Local")

[<Property>]
let ``the earlier service wins, by creationTimestamp then namespace/name`` () =
    let genCase =
        gen {
            let! keys = distinct 2 AllKeys
            let! createdA = Gen.choose (0, 2)
            let! createdB = Gen.choose (0, 2)
            let! port = Gen.elements PortPool
            let! address = Gen.elements ShareV4
            return keys, createdA, createdB, port, address
        }
    forAll genCase (fun (keys, createdA, createdB, port, address) ->
        let mk (k: ServiceKey) created = { service k.Namespace k.Name with CreatedAt = int64 created; Ports = [ port ] }, [ address ]
        let a, b = mk keys[0] createdA, mk keys[1] createdB
        let first, second = if (fst a |> Sharing.order) < (fst b |> Sharing.order) then a, b else b, a
        let verdicts = Sharing.resolve [ a; b ]
        let reason = verdicts[(fst second).Key]
        let text = match reason with Rejected r -> SkipReason.describe r | Admitted -> ""
        allOf
            [ holds "earlier admitted" (verdicts[(fst first).Key] = Admitted)
              holds (sprintf "later %A" reason) (reason = Rejected(PortConflict((fst first).Key, port, address)))
              holds (sprintf "reason %A names the other service and the port" text) (text.Contains(string (fst first).Key) && text.Contains(string port.Port)) ]
        |> Prop.classify (createdA = createdB) "same creationTimestamp: name decides"
        |> Prop.classify (createdA <> createdB) "creationTimestamp decides")

[<Property>]
let ``mixed traffic policies or Local services with different selectors conflict`` () =
    let genCase =
        gen {
            let! keys = distinct 2 AllKeys
            let! policies = Gen.two (Gen.elements [ Cluster; Local ])
            let! selectors = Gen.two (Gen.elements [ WebSelector; DbSelector ])
            let! address = Gen.elements ShareV4
            return keys, policies, selectors, address
        }
    forAll genCase (fun (keys, (pa, pb), (sa, sb), address) ->
        // Disjoint ports: only policy and selector can make them conflict. keys[0] is created first.
        let a = { service keys[0].Namespace keys[0].Name with CreatedAt = 0L; Ports = [ tcp 80 ]; Policy = pa; Selector = sa }
        let b = { service keys[1].Namespace keys[1].Name with CreatedAt = 1L; Ports = [ tcp 81 ]; Policy = pb; Selector = sb }
        let expected =
            if pa <> pb then Rejected(PolicyConflict(a.Key, address))
            elif pa = Local && sa <> sb then Rejected(SelectorConflict(a.Key, address))
            else Admitted
        let verdicts = Sharing.resolve [ a, [ address ]; b, [ address ] ]
        allOf [ holds "earlier admitted" (verdicts[a.Key] = Admitted); holds (sprintf "later %A, expected %A" verdicts[b.Key] expected) (verdicts[b.Key] = expected) ]
        |> Prop.classify (pa <> pb) "mixed policies"
        |> Prop.classify (pa = pb && pa = Local && sa <> sb) "Local, other selector"
        |> Prop.classify (expected = Admitted) "compatible")

[<Property>]
let ``a rejected service names an earlier admitted service it really collides with`` () =
    forAll (genCandidates 2 10) (fun candidates ->
        let verdicts = Sharing.resolve candidates
        let byKey = candidates |> List.map (fun (s, ips) -> s.Key, (s, ips)) |> Map.ofList
        allOf
            [ for (s, ips) in candidates do
                  match verdicts[s.Key] with
                  | Admitted -> ()
                  | Rejected reason ->
                      let earlierKey, address =
                          match reason with
                          | PortConflict(e, _, a) | PolicyConflict(e, a) | SelectorConflict(e, a) -> e, a
                          | other -> failwithf "unexpected %A" other
                      let e, eips = byKey[earlierKey]
                      holds (sprintf "%O rejected by %A" s.Key reason)
                          (verdicts[earlierKey] = Admitted
                           && Sharing.order e < Sharing.order s
                           && List.contains address ips && List.contains address eips
                           && Sharing.conflict address e s = Some reason
                           && (SkipReason.describe reason).Contains(string earlierKey))
                      match reason with
                      | PortConflict(_, port, _) ->
                          holds "the port is exposed by both" (List.contains port s.Ports && List.contains port e.Ports && (SkipReason.describe reason).Contains(string port.Port))
                      | _ -> () ]
        |> Prop.classify (anyRejected verdicts) "some service rejected")
