// Hybrid's decision core, as the C# shell sees it. Every rule the agent obeys is a total function of plain
// data in src/Domain/*.fs: no I/O, no clock, no randomness, no logging, no exceptions. The shell observes
// the world, feeds it to a ProtocolNode, and executes the commands that come back. This file is the only
// surface C# uses: plain records and arrays in and out, strings that may be null, no F# options or lists,
// no curried functions. One exception: UPnP forwarding's values (ForwardingRequest, ForwardingReport) pass
// through the protocol loop unread, between this node and the UpnpForwarder, which runs the pure Upnp rules.
namespace Hybrid.Facade

open System
open System.Collections.Generic
open Hybrid.Domain

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Settings
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// A configuration error as the shell prints it.
type SettingError = { Variable: string; Value: string; Problem: string; Message: string }

/// The agent's settings (a C#-friendly view of Config; pass it back to ProtocolNode).
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
      LanPort: int
      HealthPort: int
      HeartbeatIntervalMs: int64
      Upnp: bool
      DisableServiceUpdates: bool
      PrometheusServer: string
      /// vip_loglevel: 0 panic … 4 info … 5 debug, 6 trace.
      LogLevel: int
      Fingerprint: string
      Config: Config }

/// Result of parsing the environment.
type SettingsOutcome =
    | Valid of Settings: Settings
    | Invalid of Errors: SettingError array

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Inputs: what the shell observed
// ════════════════════════════════════════════════════════════════════════════════════════════════════

[<CLIMutable>]
type PortInput = { Protocol: string; Port: int }

[<CLIMutable>]
type IngressInput =
    { Ip: string
      IpMode: string | null
      Ports: PortInput array }

/// A Service, reduced to what the domain reads.
[<CLIMutable>]
type ServiceInput =
    { Namespace: string
      Name: string
      Uid: string
      CreatedAtUnixSeconds: int64
      Type: string
      LoadBalancerClass: string | null
      Annotations: IReadOnlyDictionary<string, string>
      LoadBalancerIP: string | null
      Ports: PortInput array
      ExternalTrafficPolicy: string | null
      Selector: IReadOnlyDictionary<string, string>
      Ingress: IngressInput array
      /// metadata.resourceVersion: an address assignment is written from the version it was decided on.
      ResourceVersion: string | null
      /// spec.ipFamilies as written (IPv4, IPv6), primary first; null or empty when unset.
      IpFamilies: string array | null
      /// spec.ipFamilyPolicy (SingleStack, PreferDualStack, RequireDualStack); null when unset.
      IpFamilyPolicy: string | null }

[<CLIMutable>]
type EndpointInput =
    { NodeName: string | null
      Ready: Nullable<bool>
      Serving: Nullable<bool>
      Terminating: Nullable<bool> }

/// An EndpointSlice (Name is the slice's namespace/name, ServiceName its kubernetes.io/service-name label).
[<CLIMutable>]
type SliceInput =
    { Name: string
      Namespace: string
      ServiceName: string
      Endpoints: EndpointInput array }

/// A Lease of the Lease namespace, as observed or as a write returned it.
[<CLIMutable>]
type LeaseInput =
    { Name: string
      Version: string
      Holder: string | null
      Transitions: int
      Labels: IReadOnlyDictionary<string, string>
      Annotations: IReadOnlyDictionary<string, string> }

/// A Node object, reduced to what the address policy reads.
[<CLIMutable>]
type NodeInput =
    { Name: string
      /// status.addresses of type InternalIP and ExternalIP, as written (unparseable ones are ignored).
      Addresses: string array
      Labels: IReadOnlyDictionary<string, string> }

/// A VIP address an earlier process left on the interface.
[<CLIMutable>]
type ExistingVip = { Address: byte array; Prefix: int }

/// How a Lease write ended, as the shell saw it.
type WriteResult =
    | Done = 0
    | Conflict = 1
    | NotFound = 2
    | Failed = 3

/// How a kernel action ended.
type KernelResult =
    | Applied = 0
    | FenceEnded = 1
    | Failed = 2
    /// Admit only: the address was already on the interface and not Hybrid's; it was left untouched.
    | NotOurs = 3

/// How a kernel action went for one of its VIPs, where that differs from the action's result.
type VipReport = { Address: byte array; Result: KernelResult; Reason: string | null }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Commands: what the shell must do
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// A Lease write: a create when ExpectedVersion is null, else a compare-and-swap from it. Annotations mapped to
/// null are removed.
type LeaseWriteOutput =
    { Name: string
      ExpectedVersion: string | null
      Holder: string | null
      Transitions: int
      DurationSeconds: int
      Labels: IReadOnlyDictionary<string, string>
      Annotations: IReadOnlyDictionary<string, string | null> }

/// The macvlan that carries a VIP (a DHCP Service's lease): its name and MAC (the domain's VipLink.Macvlan).
[<Sealed>]
type MacvlanCarrier(name: string, mac: byte array) =
    member _.Name = name
    member _.Mac = mac

/// A VIP address and its prefix length, as put on its interface: the VIP interface, or Macvlan when not null.
type VipAddress = { Address: byte array; Prefix: int; Macvlan: MacvlanCarrier | null }

/// A change to the kernel; deadlines are on the monotonic clock (ms). The fresh-clock rule applies to every
/// action with a deadline: read the clock just before the syscall; skip (report FenceEnded) when it has passed.
/// An action over several VIPs is one nftables transaction for all of them, in the order its case says (the
/// domain's KernelCommand); it reports each VIP it went otherwise for (VipReport).
type KernelAction =
    | InstallFence of Managed: byte array array
    | ExtendFence of DeadlineMs: int64
    | ExpireFence
    /// Manage all, then add each address (create, never replace); one found that is not Hybrid's: unmanage it, NotOurs.
    | Admit of Vips: VipAddress array * LifetimeMs: int64
    | RefreshAddress of Vip: VipAddress * LifetimeMs: int64 * FenceDeadlineMs: int64
    | Hold of Addresses: byte array array
    | Unhold of Addresses: byte array array
    /// Remove each address, then unmanage those removed.
    | Withdraw of Vips: VipAddress array
    /// From the VIP interface's MAC, or from Macvlan's MAC when not null.
    | Announce of Address: byte array * Macvlan: (MacvlanCarrier | null) * FenceDeadlineMs: int64

/// The type of a Kubernetes Event.
type EventKind =
    | Normal = 0
    | Warning = 1

type EventOutput =
    { Namespace: string
      Name: string
      Type: EventKind
      Reason: string
      Message: string }

/// How loud a log line is.
type LogLevelName =
    | Debug = 0
    | Information = 1
    | Warning = 2

/// A structured log line: a constant message template and its arguments.
type LogEntry =
    { Level: LogLevelName
      Template: string
      Arguments: objnull array }

/// One thing for the shell to do.
type ShellCommand =
    /// The heartbeat frame, encoded and signed: send each datagram on the LAN.
    | SendDatagrams of Datagrams: byte array array
    | WriteLease of Id: int64 * Write: LeaseWriteOutput
    | DeleteLease of Id: int64 * Name: string * Version: string
    /// Re-read a Lease and report it (LeaseUpserted or LeaseDeleted).
    | ReadLease of Name: string
    /// Report the outcome with KernelCompleted(Id, ...).
    | Kernel of Id: int64 * Action: KernelAction
    /// Ingress null: leave status alone; SetVipHost false: leave the annotation alone (VipHost null removes it).
    | WriteStatus of Namespace: string * Name: string * Ingress: (IngressInput array | null) * SetVipHost: bool * VipHost: (string | null)
    | EmitEvent of Event: EventOutput
    /// A Warning Event on the pool ConfigMap (Namespace/Name).
    | EmitConfigMapEvent of Namespace: string * Name: string * Reason: string * Message: string
    /// Merge-patch the Service from ResourceVersion (a 409 means it changed: the domain decides again): add
    /// these annotations and labels; on success post the Normal Event (Reason, Message).
    | AssignAddress of Namespace: string * Name: string * ResourceVersion: string * Annotations: IReadOnlyDictionary<string, string>
        * Labels: IReadOnlyDictionary<string, string> * Reason: string * Message: string
    /// Create the Service's macvlan (Identity's name and MAC) on the VIP interface, set its sysctls, and run
    /// its DHCP client there, confirming Known (null: none) first; report what the client says with
    /// DhcpReported (docs/DHCP.md).
    | StartDhcp of Namespace: string * Name: string * Identity: DhcpIdentity * Known: (Ip | null)
    /// Stop the Service's client (Release: DHCPRELEASE when a lease is held; otherwise send nothing) and delete
    /// its macvlan.
    | StopDhcp of Namespace: string * Name: string * Identity: DhcpIdentity * Release: bool
    /// Merge-patch the Service: kube-vip.io/requestedIP = Address and kube-vip.io/hwaddr = HwAddr, or (Address
    /// null) remove kube-vip.io/requestedIP and empty status.loadBalancer.ingress.
    | RecordDhcpLease of Namespace: string * Name: string * Address: (string | null) * HwAddr: string
    /// A Warning Event about this node (its Node object): why it holds nothing.
    | EmitNodeEvent of Reason: string * Message: string
    | Log of Entry: LogEntry

/// What the protocol state says, for metrics, health and logs.
type NodeSummary =
    { Phase: string
      Joined: bool
      Incarnation: string
      FenceDeadlineMs: int64
      LanFence: string
      ApiFenceArmed: bool
      StandingAside: string | null
      Members: int
      HeardMembers: int
      HeldVips: int
      Groups: int
      FramesDropped: int64 }

/// What the protocol state says right now, as numbers for the metrics endpoint (Gauges.ofState).
type GaugesOutput =
    { ActiveServices: int
      VipsHeld: int
      GroupsHeld: int
      IsLeader: bool
      /// "lan", "api" or "none": the fence that lets the kernel answer.
      Fence: string
      FenceMarginMs: int64
      /// Heartbeat frames dropped per reason (every reason, in a fixed order); DroppedCounts[i] for DroppedReasons[i].
      DroppedReasons: string array
      DroppedCounts: int64 array
      UpnpForwardedServices: int }

/// A VIP this node began or stopped answering for in the last Decide (HoldChanges.between).
type HoldChangeKind =
    | Began = 0
    | TookOver = 1
    | HandedOver = 2

type HoldChangeOutput =
    { Kind: HoldChangeKind
      Address: string
      /// TookOver: the node it was taken from (else null).
      From: string | null
      /// TookOver: how long that node had been silent on the LAN (ms), or -1 when it was never heard.
      SilenceMs: int64 }

/// One state of the node, immutable: safe to read from another thread than the loop's.
[<Sealed>]
type NodeReading internal (state: NodeState) =
    member _.Gauges() : GaugesOutput =
        let g = Gauges.ofState state
        { ActiveServices = g.ActiveServices
          VipsHeld = g.VipsHeld
          GroupsHeld = g.GroupsHeld
          IsLeader = g.IsLeader
          Fence =
            (match g.Fence with
             | FenceInForce.Lan -> "lan"
             | FenceInForce.Api -> "api"
             | FenceInForce.Nothing -> "none")
          FenceMarginMs = g.FenceMargin
          DroppedReasons = g.Dropped |> List.map fst |> Array.ofList
          DroppedCounts = g.Dropped |> List.map snd |> Array.ofList
          UpnpForwardedServices = g.UpnpForwardedServices }

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Conversions
// ════════════════════════════════════════════════════════════════════════════════════════════════════

module internal Convert =
    let orNone (s: string | null) =
        match s with
        | null -> None
        | "" -> None
        | s -> Some s

    let orNull (o: string option) : string | null =
        match o with
        | Some s -> s
        | None -> null

    let dict (d: IReadOnlyDictionary<string, string>) =
        if isNull (box d) then Map.empty else d |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq

    let private port (p: PortInput) : ServicePort =
        { Protocol = (if String.IsNullOrEmpty p.Protocol then "TCP" else p.Protocol.ToUpperInvariant()); Port = p.Port }

    let service (s: ServiceInput) : Service =
        { Key = { Namespace = s.Namespace; Name = s.Name }
          Uid = s.Uid
          CreatedAt = s.CreatedAtUnixSeconds
          Type = s.Type
          Class = orNone s.LoadBalancerClass
          Annotations = dict s.Annotations
          LoadBalancerIP = orNone s.LoadBalancerIP
          Ports = s.Ports |> Seq.map port |> List.ofSeq
          Policy = (if s.ExternalTrafficPolicy = "Local" then Local else Cluster)
          Selector = dict s.Selector
          Ingress =
            s.Ingress
            |> Seq.map (fun i -> ({ Ip = i.Ip; IpMode = orNone i.IpMode; Ports = i.Ports |> Seq.map port |> List.ofSeq }: IngressEntry))
            |> List.ofSeq
          ChangedSeenAt = 0L }

    let slice (s: SliceInput) : EndpointSlice =
        let opt (n: Nullable<bool>) = if n.HasValue then Some n.Value else None
        { Service = { Namespace = s.Namespace; Name = s.ServiceName }
          Endpoints =
            s.Endpoints
            |> Seq.map (fun e ->
                { NodeName = orNone e.NodeName
                  Conditions = { Ready = opt e.Ready; Serving = opt e.Serving; Terminating = opt e.Terminating } })
            |> List.ofSeq }

    /// spec.ipFamilies and spec.ipFamilyPolicy; unknown spellings are left out (the API server allows none).
    let families (s: ServiceInput) : ServiceKey * IpFamily list * IpFamilyPolicy =
        let family (text: string) =
            match text with
            | "IPv4" -> Some IPv4
            | "IPv6" -> Some IPv6
            | _ -> None
        let fs =
            match s.IpFamilies with
            | null -> []
            | texts -> texts |> Seq.choose family |> List.ofSeq
        let policy =
            match s.IpFamilyPolicy with
            | "PreferDualStack" -> PreferDualStack
            | "RequireDualStack" -> RequireDualStack
            | _ -> SingleStack
        { Namespace = s.Namespace; Name = s.Name }, fs, policy

    let node (n: NodeInput) : NodeObject =
        { Name = n.Name
          Addresses = n.Addresses |> Seq.choose (fun a -> Ip.tryParse (a.Trim())) |> List.ofSeq
          Labels = dict n.Labels }

    let lease (l: LeaseInput) : LeaseRecord =
        { Name = l.Name
          Version = l.Version
          Holder = orNone l.Holder
          Transitions = l.Transitions
          Labels = dict l.Labels
          Annotations = dict l.Annotations }

    let ipBytes (ip: Ip) : byte array =
        match ip with
        | V4 v -> [| byte (v >>> 24); byte (v >>> 16); byte (v >>> 8); byte v |]
        | V6(hi, lo) -> Array.init 16 (fun i -> if i < 8 then byte (hi >>> (56 - 8 * i)) else byte (lo >>> (56 - 8 * (i - 8))))

    let ipOfBytes (bytes: byte array) : Ip option =
        match bytes.Length with
        | 4 -> Some(V4((uint32 bytes[0] <<< 24) ||| (uint32 bytes[1] <<< 16) ||| (uint32 bytes[2] <<< 8) ||| uint32 bytes[3]))
        | 16 ->
            let word (offset: int) = Seq.init 8 (fun i -> uint64 bytes[offset + i] <<< (56 - 8 * i)) |> Seq.reduce (|||)
            Some(V6(word 0, word 8))
        | _ -> None

    let macvlan (link: VipLink) : MacvlanCarrier | null =
        match link with
        | VipLink.Parent -> null
        | VipLink.Macvlan(name, mac) -> MacvlanCarrier(name.Value, mac.Bytes)

    let vipAddress (linkOf: Ip -> VipLink) (ip: Ip, prefix: int) : VipAddress =
        { Address = ipBytes ip; Prefix = prefix; Macvlan = macvlan (linkOf ip) }

    let vipAddresses (linkOf: Ip -> VipLink) (vips: (Ip * int) list) : VipAddress array =
        vips |> List.map (vipAddress linkOf) |> Array.ofList

    let kernelOutcome (result: KernelResult) (reason: string | null) : KernelOutcome =
        match result with
        | KernelResult.Applied -> Applied
        | KernelResult.FenceEnded -> SkippedFenceEnded
        | KernelResult.NotOurs -> AddressNotOurs
        | _ -> KernelFailed(match reason with null -> "failed" | r -> r)

    /// The action for the shell; linkOf says which interface carries each VIP (the node's VipKernel.Link).
    let kernelAction (linkOf: Ip -> VipLink) (command: KernelCommand) : KernelAction =
        match command with
        | KernelCommand.InstallFence managed -> InstallFence(managed |> List.map ipBytes |> Array.ofList)
        | KernelCommand.ExtendFence d -> ExtendFence d
        | KernelCommand.ExpireFence -> ExpireFence
        | KernelCommand.Admit(vips, lifetime) -> Admit(vipAddresses linkOf vips, lifetime)
        | KernelCommand.RefreshAddress(ip, prefix, lifetime, d) -> RefreshAddress(vipAddress linkOf (ip, prefix), lifetime, d)
        | KernelCommand.Hold ips -> Hold(ips |> List.map ipBytes |> Array.ofList)
        | KernelCommand.Unhold ips -> Unhold(ips |> List.map ipBytes |> Array.ofList)
        | KernelCommand.Withdraw vips -> Withdraw(vipAddresses linkOf vips)
        | KernelCommand.Announce(ip, d) -> Announce(ipBytes ip, macvlan (linkOf ip), d)

    let leaseWrite (w: Hybrid.Domain.LeaseWrite) : LeaseWriteOutput =
        { Name = w.Name
          ExpectedVersion = orNull w.Expected
          Holder = orNull w.Holder
          Transitions = w.Transitions
          DurationSeconds = w.DurationSeconds
          Labels = w.Labels :> IReadOnlyDictionary<string, string>
          Annotations = w.Annotations |> Map.map (fun _ v -> orNull v) :> IReadOnlyDictionary<string, string | null> }

    let event (e: ServiceEvent) : EventOutput =
        { Namespace = e.Service.Namespace
          Name = e.Service.Name
          Type = (match e.Type with Normal -> EventKind.Normal | Warning -> EventKind.Warning)
          Reason = EventReason.name e.Reason
          Message = e.Message }

    let holdChange (change: HoldChange) : HoldChangeOutput =
        match change with
        | Began ip -> { Kind = HoldChangeKind.Began; Address = Ip.format ip; From = null; SilenceMs = -1L }
        | TookOver(ip, from, silence) ->
            { Kind = HoldChangeKind.TookOver; Address = Ip.format ip; From = from; SilenceMs = defaultArg silence -1L }
        | HandedOver ip -> { Kind = HoldChangeKind.HandedOver; Address = Ip.format ip; From = null; SilenceMs = -1L }

    let fenceText (bound: FenceBound) (now: Instant) =
        match bound with
        | Lapsed -> "lapsed"
        | Unbounded -> "unbounded"
        | Until t -> string (t - now) + " ms left"

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// The node
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// One node's protocol state machine, for the shell. Not thread-safe: one loop owns it. The loop reports
/// every observation and outcome, in order (each call queues it), then calls Decide, which folds everything
/// queued and returns what to do, in order.
[<Sealed>]
type ProtocolNode(settings: Settings) =
    let mutable state = Protocol.awaitingAddressPolicy (Protocol.create settings.Config)
    /// The resourceVersion of the latest reported version of each Service: what the domain decided on when
    /// it asks for an assignment (the shell's cache may be newer).
    let serviceVersions = Dictionary<ServiceKey, string>()
    let pendingKernel = Dictionary<int64, KernelCommand>()
    let queued = List<Input>()
    let mutable nextKernelId = 1L
    let mutable forwarding = Forwarding.request state
    let mutable forwardingHeld = state.Kernel.HeldVips
    let mutable forwardingChanges = 0L
    let mutable holdChanges: HoldChangeOutput array = [||]

    let notice (n: Notice) : ShellCommand list =
        let log level template (args: objnull list) = Log { Level = level; Template = template; Arguments = Array.ofList args }
        match n with
        | JoinedCluster(term, incarnation) ->
            [ log LogLevelName.Information "Joined the cluster: term {Term}, incarnation {Incarnation}" [ box term; box (string incarnation) ] ]
        | RegistrationProblem(lease, problem) ->
            [ log LogLevelName.Warning "Registration Lease {Lease} cannot be read: {Problem}" [ box lease; box (RegistrationProblem.describe problem) ] ]
        | ApiFenceArmed lan ->
            [ log LogLevelName.Information "API fence armed: the LAN fence is {LanFence}" [ box (Convert.fenceText lan state.Now) ] ]
        | ApiFenceDisarmed -> [ log LogLevelName.Information "API fence disarmed: the LAN fence holds" [] ]
        | DeposingNode(node, silentFor) ->
            [ log LogLevelName.Warning "Deposing {Node}: not granted for {SilentMs} ms" [ box node; box silentFor ] ]
        | NodeDeposed node -> [ log LogLevelName.Warning "Deposed {Node}" [ box node ] ]
        | DeposedBy node ->
            [ log LogLevelName.Warning "This node was deposed by {Node}; withdrawing everything and joining again" [ box node ] ]
        | RegistrationDeleted ->
            [ log LogLevelName.Warning "This node's registration was deleted; withdrawing everything and joining again" [] ]
        | StandingAside reason ->
            let text = Ownership.describeRelease (StoodAside reason)
            let eventReason =
                match reason with
                | FingerprintNotInForce _ -> "SettingsNotInForce"
                | Isolated _ -> "LanIsolated"
            [ log LogLevelName.Warning "Holding nothing: {Reason}" [ box text ]; EmitNodeEvent(eventReason, sprintf "holding no VIP: %s" text) ]
        | StandingAsideEnded -> [ log LogLevelName.Information "No longer standing aside" [] ]
        | VipEligibilityChanged ExcludedByLabel ->
            [ log LogLevelName.Warning "Holding no VIP: this node is labelled {Label} (ignore_exclude_lb_label=true ignores the label)" [ box NodeExclusion.Label ] ]
        | VipEligibilityChanged MayHoldVips ->
            [ log LogLevelName.Information "This node may hold VIPs again: it is no longer labelled {Label}" [ box NodeExclusion.Label ] ]
        | ClaimAcknowledgementTimedOut(group, missing) ->
            [ log LogLevelName.Warning "Claim of {Group} not acknowledged by {Members}" [ box group; box (String.Join(", ", missing)) ] ]
        | ContestedClaim(group, by) ->
            [ log LogLevelName.Warning "{Node} claimed {Group}, which this node held: withdrawn" [ box by; box group ] ]
        | LeftCluster -> [ log LogLevelName.Information "Left the cluster" [] ]

    let shell (command: Command) : ShellCommand list =
        match command with
        | SendFrame frame ->
            [ SendDatagrams(FrameCodec.split frame |> List.map (FrameCodec.encode settings.Config.ClusterKey) |> Array.ofList) ]
        | Command.WriteLease(id, write) -> [ WriteLease(id, Convert.leaseWrite write) ]
        | Command.DeleteLease(id, name, version) -> [ DeleteLease(id, name, version) ]
        | Command.ReadLease name -> [ ReadLease name ]
        | Command.Kernel k ->
            let id = nextKernelId
            nextKernelId <- nextKernelId + 1L
            pendingKernel[id] <- k
            // The VIP's entry exists while a command for it is pending (a withdrawn one goes when the command completes).
            let linkOf ip = state.Kernel.Vips.TryFind ip |> Option.map _.Link |> Option.defaultValue VipLink.Parent
            [ Kernel(id, Convert.kernelAction linkOf k) ]
        | Command.WriteStatus(key, ingress, host) ->
            let entries: IngressInput array | null =
                match ingress with
                | Some entries ->
                    entries
                    |> List.map (fun e ->
                        { Ip = e.Ip
                          IpMode = Convert.orNull e.IpMode
                          Ports = e.Ports |> List.map (fun p -> { Protocol = p.Protocol; Port = p.Port }) |> Array.ofList })
                    |> Array.ofList
                | None -> null
            [ WriteStatus(key.Namespace, key.Name, entries, host.IsSome, Convert.orNull (Option.flatten host)) ]
        | Emit e -> [ EmitEvent(Convert.event e) ]
        | EmitPoolConfigEvent(reason, message) ->
            [ EmitConfigMapEvent(Pools.ConfigMapNamespace, Pools.ConfigMapName, EventReason.name reason, message) ]
        | Command.AssignAddress a ->
            match serviceVersions.TryGetValue a.Service with
            | true, version ->
                [ AssignAddress(
                    a.Service.Namespace,
                    a.Service.Name,
                    version,
                    PoolAssignment.annotations a :> IReadOnlyDictionary<string, string>,
                    PoolAssignment.labels :> IReadOnlyDictionary<string, string>,
                    EventReason.name EventReason.AddressAssigned,
                    PoolNotice.assigned a
                ) ]
            | _ -> []
        | Command.StartDhcp want ->
            [ StartDhcp(want.Service.Namespace, want.Service.Name, want.Identity, (match want.Known with Some ip -> ip | None -> null)) ]
        | Command.StopDhcp(want, mode) ->
            [ StopDhcp(want.Service.Namespace, want.Service.Name, want.Identity, (mode = StopMode.ReleaseLease)) ]
        | Command.RecordDhcpLease(key, address, mac) ->
            [ RecordDhcpLease(key.Namespace, key.Name, (match address with Some ip -> Ip.format ip | None -> null), string mac) ]
        | Note n -> notice n

    let step (input: Input) = queued.Add input

    /// The first call: this process's random incarnation, the VIP addresses an earlier process left on the
    /// interface (IPv4 or IPv6 bytes with their prefix), whether the interface is up.
    member _.Start(incarnation: uint64, existing: ExistingVip array, linkUp: bool, now: int64) =
        let addresses = existing |> Array.choose (fun v -> Convert.ipOfBytes v.Address |> Option.map (fun ip -> ip, v.Prefix)) |> List.ofArray
        step (Started(Incarnation incarnation, addresses, linkUp, now))

    member _.Tick(now: int64) = step (Tick now)
    member _.ServicesListed(services: ServiceInput array, now: int64) =
        serviceVersions.Clear()
        for s in services do
            serviceVersions[{ Namespace = s.Namespace; Name = s.Name }] <- (match s.ResourceVersion with null -> "" | v -> v)
        step (ServicesListed(services |> Array.map Convert.service |> List.ofArray, now))
        step (ServiceFamiliesObserved(services |> Array.map Convert.families |> List.ofArray, true, now))
    member _.ServiceUpserted(service: ServiceInput, now: int64) =
        serviceVersions[{ Namespace = service.Namespace; Name = service.Name }] <- (match service.ResourceVersion with null -> "" | v -> v)
        step (ServiceUpserted(Convert.service service, now))
        step (ServiceFamiliesObserved([ Convert.families service ], false, now))
    member _.ServiceDeleted(ns: string, name: string, now: int64) =
        serviceVersions.Remove({ Namespace = ns; Name = name }) |> ignore
        step (ServiceDeleted({ Namespace = ns; Name = name }, now))

    /// The pool ConfigMap's data (listed or watched); null when there is no ConfigMap.
    member _.PoolConfigObserved(data: IReadOnlyDictionary<string, string> | null, now: int64) =
        step (PoolConfigObserved((match data with null -> None | d -> Some(Convert.dict d)), now))
    member _.NodesListed(nodes: NodeInput array, now: int64) = step (NodesListed(nodes |> Array.map Convert.node |> List.ofArray, now))
    member _.NodeUpserted(node: NodeInput, now: int64) = step (NodeUpserted(Convert.node node, now))
    member _.NodeDeleted(name: string, now: int64) = step (NodeDeleted(name, now))

    /// The VIP interface's own addresses (not the VIPs: those carry the Hybrid protocol mark) and the
    /// gateways of its default routes, as read now.
    member _.InterfaceRead(addresses: ExistingVip array, gateways: byte array array, now: int64) =
        let facts =
            { Addresses =
                addresses
                |> Array.choose (fun a -> Convert.ipOfBytes a.Address |> Option.map (fun ip -> { Address = ip; PrefixLength = a.Prefix }))
                |> List.ofArray
              Gateways = gateways |> Array.choose Convert.ipOfBytes |> List.ofArray }
        step (InterfaceRead(facts, now))
    member _.SlicesListed(slices: SliceInput array, now: int64) =
        step (SlicesListed(slices |> Array.map (fun s -> s.Name, Convert.slice s) |> List.ofArray, now))
    member _.SliceUpserted(slice: SliceInput, now: int64) = step (SliceUpserted(slice.Name, Convert.slice slice, now))
    member _.SliceDeleted(name: string, now: int64) = step (SliceDeleted(name, now))
    member _.LeasesListed(leases: LeaseInput array, now: int64) = step (LeasesListed(leases |> Array.map Convert.lease |> List.ofArray, now))
    member _.LeaseUpserted(lease: LeaseInput, now: int64) = step (LeaseUpserted(Convert.lease lease, now))
    member _.LeaseDeleted(name: string, now: int64) = step (LeaseDeleted(name, now))

    /// A datagram from the heartbeat port, read at `now`: authenticated and decoded here. Returns the sending
    /// node's name, or null when the datagram is no authentic frame (for the per-peer frame counter).
    member _.DatagramReceived(datagram: byte array, now: int64) : string | null =
        match FrameCodec.decode settings.Config.ClusterKey datagram with
        | Ok frame ->
            step (FrameReceived(frame, now))
            frame.Node
        | Error e ->
            step (FrameDropped(e, now))
            null

    /// The outcome of WriteLease or DeleteLease `id`; `lease` is what the server returned (null after a delete
    /// or a failure); `jitter` a random number in [0, 1) for the retry backoff.
    member _.WriteCompleted(id: int64, result: WriteResult, lease: LeaseInput | null, reason: string | null, jitter: float, now: int64) =
        let outcome =
            match result with
            | WriteResult.Done -> Written(match lease with null -> None | l -> Some(Convert.lease l))
            | WriteResult.Conflict -> Conflict
            | WriteResult.NotFound -> NotFound
            | _ -> Failed(match reason with null -> "failed" | r -> r)
        step (WriteCompleted(id, outcome, jitter, now))

    member this.KernelCompleted(id: int64, result: KernelResult, reason: string | null, now: int64) =
        this.KernelCompleted(id, result, reason, [||], now)

    /// The outcome of Kernel `id`: `result` for every VIP but those in `exceptions`.
    member _.KernelCompleted(id: int64, result: KernelResult, reason: string | null, exceptions: VipReport array, now: int64) =
        match pendingKernel.TryGetValue id with
        | true, command ->
            pendingKernel.Remove id |> ignore
            let except =
                exceptions
                |> Array.choose (fun e -> Convert.ipOfBytes e.Address |> Option.map (fun ip -> ip, Convert.kernelOutcome e.Result e.Reason))
                |> List.ofArray
            step (KernelCompleted(command, Convert.kernelOutcome result reason, except, now))
        | _ -> ()

    /// A fence extension was written and the kernel may answer until `answeringEndsByMs` at the latest.
    member _.FenceExtended(id: int64, answeringEndsByMs: int64, now: int64) =
        match pendingKernel.TryGetValue id with
        | true, command ->
            pendingKernel.Remove id |> ignore
            step (KernelCompleted(command, FenceExtended answeringEndsByMs, [], now))
        | _ -> ()

    member _.LinkChanged(up: bool, now: int64) = step (LinkChanged(up, now))
    member _.StopRequested(now: int64) = step (StopRequested now)

    /// What the UPnP forwarder reported (Upnp.report): the external addresses go into status, the problems
    /// into Warning Events.
    member _.ForwardingReported(report: ForwardingReport, now: int64) = step (ForwardingReported(report, now))

    /// What the DHCP client of a Service (StartDhcp) published: a Leased or Lost command of the client;
    /// anything else is ignored.
    member _.DhcpReported(ns: string, name: string, command: DhcpCommand, now: int64) =
        let key = { Namespace = ns; Name = name }
        match command with
        | DhcpCommand.Leased(lease, LeaseChange.Obtained) -> step (DhcpReported(key, DhcpOutcome.Bound lease.Address, now))
        | DhcpCommand.Leased(lease, LeaseChange.Extended) -> step (DhcpReported(key, DhcpOutcome.Extended lease.Address, now))
        | DhcpCommand.Lost(address, reason) -> step (DhcpReported(key, DhcpOutcome.Lost(address, reason), now))
        | _ -> ()

    /// What the UPnP forwarder must work towards, as of the last Decide: every Service's forward (whether
    /// this node holds its group) and the VIPs this node answers for now.
    member _.Forwarding : ForwardingRequest = forwarding

    /// Grows each time Forwarding changes, so that the shell hands it over only then.
    member _.ForwardingChanges : int64 = forwardingChanges

    /// Whether anything was reported since the last Decide.
    member _.HasQueued = queued.Count > 0

    /// Folds everything reported since the last call, decides once, and returns what to do, in order.
    member _.Decide() : ShellCommand array =
        let inputs = List.ofSeq queued
        queued.Clear()
        let next, commands = Protocol.apply state inputs
        holdChanges <- HoldChanges.between state next |> List.map Convert.holdChange |> Array.ofList
        state <- next
        // The request is rebuilt only when what it is made of changed: a set of every held VIP after each
        // decision would be most of what a steady-state decision allocates.
        let held = state.Kernel.HeldVips
        if not (LanguagePrimitives.PhysicalEquality state.ForwardWants forwarding.Wants && held = forwardingHeld) then
            forwardingHeld <- held
            let request = Forwarding.request state
            if request <> forwarding then forwardingChanges <- forwardingChanges + 1L
            // Kept even when equal, so that the next decision finds the very Wants the state holds.
            forwarding <- request
        commands |> List.collect shell |> Array.ofList

    /// When to call Tick at the latest (monotonic ms); null when nothing is scheduled.
    member _.NextWakeAt : Nullable<int64> =
        match state.NextWakeAt with
        | Some t -> Nullable t
        | None -> Nullable()
    member _.Stopped = (state.Phase = Stopped)
    member _.Synced =
        let v = state.View
        v.ServicesSynced && v.SlicesSynced && v.LeasesSynced && v.PoolsSynced && v.NodesSynced && v.InterfaceKnown

    /// The state as numbers and words, for metrics, health endpoints and logs.
    member _.Summary : NodeSummary =
        let m = state.Membership
        { Phase =
            match state.Phase with
            | Starting -> "Starting"
            | Running -> "Running"
            | Stopping _ -> "Stopping"
            | Stopped -> "Stopped"
          Joined = Protocol.joined state
          Incarnation = string state.Incarnation
          FenceDeadlineMs =
            (match Protocol.fence state m with
             | Until t -> t
             | Unbounded -> Int64.MaxValue
             | Lapsed -> -1L)
          LanFence = Convert.fenceText (Protocol.lanFence state) state.Now
          ApiFenceArmed = state.ApiFence.ValidUntil.IsSome
          StandingAside = state.StandAside |> Option.map (fun r -> Ownership.describeRelease (StoodAside r)) |> Convert.orNull
          Members = m.Members.Count
          HeardMembers = state.Lan.Peers |> Map.filter (fun _ p -> state.Now - p.HeardAt < settings.Config.Timing.LanLeaseDuration) |> Map.count
          HeldVips = state.Kernel.Vips |> Map.filter (fun _ v -> v.Held) |> Map.count
          Groups = state.Roles |> Map.filter (fun _ r -> r = Holding) |> Map.count
          FramesDropped = state.Lan.Dropped |> Map.fold (fun acc _ n -> acc + n) 0L }

    /// The domain state itself (for tests and explanations).
    member _.State = state

    /// The state after the last Decide, for readers on other threads (the metrics endpoint).
    member _.Reading = NodeReading state

    /// The VIPs this node began or stopped answering for in the last Decide.
    member _.HoldChanges : HoldChangeOutput array = holdChanges

/// Parsing the environment, and the names the shell needs.
[<AbstractClass; Sealed>]
type Configuration =
    static member private Of(c: Config) : Settings =
        { NodeName = c.NodeName
          Election = c.Election
          LeaseName = c.LeaseName
          LeaseNamespace = c.LeaseNamespace
          ServiceNamespace = Convert.orNull c.ServiceNamespace
          VipInterface = Convert.orNull (Config.vipInterface c)
          Arp = c.Arp
          LanPort = c.LanPort
          HealthPort = c.HealthPort
          HeartbeatIntervalMs = c.Timing.HeartbeatInterval
          Upnp = c.Upnp
          DisableServiceUpdates = c.DisableServiceUpdates
          PrometheusServer = c.PrometheusServer
          LogLevel = c.LogLevel
          Fingerprint = Config.fingerprint c
          Config = c }

    /// Parses kube-vip's environment variables (pass the whole environment) and, when lan_key_file is set,
    /// what the shell read from that file (content null and problem set when it could not be read).
    static member Parse(environment: IReadOnlyDictionary<string, string>, keyFileContent: string | null, keyFileProblem: string | null)
        : SettingsOutcome =
        let env = environment |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq
        let keyFile =
            match env.TryFind "lan_key_file" with
            | Some path when path <> "" ->
                match keyFileContent, keyFileProblem with
                | null, problem -> Some(KeyFileUnreadable(path, Convert.orNone problem |> Option.defaultValue "cannot be read"))
                | content, _ -> Some(KeyFileContent(path, content))
            | _ -> None
        match Config.parse env keyFile with
        | Ok c -> Valid(Configuration.Of c)
        | Error errors ->
            errors
            |> List.map (fun e -> { Variable = e.Variable; Value = e.Value; Problem = e.Problem; Message = string e })
            |> Array.ofList
            |> Invalid

    /// The effective settings as rows of (variable, value, meaning).
    static member Describe(settings: Settings) : string array array =
        Config.describe settings.Config |> List.map (fun (a, b, c) -> [| a; b; c |]) |> Array.ofList

    /// Every environment variable the agent reads.
    static member Variables: string array = Array.ofList Config.Variables

    /// The registration Lease of a node.
    static member RegistrationLeaseName(node: string) = LeaseNames.registration node

    /// How long to wait before retrying a failed API call (watch, status patch, Event) for the
    /// (attempts + 1)-th time; `jitter` in [0, 1] from a random source.
    static member ApiRetryDelayMs(attempts: int, jitter: float) : int64 =
        RetryDelay.after ProtocolConstants.ApiRetryBase ProtocolConstants.ApiRetryCap attempts jitter

    /// The timeout (whole seconds) the next watch asks the server for; `jitter` in [0, 1] from a random source.
    static member WatchTimeoutSeconds(jitter: float) : int = int (WatchTiming.serverTimeout jitter / 1000L)

    /// How long a watch asked to end after `timeoutSeconds` may stay silent before its connection is given up.
    static member WatchSilenceLimitMs(timeoutSeconds: int) : int64 = WatchTiming.silenceLimit (int64 timeoutSeconds * 1000L)

    /// HTTP/2 keep-alive pings of the API connection: after this much silence, and unanswered for this long.
    static member ApiPingAfterMs: int64 = WatchTiming.PingAfter
    static member ApiPingTimeoutMs: int64 = WatchTiming.PingTimeout

    /// The label selector of the node registrations.
    static member RegistrationSelector = LeaseKeys.Kind + "=" + LeaseKeys.RegistrationKind

    /// The label on every Lease the agent writes that says what it is (registration or group).
    static member LeaseKindLabel = LeaseKeys.Kind

    /// The value of LeaseKindLabel on a group Lease (the only kind the agent deletes).
    static member GroupLeaseKind = LeaseKeys.GroupKind

    /// The value of LeaseKindLabel on a node's registration Lease.
    static member RegistrationLeaseKind = LeaseKeys.RegistrationKind

    /// The label selector of every Lease the agent writes (its Lease watch uses it).
    static member LeaseSelector = LeaseKeys.Selector

    /// The pool ConfigMap (kube-vip-cloud-provider's): namespace and name.
    static member PoolConfigMapNamespace = Pools.ConfigMapNamespace
    static member PoolConfigMapName = Pools.ConfigMapName

    /// The annotation naming the node that announces a Service.
    static member VipHostAnnotation = Annotations.VipHost
    static member RequestedIPAnnotation = Annotations.RequestedIP
    static member HwAddrAnnotation = Annotations.HwAddr

    /// Whether a Service annotation can matter to a decision (the agent caches only these).
    static member IsReadAnnotation(key: string) = Annotations.isRead key

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// hybrid explain
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// One Service explained, as lines to print.
type ServiceExplanationOutput = { Namespace: string; Name: string; Lines: string array }

/// The cluster explained: the header lines and each Service's.
type ExplanationOutput =
    { Header: string array
      Services: ServiceExplanationOutput array }

/// The agents' settings as `hybrid explain` reads them: where to look, or what is wrong with them.
type ExplainSettingsOutcome =
    /// ServiceNamespace null: every namespace.
    | Readable of LeaseNamespace: string * ServiceNamespace: (string | null)
    | Unreadable of Errors: SettingError array

type ExplainOutcome =
    | Explained of Explanation: ExplanationOutput
    | NotExplained of Errors: SettingError array

/// `hybrid explain`: the agents' rules run over what the API server shows (src/Domain/Protocol/Explain.fs).
[<AbstractClass; Sealed>]
type Explainer =
    static member private Errors(errors: ConfigError list) =
        errors |> List.map (fun e -> { Variable = e.Variable; Value = e.Value; Problem = e.Problem; Message = string e }) |> Array.ofList

    static member private Variables(variables: IReadOnlyDictionary<string, string>) = Convert.dict variables

    /// Checks kube-vip's variables (the agents' settings) and says where their Leases and Services are.
    static member Settings(variables: IReadOnlyDictionary<string, string>) : ExplainSettingsOutcome =
        match ExplainSettings.resolve (Explainer.Variables variables) [] with
        | Ok s -> Readable(s.Config.LeaseNamespace, Convert.orNull s.Config.ServiceNamespace)
        | Error errors -> Unreadable(Explainer.Errors errors)

    /// Explains every Service. `leases`: every Lease of the Lease namespace; `poolData`: the pool ConfigMap's
    /// data, null when there is none.
    static member Explain(variables: IReadOnlyDictionary<string, string>, services: ServiceInput array, slices: SliceInput array,
                          leases: LeaseInput array, nodes: NodeInput array, poolData: IReadOnlyDictionary<string, string> | null)
        : ExplainOutcome =
        let records = leases |> Array.map Convert.lease |> List.ofArray
        match ExplainSettings.resolve (Explainer.Variables variables) records with
        | Error errors -> NotExplained(Explainer.Errors errors)
        | Ok settings ->
            let snapshot =
                { Services = services |> Array.map Convert.service |> List.ofArray
                  Families = services |> Array.map (fun s -> let k, fs, p = Convert.families s in k, (fs, p)) |> Map.ofArray
                  Slices = slices |> Array.map Convert.slice |> List.ofArray
                  Leases = records
                  Nodes = nodes |> Array.map Convert.node |> List.ofArray
                  PoolData = (match poolData with null -> None | d -> Some(Convert.dict d)) }
            let explanation = Explain.explain settings snapshot
            Explained
                { Header = ExplainText.header explanation |> Array.ofList
                  Services =
                    explanation.Services
                    |> List.map (fun e -> { Namespace = e.Service.Namespace; Name = e.Service.Name; Lines = ExplainText.service e |> Array.ofList })
                    |> Array.ofList }
