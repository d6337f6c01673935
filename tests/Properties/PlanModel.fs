/// A model of the C# shell: executes a plan's actions against a snapshot the way the shell and the API
/// server would (with the compare-and-swap preconditions checked), so that plans can be applied and
/// re-planned. An action that the shell could not execute (a stale version, announcing an address that is
/// not on the interface) throws, which fails the property that applied it.
module Hybrid.Properties.PlanModel

open FsCheck.FSharp
open Hybrid.Domain

exception ShellRefused of string

let private refuse fmt = Printf.kprintf (fun s -> raise (ShellRefused s)) fmt

/// A new resourceVersion, different from every earlier one of that object.
let private nextVersion (previous: string option) =
    match previous with
    | Some v -> v + "'"
    | None -> "created"

let private updateVip (s: Snapshot) (address: Ip) (what: string) (f: VipState -> VipState) =
    if not (s.Vips |> List.exists (fun v -> v.Ip = address)) then refuse "%s %s: not on the interface" what (Ip.format address)
    { s with Vips = s.Vips |> List.map (fun v -> if v.Ip = address then f v else v) }

let private lease (s: Snapshot) (name: GroupId) = s.Leases |> List.tryFind (fun l -> l.Name = name)

let private checkVersion (s: Snapshot) (name: GroupId) (expected: string option) (what: string) =
    let actual = lease s name |> Option.map _.Version
    if actual <> expected then refuse "%s %s: expected version %A, the API server has %A" what name expected actual

let private setLease (s: Snapshot) (name: GroupId) (holder: string option) =
    let version = nextVersion (lease s name |> Option.map _.Version)
    let l = { Name = name; Holder = holder; Version = version; ChangedSeenAt = s.Now }
    { s with Leases = l :: (s.Leases |> List.filter (fun x -> x.Name <> name)) }

/// Executes one action.
let step (s: Snapshot) (action: Action) : Snapshot =
    let now = s.Now
    match action with
    | RemoveVip(address, _) ->
        if not (s.Vips |> List.exists (fun v -> v.Ip = address)) then refuse "RemoveVip %s: not on the interface" (Ip.format address)
        { s with Vips = s.Vips |> List.filter (fun v -> v.Ip <> address) }
    | AddVip(address, prefix, lifetime) ->
        if s.Vips |> List.exists (fun v -> v.Ip = address) then refuse "AddVip %s: already on the interface" (Ip.format address)
        let vip =
            { Ip = address
              Prefix = prefix
              ExpiresAt = Some(now + lifetime)
              Announce = Some { AddedAt = now; Sent = 0; LastSentAt = now } }
        { s with Vips = s.Vips @ [ vip ] }
    | RefreshVip(address, _, lifetime) -> updateVip s address "RefreshVip" (fun v -> { v with ExpiresAt = Some(now + lifetime) })
    | Announce address ->
        updateVip s address "Announce" (fun v ->
            match v.Announce with
            | Some a -> { v with Announce = Some { a with Sent = a.Sent + 1; LastSentAt = now } }
            // Found at startup: the first announcement of this process starts its schedule.
            | None -> { v with Announce = Some { AddedAt = now; Sent = 1; LastSentAt = now } })
    | ClaimLease(name, expected, previous, confirm) ->
        checkVersion s name expected "ClaimLease"
        match confirm with
        | Some(node, version) ->
            let actual = s.Heartbeats |> List.tryFind (fun h -> h.Node = node) |> Option.map _.Version
            let expectedHb = if version = "" then None else Some version
            if actual <> expectedHb then refuse "ClaimLease %s: confirmation of %s expected %A, found %A" name node expectedHb actual
        | None -> ()
        let s = setLease s name (Some s.Self.Node)
        let claim: Claim = { Epoch = s.Self.Fence.Epoch; From = previous }
        { s with Self = { s.Self with Claims = s.Self.Claims.Add(name, claim) } }
    | ReleaseLease(name, version) ->
        checkVersion s name (Some version) "ReleaseLease"
        let s = setLease s name None
        { s with Self = { s.Self with Claims = s.Self.Claims.Remove name } }
    | DeleteLease(name, version) ->
        checkVersion s name (Some version) "DeleteLease"
        { s with Leases = s.Leases |> List.filter (fun l -> l.Name <> name) }
    | WriteStatus(k, ingress, host) ->
        if not (s.Services |> List.exists (fun x -> x.Key = k)) then refuse "WriteStatus %O: no such service" k
        let write (x: Service) =
            if x.Key <> k then x
            else
                let annotations =
                    match host with
                    | Some h -> x.Annotations.Add(Annotations.VipHost, h)
                    | None -> x.Annotations.Remove Annotations.VipHost
                { x with Ingress = ingress; Annotations = annotations }
        { s with Services = s.Services |> List.map write }
    | Emit _ -> s

/// Executes a plan: every action in order, then the shell remembers the warnings that apply.
let apply (plan: Plan) (s: Snapshot) : Snapshot =
    let s = plan.Actions |> List.fold step s
    { s with EmittedWarnings = plan.ActiveWarnings }

let isLeaseWrite (action: Action) =
    match action with
    | ClaimLease _ | ReleaseLease _ | DeleteLease _ -> true
    | _ -> false

/// Plans, applies (then lets `server` alter what was stored) and re-plans up to `rounds` times; returns
/// every (snapshot, plan) pair in order, stopping after the first empty plan.
let runWith (server: Snapshot -> Snapshot) (rounds: int) (s: Snapshot) : (Snapshot * Plan) list =
    let rec go k s acc =
        let plan = Plan.compute s
        let acc = (s, plan) :: acc
        if plan.Actions.IsEmpty || k = rounds then List.rev acc else go (k + 1) (server (apply plan s)) acc
    go 0 s []

/// Plans, applies and re-plans up to `rounds` times (see runWith).
let run (rounds: int) (s: Snapshot) : (Snapshot * Plan) list = runWith id rounds s

/// The steady state reached from a snapshot (fails if none within `rounds` applications).
let converge (rounds: int) (s: Snapshot) : Snapshot =
    match List.last (run rounds s) with
    | s, plan when plan.Actions.IsEmpty -> s
    | _, plan -> failwithf "no steady state after %d rounds; last plan: %A" rounds plan.Actions

/// The actions of a plan that emit Warning Events.
let warnings (plan: Plan) =
    plan.Actions |> List.choose (function Emit e when e.Type = Warning -> Some e | _ -> None)

/// A snapshot part-way through a node's life: a healthy node (half the time the only one left) after one to four rounds of plan and apply
/// (so it has claimed groups, often not yet added their VIPs, or holds them with announcement state), then
/// met by a change: time moves on (heartbeats expire, announcements and refreshes fall due) while its
/// heartbeat keeps renewing, stalls, renews too slowly to write addresses, or its fence is replaced by an
/// arbitrary one.
let genEvolvedSnapshot: FsCheck.Gen<Snapshot> =
    gen {
        let! s = Generators.genHealthySnapshot
        // Half the time the other nodes have stopped (released heartbeats): this node takes every group.
        let! alone = Generators.bool 1 1
        let s =
            if not alone then s
            else { s with Heartbeats = s.Heartbeats |> List.map (fun h -> if h.Node = s.Self.Node then h else { h with Holder = None }) }
        let! k = Gen.frequency [ 3, Gen.constant 0; 1, Gen.constant 1; 1, Gen.constant 2; 1, Gen.constant 3 ]
        let state, plan = run k s |> List.last
        let evolved = apply plan state
        let! later = Gen.frequency [ 2, Gen.constant 0L; 1, Gen.choose (1, 3000) |> Gen.map int64 ]
        let now = evolved.Now + later
        let! fence =
            Gen.frequency
                [ 2, Gen.choose (0, 300) |> Gen.map (fun a -> { evolved.Self.Fence with LastRenewalStartedAt = Some(now - int64 a) })
                  1, Gen.constant evolved.Self.Fence
                  1, Gen.choose (301, int s.Config.Timing.RenewDeadline - 1) |> Gen.map (fun a -> { evolved.Self.Fence with LastRenewalStartedAt = Some(now - int64 a) })
                  1, Generators.genFence |> Gen.map (fun f -> { f with LastRenewalStartedAt = f.LastRenewalStartedAt |> Option.map ((+) later) }) ]
        return
            { evolved with
                Self = { evolved.Self with Fence = fence }
                Now = now
                // The kernel has deleted what expired meanwhile.
                Vips = evolved.Vips |> List.filter (fun v -> v.ExpiresAt |> Option.forall (fun e -> e > now)) }
    }

/// Any snapshot: arbitrary, healthy, or part-way through a node's life.
let genAnySnapshot = Gen.oneof [ Generators.genSnapshot; Generators.genHealthySnapshot; genEvolvedSnapshot ]
