namespace Hybrid.Agent;

/// <summary>
/// The DaemonSet's probes, served on health_check_port by <see cref="HttpServer"/>: <c>GET /healthz</c> answers
/// 200 while the protocol loop turns (it wakes at least every heartbeat interval, so a loop that has not
/// finished a turn for <see cref="StuckAfterMs"/> is stuck), <c>GET /readyz</c> 200 once the caches are synced
/// and the node has joined; otherwise 503.
/// </summary>
internal sealed class HealthEndpoint(ProtocolLoop loop)
{
    public const long StuckAfterMs = 10_000;

    public IReadOnlyDictionary<string, Func<HttpAnswer>> Routes => new Dictionary<string, Func<HttpAnswer>>
    {
        ["/healthz"] = () => MonotonicClock.NowMs - loop.LastTurnAtMs < StuckAfterMs ? new HttpAnswer(200, "ok\n") : new HttpAnswer(503, "protocol loop stuck\n"),
        ["/readyz"] = () => loop.Ready ? new HttpAnswer(200, "ok\n") : new HttpAnswer(503, "not synced or not joined\n"),
    };
}
