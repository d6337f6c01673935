using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Hybrid.Agent;

/// <summary>What one GET answers.</summary>
internal sealed record HttpAnswer(int Status, string Body, string ContentType = "text/plain; charset=utf-8");

/// <summary>
/// Answers <c>GET</c> requests on one address and port with the routes it is given (the health probes, the
/// metrics, or both when they share a port): a few lines of HTTP/1.1 over a socket, one request per
/// connection, which is all probes and Prometheus need. Unknown paths get 404.
/// </summary>
internal sealed class HttpServer(IPAddress address, int port, IReadOnlyDictionary<string, Func<HttpAnswer>> routes, ILogger<HttpServer> logger)
{
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(2);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var listener = new TcpListener(address, port);
        if (address.Equals(IPAddress.IPv6Any)) listener.Server.DualMode = true;
        try
        {
            listener.Start();
        }
        catch (SocketException e)
        {
            logger.LogError("Cannot listen on {Address} port {Port} for {Paths}: {Error}", address, port, string.Join(" ", routes.Keys), e.Message);
            return;
        }
        logger.LogInformation("Serving {Paths} on {Address} port {Port}", string.Join(" ", routes.Keys), address, port);
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
        timeout.CancelAfter(RequestTimeout);
        try
        {
            var buffer = new byte[1024];
            var read = await client.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            var requestLine = Encoding.ASCII.GetString(buffer, 0, read).Split("\r\n", 2)[0];
            var path = requestLine.Split(' ') is [_, var p, ..] ? p.Split('?', 2)[0] : "";
            var answer = routes.TryGetValue(path, out var route) ? route() : new HttpAnswer(404, "not found\n");
            var body = Encoding.UTF8.GetBytes(answer.Body);
            var reason = answer.Status switch { 200 => "OK", 404 => "Not Found", _ => "Service Unavailable" };
            var head = Encoding.ASCII.GetBytes(
                $"HTTP/1.1 {answer.Status} {reason}\r\nContent-Type: {answer.ContentType}\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n");
            await client.SendAsync(head, SocketFlags.None, timeout.Token);
            await client.SendAsync(body, SocketFlags.None, timeout.Token);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            logger.LogDebug("HTTP request dropped: {Error}", e.Message);
        }
    }
}
