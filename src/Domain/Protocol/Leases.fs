// The two kinds of Lease the protocol writes (docs/PROTOCOL.md §1): registrations and group Leases, how they
// are read from what the API server returns, and what a write sends.
namespace Hybrid.Domain

open System

/// A Lease as the shell observed it (coordination.k8s.io/v1), reduced to what the protocol reads.
type LeaseRecord =
    { Name: string
      /// metadata.resourceVersion: the compare-and-swap token.
      Version: string
      /// spec.holderIdentity (None when empty).
      Holder: string option
      /// spec.leaseTransitions.
      Transitions: int
      Labels: Map<string, string>
      Annotations: Map<string, string> }

/// Where a node stands in its registration.
type RegistrationState =
    | Joined
    /// Stopped gracefully after withdrawing every VIP.
    | Left
    /// Silent for too long; `by` deposed it (docs/PROTOCOL.md §3).
    | Deposed of by: string

/// Which fence the node may rely on besides its LAN fence.
type FenceMode =
    | LanFence
    /// An API fence is armed: renewed every P_A while armed.
    | ApiFence

/// A deposition under way: the deposer records it in its own registration first (docs/PROTOCOL.md §3).
type Intent = { Target: string; Incarnation: Incarnation }

/// A node's registration (Lease hybrid-node-<node>).
type Registration =
    { Node: string
      Incarnation: Incarnation
      /// Grows whenever the node joins after having left or been deposed, or with another fingerprint.
      Term: int64
      State: RegistrationState
      Fence: FenceMode
      Fingerprint: string
      /// The members (node → term) this incarnation recorded at its last write: each of them may depose it.
      Members: Map<string, int64>
      Deposing: Intent option
      /// The node's VIP interface as its agent read it: addresses no Service may take (AddressPolicy).
      Interface: InterfaceFacts }

/// Who a group Lease names.
type GroupHolder =
    { Node: string
      /// None for a Lease written by an older agent, which did not record it.
      Incarnation: Incarnation option }

/// Why a registration Lease could not be read.
type RegistrationProblem =
    | MissingField of annotation: string
    | BadField of annotation: string * value: string

[<RequireQualifiedAccess>]
module RegistrationProblem =
    let describe (problem: RegistrationProblem) =
        match problem with
        | MissingField field -> field + " is missing"
        | BadField(field, value) -> field + "=" + EventText.quote value

/// What a Lease in the Lease namespace is, for the protocol.
type LeaseKind =
    | RegistrationLease of Registration
    | UnreadableRegistration of lease: string * RegistrationProblem
    | GroupLease of GroupHolder option
    /// Not ours (another controller's Lease that happens to match the selector).
    | OtherLease

/// A Lease write: a create (Expected = None; fails if the Lease exists) or a compare-and-swap from the
/// version Expected (fails if it changed or is gone). Annotations mapped to None are removed.
type LeaseWrite =
    { Name: string
      Expected: string option
      Holder: string option
      Transitions: int
      /// spec.leaseDurationSeconds, for humans reading `kubectl get lease` (the protocol does not use it).
      DurationSeconds: int
      Labels: Map<string, string>
      Annotations: Map<string, string option> }

[<RequireQualifiedAccess>]
module LeaseKeys =
    let ManagedBy = "app.kubernetes.io/managed-by"
    let ManagedByValue = "hybrid"
    let Kind = "hybrid.kube-vip.io/lease-kind"
    let RegistrationKind = "registration"
    let GroupKind = "group"
    let private prefix = "hybrid.kube-vip.io/"
    let Node = prefix + "node"
    let Incarnation = prefix + "incarnation"
    let Term = prefix + "term"
    let State = prefix + "state"
    let DeposedBy = prefix + "deposed-by"
    let Fence = prefix + "fence"
    let Fingerprint = prefix + "fingerprint"
    let Members = prefix + "members"
    let Deposing = prefix + "deposing"
    let VipAddresses = prefix + "vip-interface-addresses"
    let VipGateways = prefix + "vip-interface-gateways"

    /// The label selector of every Lease the agent writes.
    let Selector = ManagedBy + "=" + ManagedByValue

[<RequireQualifiedAccess>]
module Registration =
    let private stateText state =
        match state with
        | Joined -> "joined"
        | Left -> "left"
        | Deposed _ -> "deposed"

    let private membersText (members: Map<string, int64>) =
        members |> Map.toSeq |> Seq.map (fun (n, t) -> n + "=" + string t) |> String.concat ","

    let private parseMembers (text: string) : Map<string, int64> option =
        if String.IsNullOrWhiteSpace text then Some Map.empty
        else
            let entries =
                text.Split ','
                |> Array.map (fun entry ->
                    match entry.LastIndexOf '=' with
                    | i when i > 0 ->
                        match Int64.TryParse(entry.Substring(i + 1), Globalization.CultureInfo.InvariantCulture) with
                        | true, term -> Some(entry.Substring(0, i), term)
                        | _ -> None
                    | _ -> None)
            if entries |> Array.forall Option.isSome then Some(entries |> Array.choose id |> Map.ofArray) else None

    let private parseIntent (text: string) : Intent option =
        match text.LastIndexOf '/' with
        | i when i > 0 ->
            Incarnation.parse (text.Substring(i + 1)) |> Option.map (fun inc -> { Target = text.Substring(0, i); Incarnation = inc })
        | _ -> None

    /// Reads a registration from its Lease; every field is required except the intent.
    let read (lease: LeaseRecord) : Result<Registration, RegistrationProblem> =
        let field key = lease.Annotations |> Map.tryFind key
        let required key (parse: string -> 'a option) =
            match field key with
            | None -> Error(MissingField key)
            | Some text ->
                match parse text with
                | Some v -> Ok v
                | None -> Error(BadField(key, text))
        let state (text: string) =
            match text with
            | "joined" -> Some Joined
            | "left" -> Some Left
            | "deposed" -> Some(Deposed(defaultArg (field LeaseKeys.DeposedBy) ""))
            | _ -> None
        let fence (text: string) =
            match text with
            | "lan" -> Some LanFence
            | "api" -> Some ApiFence
            | _ -> None
        let term (text: string) =
            match Int64.TryParse(text, Globalization.CultureInfo.InvariantCulture) with
            | true, v when v >= 0L -> Some v
            | _ -> None
        let nonEmpty (text: string) = if text = "" then None else Some text
        let intent =
            match field LeaseKeys.Deposing with
            | None | Some "" -> Ok None
            | Some text ->
                match parseIntent text with
                | Some i -> Ok(Some i)
                | None -> Error(BadField(LeaseKeys.Deposing, text))
        // Optional: registrations written before the address policy have none.
        let vipInterface =
            let addresses = defaultArg (field LeaseKeys.VipAddresses) ""
            let gateways = defaultArg (field LeaseKeys.VipGateways) ""
            match InterfaceFacts.parse addresses gateways with
            | Some facts -> Ok facts
            | None when (InterfaceFacts.parse addresses "").IsNone -> Error(BadField(LeaseKeys.VipAddresses, addresses))
            | None -> Error(BadField(LeaseKeys.VipGateways, gateways))
        match required LeaseKeys.Node nonEmpty, required LeaseKeys.Incarnation Incarnation.parse, required LeaseKeys.Term term,
              required LeaseKeys.State state, required LeaseKeys.Fence fence, required LeaseKeys.Fingerprint nonEmpty,
              required LeaseKeys.Members parseMembers, intent, vipInterface with
        | Ok node, Ok inc, Ok t, Ok s, Ok f, Ok fp, Ok members, Ok i, Ok facts ->
            Ok
                { Node = node
                  Incarnation = inc
                  Term = t
                  State = s
                  Fence = f
                  Fingerprint = fp
                  Members = members
                  Deposing = i
                  Interface = facts }
        | Error e, _, _, _, _, _, _, _, _
        | _, Error e, _, _, _, _, _, _, _
        | _, _, Error e, _, _, _, _, _, _
        | _, _, _, Error e, _, _, _, _, _
        | _, _, _, _, Error e, _, _, _, _
        | _, _, _, _, _, Error e, _, _, _
        | _, _, _, _, _, _, Error e, _, _
        | _, _, _, _, _, _, _, Error e, _
        | _, _, _, _, _, _, _, _, Error e -> Error e

    /// The write that makes a registration say `registration`, from the version `expected` (None: create).
    let write (leaseName: string) (expected: string option) (durationSeconds: int) (registration: Registration) : LeaseWrite =
        let r = registration
        { Name = leaseName
          Expected = expected
          Holder = (match r.State with Joined -> Some r.Node | _ -> None)
          Transitions = 0
          DurationSeconds = durationSeconds
          Labels = Map.ofList [ LeaseKeys.ManagedBy, LeaseKeys.ManagedByValue; LeaseKeys.Kind, LeaseKeys.RegistrationKind ]
          Annotations =
            Map.ofList
                [ LeaseKeys.Node, Some r.Node
                  LeaseKeys.Incarnation, Some(string r.Incarnation)
                  LeaseKeys.Term, Some(string r.Term)
                  LeaseKeys.State, Some(stateText r.State)
                  LeaseKeys.DeposedBy, (match r.State with Deposed by -> Some by | _ -> None)
                  LeaseKeys.Fence, Some(match r.Fence with LanFence -> "lan" | ApiFence -> "api")
                  LeaseKeys.Fingerprint, Some r.Fingerprint
                  LeaseKeys.Members, Some(membersText r.Members)
                  LeaseKeys.Deposing, r.Deposing |> Option.map (fun i -> i.Target + "/" + string i.Incarnation)
                  LeaseKeys.VipAddresses, (match r.Interface.Addresses with [] -> None | _ -> Some(InterfaceFacts.addressesText r.Interface))
                  LeaseKeys.VipGateways, (match r.Interface.Gateways with [] -> None | _ -> Some(InterfaceFacts.gatewaysText r.Interface)) ] }

[<RequireQualifiedAccess>]
module GroupLeases =
    /// The write that makes a group Lease name `holder` (None: nobody), from `expected` (None: create).
    let write (name: string) (expected: string option) (transitions: int) (holder: GroupHolder option) : LeaseWrite =
        { Name = name
          Expected = expected
          Holder = holder |> Option.map _.Node
          Transitions = transitions
          DurationSeconds = 0
          Labels = Map.ofList [ LeaseKeys.ManagedBy, LeaseKeys.ManagedByValue; LeaseKeys.Kind, LeaseKeys.GroupKind ]
          Annotations =
            Map.ofList [ LeaseKeys.Incarnation, holder |> Option.bind _.Incarnation |> Option.map string ] }

[<RequireQualifiedAccess>]
module LeaseKind =
    /// Classifies a Lease of the Lease namespace: a registration by its kind label, a group Lease by its name.
    let ofRecord (isGroupName: string -> bool) (lease: LeaseRecord) : LeaseKind =
        match lease.Labels |> Map.tryFind LeaseKeys.Kind with
        | Some kind when kind = LeaseKeys.RegistrationKind ->
            match Registration.read lease with
            | Ok r -> RegistrationLease r
            | Error problem -> UnreadableRegistration(lease.Name, problem)
        | _ when isGroupName lease.Name ->
            let holder =
                lease.Holder
                |> Option.map (fun node ->
                    { Node = node
                      Incarnation = lease.Annotations |> Map.tryFind LeaseKeys.Incarnation |> Option.bind Incarnation.parse })
            GroupLease holder
        | _ -> OtherLease
