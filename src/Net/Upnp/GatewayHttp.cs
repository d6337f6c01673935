using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace Hybrid.Net;

/// <summary>
/// HTTP to the gateway from a chosen source address. Gateways in secure mode (miniupnpd's secure_mode, most home
/// routers) accept a port mapping only when its internal client is the caller, so a mapping to the VIP is sent
/// from the VIP. One connection pool per source address, because a pool keyed by host alone would reuse a
/// connection bound to another source. Sockets come from the <see cref="SocketFactory"/>, so the calls leave
/// from the right network namespace.
/// </summary>
internal sealed class GatewayHttp(SocketFactory sockets) : IDisposable
{
    private readonly ConcurrentDictionary<IPAddress, HttpClient> clients = new();
    private bool disposed;

    /// <summary>Sends from <paramref name="source"/> (null: any address of the host).</summary>
    /// <exception cref="HttpRequestException">No connection (also when the source address is not on this host).</exception>
    public Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, IPAddress? source, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var client = clients.GetOrAdd(source ?? IPAddress.Any, Create);
        return client.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
    }

    private HttpClient Create(IPAddress source)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            UseCookies = false,
            // Gateways restart and renumber, and VIPs move away; a pooled connection is worth little between refreshes.
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(10),
            MaxResponseHeadersLength = 16,
            ConnectCallback = async (context, token) =>
            {
                var socket = sockets(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                try
                {
                    socket.NoDelay = true;
                    if (!source.Equals(IPAddress.Any)) socket.Bind(new IPEndPoint(source, 0));
                    await socket.ConnectAsync(context.DnsEndPoint, token);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressNotAvailable)
                {
                    socket.Dispose();
                    throw new HttpRequestException($"source address {source} is not on this host", e);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        // Bodies are small (a description, a SOAP answer): cap what a confused or hostile device can send.
        return new HttpClient(handler) { MaxResponseContentBufferSize = 256 * 1024, Timeout = Timeout.InfiniteTimeSpan };
    }

    public void Dispose()
    {
        disposed = true;
        foreach (var client in clients.Values) client.Dispose();
        clients.Clear();
    }
}
