// Membership (docs/PROTOCOL.md §2, §6): who is registered, which fingerprint is in force, who counts.
namespace Hybrid.Domain

/// A registration as this node observed it.
type ObservedRegistration =
    { Registration: Registration
      Version: string
      /// When this node observed this version (its own clock): an armed API fence is waited out from here.
      ChangedSeenAt: Instant }

/// A registration observed deleted: since when, and what it said last.
type AbsentRegistration =
    { Since: Instant
      Last: ObservedRegistration }

/// Everything this node knows of the registrations.
type RegistrationView =
    { Known: Map<string, ObservedRegistration>
      /// Registration Leases whose annotations could not be read (logged; their node is not a member).
      Unreadable: Map<string, RegistrationProblem>
      /// Registrations observed deleted (absence is timed from when it was seen).
      Absent: Map<string, AbsentRegistration> }

[<RequireQualifiedAccess>]
module RegistrationView =
    let empty = { Known = Map.empty; Unreadable = Map.empty; Absent = Map.empty }

    let observe (now: Instant) (lease: LeaseRecord) (registration: Registration) (view: RegistrationView) =
        let changed =
            match view.Known.TryFind registration.Node with
            | Some known when known.Version = lease.Version -> known.ChangedSeenAt
            | _ -> now
        { view with
            Known = view.Known.Add(registration.Node, { Registration = registration; Version = lease.Version; ChangedSeenAt = changed })
            Absent = view.Absent.Remove registration.Node }

    let unreadable (leaseName: string) (problem: RegistrationProblem) (view: RegistrationView) =
        { view with Unreadable = view.Unreadable.Add(leaseName, problem) }

    /// A registration Lease was deleted: the node counts as absent from now (until it registers again).
    let deleted (now: Instant) (node: string) (view: RegistrationView) =
        match view.Known.TryFind node with
        | Some last -> { view with Known = view.Known.Remove node; Absent = view.Absent.Add(node, { Since = now; Last = last }) }
        | None -> view

/// The membership of one node's view: the fingerprint in force and the members.
type Membership =
    { /// The fingerprint most Joined registrations carry (ties: the smaller); None when nobody is Joined.
      InForce: string option
      /// Joined registrations with the fingerprint in force, by node.
      Members: Map<string, ObservedRegistration> }

[<RequireQualifiedAccess>]
module Membership =
    /// The fingerprint in force: the one most Joined registrations carry, ties broken by the smaller value,
    /// so that every node with the same view agrees and a rolling change of settings switches once.
    let inForce (view: RegistrationView) : string option =
        view.Known
        |> Map.toList
        |> List.choose (fun (_, o) -> if o.Registration.State = Joined then Some o.Registration.Fingerprint else None)
        |> List.countBy id
        |> List.sortWith (fun (fa, ca) (fb, cb) ->
            match compare cb ca with
            | 0 -> compare fa fb
            | c -> c)
        |> List.tryHead
        |> Option.map fst

    let ofView (view: RegistrationView) : Membership =
        let force = inForce view
        { InForce = force
          Members =
            view.Known
            |> Map.filter (fun _ o -> o.Registration.State = Joined && Some o.Registration.Fingerprint = force) }

    /// Whether `node` is a member (itself included when it is Joined with the fingerprint in force).
    let isMember (membership: Membership) (node: string) = membership.Members.ContainsKey node

    /// The members other than `self`.
    let others (membership: Membership) (self: string) = membership.Members |> Map.remove self

    /// The nodes among which each Service's janitor (who posts its Warnings) is chosen: the members, and a node
    /// deposed less than `grace` ago, which rejoins at once when it is alive (a stall got it deposed): handing
    /// its duties to another node meanwhile would have that node post its Warnings again, and the node itself
    /// once more when it is back. A node that left keeps none.
    let janitors (now: Instant) (grace: Duration) (membership: Membership) (view: RegistrationView) : string list =
        let recentlyDeposed =
            view.Known
            |> Map.filter (fun _ o -> (match o.Registration.State with Deposed _ -> true | _ -> false) && now - o.ChangedSeenAt < grace)
        Set.union (membership.Members |> Map.keys |> Set.ofSeq) (recentlyDeposed |> Map.keys |> Set.ofSeq) |> Set.toList

    /// When the janitors change without any input: a recently deposed node's grace ends.
    let janitorsChangeAt (now: Instant) (grace: Duration) (view: RegistrationView) : Instant option =
        view.Known
        |> Map.toList
        |> List.choose (fun (_, o) ->
            match o.Registration.State with
            | Deposed _ when now < o.ChangedSeenAt + grace -> Some(o.ChangedSeenAt + grace)
            | _ -> None)
        |> function
            | [] -> None
            | ends -> Some(List.min ends)

    /// The term a node's registration has now, if any.
    let termOf (view: RegistrationView) (node: string) =
        view.Known.TryFind node |> Option.map _.Registration.Term

    /// Whether a node's membership that began at `term` has ended in this view: it left, was deposed, or
    /// joined again (another term). Absent or unreadable registrations have not (yet) ended anything.
    let ended (view: RegistrationView) (node: string) (term: int64) =
        match view.Known.TryFind node with
        | Some o ->
            o.Registration.Term <> term
            || (match o.Registration.State with
                | Joined -> false
                | Left | Deposed _ -> true)
        | None -> false

    /// Nodes whose registration records an intent to depose `self` at `incarnation`: they stay in its
    /// required set whatever else happens to them (docs/PROTOCOL.md §3, why (a) before (b)) — until their
    /// membership has ended and `self` has since written its registration (`lastWriteStartedAt` later than
    /// the observation): a (b) decided before the end was decided on an older version and can no longer land,
    /// and an incarnation whose membership ended decides no new one.
    let pinnedAgainst (view: RegistrationView) (self: string) (incarnation: Incarnation) (lastWriteStartedAt: Instant option) : string list =
        view.Known
        |> Map.toList
        |> List.choose (fun (node, o) ->
            match o.Registration.Deposing with
            | Some intent when intent.Target = self && intent.Incarnation = incarnation ->
                let over =
                    o.Registration.State <> Joined && lastWriteStartedAt |> Option.exists (fun t -> t > o.ChangedSeenAt)
                if over then None else Some node
            | _ -> None)
