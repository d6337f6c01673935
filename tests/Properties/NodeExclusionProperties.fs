/// The exclusion label (docs/POOLS.md): a node whose Node object carries
/// node.kubernetes.io/exclude-from-external-load-balancers holds no VIP, as MetalLB and Kubernetes' service
/// controller read it, unless the agent is told to ignore the label (ignore_exclude_lb_label=true). One agent
/// running the real Protocol.step against SingleNode's world.
module Hybrid.Properties.NodeExclusionProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private nodeObject (labels: (string * string) list) : NodeObject =
    { Name = DefaultConfig.NodeName; Addresses = []; Labels = Map.ofList labels }

[<Property(MaxTest = 30)>]
let ``a node labelled exclude-from-external-load-balancers withdraws its VIPs and hands its groups over, and may hold again once the label goes, unless the label is ignored`` () =
    let genCase =
        gen {
            let! election = Gen.elements [ true; false ]
            let! ignore = Gen.elements [ true; false ]
            let! value = Gen.elements [ ""; "true"; "false" ]
            let! count = Gen.choose (1, 3)
            let! others = someOf 0 1 [ "kubernetes.io/hostname", DefaultConfig.NodeName ]
            return election, ignore, value, count, others
        }
    forAll genCase (fun (election, ignore, value, count, others) ->
        let config =
            configWith [ "svc_election", (if election then "true" else "false"); "ignore_exclude_lb_label", (if ignore then "true" else "false") ]
        let vips = [ for i in 1..count -> v4 198 18 0 (200 + i) ]
        let services = vips |> List.mapi (fun i vip -> { service "default" (sprintf "web-%d" i) with LoadBalancerIP = Some(Ip.format vip) })
        let all = Set.ofList vips
        let settled = SingleNode.start config services (services |> List.map (readyOn [ config.NodeName ])) |> SingleNode.runUntil 3000L
        let labelled =
            settled |> SingleNode.deliver [ NodeUpserted(nodeObject ((NodeExclusion.Label, value) :: others), settled.Now) ] |> SingleNode.runUntil (settled.Now + 1500L)
        let unlabelled =
            labelled |> SingleNode.deliver [ NodeUpserted(nodeObject others, labelled.Now) ] |> SingleNode.runUntil (labelled.Now + 3000L)
        // The step that sees the label says so in the log (a Note), once, when the label is honoured.
        let _, onLabel = Protocol.step settled.Node (NodeUpserted(nodeObject ((NodeExclusion.Label, value) :: others), settled.Now))
        let noted = onLabel |> List.filter (function Note(VipEligibilityChanged _) -> true | _ -> false)
        let groupLeaseHolders (w: SingleNode.World) =
            w.Leases |> Map.filter (fun name _ -> name.StartsWith LeaseNames.VipPrefix || name = config.LeaseName) |> Map.toList |> List.map (fun (_, l) -> l.Holder)
        let withdrawnForLabel =
            labelled.Events
            |> List.exists (fun e -> e.Reason = EventReason.Withdrawn && e.Message.Contains NodeExclusion.Label)
        allOf
            [ holds "answered before the label" (SingleNode.answering settled = all)
              holds (sprintf "log notes %A" noted) (noted = (if ignore then [] else [ Note(VipEligibilityChanged ExcludedByLabel) ]))
              (if ignore then
                   allOf
                       [ holds (sprintf "label ignored, yet withdrawn: %A" (SingleNode.answering labelled)) (SingleNode.answering labelled = all)
                         holds "no withdrawal" (not withdrawnForLabel) ]
               else
                   allOf
                       [ holds (sprintf "still answered while labelled: %A" (SingleNode.answering labelled)) (SingleNode.answering labelled).IsEmpty
                         holds "the addresses are off the interface" labelled.Addresses.IsEmpty
                         holds (sprintf "group Leases still name it: %A" (groupLeaseHolders labelled)) (groupLeaseHolders labelled |> List.forall Option.isNone)
                         holds (sprintf "no Withdrawn Event names the label: %A" labelled.Events) withdrawnForLabel ])
              holds (sprintf "not answered again once the label went: %A" (SingleNode.answering unlabelled)) (SingleNode.answering unlabelled = all) ]
        |> Prop.classify election "svc_election"
        |> Prop.classify ignore "label ignored"
        |> Prop.classify (value = "false") "labelled \"false\"")
