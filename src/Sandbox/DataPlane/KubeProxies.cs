using System.Threading.Channels;
using Hybrid.Sandbox.Lab;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Hybrid.Sandbox.DataPlane;

/// <summary>
/// Every node's kube-proxy: watches Services and EndpointSlices through the API and, after each change, renders
/// <see cref="KubeProxyRuleset"/> for every node and runs it with `nft -f` inside the node's namespace (one
/// atomic transaction, only where the rules changed). It owns table `ip hybrid-kube-proxy` in each node
/// namespace and never touches another table (the agent's fence has its own). A failed transaction is retried
/// after a second, as kube-proxy retries a failed sync.
/// </summary>
internal sealed class KubeProxies : IAsyncDisposable
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(60);
    private volatile string? _lastError;

    private readonly LabTopology _topology;
    private readonly ProcessRunner _runner;
    private readonly ILogger _logger;
    private readonly Channel<bool> _signal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stopping = new();
    private readonly WatchedCollection<V1Service, V1ServiceList> _services;
    private readonly WatchedCollection<V1EndpointSlice, V1EndpointSliceList> _slices;
    private readonly Dictionary<string, string> _applied = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _firstSync = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<Task> _tasks = [];

    private KubeProxies(LabTopology topology, Kubernetes client, ProcessRunner runner, ILoggerFactory loggers)
    {
        _topology = topology;
        _runner = runner;
        _logger = loggers.CreateLogger<KubeProxies>();
        _services = new WatchedCollection<V1Service, V1ServiceList>("services",
            ct => client.CoreV1.ListServiceForAllNamespacesAsync(cancellationToken: ct),
            (rv, onError, ct) => client.CoreV1.WatchListServiceForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: rv,
                onError: onError, cancellationToken: ct),
            Signal, _logger);
        _slices = new WatchedCollection<V1EndpointSlice, V1EndpointSliceList>("endpointslices",
            ct => client.DiscoveryV1.ListEndpointSliceForAllNamespacesAsync(cancellationToken: ct),
            (rv, onError, ct) => client.DiscoveryV1.WatchListEndpointSliceForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: rv,
                onError: onError, cancellationToken: ct),
            Signal, _logger);
    }

    /// <summary>Starts watching and returns once every node has the rules for the Services that exist.</summary>
    public static async Task<KubeProxies> StartAsync(LabTopology topology, Kubernetes client, ProcessRunner runner, ILoggerFactory loggers,
        CancellationToken cancellationToken)
    {
        var proxies = new KubeProxies(topology, client, runner, loggers);
        var token = proxies._stopping.Token;
        proxies._tasks.Add(Task.Run(() => proxies._services.RunAsync(token), CancellationToken.None));
        proxies._tasks.Add(Task.Run(() => proxies._slices.RunAsync(token), CancellationToken.None));
        proxies._tasks.Add(Task.Run(proxies.SyncLoopAsync, CancellationToken.None));
        try
        {
            await proxies._firstSync.Task.WaitAsync(StartDeadline, cancellationToken);
        }
        catch (TimeoutException)
        {
            await proxies.DisposeAsync();
            throw new InvalidOperationException($"kube-proxy did not program every node within {StartDeadline.TotalSeconds:0} s (last error: {proxies._lastError ?? "none"})");
        }
        catch
        {
            await proxies.DisposeAsync();
            throw;
        }
        return proxies;
    }

    /// <summary>The script last applied to a node's namespace (for tests and diagnostics), or null.</summary>
    public string? AppliedRuleset(string node)
    {
        lock (_applied) return _applied.GetValueOrDefault(node);
    }

    private void Signal() => _signal.Writer.TryWrite(true);

    private async Task SyncLoopAsync()
    {
        var token = _stopping.Token;
        try
        {
            await Task.WhenAll(_services.Synced, _slices.Synced).WaitAsync(token);
            while (await _signal.Reader.WaitToReadAsync(token))
            {
                _signal.Reader.TryRead(out _);
                var services = ProxiedServices.From(_services.Snapshot(), _slices.Snapshot());
                var failed = false;
                foreach (var node in _topology.Nodes)
                    failed |= !await SyncNodeAsync(node, KubeProxyRuleset.Render(node.Name, _topology.PodNetwork, services), token);
                if (failed)
                {
                    _ = Task.Delay(RetryDelay, token).ContinueWith(_ => Signal(), TaskScheduler.Default);
                    continue;
                }
                _firstSync.TrySetResult();
            }
        }
        catch (OperationCanceledException)
        {
            _firstSync.TrySetCanceled();
        }
    }

    private async Task<bool> SyncNodeAsync(LabHost node, string ruleset, CancellationToken cancellationToken)
    {
        lock (_applied)
            if (_applied.GetValueOrDefault(node.Name) == ruleset) return true;
        var result = await _runner.RunAsync(new ProcessRequest(["nft", "-f", "-"])
        {
            Namespace = node.Namespace,
            StandardInput = ruleset,
            AllowFailure = true,
        }, cancellationToken);
        if (!result.Succeeded)
        {
            _lastError = $"{node.Name}: {result.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()?.Trim()}";
            _logger.LogWarning("kube-proxy on {Node}: nft failed ({Error}); retrying", node.Name, _lastError);
            return false;
        }
        lock (_applied) _applied[node.Name] = ruleset;
        _logger.LogDebug("kube-proxy on {Node}: applied {Lines} lines", node.Name, ruleset.Count(c => c == '\n'));
        return true;
    }

    /// <summary>Stops watching and removes the table from every node namespace that still exists.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested) return;
        await _stopping.CancelAsync();
        try { await Task.WhenAll(_tasks); }
        catch (OperationCanceledException) { }
        foreach (var node in _topology.Nodes.Where(n => NetnsLab.NamespaceExists(n.Namespace)))
            await _runner.RunAsync(new ProcessRequest(["nft", "-f", "-"])
            {
                Namespace = node.Namespace,
                StandardInput = KubeProxyRuleset.Removal(),
                AllowFailure = true,
            }, CancellationToken.None);
        _stopping.Dispose();
    }
}
