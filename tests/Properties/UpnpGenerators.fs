/// The helpers and fixtures the UPnP properties build their cases from (small pools of keys and ports, so
/// that conflicts between Services are common).
module Hybrid.Properties.UpnpGenerators

open FsCheck
open FsCheck.FSharp
open Hybrid.Domain

/// A labelled boolean: the label is what the failure report shows.
let holds (label: string) (condition: bool) : Property = Prop.label label condition

/// Conjunction of labelled checks (true when the list is empty).
let allOf (checks: Property list) : Property = checks |> List.fold (.&.) (Prop.ofTestable true)

let forAll (generator: Gen<'a>) (body: 'a -> 'p) : Property = Prop.forAll (Arb.fromGen generator) body

/// Picks n distinct elements (in random order) without filtering.
let distinct (n: int) (pool: 'a list) : Gen<'a list> =
    Gen.shuffle pool |> Gen.map (fun a -> a |> Seq.truncate n |> List.ofSeq)

/// Picks between lo and hi distinct elements.
let someOf (lo: int) (hi: int) (pool: 'a list) : Gen<'a list> =
    gen {
        let! n = Gen.choose (lo, min hi pool.Length)
        return! distinct n pool
    }

let bool (trueWeight: int) (falseWeight: int) = Gen.frequency [ trueWeight, Gen.constant true; falseWeight, Gen.constant false ]

/// The instant the cases start at.
let Now: Instant = 1_000_000L

/// kube-vip's variables for node-a with services on, overridden by `pairs`.
let configWith (pairs: (string * string) list) : Config =
    let key = System.Convert.ToBase64String(Array.init 32 byte)
    match Config.parse (Map.ofList ([ "vip_nodename", "node-a"; "svc_enable", "true"; "lan_key", key ] @ pairs)) None with
    | Ok c -> c
    | Error errors -> failwithf "test configuration rejected: %A" errors

let v4 (a: int) (b: int) (c: int) (d: int) = V4((uint32 a <<< 24) ||| (uint32 b <<< 16) ||| (uint32 c <<< 8) ||| uint32 d)

let ip (text: string) =
    match Ip.tryParse text with
    | Some ip -> ip
    | None -> failwithf "bad test address %s" text

let key (ns: string) (name: string) : ServiceKey = { Namespace = ns; Name = name }
let tcp port : ServicePort = { Protocol = "TCP"; Port = port }
let udp port : ServicePort = { Protocol = "UDP"; Port = port }

/// A plain LoadBalancer Service on port 80/TCP.
let service (ns: string) (name: string) : Service =
    { Key = key ns name
      Uid = ns + "-" + name
      CreatedAt = 0L
      Type = "LoadBalancer"
      Class = None
      Annotations = Map.empty
      LoadBalancerIP = None
      Ports = [ tcp 80 ]
      Policy = Cluster
      Selector = Map [ "app", "web" ]
      Ingress = []
      ChangedSeenAt = 0L }

let annotate (k: string) (v: string) (s: Service) = { s with Annotations = s.Annotations.Add(k, v) }

/// Two namespaces, names that sort in a known order.
let AllKeys = [ for ns in [ "default"; "prod" ] do for n in [ "a"; "b"; "c"; "d"; "e"; "f" ] -> key ns n ]
