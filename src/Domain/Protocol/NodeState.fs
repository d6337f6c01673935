// One node's protocol state: everything Protocol.step needs to decide, folded from its inputs.
namespace Hybrid.Domain

/// The agent's life.
type Phase =
    /// Started; waiting for the API lists and its registration.
    | Starting
    | Running
    /// Withdrawing everything, then writing Left.
    | Stopping of since: Instant
    | Stopped

/// What the node observed of the cluster through the API.
type ClusterView =
    { ServicesSynced: bool
      SlicesSynced: bool
      LeasesSynced: bool
      Services: Map<ServiceKey, Service>
      Slices: Map<string, EndpointSlice>
      Registrations: RegistrationView
      Groups: Map<GroupId, ObservedGroupLease>
      GroupsAbsent: Map<GroupId, AbsentGroupLease>
      /// The address policy's sources (docs/POOLS.md). A node whose shell does not feed them (the protocol
      /// model) starts with them synced and empty; the agent waits for all three before it decides.
      PoolsSynced: bool
      NodesSynced: bool
      InterfaceKnown: bool
      /// The pool ConfigMap as read (with its bad entries); Pools.none when there is none.
      Pools: PoolRead
      Nodes: Map<string, NodeObject>
      /// spec.ipFamilies and spec.ipFamilyPolicy per Service (absent: single-stack, ipFamilies unset).
      Families: Map<ServiceKey, IpFamily list * IpFamilyPolicy>
      /// This node's VIP interface as last read (its registration publishes it).
      Interface: InterfaceFacts }

/// What a pending write to the node's own registration does.
type RegistrationChange =
    | Join
    | Arm
    | Renew
    | Disarm
    | RecordIntent
    | Leave
    | Refresh

/// A retry schedule after transient failures.
type Retry = { Attempts: int; At: Instant }

/// The node's own registration, as it wrote it.
type SelfRegistration =
    { /// Decided when joining; grows after a deposition.
      Term: int64
      /// The content of the last successful write by this incarnation (None: not joined yet).
      Written: Registration option
      /// The version to compare-and-swap from; None: the Lease does not exist (create it).
      Version: string option
      /// The version is known (the Lease list is in).
      Known: bool
      Pending: (WriteId * RegistrationChange * Registration * Instant) option
      /// When the last successful write of this incarnation was issued: it changed the version, so any
      /// deposition (b) decided on an older version can no longer land (see Membership.pinnedAgainst).
      LastWriteStartedAt: Instant option
      Retry: Retry option
      /// Depositions of this node in a row without a healthy LAN fence in between (rejoin backoff).
      Depositions: int
      /// A deposed node joins again no earlier than this.
      RejoinNotBefore: Instant }

/// The API fence (docs/PROTOCOL.md §2).
type ApiFenceState =
    { ValidUntil: Instant option
      /// Start of the last successful arm or renewal.
      LastRenewalStart: Instant option
      /// Since when the LAN fence has been healthy (for disarming).
      LanHealthySince: Instant option
      /// When the fence was last armed: it stays armed a while (no flapping between fences).
      ArmedAt: Instant option }

/// A deposition this node performs (docs/PROTOCOL.md §3).
type DepositionStage =
    /// (a): its own registration must record the intent first.
    | RecordingIntent
    /// (b) is in flight.
    | Deposing of WriteId
    /// (b) failed without an answer: it may still land, so this node keeps refusing to grant the target
    /// until the target's registration moves past the version (b) expected.
    | Uncertain
    | DepositionDone

type Deposition =
    { Target: string
      Incarnation: Incarnation
      /// The target's registration version the deposition was decided on (what (b) compares with).
      Expected: string
      Stage: DepositionStage
      StartedAt: Instant
      Retry: Retry option }

/// A group this node claimed (its compare-and-swap succeeded).
type Claim =
    { /// The Lease version its write produced.
      Version: string
      /// The first frame that listed it (None until sent).
      Seq: Seq option
      StartedAt: Instant
      AcknowledgedAt: Instant option
      /// The holder it took the group from.
      From: string option }

/// Another member claimed a group this node held: withdrawn until this node claims it again.
type Contest =
    { By: string
      ClaimSeq: Seq
      /// The kernel confirmed the withdrawal (until then the claimer's frames are not echoed past ClaimSeq − 1).
      Withdrawn: bool
      /// The Lease version this node believed in when the claim arrived.
      BelievedVersion: string option }

/// A Lease write on a group.
type GroupWriteKind =
    | ClaimWrite of expected: string option * previous: string option
    | ReleaseWrite
    | DeleteWrite

type GroupWrite = { Id: WriteId; Kind: GroupWriteKind; StartedAt: Instant }

/// Gratuitous announcements sent for a VIP since it was held.
type AnnounceState =
    { HeldAt: Instant
      Sent: int
      LastSentAt: Instant }

/// What a kernel command being applied does to one VIP (the command may do the same to other VIPs).
[<RequireQualifiedAccess>]
type VipStep =
    | Admitting
    | Holding
    | Unholding
    | Withdrawing
    | Refreshing
    | Announcing

/// One VIP as this node put it into its kernel.
type VipKernel =
    { Prefix: int
      /// The interface its address goes on, decided when it is first admitted and kept until it is withdrawn
      /// (a DHCP Service's record may be gone by then; its macvlan name is not).
      Link: VipLink
      Admitted: bool
      Held: bool
      /// A kernel command for it is being applied.
      Pending: VipStep option
      AddressWrittenAt: Instant option
      Announce: AnnounceState option
      /// The group it was held for and whom it was taken from (for the TookOver event).
      TakenFrom: string option }

/// What the node put into its kernel.
type KernelState =
    { Installed: bool
      /// The deadline written into the fence element (None: no element).
      FenceWritten: Instant option
      FencePending: KernelCommand option
      Vips: Map<Ip, VipKernel>
      /// Addresses Admit found on the interface, not Hybrid's: never admitted again, withdrawn or held, until
      /// the interface is read anew (then the address policy judges them: an interface address is reserved).
      Foreign: Set<Ip> }

    /// The VIPs held now, in address order, in one pass without an intermediate map or set: the facade asks
    /// after every decision, and with a thousand VIPs a filtered map and a set cost hundreds of KiB each time.
    member k.HeldVips: Ip list =
        Map.foldBack (fun ip (v: VipKernel) held -> if v.Held then ip :: held else held) k.Vips []

/// Facts of the last inputs that decide() turns into Events.
type Transition =
    | NowHeld of Ip * takenFrom: string option
    | NowWithdrawn of Ip * why: string
    /// Admit found the address on the interface, put there by someone else.
    | NowRefusedByKernel of Ip

/// The facts an ownership pass depends on that change with time alone: the live nodes and whether this
/// node may claim. A pass runs again only when they change.
type OwnershipSignature =
    { Live: string list
      Entitled: bool
      Fenced: bool
      /// Whether this node's own exclusion label keeps it from holding (logged when it changes).
      Vips: NodeVipEligibility }

/// One node's whole protocol state.
type NodeState =
    { Config: Config
      Self: string
      Fingerprint: string
      FingerprintValue: uint64
      Incarnation: Incarnation
      /// When this incarnation began (process start or re-registration).
      IncarnationStartedAt: Instant
      Now: Instant
      Phase: Phase
      LinkUp: bool
      View: ClusterView
      /// Cached: recomputed when registrations change (see DerivedStale).
      Membership: Membership
      /// Cached: every node that could depose this one (docs/PROTOCOL.md §2).
      Required: string list
      /// Membership or Required must be recomputed before the next decision.
      DerivedStale: bool
      /// Cached: recomputed when Services or EndpointSlices change.
      Desired: Desired
      DesiredStale: bool
      Registration: SelfRegistration
      ApiFence: ApiFenceState
      Lan: LanState
      /// The last instant this node echoed a fresh sequence of each member (any incarnation of it).
      LastGrantAt: Map<string, Instant>
      /// Since when this node has heard the LAN: it last stopped standing aside as isolated. A member's
      /// silence before that is no evidence against it.
      ListeningSince: Instant
      Depositions: Map<string, Deposition>
      Claims: Map<GroupId, Claim>
      Contests: Map<GroupId, Contest>
      GroupWrites: Map<GroupId, GroupWrite>
      GroupRetries: Map<GroupId, Retry>
      ClaimsPausedUntil: Instant
      Kernel: KernelState
      StandAside: StandAsideReason option
      EmittedWarnings: Set<ServiceEvent>
      /// Bad pool ConfigMap entries this node reported while it is the ConfigMap's janitor.
      EmittedPoolErrors: Set<PoolConfigError>
      /// Addresses this node assigned and has not yet seen on the Service (when it wrote them): no other
      /// assignment is written meanwhile, so one pass never hands out what an earlier one is writing.
      Assigning: Map<ServiceKey, Instant>
      /// What UPnP forwarding should do (from the last ownership pass: every Service, whether held here).
      ForwardWants: Wants
      /// What the UPnP forwarder last reported.
      Forwarding: ForwardingReport
      /// The DHCP clients this node runs (for the groups it holds).
      Dhcp: Map<ServiceKey, DhcpClient>
      Transitions: Transition list
      NextWriteId: WriteId
      /// The decisions of the last ownership pass (for explanations, metrics and the facade).
      Assignments: Map<GroupId, Assignment>
      Roles: Map<GroupId, Role>
      /// Ownership is decided again when an input changed its inputs, when the signature of the facts it
      /// depends on changes (live nodes, entitlement), or at this instant (claim staggers, timeouts, retries).
      OwnershipStale: bool
      OwnershipDueAt: Instant option
      /// When the live nodes in this node's view last changed (groups move for balance only once it is still).
      LiveSetSince: Instant
      OwnershipSignature: OwnershipSignature
      /// Held VIPs are announced and their addresses refreshed from this instant (see maintenance).
      MaintenanceDueAt: Instant option
      NextWakeAt: Instant option }
