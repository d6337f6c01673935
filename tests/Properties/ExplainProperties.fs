/// Rule 8: explanations agree with the plan.
module Hybrid.Properties.ExplainProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private explain (s: Snapshot) =
    let plan = Plan.compute s
    plan, Explain.all s plan

let private genAny = Gen.oneof [ PlanModel.genAnySnapshot; genHealthySnapshot |> Gen.map (PlanModel.converge 6) ]

[<Property>]
let ``one explanation per service, from this node`` () =
    forAll genAny (fun s ->
        let _, explanations = explain s
        allOf
            [ holds "one per service" (explanations |> List.map _.Service |> List.sort = (s.Services |> List.map _.Key |> List.sort))
              holds "from this node" (explanations |> List.forall (fun e -> e.Node = s.Self.Node && e.Summary <> "")) ]
        |> Prop.classify s.Services.IsEmpty "no services")

[<Property>]
let ``a skipped service's summary names its reason`` () =
    forAll genAny (fun s ->
        let plan, explanations = explain s
        let skipped = explanations |> List.choose (fun e -> match plan.Desired.States[e.Service] with Skipped r -> Some(e, r) | _ -> None)
        allOf
            [ for (e, reason) in skipped do
                  let prefix = match SkipReason.audience reason with Ours _ -> "skipped: " | NotOurs -> "not handled: "
                  holds (sprintf "%O: %A for %A" e.Service e.Summary reason) (e.Summary = prefix + SkipReason.describe reason) ]
        |> Prop.classify (skipped |> List.exists (fun (_, r) -> SkipReason.audience r <> NotOurs)) "skipped, ours"
        |> Prop.classify (skipped |> List.exists (fun (_, r) -> SkipReason.audience r = NotOurs)) "not ours")

[<Property>]
let ``a service announced here says so, and every other member states why not`` () =
    forAll genAny (fun s ->
        let plan, explanations = explain s
        let roleOf (e: Explanation) =
            match plan.Desired.States[e.Service] with
            | Member(ips, _) -> Some plan.Roles[plan.Desired.GroupOf[ips.Head]]
            | _ -> None
        // Announced here: its first address belongs to a group this node holds, and is among the addresses
        // that group announces (with svc_election=false, an address without serving endpoints is not).
        let announcedHere (e: Explanation) =
            match plan.Desired.States[e.Service] with
            | Member(ips, _) ->
                let g = plan.Desired.Groups |> List.find (fun g -> g.Id = plan.Desired.GroupOf[ips.Head])
                plan.Roles[g.Id] = Holding && List.contains ips.Head g.Addresses
            | _ -> false
        let announcedIps = plan.Desired.Groups |> List.collect _.Addresses |> Set.ofList
        allOf
            [ for e in explanations do
                  match roleOf e with
                  | Some role ->
                      holds (sprintf "%O: says announced? %A" e.Service e.Summary) (e.Summary.Contains "announces" = announcedHere e)
                      match plan.Desired.States[e.Service] with
                      | Member(ip :: _, _) when announcedIps.Contains ip ->
                          holds (sprintf "%O: %A for %A" e.Service e.Summary role) (e.Summary = Explain.role role)
                      | _ -> holds (sprintf "%O: %A for an address nobody announces" e.Service e.Summary) (e.Summary.StartsWith "not announced")
                      match plan.Desired.States[e.Service] with
                      | Member(ips, _) ->
                          for a in ips do
                              holds (sprintf "%O: %s and its group in %A" e.Service (Ip.format a) e.Details)
                                  (e.Details |> List.exists (fun d -> d.StartsWith(Ip.format a + ": group " + plan.Desired.GroupOf[a])))
                      | _ -> ()
                  | None -> holds (sprintf "%O not a member but says %A" e.Service e.Summary) (not (e.Summary.Contains "announces")) ]
        |> Prop.classify (explanations |> List.exists announcedHere) "announced here"
        |> Prop.classify (explanations |> List.exists (fun e -> match plan.Desired.States[e.Service] with Member(ip :: _, _) -> not (announcedIps.Contains ip) | _ -> false)) "member whose address nobody announces"
        |> Prop.classify (explanations |> List.exists (fun e -> (roleOf e).IsSome && not (announcedHere e))) "member, not announced here")

[<Property>]
let ``a service awaiting an address says so`` () =
    forAll genAny (fun s ->
        let plan, explanations = explain s
        let awaiting = explanations |> List.choose (fun e -> match plan.Desired.States[e.Service] with AwaitingAddress p -> Some(e, p) | _ -> None)
        allOf
            [ for (e, pending) in awaiting do
                  holds (sprintf "%O: %A" e.Service e.Summary)
                      (if pending.IsEmpty then e.Summary = "awaiting an address" else e.Summary.StartsWith "awaiting a DHCP lease") ]
        |> Prop.classify (awaiting |> List.exists (fun (_, p) -> p.IsEmpty)) "no address yet"
        |> Prop.classify (awaiting |> List.exists (fun (_, p) -> not p.IsEmpty)) "DHCP pending")
