/// The helpers and fixtures the UPnP properties build their cases from (small pools of keys and ports, so
/// that conflicts between Services are common).
module Hybrid.Properties.UpnpGenerators

open FsCheck
open FsCheck.FSharp
open Hybrid.Domain
open Hybrid.Properties.Generators

// The checking helpers (holds, allOf, forAll, distinct, someOf, bool), Now and KeyText come from Generators.fs.

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
