/// An address already on the VIP interface that Hybrid did not add (an administrator's, another program's) is
/// never replaced, withdrawn or announced: the kernel refuses the add (NLM_F_EXCL) and says whose it is, the
/// domain warns the Service's users and leaves the address alone; once the interface is read again, the
/// address policy judges it (an interface address is reserved), and once it is gone the VIP is admitted.
module Hybrid.Properties.ForeignAddressProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

[<Property(MaxTest = 30)>]
let ``an address somebody else put on the interface is never replaced withdrawn or held, its Services get a Warning, and it is announced once it is gone`` () =
    let genCase =
        gen {
            let! election = Gen.elements [ true; false ]
            let! count = Gen.choose (1, 3)
            let! foreignIndex = Gen.choose (0, count - 1)
            let! sharers = Gen.choose (1, 2)
            return election, count, foreignIndex, sharers
        }
    forAll genCase (fun (election, count, foreignIndex, sharers) ->
        let config = configWith [ "svc_election", (if election then "true" else "false") ]
        let vips = [ for i in 1..count -> v4 198 18 0 (200 + i) ]
        let foreign = vips[foreignIndex]
        // The foreign address's Services: `sharers` of them on different ports.
        let services =
            [ for i, vip in List.indexed vips do
                  let n = if vip = foreign then sharers else 1
                  for j in 1..n ->
                      { service "default" (sprintf "web-%d-%d" i j) with
                          LoadBalancerIP = Some(Ip.format vip)
                          Ports = [ { Protocol = "TCP"; Port = 80 + j } ] } ]
        let owners = services |> List.filter (fun s -> s.LoadBalancerIP = Some(Ip.format foreign)) |> List.map _.Key |> Set.ofList
        let others = Set.ofList vips |> Set.remove foreign
        let settled =
            SingleNode.startWithForeign config (Set [ foreign ]) services (services |> List.map (readyOn [ config.NodeName ]))
            |> SingleNode.runUntil 3000L
        let refusals (w: SingleNode.World) =
            w.Events |> List.filter (fun e -> e.Reason = EventReason.AddressInUseOnInterface)
        // The interface is read again: the foreign address is one of its own addresses now.
        let read =
            settled
            |> SingleNode.deliver [ InterfaceRead({ Addresses = [ { Address = foreign; PrefixLength = 32 } ]; Gateways = [] }, settled.Now) ]
            |> SingleNode.runUntil (settled.Now + 1000L)
        // The administrator removes it; the next reading no longer has it.
        let removed = { read with Foreign = Set.empty }
        let gone =
            removed
            |> SingleNode.deliver [ InterfaceRead(InterfaceFacts.none, removed.Now) ]
            |> SingleNode.runUntil (removed.Now + 3000L)
        allOf
            [ holds "the foreign address is still there, untouched" (settled.Foreign = Set [ foreign ] && read.Foreign = Set [ foreign ])
              holds (sprintf "held or added: held %A, ours %A" settled.Held settled.Addresses)
                  (not (settled.Held.Contains foreign) && not (settled.Addresses.Contains foreign) && not (read.Held.Contains foreign))
              holds (sprintf "the other VIPs are answered as usual: %A" (SingleNode.answering settled)) (SingleNode.answering settled = others)
              holds (sprintf "one Warning per Service of the address: %A" (refusals settled))
                  (refusals settled |> List.map _.Service |> List.sort = Set.toList owners
                   && refusals settled |> List.forall (fun e -> e.Type = Warning && e.Message.Contains(Ip.format foreign)))
              holds (sprintf "no Announced Event for it: %A" settled.Events)
                  (not (settled.Events |> List.exists (fun e -> e.Reason = EventReason.Announced && e.Message.Contains(Ip.format foreign + " "))))
              holds "read as an interface address, it is reserved"
                  (read.Events |> List.exists (fun e -> e.Reason = EventReason.AddressReserved && owners.Contains e.Service))
              holds (sprintf "announced once gone: %A" (SingleNode.answering gone)) (SingleNode.answering gone = Set.ofList vips) ]
        |> Prop.classify election "svc_election"
        |> Prop.classify (sharers > 1) "Services sharing the address"
        |> Prop.classify (count > 1) "other VIPs beside it")
