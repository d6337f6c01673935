using System.Net;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// An in-memory Kubernetes API server (see src/Sandbox/Api/LabEndpoints.cs for the test hooks): Kestrel over
/// TCP plus optional Unix sockets, the object store, the HTTP endpoints and, optionally, the workload
/// simulator. Starts with namespaces default and kube-system and the `kubernetes` Service.
/// </summary>
internal sealed class ApiEmulator : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly WorkloadSimulator? _simulator;
    private readonly ApiEmulatorOptions _options;
    private int _stopped;

    private ApiEmulator(WebApplication app, ApiEmulatorOptions options, ResourceService resources, RequestStats stats,
        FaultInjector faults, LabEndpoints lab, WorkloadSimulator? simulator, Uri baseAddress)
    {
        _app = app;
        _options = options;
        Resources = resources;
        Stats = stats;
        Faults = faults;
        Lab = lab;
        _simulator = simulator;
        BaseAddress = baseAddress;
    }

    /// <summary>http://127.0.0.1:PORT</summary>
    public Uri BaseAddress { get; }

    /// <summary>In-process access to the objects (same rules as the HTTP API).</summary>
    internal ResourceService Resources { get; }

    /// <summary>Request counters (also GET /_lab/stats).</summary>
    internal RequestStats Stats { get; }

    /// <summary>Fault rules and partitions (also /_lab/faults).</summary>
    internal FaultInjector Faults { get; }

    private LabEndpoints Lab { get; }

    /// <summary>Applies one fault object exactly as POST /_lab/faults does; returns its result.</summary>
    public JsonObject InjectFault(JsonObject fault) => Lab.Apply(fault);

    public static async Task<ApiEmulator> StartAsync(ApiEmulatorOptions options, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore();
        builder.Logging.ClearProviders();
        if (options.Verbose)
        {
            builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            builder.Logging.SetMinimumLevel(LogLevel.Information);
            builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        }
        var connections = new ClientConnections();
        var faults = new FaultInjector();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MinResponseDataRate = null;
            k.Limits.MaxConcurrentConnections = null;
            k.Limits.KeepAliveTimeout = TimeSpan.FromMinutes(10);
            k.Listen(options.Listen, l =>
            {
                l.Protocols = HttpProtocols.Http1;
                l.Use(next => ctx => TrackAsync(ctx, next, null, connections, faults));
            });
            foreach (var unix in options.UnixListeners)
            {
                if (File.Exists(unix.SocketPath)) File.Delete(unix.SocketPath);
                var name = unix.ClientName;
                k.ListenUnixSocket(unix.SocketPath, l =>
                {
                    l.Protocols = HttpProtocols.Http1;
                    l.Use(next => ctx => TrackAsync(ctx, next, name, connections, faults));
                });
            }
        });
        var app = builder.Build();
        var logger = options.Verbose ? app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Hybrid.Api") : NullLogger.Instance;

        var store = new ObjectStore(options.HistoryLimit);
        var resources = new ResourceService(store);
        Seed(resources);
        var stats = new RequestStats();
        var lab = new LabEndpoints(stats, faults, store, connections);
        var watches = new WatchStreamer(store, options.BookmarkInterval);
        var endpoints = new ApiEndpoints(resources, watches, stats, faults, lab, logger, options.Verbose);
        app.Run(endpoints.HandleAsync);

        await app.StartAsync(cancellationToken);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .Select(a => new Uri(a.Replace("://+", "://127.0.0.1", StringComparison.Ordinal)))
            .First(u => u.Scheme == "http" && !u.AbsoluteUri.Contains("unix", StringComparison.Ordinal));
        var baseAddress = new Uri($"http://{(options.Listen.Address.Equals(IPAddress.Any) ? "127.0.0.1" : options.Listen.Address.ToString())}:{address.Port}");
        endpoints.SetServerAddress($"{baseAddress.Host}:{baseAddress.Port}");
        var simulator = options.SimulateWorkloads ? new WorkloadSimulator(resources, logger, options.PodNetwork, options.PodReadinessGates) : null;
        return new ApiEmulator(app, options, resources, stats, faults, lab, simulator, baseAddress);
    }

    private static async Task TrackAsync(ConnectionContext ctx, ConnectionDelegate next, string? listenerName, ClientConnections connections, FaultInjector faults)
    {
        var client = ClientConnections.ClientOf(ctx, listenerName);
        if (faults.IsPartitioned(client))
        {
            ctx.Abort(new ConnectionAbortedException("partitioned by the lab"));
            return;
        }
        ctx.Items[ClientConnections.ClientItemKey] = client;
        connections.Register(client, ctx);
        try
        {
            await next(ctx);
        }
        finally
        {
            connections.Unregister(client, ctx);
        }
    }

    private static void Seed(ResourceService resources)
    {
        foreach (var ns in new[] { "default", "kube-system", "kube-public", "kube-node-lease" })
            resources.Create(ResourceCatalog.Namespaces, null, new JsonObject { ["metadata"] = new JsonObject { ["name"] = ns } });
        resources.Create(ResourceCatalog.Services, "default", new JsonObject
        {
            ["metadata"] = new JsonObject
            {
                ["name"] = "kubernetes",
                ["labels"] = new JsonObject { ["component"] = "apiserver", ["provider"] = "kubernetes" },
            },
            ["spec"] = new JsonObject
            {
                ["clusterIP"] = ServiceRules.KubernetesServiceIp,
                ["ports"] = new JsonArray(new JsonObject { ["name"] = "https", ["port"] = 443, ["protocol"] = "TCP", ["targetPort"] = 6443 }),
                ["type"] = "ClusterIP",
            },
        });
    }

    /// <summary>Writes a kubeconfig (plain http, no auth) for <paramref name="server"/> ?? <see cref="BaseAddress"/>.</summary>
    public void WriteKubeconfig(string path, Uri? server = null) => Kubeconfig.Write(path, server ?? BaseAddress);

    /// <summary>Stops serving: closes every watch and connection, removes the Unix sockets.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0) return;
        if (_simulator is not null) await _simulator.DisposeAsync();
        Resources.Store.CloseWatches(_ => true);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromSeconds(5));
        try { await _app.StopAsync(deadline.Token); }
        catch (OperationCanceledException) { }
        await _app.DisposeAsync();
        foreach (var unix in _options.UnixListeners)
            if (File.Exists(unix.SocketPath)) File.Delete(unix.SocketPath);
    }

    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None);
}
