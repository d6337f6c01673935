using System.Net;
using Hybrid.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Hybrid.Sandbox.DataPlane;

/// <summary>
/// What a lab pod runs: a small HTTP server answering like Kubernetes' e2e image (agnhost netexec) on each of
/// the pod's TCP ports. `GET /hostname` → the pod's name; `GET /clientip` → the client's address as the pod
/// sees it (`IP:port`); any other path → one line naming the pod and its node. Kestrel runs in the lab's own
/// process; its listening sockets are created inside the pod's namespace (a socket belongs to the namespace
/// it was made in), so the pod answers only on its own address, through its own veth.
/// </summary>
internal sealed class PodHttpServer : IAsyncDisposable
{
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(1);

    private readonly WebApplication _app;

    private PodHttpServer(WebApplication app) => _app = app;

    /// <exception cref="IOException">A port could not be bound (Kestrel's own exception types derive from it).</exception>
    public static async Task<PodHttpServer> StartAsync(string namespaceName, string podNamespace, string podName, string nodeName,
        IReadOnlyCollection<int> ports, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore();
        builder.Logging.ClearProviders();
        builder.Services.Configure<SocketTransportOptions>(o =>
            o.CreateBoundListenSocket = endpoint =>
                NetworkNamespace.RunIn(namespaceName, () => SocketTransportOptions.CreateDefaultBoundListenSocket(endpoint)));
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            foreach (var port in ports) k.Listen(IPAddress.Any, port, l => l.Protocols = HttpProtocols.Http1);
        });
        var app = builder.Build();
        var page = $"pod {podNamespace}/{podName} on node {nodeName}\n";
        app.Run(context =>
        {
            context.Response.ContentType = "text/plain; charset=utf-8";
            var body = context.Request.Path.Value switch
            {
                "/hostname" => podName,
                "/clientip" => $"{context.Connection.RemoteIpAddress}:{context.Connection.RemotePort}",
                _ => page,
            };
            return context.Response.WriteAsync(body, context.RequestAborted);
        });
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
        return new PodHttpServer(app);
    }

    /// <summary>Closes the listening sockets and every connection (a pod that stops takes its sockets with it).</summary>
    public async ValueTask DisposeAsync()
    {
        using var grace = new CancellationTokenSource(StopGrace);
        try { await _app.StopAsync(grace.Token); }
        catch (OperationCanceledException) { }
        await _app.DisposeAsync();
    }
}
