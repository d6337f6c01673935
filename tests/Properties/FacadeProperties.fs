/// The C# facade (Hybrid.Facade.Decide) carries the domain's decisions unchanged: the snapshot the shell
/// builds from plain records and arrays plans exactly what the F# snapshot plans.
module Hybrid.Properties.FacadeProperties

open System
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Facade
open Hybrid.Properties.Generators

let private orNull (o: string option) : string | null =
    match o with
    | Some s -> s
    | None -> null

let private nullable (o: 'a option) = match o with Some v -> Nullable v | None -> Nullable()

let private settingsOf (c: Config) : Settings =
    { NodeName = c.NodeName
      Election = c.Election
      LeaseName = c.LeaseName
      LeaseNamespace = c.LeaseNamespace
      ServiceNamespace = orNull c.ServiceNamespace
      VipInterface = orNull (Config.vipInterface c)
      Arp = c.Arp
      ArpRateMs = c.ArpRate
      LeaseDurationMs = c.Timing.LeaseDuration
      RenewDeadlineMs = c.Timing.RenewDeadline
      RetryPeriodMs = c.Timing.RetryPeriod
      AddressLifetimeMs = c.Timing.AddressLifetime
      Upnp = c.Upnp
      DisableServiceUpdates = c.DisableServiceUpdates
      PrometheusServer = c.PrometheusServer
      LogLevel = c.LogLevel
      Config = c }

let private ports (ps: ServicePort list) : PortInput array =
    ps |> List.map (fun p -> ({ Protocol = p.Protocol; Port = p.Port }: PortInput)) |> Array.ofList

/// The snapshot as the C# shell would hand it over.
let private inputOf (s: Snapshot) : SnapshotInput =
    { Settings = settingsOf s.Config
      Now = s.Now
      Services =
        s.Services
        |> List.map (fun x ->
            ({ Namespace = x.Key.Namespace
               Name = x.Key.Name
               Uid = x.Uid
               CreatedAtUnixSeconds = x.CreatedAt
               Type = x.Type
               LoadBalancerClass = orNull x.Class
               Annotations = readOnlyDict (Map.toSeq x.Annotations)
               LoadBalancerIP = orNull x.LoadBalancerIP
               Ports = ports x.Ports
               ExternalTrafficPolicy = (match x.Policy with Local -> "Local" | Cluster -> "Cluster")
               Selector = readOnlyDict (Map.toSeq x.Selector)
               Ingress = x.Ingress |> List.map (fun e -> ({ Ip = e.Ip; IpMode = orNull e.IpMode; Ports = ports e.Ports }: IngressInput)) |> Array.ofList
               ChangedSeenAt = x.ChangedSeenAt }: ServiceInput))
        |> Array.ofList
      Slices =
        s.Slices
        |> List.map (fun sl ->
            ({ Namespace = sl.Service.Namespace
               ServiceName = sl.Service.Name
               Endpoints =
                 sl.Endpoints
                 |> List.map (fun e ->
                     ({ NodeName = orNull e.NodeName
                        Ready = nullable e.Conditions.Ready
                        Serving = nullable e.Conditions.Serving
                        Terminating = nullable e.Conditions.Terminating }: EndpointInput))
                 |> Array.ofList }: SliceInput))
        |> Array.ofList
      Heartbeats = s.Heartbeats |> List.map (fun h -> ({ Name = h.Node; Holder = orNull h.Holder; Version = h.Version; ChangedSeenAt = h.ChangedSeenAt }: LeaseInput)) |> Array.ofList
      Leases = s.Leases |> List.map (fun l -> ({ Name = l.Name; Holder = orNull l.Holder; Version = l.Version; ChangedSeenAt = l.ChangedSeenAt }: LeaseInput)) |> Array.ofList
      Fence = s.Self.Fence
      Claims = s.Self.Claims |> Map.toList |> List.map (fun (g, c) -> ({ Group = g; Epoch = c.Epoch; From = orNull c.From }: ClaimInput)) |> Array.ofList
      LinkUp = s.Self.LinkUp
      ShuttingDown = s.Self.ShuttingDown
      Vips =
        s.Vips
        |> List.map (fun v ->
            ({ Address = Ip.format v.Ip
               Prefix = v.Prefix
               ExpiresAt = nullable v.ExpiresAt
               AddedAt = nullable (v.Announce |> Option.map _.AddedAt)
               Sent = (v.Announce |> Option.map _.Sent |> Option.defaultValue 0)
               LastSentAt = (v.Announce |> Option.map _.LastSentAt |> Option.defaultValue 0L) }: VipInput))
        |> Array.ofList
      EmittedWarnings =
        s.EmittedWarnings
        |> Set.toList
        |> List.map (fun e ->
            ({ Namespace = e.Service.Namespace
               Name = e.Service.Name
               Type = (match e.Type with Warning -> "Warning" | Normal -> "Normal")
               Reason = e.Reason
               Message = e.Message }: EventOutput))
        |> Array.ofList }

let private text (s: string | null) = match s with null -> "<null>" | s -> s
let private opt (o: string option) = defaultArg o "<null>"

let private entries (es: (string * string * (string * int) list) list) =
    es |> List.map (fun (ip, mode, ps) -> sprintf "%s|%s|%A" ip mode ps) |> String.concat ";"

/// One rendering for both sides, so that any lost or mangled field shows.
let private renderDomain (a: Hybrid.Domain.Action) =
    match a with
    | Action.RemoveVip(ip, p) -> sprintf "RemoveVip %s/%d" (Ip.format ip) p
    | Action.AddVip(ip, p, l) -> sprintf "AddVip %s/%d %d" (Ip.format ip) p l
    | Action.RefreshVip(ip, p, l) -> sprintf "RefreshVip %s/%d %d" (Ip.format ip) p l
    | Action.Announce ip -> sprintf "Announce %s" (Ip.format ip)
    | Action.ClaimLease(g, e, p, c) -> sprintf "Claim %s %s %s %s %s" g (opt e) (opt p) (opt (c |> Option.map fst)) (opt (c |> Option.map snd))
    | Action.ReleaseLease(g, v) -> sprintf "Release %s %s" g v
    | Action.DeleteLease(g, v) -> sprintf "Delete %s %s" g v
    | Action.WriteStatus(k, ingress, host) ->
        sprintf "Status %s/%s [%s] %s" k.Namespace k.Name (ingress |> List.map (fun e -> e.Ip, opt e.IpMode, e.Ports |> List.map (fun p -> p.Protocol, p.Port)) |> entries) (opt host)
    | Action.Emit e -> sprintf "Event %s/%s %A %s %s" e.Service.Namespace e.Service.Name e.Type e.Reason e.Message

let private renderFacade (a: PlanAction) =
    match a with
    | RemoveVip(ip, p) -> sprintf "RemoveVip %s/%d" ip p
    | AddVip(ip, p, l) -> sprintf "AddVip %s/%d %d" ip p l
    | RefreshVip(ip, p, l) -> sprintf "RefreshVip %s/%d %d" ip p l
    | Announce ip -> sprintf "Announce %s" ip
    | ClaimLease(g, e, p, n, v) -> sprintf "Claim %s %s %s %s %s" g (text e) (text p) (text n) (text v)
    | ReleaseLease(g, v) -> sprintf "Release %s %s" g v
    | DeleteLease(g, v) -> sprintf "Delete %s %s" g v
    | WriteStatus(ns, name, ingress, host) ->
        sprintf "Status %s/%s [%s] %s" ns name (ingress |> Array.toList |> List.map (fun e -> e.Ip, text e.IpMode, e.Ports |> Array.toList |> List.map (fun p -> p.Protocol, p.Port)) |> entries) (text host)
    | EmitEvent e -> sprintf "Event %s/%s %s %s %s" e.Namespace e.Name e.Type e.Reason e.Message

[<Property>]
let ``the facade plans exactly what the domain plans`` () =
    forAll PlanModel.genAnySnapshot (fun s ->
        let plan = Plan.compute s
        let output = Decide.Plan(inputOf s)
        let expected = plan.Actions |> List.map renderDomain
        let actual = output.Actions |> Array.toList |> List.map renderFacade
        let announced =
            // Announced here: the first address's group is held here AND that address is among the group's
            // announced addresses (the single leader group leaves out addresses without serving endpoints).
            plan.Desired.States
            |> Map.filter (fun _ st ->
                match st with
                | Member(ips, _) ->
                    let g = plan.Desired.Groups |> List.find (fun g -> g.Id = plan.Desired.GroupOf[ips.Head])
                    plan.Roles[g.Id] = Holding && List.contains ips.Head g.Addresses
                | _ -> false)
            |> Map.count
        allOf
            [ holds (sprintf "domain:\n%s\nfacade:\n%s" (String.concat "\n" expected) (String.concat "\n" actual)) (expected = actual)
              holds "next wake-up" (output.NextWakeAt = defaultArg plan.NextWakeAt -1L)
              holds "active warnings" (output.ActiveWarnings.Length = plan.ActiveWarnings.Count)
              holds "groups" (output.Groups |> Array.map _.Group |> List.ofArray = (plan.Desired.Groups |> List.map _.Id))
              holds "announced" (output.Announced = announced) ]
        |> Prop.classify (not plan.Actions.IsEmpty) "some actions")

[<Property>]
let ``the facade explains exactly what the domain explains`` () =
    forAll PlanModel.genAnySnapshot (fun s ->
        let expected = Explain.all s (Plan.compute s) |> List.map (fun e -> e.Service.Namespace, e.Service.Name, e.Summary, e.Details)
        let actual = Decide.Explain(inputOf s) |> Array.toList |> List.map (fun e -> e.Namespace, e.Name, e.Summary, List.ofArray e.Details)
        holds (sprintf "%A\n%A" expected actual) (expected = actual))

[<Property>]
let ``the facade reads the environment exactly as Config.parse does`` () =
    let genEnv =
        someOf 0 6
            [ "vip_nodename", "node-b"; "vip_nodename", "Bad_Node"; "svc_election", "true"; "svc_election", "maybe"
              "lb_class_name", ""; "vip_arpRate", "100"; "vip_leaseduration", "1"; "vip_interface", "eth 0"; "svc_enable", "false"
              "prometheus_server", "nohost"; "vip_subnet", "24"; "enableUPNP", "1" ]
    forAll genEnv (fun pairs ->
        let env = Map.ofList (BaseEnv @ pairs)
        match Config.parse env, Decide.ParseSettings(readOnlyDict (Map.toSeq env)) with
        | Ok c, Valid settings -> holds (sprintf "%A" settings) (settings = settingsOf c)
        | Error errors, Invalid out ->
            holds (sprintf "%A vs %A" errors out)
                (List.ofArray out = (errors |> List.map (fun e -> ({ Variable = e.Variable; Value = e.Value; Problem = e.Problem; Message = string e }: SettingError))))
        | a, b -> holds (sprintf "domain %A, facade %A" a b) false
        |> Prop.classify (Config.parse env |> Result.isOk) "valid")
