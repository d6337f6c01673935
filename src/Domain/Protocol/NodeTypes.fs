// The types of one node's protocol state machine (docs/PROTOCOL.md): its state, what it is told (inputs),
// and what it asks the shell to do (commands). `Protocol.step` (Step.fs) maps one to the others.
namespace Hybrid.Domain

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Effects and their outcomes
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Identifies one Lease write so that its outcome can be matched to it.
type WriteId = int64

/// What the API server answered to a Lease write.
type WriteOutcome =
    /// Done; the Lease as the server returned it (absent after a delete).
    | Written of LeaseRecord option
    /// 409: the version moved on (or the Lease exists, for a create): somebody else wrote first.
    | Conflict
    /// 404: the Lease is gone (a compare-and-swap or delete of a deleted Lease).
    | NotFound
    /// Anything else (timeout, 5xx, connection refused): the write may or may not have landed.
    | Failed of reason: string

/// A change to the node's kernel state. The shell applies these in order, each re-reading the monotonic
/// clock just before its syscall where the command carries a deadline (the fresh-clock rule). A command over
/// several VIPs is one nftables transaction for all of them (one netlink batch for their addresses): each
/// transaction lists the namespace's whole ruleset first (kube-proxy's included), so one per VIP would make a
/// turn that changes n VIPs cost O(n) times that.
type KernelCommand =
    /// Replaces the fence table: `managed` addresses are fenced off (not held), the fence element absent.
    | InstallFence of managed: Ip list
    /// Writes the fence element with timeout = deadline − now; deletes it if that is not positive.
    | ExtendFence of deadline: Instant
    | ExpireFence
    /// Fences the VIPs off (managed, not held), then puts their addresses (address, prefix) on the interface
    /// with a lifetime; an address already there that Hybrid did not put there is left as it was and no longer
    /// fenced off (AddressNotOurs for that VIP alone).
    | Admit of vips: (Ip * int) list * lifetime: Duration
    /// Rewrites the address lifetime, unless the fence ended before the syscall.
    | RefreshAddress of ip: Ip * prefix: int * lifetime: Duration * fenceDeadline: Instant
    /// The VIPs are answered (while the fence element lives).
    | Hold of ips: Ip list
    /// The VIPs are no longer answered (the addresses stay).
    | Unhold of ips: Ip list
    /// Not answered, addresses (address, prefix) removed, then no longer managed: a VIP whose address could
    /// not be removed stays managed.
    | Withdraw of vips: (Ip * int) list
    /// One gratuitous ARP / unsolicited NA, unless the fence ended before the syscall.
    | Announce of ip: Ip * fenceDeadline: Instant

/// How a kernel command went (for a command over several VIPs: for one of them).
type KernelOutcome =
    | Applied
    /// The fence element was written; the kernel may answer until `answeringEndsBy` at the latest (the
    /// deadline plus the time the transaction took after the fresh clock read).
    | FenceExtended of answeringEndsBy: Instant
    /// Not done because the fence had ended when the clock was read (fresh-clock rule).
    | SkippedFenceEnded
    /// Admit found the address already on the interface, not put there by Hybrid: it was left as it was
    /// (neither replaced nor fenced), and the VIP is not announced from this node.
    | AddressNotOurs
    | KernelFailed of reason: string

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Events and log lines
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// Why this node holds nothing although it runs.
type StandAsideReason =
    /// Its settings fingerprint is not the one in force.
    | FingerprintNotInForce of mine: string * inForce: string
    /// It hears none of at least two members it needs: its own LAN is most likely impaired.
    | Isolated of silent: string list

/// Something notable the shell logs (and counts) and, for stand-aside reasons, reports as a Warning Event
/// on the node's Node object.
type Notice =
    | JoinedCluster of term: int64 * incarnation: Incarnation
    | RegistrationProblem of node: string * RegistrationProblem
    | ApiFenceArmed of lanFence: FenceBound
    | ApiFenceDisarmed
    | DeposingNode of node: string * silentFor: Duration
    | NodeDeposed of node: string
    | DeposedBy of node: string
    | RegistrationDeleted
    | StandingAside of StandAsideReason
    | StandingAsideEnded
    /// This node's exclusion label (node.kubernetes.io/exclude-from-external-load-balancers) came or went.
    | VipEligibilityChanged of NodeVipEligibility
    | ClaimAcknowledgementTimedOut of group: string * missing: string list
    | ContestedClaim of group: string * by: string
    | LeftCluster

// ════════════════════════════════════════════════════════════════════════════════════════════════════
// Commands and inputs
// ════════════════════════════════════════════════════════════════════════════════════════════════════

/// What the shell must do.
type Command =
    /// Encode (FrameCodec), sign and send on the LAN (one datagram per part).
    | SendFrame of Frame
    | WriteLease of id: WriteId * LeaseWrite
    | DeleteLease of id: WriteId * name: string * version: string
    /// Re-read a Lease (after a conflict) and report it as an observation.
    | ReadLease of name: string
    | Kernel of KernelCommand
    /// Patch status.loadBalancer.ingress (when `ingress` is Some) and the vipHost annotation (when `vipHost` is
    /// Some; Some None removes it): only the parts that differ from what the Service says.
    | WriteStatus of service: ServiceKey * ingress: IngressEntry list option * vipHost: string option option
    | Emit of ServiceEvent
    /// A Warning Event on the pool ConfigMap (kube-system/kubevip): one bad entry.
    | EmitPoolConfigEvent of reason: EventReason * message: string
    /// Write the assignment on the Service (kube-vip.io/loadbalancerIPs, the label implementation=kube-vip,
    /// kube-vip.io/serviceInterface when the pool names one) from the version this node decided on.
    | AssignAddress of AddressAssignment
    /// Create the Service's macvlan on the VIP interface and run its DHCPv4 client there (docs/DHCP.md).
    | StartDhcp of DhcpWant
    /// Stop the Service's client (ReleaseLease: DHCPRELEASE when a lease is held) and delete its macvlan.
    | StopDhcp of DhcpWant * StopMode
    /// Patch the Service's lease record: kube-vip.io/requestedIP and kube-vip.io/hwaddr (Some), or remove
    /// requestedIP and empty status.loadBalancer.ingress (None: the lease was lost). spec stays 0.0.0.0.
    | RecordDhcpLease of service: ServiceKey * address: Ip option * mac: Mac
    | Note of Notice

/// What happened, as the shell reports it; every input carries the shell's monotonic clock reading.
type Input =
    /// The first input: this process's incarnation (random), the VIP addresses found on the interface
    /// (from an earlier process), whether the interface is up.
    | Started of incarnation: Incarnation * existing: (Ip * int) list * linkUp: bool * now: Instant
    | Tick of now: Instant
    | ServicesListed of Service list * now: Instant
    | ServiceUpserted of Service * now: Instant
    | ServiceDeleted of ServiceKey * now: Instant
    | SlicesListed of (string * EndpointSlice) list * now: Instant
    | SliceUpserted of name: string * EndpointSlice * now: Instant
    | SliceDeleted of name: string * now: Instant
    | LeasesListed of LeaseRecord list * now: Instant
    | LeaseUpserted of LeaseRecord * now: Instant
    | LeaseDeleted of name: string * now: Instant
    | FrameReceived of Frame * now: Instant
    | FrameDropped of FrameError * now: Instant
    /// `jitter` in [0, 1) from the shell's random source (the domain has none), for retry backoff.
    | WriteCompleted of id: WriteId * WriteOutcome * jitter: float * now: Instant
    /// How a kernel command went: `outcome` for it as a whole, except for the VIPs listed in `except` (a command
    /// over several VIPs can go otherwise for some: an Admit that finds one address foreign applies the others).
    | KernelCompleted of KernelCommand * outcome: KernelOutcome * except: (Ip * KernelOutcome) list * now: Instant
    | LinkChanged of up: bool * now: Instant
    /// The pool ConfigMap's data as listed or watched; None: there is no ConfigMap (no pools).
    | PoolConfigObserved of data: Map<string, string> option * now: Instant
    /// spec.ipFamilies and spec.ipFamilyPolicy of Services (for assignment), reported beside the Services:
    /// `listed` replaces every entry (after ServicesListed), otherwise the entries are updated.
    | ServiceFamiliesObserved of (ServiceKey * IpFamily list * IpFamilyPolicy) list * listed: bool * now: Instant
    | NodesListed of NodeObject list * now: Instant
    | NodeUpserted of NodeObject * now: Instant
    | NodeDeleted of name: string * now: Instant
    /// The VIP interface's own addresses and default gateways, as read now (at start and on every change).
    | InterfaceRead of InterfaceFacts * now: Instant
    | StopRequested of now: Instant
    /// The UPnP forwarder's state changed (enable_upnp only): external addresses for status, runtime problems.
    | ForwardingReported of ForwardingReport * now: Instant
    /// A Service's DHCP client obtained, extended or lost its lease.
    | DhcpReported of service: ServiceKey * DhcpOutcome * now: Instant
