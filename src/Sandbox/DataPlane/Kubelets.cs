using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Threading.Channels;
using Hybrid.Sandbox.Lab;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;

namespace Hybrid.Sandbox.DataPlane;

/// <summary>
/// Every node's kubelet, as far as the network goes: watches Pods through the API and runs each Pod bound to
/// a lab node whose podIP lies in that node's pod CIDR (the emulator's scheduler and IPAM assign both) — a
/// <see cref="PodSandbox"/> and a <see cref="PodHttpServer"/> on its TCP container ports (port 80 when it
/// declares none: every example runs nginx). Once the server listens it sets the Pod's readiness gate
/// condition (<see cref="ServingGate"/>), so that the Pod becomes Ready, and enters its Service's endpoints,
/// only when it answers. A Pod that is gone from the API is stopped and its namespace deleted; a Pod that
/// failed to start is retried a second later.
/// </summary>
internal sealed class Kubelets : IAsyncDisposable
{
    /// <summary>The readiness gate the emulator adds to simulated Pods and this class sets when the Pod serves.</summary>
    public const string ServingGate = "sandbox.hybrid/serving";

    private const int DefaultPort = 80;
    private static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(60);
    private volatile string? _lastError;

    private readonly LabTopology _topology;
    private readonly Kubernetes _client;
    private readonly ProcessRunner _runner;
    private readonly ILogger _logger;
    private readonly Channel<bool> _signal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stopping = new();
    private readonly WatchedCollection<V1Pod, V1PodList> _pods;
    private readonly Dictionary<string, RunningPod> _running = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _firstSync = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<Task> _tasks = [];
    private int _lastNumber;

    /// <summary>A Pod this kubelet runs, by uid; <see cref="GateSet"/> once its readiness gate is known to be True.</summary>
    public sealed class RunningPod(string uid, string podNamespace, string name, PodSandbox sandbox, PodHttpServer server)
    {
        public string Uid { get; } = uid;
        public string PodNamespace { get; } = podNamespace;
        public string Name { get; } = name;
        public PodSandbox Sandbox { get; } = sandbox;
        public PodHttpServer Server { get; } = server;
        public bool GateSet { get; set; }
    }

    private Kubelets(LabTopology topology, Kubernetes client, ProcessRunner runner, ILoggerFactory loggers)
    {
        _topology = topology;
        _client = client;
        _runner = runner;
        _logger = loggers.CreateLogger<Kubelets>();
        _pods = new WatchedCollection<V1Pod, V1PodList>("pods",
            ct => client.CoreV1.ListPodForAllNamespacesAsync(cancellationToken: ct),
            (rv, onError, ct) => client.CoreV1.WatchListPodForAllNamespacesAsync(allowWatchBookmarks: true, resourceVersion: rv,
                onError: onError, cancellationToken: ct),
            Signal, _logger);
    }

    /// <summary>Starts watching and returns once the Pods that exist run.</summary>
    public static async Task<Kubelets> StartAsync(LabTopology topology, Kubernetes client, ProcessRunner runner, ILoggerFactory loggers,
        CancellationToken cancellationToken)
    {
        var kubelets = new Kubelets(topology, client, runner, loggers);
        var token = kubelets._stopping.Token;
        kubelets._tasks.Add(Task.Run(() => kubelets._pods.RunAsync(token), CancellationToken.None));
        kubelets._tasks.Add(Task.Run(kubelets.SyncLoopAsync, CancellationToken.None));
        try
        {
            await kubelets._firstSync.Task.WaitAsync(StartDeadline, cancellationToken);
        }
        catch (TimeoutException)
        {
            await kubelets.DisposeAsync();
            throw new InvalidOperationException($"the kubelets did not start the existing pods within {StartDeadline.TotalSeconds:0} s (last error: {kubelets._lastError ?? "none"})");
        }
        catch
        {
            await kubelets.DisposeAsync();
            throw;
        }
        return kubelets;
    }

    /// <summary>The Pods running now (for tests and diagnostics).</summary>
    public IReadOnlyList<RunningPod> Running
    {
        get
        {
            lock (_running) return [.. _running.Values];
        }
    }

    private void Signal() => _signal.Writer.TryWrite(true);

    private async Task SyncLoopAsync()
    {
        var token = _stopping.Token;
        try
        {
            await _pods.Synced.WaitAsync(token);
            while (await _signal.Reader.WaitToReadAsync(token))
            {
                _signal.Reader.TryRead(out _);
                if (!await SyncAsync(token))
                    _ = Task.Delay(RetryDelay, token).ContinueWith(_ => Signal(), TaskScheduler.Default);
                _firstSync.TrySetResult();
            }
        }
        catch (OperationCanceledException)
        {
            _firstSync.TrySetCanceled();
        }
    }

    /// <summary>Stops what is gone, then starts what is new (so that a new Pod may reuse a gone one's address).</summary>
    private async Task<bool> SyncAsync(CancellationToken cancellationToken)
    {
        var wanted = _pods.Snapshot().Select(Runnable).OfType<PodToRun>().ToDictionary(p => p.Pod.Metadata.Uid, StringComparer.Ordinal);
        List<RunningPod> gone;
        lock (_running) gone = _running.Values.Where(r => !wanted.ContainsKey(r.Uid)).ToList();
        foreach (var pod in gone)
        {
            await StopAsync(pod);
            lock (_running) _running.Remove(pod.Uid);
            _logger.LogInformation("Stopped pod {Namespace}/{Pod} ({PodNamespace})", pod.PodNamespace, pod.Name, pod.Sandbox.Namespace);
        }

        var failures = 0;
        List<PodToRun> fresh;
        lock (_running) fresh = wanted.Values.Where(p => !_running.ContainsKey(p.Pod.Metadata.Uid)).ToList();
        await Parallel.ForEachAsync(fresh, new ParallelOptions { MaxDegreeOfParallelism = 4, CancellationToken = cancellationToken },
            async (pod, ct) =>
            {
                if (await TryStartAsync(pod, ct) is { } running)
                    lock (_running) _running[running.Uid] = running;
                else
                    Interlocked.Increment(ref failures);
            });

        List<(RunningPod Running, PodToRun Pod)> ungated;
        lock (_running) ungated = _running.Values.Where(r => !r.GateSet && wanted.ContainsKey(r.Uid)).Select(r => (r, wanted[r.Uid])).ToList();
        foreach (var (running, pod) in ungated)
            if (!await TrySetGateAsync(running, pod.Pod, cancellationToken)) failures++;
        return failures == 0;
    }

    private sealed record PodToRun(V1Pod Pod, LabHost Node, IPAddress Address, IReadOnlyList<int> Ports);

    /// <summary>The Pod, its node, address and ports when it is this lab's to run; otherwise null.</summary>
    private PodToRun? Runnable(V1Pod pod)
    {
        var node = _topology.Nodes.FirstOrDefault(n => n.Name == pod.Spec?.NodeName);
        if (node is null || pod.Status?.Phase is not "Running" || !IPAddress.TryParse(pod.Status.PodIP, out var address)
            || !_topology.PodCidr(node).Contains(address) || address.Equals(_topology.PodGateway(node)))
            return null;
        var ports = (pod.Spec.Containers ?? []).SelectMany(c => c.Ports ?? [])
            .Where(p => (p.Protocol ?? "TCP") == "TCP").Select(p => p.ContainerPort).Distinct().Order().ToList();
        return new PodToRun(pod, node, address, ports.Count > 0 ? ports : [DefaultPort]);
    }

    private async Task<RunningPod?> TryStartAsync(PodToRun pod, CancellationToken cancellationToken)
    {
        var meta = pod.Pod.Metadata;
        var number = Interlocked.Increment(ref _lastNumber);
        PodSandbox? sandbox = null;
        try
        {
            sandbox = await PodSandbox.CreateAsync(_topology, number, pod.Node, pod.Address, _runner, cancellationToken);
            var server = await PodHttpServer.StartAsync(sandbox.Namespace, meta.NamespaceProperty, meta.Name, pod.Node.Name, pod.Ports, cancellationToken);
            _logger.LogInformation("Started pod {Namespace}/{Pod} on {Node}: {Address} in {PodNamespace}, HTTP on {Ports}",
                meta.NamespaceProperty, meta.Name, pod.Node.Name, pod.Address, sandbox.Namespace, string.Join(",", pod.Ports));
            return new RunningPod(meta.Uid, meta.NamespaceProperty, meta.Name, sandbox, server);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            _lastError = $"{meta.NamespaceProperty}/{meta.Name}: {e.Message}";
            _logger.LogWarning("Pod {Namespace}/{Pod} did not start ({Error}); retrying", meta.NamespaceProperty, meta.Name, e.Message);
            if (sandbox is not null) await sandbox.RemoveAsync(_runner, CancellationToken.None);
            return null;
        }
    }

    /// <summary>Sets the serving gate's condition to True, if the Pod has that gate (a strategic merge by condition type).</summary>
    private async Task<bool> TrySetGateAsync(RunningPod running, V1Pod pod, CancellationToken cancellationToken)
    {
        if (pod.Spec.ReadinessGates?.Any(g => g.ConditionType == ServingGate) != true
            || pod.Status?.Conditions?.Any(c => c.Type == ServingGate && c.Status == "True") == true)
        {
            running.GateSet = true;
            return true;
        }
        var patch = JsonSerializer.Serialize(new
        {
            status = new
            {
                conditions = new[]
                {
                    new { type = ServingGate, status = "True", lastProbeTime = (string?)null, lastTransitionTime = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture) },
                },
            },
        });
        try
        {
            await _client.CoreV1.PatchNamespacedPodStatusAsync(new V1Patch(patch, V1Patch.PatchType.StrategicMergePatch),
                running.Name, running.PodNamespace, cancellationToken: cancellationToken);
            running.GateSet = true;
            return true;
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // A Pod deleted meanwhile is stopped at the next sync; anything else is retried.
            _logger.LogDebug("Setting {Gate} on {Namespace}/{Pod} failed ({Error})", ServingGate, running.PodNamespace, running.Name, e.Message);
            return false;
        }
    }

    private async Task StopAsync(RunningPod pod)
    {
        await pod.Server.DisposeAsync();
        await pod.Sandbox.RemoveAsync(_runner, CancellationToken.None);
    }

    /// <summary>Stops watching, then stops every Pod and deletes its namespace.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested) return;
        await _stopping.CancelAsync();
        try { await Task.WhenAll(_tasks); }
        catch (OperationCanceledException) { }
        List<RunningPod> running;
        lock (_running)
        {
            running = [.. _running.Values];
            _running.Clear();
        }
        await Parallel.ForEachAsync(running, new ParallelOptions { MaxDegreeOfParallelism = 4 }, async (pod, _) => await StopAsync(pod));
        _stopping.Dispose();
    }
}
