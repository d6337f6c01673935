// Hybrid's decision core, as the C# shell sees it. Every rule the agent obeys is a total function of plain
// data in src/Domain/*.fs: no I/O, no clock, no randomness, no logging, no exceptions. The shell observes
// the world, calls `Decide`, and executes what comes back. This file is the only surface C# uses: plain
// records, arrays and nullable strings in and out, no curried functions, no F# options.
namespace Hybrid.Facade

open System
open Hybrid.Domain

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Facade for the C# shell: plain records and arrays in, plain records and arrays out
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// A configuration error as the shell prints it.
type SettingError = { Variable: string; Value: string; Problem: string; Message: string }

/// The agent's settings (a C#-friendly view of Config; pass it back to Decide).
type Settings =
    { NodeName: string
      Election: bool
      LeaseName: string
      LeaseNamespace: string
      /// null: every namespace.
      ServiceNamespace: string | null
      /// null: the interface of the default route.
      VipInterface: string | null
      Arp: bool
      ArpRateMs: int64
      LeaseDurationMs: int64
      RenewDeadlineMs: int64
      RetryPeriodMs: int64
      AddressLifetimeMs: int64
      Upnp: bool
      DisableServiceUpdates: bool
      PrometheusServer: string
      /// vip_loglevel: 0 panic … 4 info … 5 debug, 6 trace.
      LogLevel: int
      Config: Config }

/// Result of parsing the environment.
type SettingsOutcome =
    | Valid of Settings: Settings
    | Invalid of Errors: SettingError array

[<CLIMutable>]
type PortInput = { Protocol: string; Port: int }

[<CLIMutable>]
type IngressInput =
    { Ip: string
      IpMode: string | null
      Ports: PortInput array }

[<CLIMutable>]
type ServiceInput =
    { Namespace: string
      Name: string
      Uid: string
      CreatedAtUnixSeconds: int64
      Type: string
      LoadBalancerClass: string | null
      Annotations: Collections.Generic.IReadOnlyDictionary<string, string>
      LoadBalancerIP: string | null
      Ports: PortInput array
      ExternalTrafficPolicy: string | null
      Selector: Collections.Generic.IReadOnlyDictionary<string, string>
      Ingress: IngressInput array
      ChangedSeenAt: int64 }

[<CLIMutable>]
type EndpointInput =
    { NodeName: string | null
      Ready: Nullable<bool>
      Serving: Nullable<bool>
      Terminating: Nullable<bool> }

[<CLIMutable>]
type SliceInput =
    { Namespace: string
      ServiceName: string
      Endpoints: EndpointInput array }

/// A Lease as observed: group Leases by name, heartbeats by the node they belong to.
[<CLIMutable>]
type LeaseInput =
    { Name: string
      Holder: string | null
      Version: string
      ChangedSeenAt: int64 }

[<CLIMutable>]
type ClaimInput = { Group: string; Epoch: int64; From: string | null }

[<CLIMutable>]
type VipInput =
    { Address: string
      Prefix: int
      ExpiresAt: Nullable<int64>
      /// null when found on the interface at startup (not announced by this process yet).
      AddedAt: Nullable<int64>
      Sent: int
      LastSentAt: int64 }

[<CLIMutable>]
type EventOutput =
    { Namespace: string
      Name: string
      Type: string
      Reason: string
      Message: string }

/// Everything observed for one plan.
[<CLIMutable>]
type SnapshotInput =
    { Settings: Settings
      Now: int64
      Services: ServiceInput array
      Slices: SliceInput array
      /// Heartbeat Leases, Name = the node.
      Heartbeats: LeaseInput array
      Leases: LeaseInput array
      Fence: Fence
      Claims: ClaimInput array
      LinkUp: bool
      ShuttingDown: bool
      Vips: VipInput array
      EmittedWarnings: EventOutput array }

/// One action for the shell (see Action for the meaning of each).
type PlanAction =
    | RemoveVip of Address: string * Prefix: int
    | AddVip of Address: string * Prefix: int * LifetimeMs: int64
    | RefreshVip of Address: string * Prefix: int * LifetimeMs: int64
    | Announce of Address: string
    | ClaimLease of
        Group: string *
        ExpectedVersion: (string | null) *
        Previous: (string | null) *
        ConfirmNode: (string | null) *
        ConfirmVersion: (string | null)
    | ReleaseLease of Group: string * Version: string
    | DeleteLease of Group: string * Version: string
    | WriteStatus of Namespace: string * Name: string * Ingress: IngressInput array * VipHost: (string | null)
    | EmitEvent of Event: EventOutput

type GroupOutput =
    { Group: string
      Addresses: string array
      Role: string
      Holder: string | null }

type PlanOutput =
    { Actions: PlanAction array
      /// -1 when nothing is scheduled.
      NextWakeAt: int64
      ActiveWarnings: EventOutput array
      /// Plan again as soon as a heartbeat renewal succeeds (see Plan.WaitsForRenewal).
      WaitsForRenewal: bool
      Groups: GroupOutput array
      /// Services this node announces right now.
      Announced: int }

type ExplanationOutput =
    { Namespace: string
      Name: string
      Node: string
      Summary: string
      Details: string array }

/// Conversions of input objects the shell passes again and again (the same Service object until it changes):
/// converting 1,000 Services' annotation dictionaries on every plan was a large share of its cost. Keyed by
/// reference, so the shell must not modify an input object after passing it to Decide.
type internal ConversionCache() =
    member val Services = Runtime.CompilerServices.ConditionalWeakTable<ServiceInput, Service>()
    member val Slices = Runtime.CompilerServices.ConditionalWeakTable<SliceInput, EndpointSlice>()

/// The whole domain as the C# shell sees it.
[<AbstractClass; Sealed>]
type Decide =
    static member val private Converted = ConversionCache()

    static member private Settings(c: Config) : Settings =
        { NodeName = c.NodeName
          Election = c.Election
          LeaseName = c.LeaseName
          LeaseNamespace = c.LeaseNamespace
          ServiceNamespace = (match c.ServiceNamespace with Some n -> n | None -> null)
          VipInterface = (match Config.vipInterface c with Some n -> n | None -> null)
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

    /// Parses kube-vip's environment variables (pass the whole environment); all errors at once.
    static member ParseSettings(environment: Collections.Generic.IReadOnlyDictionary<string, string>) : SettingsOutcome =
        let env = environment |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq
        match Config.parse env with
        | Ok c -> Valid(Decide.Settings c)
        | Error errors ->
            errors
            |> List.map (fun e -> { Variable = e.Variable; Value = e.Value; Problem = e.Problem; Message = string e })
            |> Array.ofList
            |> Invalid

    /// Every environment variable the agent reads.
    static member KnownVariables: string array = Array.ofList Config.Variables

    /// The effective settings as rows of (variable, value, meaning).
    static member DescribeSettings(settings: Settings) : string array array =
        Config.describe settings.Config |> List.map (fun (a, b, c) -> [| a; b; c |]) |> Array.ofList

    static member InitialFence = Fence.initial

    /// Folds a successful heartbeat renewal into the fence (see Fence.renewed).
    static member RenewedFence(settings: Settings, fence: Fence, startedAt: int64, completedAt: int64) =
        Fence.renewed settings.Config.Timing fence startedAt completedAt

    static member FenceValid(settings: Settings, fence: Fence, now: int64) = Fence.valid settings.Config.Timing fence now

    /// The fence of a node about to release its heartbeat (see Fence.released).
    static member ReleasedFence(fence: Fence) = Fence.released fence

    static member HeartbeatAction(linkUp: bool, shuttingDown: bool) = Heartbeat.decide linkUp shuttingDown

    /// Whether a heartbeat observation needs a plan (see Heartbeat.changeMatters); `previous` may be null.
    static member HeartbeatChangeMatters(settings: Settings, previous: LeaseInput | null, next: LeaseInput, now: int64) =
        let heartbeat (l: LeaseInput) = { Node = l.Name; Holder = Decide.OrNone l.Holder; Version = l.Version; ChangedSeenAt = l.ChangedSeenAt }
        let previous =
            match previous with
            | null -> None
            | p -> Some(heartbeat p)
        Heartbeat.changeMatters settings.Config.Timing previous (heartbeat next) now

    /// The annotation naming the node that announces a Service.
    static member VipHostAnnotation = Annotations.VipHost

    static member HeartbeatLeaseName(node: string) = LeaseNames.heartbeat node
    static member HeartbeatLeasePrefix = LeaseNames.HeartbeatPrefix

    /// Whether a Lease name is one of this agent's group Leases.
    static member IsGroupLease(settings: Settings, name: string) =
        name.StartsWith LeaseNames.VipPrefix || name = settings.LeaseName

    static member private OrNone(s: string | null) =
        match s with
        | null -> None
        | s when s = "" -> None
        | s -> Some s

    static member private Event(e: ServiceEvent) : EventOutput =
        { Namespace = e.Service.Namespace
          Name = e.Service.Name
          Type = (match e.Type with Normal -> "Normal" | Warning -> "Warning")
          Reason = e.Reason
          Message = e.Message }

    static member private Snapshot(input: SnapshotInput) : Snapshot =
        let dict (d: Collections.Generic.IReadOnlyDictionary<string, string>) =
            if isNull (box d) then Map.empty else d |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq
        let port (p: PortInput) : ServicePort =
            { Protocol = (if String.IsNullOrEmpty p.Protocol then "TCP" else p.Protocol.ToUpperInvariant()); Port = p.Port }
        let opt (n: Nullable<bool>) = if n.HasValue then Some n.Value else None
        let service (s: ServiceInput) : Service =
            { Key = { Namespace = s.Namespace; Name = s.Name }
              Uid = s.Uid
              CreatedAt = s.CreatedAtUnixSeconds
              Type = s.Type
              Class = Decide.OrNone s.LoadBalancerClass
              Annotations = dict s.Annotations
              LoadBalancerIP = Decide.OrNone s.LoadBalancerIP
              Ports = s.Ports |> Seq.map port |> List.ofSeq
              Policy = (if s.ExternalTrafficPolicy = "Local" then Local else Cluster)
              Selector = dict s.Selector
              Ingress =
                s.Ingress
                |> Seq.map (fun i -> ({ Ip = i.Ip; IpMode = Decide.OrNone i.IpMode; Ports = i.Ports |> Seq.map port |> List.ofSeq }: IngressEntry))
                |> List.ofSeq
              ChangedSeenAt = s.ChangedSeenAt }
        let slice (s: SliceInput) : EndpointSlice =
            { Service = { Namespace = s.Namespace; Name = s.ServiceName }
              Endpoints =
                s.Endpoints
                |> Seq.map (fun e ->
                    { NodeName = Decide.OrNone e.NodeName
                      Conditions = { Ready = opt e.Ready; Serving = opt e.Serving; Terminating = opt e.Terminating } })
                |> List.ofSeq }
        let vip (v: VipInput) : VipState option =
            Ip.tryParse v.Address
            |> Option.map (fun ip ->
                { Ip = ip
                  Prefix = v.Prefix
                  ExpiresAt = (if v.ExpiresAt.HasValue then Some v.ExpiresAt.Value else None)
                  Announce =
                    if v.AddedAt.HasValue then
                        Some { AddedAt = v.AddedAt.Value; Sent = v.Sent; LastSentAt = v.LastSentAt }
                    else None })
        let event (e: EventOutput) : ServiceEvent =
            { Service = { Namespace = e.Namespace; Name = e.Name }
              Type = (if e.Type = "Warning" then Warning else Normal)
              Reason = e.Reason
              Message = e.Message }
        { Config = input.Settings.Config
          Now = input.Now
          Services = input.Services |> Seq.map (fun s -> Decide.Converted.Services.GetValue(s, service)) |> List.ofSeq
          Slices = input.Slices |> Seq.map (fun s -> Decide.Converted.Slices.GetValue(s, slice)) |> List.ofSeq
          Heartbeats =
            input.Heartbeats
            |> Seq.map (fun h -> { Node = h.Name; Holder = Decide.OrNone h.Holder; Version = h.Version; ChangedSeenAt = h.ChangedSeenAt })
            |> List.ofSeq
          Leases =
            input.Leases
            |> Seq.map (fun l -> ({ Name = l.Name; Holder = Decide.OrNone l.Holder; Version = l.Version; ChangedSeenAt = l.ChangedSeenAt }: GroupLease))
            |> List.ofSeq
          Self =
            { Node = input.Settings.NodeName
              Fence = input.Fence
              Claims =
                input.Claims
                |> Seq.map (fun c -> c.Group, { Epoch = c.Epoch; From = Decide.OrNone c.From })
                |> Map.ofSeq
              LinkUp = input.LinkUp
              ShuttingDown = input.ShuttingDown }
          Vips = input.Vips |> Seq.choose vip |> List.ofSeq
          EmittedWarnings = input.EmittedWarnings |> Seq.map event |> Set.ofSeq }

    static member private Action(action: Action) : PlanAction =
        let orNull (o: string option) : string | null =
            match o with
            | Some s -> s
            | None -> null
        match action with
        | Action.RemoveVip(ip, prefix) -> RemoveVip(Ip.format ip, prefix)
        | Action.AddVip(ip, prefix, lifetime) -> AddVip(Ip.format ip, prefix, lifetime)
        | Action.RefreshVip(ip, prefix, lifetime) -> RefreshVip(Ip.format ip, prefix, lifetime)
        | Action.Announce ip -> Announce(Ip.format ip)
        | Action.ClaimLease(group, expected, previous, confirm) ->
            ClaimLease(group, orNull expected, orNull previous, orNull (confirm |> Option.map fst), orNull (confirm |> Option.map snd))
        | Action.ReleaseLease(group, version) -> ReleaseLease(group, version)
        | Action.DeleteLease(group, version) -> DeleteLease(group, version)
        | Action.WriteStatus(key, ingress, host) ->
            let entries =
                ingress
                |> List.map (fun e ->
                    { Ip = e.Ip
                      IpMode = orNull e.IpMode
                      Ports = e.Ports |> List.map (fun p -> { Protocol = p.Protocol; Port = p.Port }) |> Array.ofList })
                |> Array.ofList
            WriteStatus(key.Namespace, key.Name, entries, orNull host)
        | Action.Emit e -> EmitEvent(Decide.Event e)

    /// What this node must do now.
    static member Plan(input: SnapshotInput) : PlanOutput =
        let snapshot = Decide.Snapshot input
        let plan = Plan.compute snapshot
        let leases = snapshot.Leases |> List.map (fun l -> l.Name, l) |> Map.ofList
        { Actions = plan.Actions |> List.map Decide.Action |> Array.ofList
          NextWakeAt = defaultArg plan.NextWakeAt -1L
          ActiveWarnings = plan.ActiveWarnings |> Seq.map Decide.Event |> Array.ofSeq
          WaitsForRenewal = plan.WaitsForRenewal
          Groups =
            plan.Desired.Groups
            |> List.map (fun g ->
                { Group = g.Id
                  Addresses = g.Addresses |> List.map Ip.format |> Array.ofList
                  Role = Explain.role plan.Roles[g.Id]
                  Holder =
                    match leases.TryFind g.Id |> Option.bind _.Holder with
                    | Some h -> h
                    | None -> null })
            |> Array.ofList
          Announced =
            let held =
                plan.Desired.Groups
                |> Seq.filter (fun g -> plan.Roles[g.Id] = Holding)
                |> Seq.collect _.Addresses
                |> Index.keys
            plan.Desired.StateList
            |> List.filter (fun (_, state) ->
                match state with
                | Member(ips, _) -> held.Contains ips.Head
                | _ -> false)
            |> List.length }

    /// Why each Service is (not) announced, from this node's point of view.
    static member Explain(input: SnapshotInput) : ExplanationOutput array =
        let snapshot = Decide.Snapshot input
        Explain.all snapshot (Plan.compute snapshot)
        |> List.map (fun e ->
            { Namespace = e.Service.Namespace
              Name = e.Service.Name
              Node = e.Node
              Summary = e.Summary
              Details = Array.ofList e.Details })
        |> Array.ofList
