using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>
/// Serves the DaemonSet's probes on health_check_port: <c>GET /healthz</c> answers 200 while the protocol loop
/// turns (it wakes at least every heartbeat interval, so a loop that has not finished a turn for
/// <see cref="StuckAfterMs"/> is stuck), <c>GET /readyz</c> 200 once the caches are synced and the node has
/// joined; otherwise 503. A few lines of HTTP/1.1 over a socket: the probes need nothing more.
/// </summary>
internal sealed class HealthEndpoint(int port, ProtocolLoop loop, ILogger<HealthEndpoint> logger)
{
    public const long StuckAfterMs = 10_000;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var listener = new TcpListener(IPAddress.IPv6Any, port);
        listener.Server.DualMode = true;
        try
        {
            listener.Start();
        }
        catch (SocketException e)
        {
            logger.LogError("Health endpoint cannot listen on port {Port}: {Error}", port, e.Message);
            return;
        }
        logger.LogInformation("Serving /healthz and /readyz on port {Port}", port);
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptSocketAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            _ = AnswerAsync(client, cancellationToken);
        }
    }

    private async Task AnswerAsync(Socket client, CancellationToken cancellationToken)
    {
        using var _ = client;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(2));
        try
        {
            var buffer = new byte[1024];
            var read = await client.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            var requestLine = Encoding.ASCII.GetString(buffer, 0, read).Split("\r\n", 2)[0];
            var path = requestLine.Split(' ') is [_, var p, ..] ? p : "";
            var (status, body) = path switch
            {
                "/healthz" => MonotonicClock.NowMs - loop.LastTurnAtMs < StuckAfterMs ? (200, "ok") : (503, "protocol loop stuck"),
                "/readyz" => loop.Ready ? (200, "ok") : (503, "not synced or not joined"),
                _ => (404, "not found"),
            };
            var reason = status switch { 200 => "OK", 404 => "Not Found", _ => "Service Unavailable" };
            var response = $"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {body.Length + 1}\r\nConnection: close\r\n\r\n{body}\n";
            await client.SendAsync(Encoding.ASCII.GetBytes(response), SocketFlags.None, timeout.Token);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            logger.LogDebug("Health request dropped: {Error}", e.Message);
        }
    }
}
