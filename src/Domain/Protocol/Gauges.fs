// What one node's protocol state says right now, as numbers for the metrics endpoint. Derived from the
// state on demand, never stored in it: nothing here changes a decision.
namespace Hybrid.Domain

/// Which fence lets this node's kernel answer now (docs/PROTOCOL.md §2).
[<RequireQualifiedAccess>]
type FenceInForce =
    /// Its peers' echoes (or nobody can depose it): the LAN fence is the later bound.
    | Lan
    /// The API fence outlasts the LAN fence.
    | Api
    /// Neither: the node may not answer (not joined, stopping, out of force, or both fences lapsed).
    | Nothing

/// One node's gauges.
type NodeGauges =
    { /// Services with an address this node's kernel answers for.
      ActiveServices: int
      /// VIPs this node's kernel answers for (while the fence element lives).
      VipsHeld: int
      /// Groups whose claim is acknowledged and held here.
      GroupsHeld: int
      /// Holds at least one group (with svc_election=false the only group is the leader's).
      IsLeader: bool
      Fence: FenceInForce
      /// Time left of the fence deadline written into the kernel: how long the kernel goes on answering if the
      /// agent stopped now (0 when no fence element is written).
      FenceMargin: Duration
      /// Heartbeat frames dropped since this incarnation's LAN state began, per reason name (every reason listed).
      Dropped: (string * int64) list
      /// Services whose ports the UPnP forwarder reports mapped on a gateway (enable_upnp).
      UpnpForwardedServices: int }

[<RequireQualifiedAccess>]
module Gauges =
    /// The reason a dropped frame is counted under: one stable snake_case word per kind of drop.
    let dropReasonName (reason: DropReason) =
        match reason with
        | Undecodable TooShort -> "too_short"
        | Undecodable NotAHeartbeat -> "not_a_heartbeat"
        | Undecodable(UnsupportedVersion _) -> "unsupported_version"
        | Undecodable(Malformed _) -> "malformed"
        | Undecodable BadSignature -> "bad_signature"
        | OwnFrame -> "own_frame"
        | WrongFingerprint -> "wrong_fingerprint"
        | NotAMember -> "not_a_member"
        | StaleIncarnation -> "stale_incarnation"
        | Replayed -> "replayed"

    /// Every reason name, in the order they are reported.
    let DropReasonNames =
        [ Undecodable TooShort; Undecodable NotAHeartbeat; Undecodable(UnsupportedVersion 0); Undecodable(Malformed "")
          Undecodable BadSignature; OwnFrame; WrongFingerprint; NotAMember; StaleIncarnation; Replayed ]
        |> List.map dropReasonName

    /// The fence whose bound is the node's, when the node may answer at all.
    let private fenceInForce (s: NodeState) =
        if not (FenceBound.allows s.Now (Protocol.fence s s.Membership)) then FenceInForce.Nothing
        else
            let lan = Protocol.lanFence s
            if FenceBound.later lan (Protocol.apiFence s) = lan && FenceBound.allows s.Now lan then FenceInForce.Lan
            else FenceInForce.Api

    let private dropped (s: NodeState) =
        let counted =
            s.Lan.Dropped
            |> Map.toList
            |> List.map (fun (reason, n) -> dropReasonName reason, n)
            |> List.groupBy fst
            |> List.map (fun (name, ns) -> name, ns |> List.sumBy snd)
            |> Map.ofList
        DropReasonNames |> List.map (fun name -> name, defaultArg (counted.TryFind name) 0L)

    let ofState (s: NodeState) : NodeGauges =
        let held = s.Kernel.Vips |> Map.filter (fun _ v -> v.Held)
        let groupsHeld = s.Roles |> Map.filter (fun _ r -> r = Holding) |> Map.count
        { ActiveServices =
            s.Desired.States
            |> Map.filter (fun _ state ->
                match state with
                | Member(ips, _) -> ips |> List.exists held.ContainsKey
                | _ -> false)
            |> Map.count
          VipsHeld = held.Count
          GroupsHeld = groupsHeld
          IsLeader = groupsHeld > 0
          Fence = fenceInForce s
          FenceMargin =
            match s.Kernel.FenceWritten with
            | Some deadline -> max 0L (deadline - s.Now)
            | None -> 0L
          Dropped = dropped s
          UpnpForwardedServices = s.Forwarding.External |> Map.filter (fun _ ips -> not ips.IsEmpty) |> Map.count }
