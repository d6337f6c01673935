/// What Hybrid reports on a Service and announces for a held VIP: status writes, warnings, gratuitous
/// announcements; and the retry backoff of Lease writes.
module Hybrid.Properties.ServiceReportProperties

open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

// ── Gratuitous announcements ────────────────────────────────────────────────────────────────────────

/// vip_arpRate as the configuration allows it (rates below 500 ms fall back to 3 s).
let private genArpRate = Gen.frequency [ 1, Gen.constant 3000L; 2, chooseL 500L 20_000L ]

[<Property>]
let ``a held VIP is announced at once, again 250, 750 and 1500 ms later, then every vip_arpRate`` () =
    forAll (Gen.map2 (fun r h -> r, h) genArpRate (chooseL 0L 1_000_000L)) (fun (rate, heldAt) ->
        // Every announcement is sent exactly when it falls due.
        let dues =
            List.unfold
                (fun (state: AnnounceState) ->
                    if state.Sent >= 8 then None
                    else
                        let due = Announcements.nextDue rate state
                        Some(due, { state with Sent = state.Sent + 1; LastSentAt = due }))
                { HeldAt = heldAt; Sent = 0; LastSentAt = heldAt }
        let expected = [ 0L; 250L; 750L; 1500L ] @ [ for k in 1L .. 4L -> 1500L + k * rate ] |> List.map ((+) heldAt)
        holds (sprintf "dues %A, expected %A" dues expected) (dues = expected))

[<Property>]
let ``an announcement is never due earlier than its schedule nor within 100 ms of the previous one`` () =
    let genCase =
        gen {
            let! rate = genArpRate
            let! heldAt = chooseL 0L 1_000_000L
            // Each announcement went out at or after its due time (a busy shell is late, never early).
            let! delays = Gen.listOfLength 7 (Gen.frequency [ 2, Gen.constant 0L; 3, chooseL 0L 400L; 1, chooseL 400L 5000L ])
            return rate, heldAt, delays
        }
    forAll genCase (fun (rate, heldAt, delays) ->
        let states =
            delays
            |> List.scan
                (fun (state: AnnounceState) delay ->
                    { state with Sent = state.Sent + 1; LastSentAt = Announcements.nextDue rate state + delay })
                { HeldAt = heldAt; Sent = 0; LastSentAt = heldAt }
        allOf
            [ for state in states do
                  let due = Announcements.nextDue rate state
                  if state.Sent > 0 then
                      holds (sprintf "due %d, last sent %d" due state.LastSentAt) (due >= state.LastSentAt + Announcements.MinimumGap)
                  if state.Sent < Announcements.Burst.Length then
                      holds (sprintf "burst %d due %d" state.Sent due) (due >= heldAt + Announcements.Burst[state.Sent])
                  else holds (sprintf "periodic due %d, last %d" due state.LastSentAt) (due >= state.LastSentAt + rate) ]
        |> Prop.classify (delays |> List.exists (fun d -> d > 0L)) "late announcements")

// ── Status ──────────────────────────────────────────────────────────────────────────────────────────

/// How the Service's status looks relative to what Hybrid would write.
type private Observed =
    | AsWritten
    | IpModeDropped
    | NonCanonicalText
    | OtherPorts
    | MissingEntry
    | ExtraEntry
    | OtherAddress

let private genStatusCase =
    gen {
        let! ports = genPorts
        let! ips = Gen.elements [ [ ip "192.168.0.220" ]; [ ip "2001:db8::1" ]; [ ip "192.168.0.220"; ip "2001:db8::1" ] ]
        let! observed = Gen.elements [ AsWritten; AsWritten; IpModeDropped; NonCanonicalText; OtherPorts; MissingEntry; ExtraEntry; OtherAddress ]
        let! host = Gen.elements [ Some "node-a"; Some "node-b"; None ]
        let! seenHost = Gen.elements [ Some "node-a"; Some "node-b"; None ]
        let s = { service "default" "svc" with Ports = ports }
        let desired = ips |> List.map (Status.entry s)
        let spelled (e: IngressEntry) =
            match Ip.tryParse e.Ip with
            | Some(V6 _ as a) -> { e with Ip = groupsOf a |> Array.map (fun g -> g.ToString "X4") |> String.concat ":" }
            | _ -> e
        let ingress =
            match observed with
            | AsWritten -> desired
            | IpModeDropped -> desired |> List.map (fun e -> { e with IpMode = None })
            | NonCanonicalText -> desired |> List.map spelled
            | OtherPorts -> desired |> List.map (fun e -> { e with Ports = [ tcp 9999 ] })
            | MissingEntry -> List.tail desired
            | ExtraEntry -> desired @ [ Status.entry s (ip "192.168.0.99") ]
            | OtherAddress -> desired |> List.map (fun e -> { e with Ip = "192.168.0.98" })
        let s = { s with Ingress = ingress }
        let s = match seenHost with Some h -> annotate Annotations.VipHost h s | None -> s
        return s, desired, host, observed, seenHost
    }

[<Property>]
let ``status is written only in the parts that differ, and writing them makes the Service say what Hybrid would write`` () =
    forAll genStatusCase (fun (s, desired, host, observed, seenHost) ->
        let sameIngress = List.contains observed [ AsWritten; IpModeDropped; NonCanonicalText ]
        let ingress, vipHost = Status.changes s desired host
        let written =
            let s = match ingress with Some entries -> { s with Ingress = entries } | None -> s
            match vipHost with
            | Some(Some h) -> annotate Annotations.VipHost h s
            | Some None -> { s with Annotations = s.Annotations.Remove Annotations.VipHost }
            | None -> s
        allOf
            [ holds (sprintf "ingress %A for %A" ingress observed) (ingress.IsNone = sameIngress)
              holds (sprintf "vipHost %A, seen %A, wanted %A" vipHost seenHost host) (vipHost.IsNone = (seenHost = host))
              holds "nothing to write iff it matches" ((ingress.IsNone && vipHost.IsNone) = Status.matches s desired host)
              holds "written, it matches" (Status.matches written desired host)
              holds "written, nothing more to write" (Status.changes written desired host = (None, None)) ]
        |> Prop.collect observed)

[<Property>]
let ``an ingress entry is the canonical address marked VIP with the Service's ports`` () =
    forAll (Gen.map2 (fun a p -> a, p) genIp genPorts) (fun (address, ports) ->
        let s = { service "default" "svc" with Ports = ports }
        let e = Status.entry s address
        holds (sprintf "%A" e) (e.Ip = Ip.format address && e.IpMode = Some "VIP" && e.Ports = ports))

// ── Warnings about Services nobody announces ────────────────────────────────────────────────────────

[<Property>]
let ``a Service nobody can announce gets a Warning that says why`` () =
    let genReason =
        Gen.oneof
            [ Gen.constant (NoEligibleNode NoServingEndpoint)
              Gen.constant (NoEligibleNode(NodesWithEndpoint Set.empty))
              Gen.constant (NoLiveEligibleNode [])
              someOf 1 3 NodePool |> Gen.map NoLiveEligibleNode ]
    forAll genReason (fun reason ->
        let k = key "default" "svc"
        let w = ServiceWarnings.unserved k reason
        let expected, named =
            match reason with
            | NoEligibleNode NoServingEndpoint -> EventReason.NoServingEndpoint, []
            | NoEligibleNode _ -> EventReason.NoEligibleNode, []
            | NoLiveEligibleNode [] -> EventReason.NoLiveNode, []
            | NoLiveEligibleNode nodes -> EventReason.EligibleNodesNotLive, nodes
        holds (sprintf "%A" w) (w.Service = k && w.Type = Warning && w.Reason = expected && named |> List.forall w.Message.Contains)
        |> Prop.collect expected)

[<Property>]
let ``a Local Service without svc_election is warned about as LocalNeedsElection`` () =
    forAll (Gen.elements AllKeys) (fun k ->
        let w = ServiceWarnings.localNeedsElection k
        holds (sprintf "%A" w) (w.Service = k && w.Type = Warning && w.Reason = EventReason.LocalNeedsElection))

// ── Retries ─────────────────────────────────────────────────────────────────────────────────────────

[<Property>]
let ``a failed Lease write is retried after 100 ms doubling to 5 s, with at most half of it jitter`` () =
    let genCase = Gen.map2 (fun a j -> a, j) (Gen.choose (0, 40)) (Gen.frequency [ 3, Gen.choose (0, 1000) |> Gen.map (fun k -> float k / 1000.0); 1, Gen.elements [ -1.0; 0.0; 0.999999; 1.0; 2.0 ] ])
    forAll genCase (fun (attempts, jitter) ->
        let ceiling = if attempts >= 6 then 5000L else min 5000L (100L * (1L <<< attempts))
        let wait = ProtocolConstants.backoff attempts jitter
        let more = ProtocolConstants.backoff attempts (min 1.0 (max 0.0 jitter) + 0.1)
        allOf
            [ holds (sprintf "attempt %d, jitter %f: %d ms, ceiling %d" attempts jitter wait ceiling) (wait >= ceiling / 2L && wait <= ceiling)
              holds "more jitter never waits less" (more >= wait) ]
        |> Prop.classify (attempts >= 6) "capped at 5 s")
