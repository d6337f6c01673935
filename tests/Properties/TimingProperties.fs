/// The protocol's timings and the safety inequalities of docs/PROTOCOL.md §7, stated with the document's own
/// numbers (ρ = 0.1 %, ε = 10 ms) in exact decimal arithmetic.
module Hybrid.Properties.TimingProperties

open Xunit
open FsCheck
open FsCheck.FSharp
open FsCheck.Xunit
open Hybrid.Domain
open Hybrid.Properties.Generators

let private rho = 0.001m
let private epsilon = 10m

/// The rules of §7, each with the variable a refusal names: the refused configurations.
let private broken (h: int64) (rl: int64) (dl: int64) (da: int64) (ra: int64) (pa: int64) : string list =
    [ if decimal rl < 2m * decimal h + 2m * epsilon then "lan_renew_deadline"
      if decimal dl * (1m - rho) <= decimal rl * (1m + rho) + epsilon then "lan_lease_duration"
      if pa >= ra then "vip_retryperiod"
      if decimal da * (1m - rho) <= decimal ra * (1m + rho) + epsilon then "vip_leaseduration" ]

/// The smallest duration that exceeds `earlier` by the margins, from the document's numbers.
let private boundary (earlier: int64) = exceeding earlier 0L

/// Timings on, next to, and far from every boundary of §7.
let private genTiming =
    let near (b: int64) = Gen.frequency [ 3, chooseL (b - 3L) (b + 3L); 1, chooseL (max 1L (b - 500L)) (b + 2000L) ]
    gen {
        let! h = chooseL 1L 500L
        let! rl = near (2L * h + 2L * Timing.KernelSlack)
        let rl = max 1L rl
        let! dl = near (boundary rl)
        let! ra = chooseL 2L 10_000L
        let! pa = Gen.frequency [ 3, chooseL (max 1L (ra - 3L)) (ra + 3L); 2, chooseL 1L ra ]
        let! da = near (boundary ra)
        return h, rl, dl, da, ra, pa
    }

let private classifyRules (h, rl, dl, da, ra, pa) (p: Property) =
    let rules = broken h rl dl da ra pa
    p
    |> Prop.classify rules.IsEmpty "accepted"
    |> Prop.classify (List.contains "lan_renew_deadline" rules) "R_L < 2h + 2ε"
    |> Prop.classify (List.contains "lan_lease_duration" rules) "D_L too close to R_L"
    |> Prop.classify (List.contains "vip_retryperiod" rules) "P_A >= R_A"
    |> Prop.classify (List.contains "vip_leaseduration" rules) "D_A too close to R_A"
    |> Prop.classify (rules.Length > 1) "several rules broken"

[<Fact>]
let ``the margins are the documented ones: clocks differ by at most 0.1 %, the kernel answers at most 10 ms late`` () =
    Assert.Equal(1L, Timing.ClockDriftPerMille)
    Assert.Equal(10L, Timing.KernelSlack)

[<Property(MaxTest = 300)>]
let ``the timing rules refuse exactly the configurations the safety inequalities refuse`` () =
    forAll genTiming (fun ((h, rl, dl, da, ra, pa) as t) ->
        let rules = broken h rl dl da ra pa
        match Timing.create h rl dl da ra pa with
        | Ok timing ->
            allOf
                [ holds (sprintf "accepted although %A break" rules) rules.IsEmpty
                  holds "every value kept"
                      (timing.HeartbeatInterval = h && timing.LanRenewDeadline = rl && timing.LanLeaseDuration = dl
                       && timing.ApiLeaseDuration = da && timing.ApiRenewDeadline = ra && timing.ApiRetryPeriod = pa) ]
        | Error problems -> holds (sprintf "refused (%A) although no rule breaks" problems) (not rules.IsEmpty)
        |> classifyRules t)

[<Property(MaxTest = 300)>]
let ``every broken rule is reported once, naming its variable and the variable it is measured against`` () =
    let against =
        Map
            [ "lan_renew_deadline", "lan_interval"
              "lan_lease_duration", "lan_renew_deadline"
              "vip_retryperiod", "vip_renewdeadline"
              "vip_leaseduration", "vip_renewdeadline" ]
    forAll genTiming (fun ((h, rl, dl, da, ra, pa) as t) ->
        let rules = broken h rl dl da ra pa
        let problems = match Timing.create h rl dl da ra pa with Ok _ -> [] | Error problems -> problems
        allOf
            [ holds (sprintf "named %A, broken %A" (problems |> List.map _.Variable) rules) (List.sort (problems |> List.map _.Variable) = List.sort rules)
              for p in problems do
                  holds (sprintf "%s: %s" p.Variable p.Problem) (p.Problem.Contains against[p.Variable]) ]
        |> classifyRules t)

[<Fact>]
let ``the defaults satisfy every rule`` () =
    let t = DefaultTiming
    Assert.Empty(broken t.HeartbeatInterval t.LanRenewDeadline t.LanLeaseDuration t.ApiLeaseDuration t.ApiRenewDeadline t.ApiRetryPeriod)

[<Fact>]
let ``R_L just under 2h plus twice the kernel slack is refused and R_L at it accepted`` () =
    // An echo is up to two intervals old when the next one arrives, and the API fence is armed half the margin
    // left ahead: with a margin under 2ε the alarm would come less than the kernel slack before the fence ends.
    let create rl = Timing.create 100L rl 1000L 3000L 2000L 500L
    for rl in [ 200L; 219L ] do
        match create rl with
        | Error [ p ] -> Assert.Equal("lan_renew_deadline", p.Variable)
        | other -> Assert.Fail(sprintf "R_L = %d gave %A" rl other)
    Assert.True(Result.isOk (create 220L))
    Assert.True(ProtocolConstants.armLead (Result.defaultValue DefaultTiming (create 220L)) >= Timing.KernelSlack)

[<Fact>]
let ``at the defaults the API fence is armed when the LAN fence has 100 ms left, half its 200 ms margin between echoes`` () =
    // docs/PROTOCOL.md §2, when to arm: (R_L - 2h)/2 = (400 - 200)/2 ms.
    Assert.Equal(400L, DefaultTiming.LanRenewDeadline)
    Assert.Equal(100L, ProtocolConstants.armLead DefaultTiming)

/// Jitter as a random source gives it, with the ends of its range and values outside it.
let private genJitter =
    Gen.frequency
        [ 4, Gen.choose (0, 1_000_000) |> Gen.map (fun n -> float n / 1_000_000.0)
          1, Gen.elements [ 0.0; 1.0; -0.5; 1.5 ] ]

[<Property(MaxTest = 300)>]
let ``a silent watch is given up only after the server's own timeout has passed`` () =
    forAll genJitter (fun jitter ->
        let seconds = Hybrid.Facade.Configuration.WatchTimeoutSeconds jitter
        let limit = Hybrid.Facade.Configuration.WatchSilenceLimitMs seconds
        allOf
            [ holds (sprintf "timeout %d s outside four to six minutes" seconds) (seconds >= 240 && seconds <= 360)
              holds (sprintf "gives up after %d ms, before the server's %d s timeout plus 10 s" limit seconds)
                  (limit >= int64 seconds * 1000L + 10_000L) ]
        |> Prop.classify (jitter <= 0.0 || jitter >= 1.0) "jitter at or beyond the range's ends")

[<Fact>]
let ``watches spread their reconnections over the whole range`` () =
    let timeouts = [ 0.0; 0.5; 1.0 ] |> List.map Hybrid.Facade.Configuration.WatchTimeoutSeconds
    Assert.Equal<int list>([ 240; 300; 360 ], timeouts)

[<Fact>]
let ``a dead API connection is noticed by its pings before any silent watch on it is given up`` () =
    let shortestSilenceLimit = Hybrid.Facade.Configuration.WatchSilenceLimitMs(Hybrid.Facade.Configuration.WatchTimeoutSeconds 0.0)
    Assert.True(
        Hybrid.Facade.Configuration.ApiPingAfterMs + Hybrid.Facade.Configuration.ApiPingTimeoutMs < shortestSilenceLimit,
        sprintf "pings give up after %d ms, the shortest silence limit is %d ms"
            (Hybrid.Facade.Configuration.ApiPingAfterMs + Hybrid.Facade.Configuration.ApiPingTimeoutMs) shortestSilenceLimit)
