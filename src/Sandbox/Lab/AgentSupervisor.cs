using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hybrid.Sandbox.Lab;

/// <summary>Where one agent runs: its node name, namespace, kubeconfig and log file.</summary>
internal sealed record AgentNode(string Name, string Namespace, string KubeconfigPath, string LogPath)
{
    public static AgentNode From(LabHost host) => new(host.Name, host.Namespace, host.KubeconfigPath, host.LogPath);
}

/// <summary>How the supervisor runs agents.</summary>
internal sealed record AgentSupervisorOptions
{
    /// <summary>KEY=VALUE pairs for every agent, on top of the inherited environment and of
    /// `vip_interface=eth0` and `vip_nodename=NODE` (a pair given here wins over those two).</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();

    /// <summary>The argv run inside the node's namespace; null: <see cref="AgentSupervisor.DefaultCommand"/>.</summary>
    public Func<AgentNode, IReadOnlyList<string>>? Command { get; init; }

    /// <summary>Wait before restarting an agent that exited on its own (a kubelet restarts a crashed pod likewise).</summary>
    public TimeSpan RestartDelay { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>How long a graceful stop waits after SIGTERM before it sends SIGKILL.</summary>
    public TimeSpan StopTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>An agent process started; <paramref name="Start"/> counts starts of that node from 1.</summary>
internal sealed record AgentStarted(string Node, int Pid, int Start, bool IsRestart);

/// <summary>
/// An agent process ended. <paramref name="Expected"/>: the supervisor stopped it (stop, kill without restart,
/// dispose); otherwise it crashed or was killed as a crash and is restarted after the delay.
/// <paramref name="ExitCode"/> is 128+N for a process ended by signal N.
/// </summary>
internal sealed record AgentExited(string Node, int Pid, int Start, int ExitCode, bool Expected);

/// <summary>
/// Runs one agent process per node inside the node's namespace, like a kubelet running a DaemonSet pod:
/// `ip netns exec NS sh -c 'exec &lt;/dev/null &gt;&gt;LOG 2&gt;&amp;1; exec "$@"' LOG COMMAND...` (the shell only
/// redirects and then becomes the agent, so the pid the supervisor holds is the agent's own, SIGTERM reaches it
/// directly, and its output keeps going to the log even if this process dies). An agent that exits on its
/// own is restarted after <see cref="AgentSupervisorOptions.RestartDelay"/>; stop and kill-without-restart
/// hold it down until <see cref="StartAsync"/>. Nothing is restarted into a namespace that no longer exists.
/// </summary>
internal sealed class AgentSupervisor : IAsyncDisposable
{
    private const string RedirectScript = "exec </dev/null >>\"$0\" 2>&1; exec \"$@\"";

    private readonly Dictionary<string, Slot> _slots;
    private readonly AgentSupervisorOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _disposing = new();
    private int _disposed;

    public AgentSupervisor(IEnumerable<AgentNode> nodes, AgentSupervisorOptions? options = null, ILogger<AgentSupervisor>? logger = null)
    {
        _options = options ?? new AgentSupervisorOptions();
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _slots = nodes.ToDictionary(n => n.Name, n => new Slot(n), StringComparer.Ordinal);
    }

    /// <summary>A supervisor for every node of a lab topology (not the client).</summary>
    public static AgentSupervisor ForTopology(LabTopology topology, AgentSupervisorOptions? options = null, ILogger<AgentSupervisor>? logger = null) =>
        new(topology.Nodes.Select(AgentNode.From), options, logger);

    /// <summary>Raised after an agent process started (on a thread-pool thread).</summary>
    public event Action<AgentStarted>? Started;

    /// <summary>Raised after an agent process ended (on a thread-pool thread), before any restart is scheduled.</summary>
    public event Action<AgentExited>? Exited;

    public IReadOnlyList<string> Nodes => [.. _slots.Keys];

    /// <summary>`hybrid agent --kubeconfig KUBECONFIG` (<see cref="AgentProgram"/>).</summary>
    public static IReadOnlyList<string> DefaultCommand(AgentNode node) =>
        AgentProgram.Command("agent", "--kubeconfig", node.KubeconfigPath);

    /// <summary>Starts every agent that is not running.</summary>
    public async Task StartAllAsync(CancellationToken cancellationToken)
    {
        foreach (var node in _slots.Keys) await StartAsync(node, cancellationToken);
    }

    /// <summary>Starts the agent of <paramref name="node"/> unless it runs, and lifts a hold-down.</summary>
    /// <exception cref="InvalidOperationException">The node's namespace does not exist.</exception>
    public async Task StartAsync(string node, CancellationToken cancellationToken)
    {
        var slot = Find(node);
        await slot.Gate.WaitAsync(cancellationToken);
        try
        {
            ThrowIfDisposed();
            slot.HeldDown = false;
            slot.PendingRestart?.Cancel();
            slot.PendingRestart = null;
            if (slot.Process is null) StartLocked(slot, isRestart: false);
        }
        finally
        {
            slot.Gate.Release();
        }
    }

    /// <summary>
    /// Stops the agent and holds it down (no restart until <see cref="StartAsync"/>). Graceful: SIGTERM, then
    /// SIGKILL after <see cref="AgentSupervisorOptions.StopTimeout"/>; otherwise SIGKILL at once.
    /// </summary>
    public async Task StopAsync(string node, bool graceful, CancellationToken cancellationToken)
    {
        var slot = Find(node);
        Process? process;
        Task monitor;
        await slot.Gate.WaitAsync(cancellationToken);
        try
        {
            slot.HeldDown = true;
            slot.PendingRestart?.Cancel();
            slot.PendingRestart = null;
            (process, monitor) = (slot.Process, slot.Monitor);
        }
        finally
        {
            slot.Gate.Release();
        }
        if (process is not null) await EndAsync(slot.Node.Name, process, monitor, graceful, cancellationToken);
    }

    /// <summary>
    /// SIGKILL, as a crash: with <paramref name="restart"/> the supervisor restarts it after the delay like any
    /// crash; without, the node is held down until <see cref="StartAsync"/>. Returns once the exit is recorded
    /// (<see cref="LastExitCode"/>, <see cref="Exited"/>).
    /// </summary>
    public async Task KillAsync(string node, bool restart = true, CancellationToken cancellationToken = default)
    {
        var slot = Find(node);
        Process? process;
        Task monitor;
        await slot.Gate.WaitAsync(cancellationToken);
        try
        {
            if (!restart)
            {
                slot.HeldDown = true;
                slot.PendingRestart?.Cancel();
                slot.PendingRestart = null;
            }
            (process, monitor) = (slot.Process, slot.Monitor);
        }
        finally
        {
            slot.Gate.Release();
        }
        if (process is not null) await EndAsync(slot.Node.Name, process, monitor, graceful: false, cancellationToken);
    }

    public bool IsRunning(string node) => Find(node).Process is { } p && !HasExited(p);

    /// <summary>Pid of the running agent, or null.</summary>
    public int? Pid(string node) => Find(node).Pid;

    /// <summary>How often the agent was restarted after exiting on its own.</summary>
    public int Restarts(string node) => Volatile.Read(ref Find(node).Restarts);

    /// <summary>How often the agent was started, restarts included.</summary>
    public int Starts(string node) => Volatile.Read(ref Find(node).Starts);

    /// <summary>Exit code of the agent's last run, or null if it never ended.</summary>
    public int? LastExitCode(string node) => Find(node).LastExitCode;

    public string LogPath(string node) => Find(node).Node.LogPath;

    /// <summary>Completes with the next exit of the node's agent.</summary>
    public Task<AgentExited> NextExitAsync(string node, CancellationToken cancellationToken) =>
        Find(node).NextExit.Task.WaitAsync(cancellationToken);

    /// <summary>Completes with the next start of the node's agent (a restart included).</summary>
    public Task<AgentStarted> NextStartAsync(string node, CancellationToken cancellationToken) =>
        Find(node).NextStart.Task.WaitAsync(cancellationToken);

    /// <summary>Stops every agent gracefully (SIGTERM, SIGKILL after the stop timeout) and never restarts one again.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        await _disposing.CancelAsync();
        var stops = _slots.Values.Select(async slot =>
        {
            Process? process;
            Task monitor;
            await slot.Gate.WaitAsync();
            try
            {
                slot.HeldDown = true;
                slot.PendingRestart?.Cancel();
                (process, monitor) = (slot.Process, slot.Monitor);
            }
            finally
            {
                slot.Gate.Release();
            }
            if (process is not null) await EndAsync(slot.Node.Name, process, monitor, graceful: true, CancellationToken.None);
        });
        await Task.WhenAll(stops);
        _disposing.Dispose();
    }

    private void StartLocked(Slot slot, bool isRestart)
    {
        var node = slot.Node;
        if (!NetnsLab.NamespaceExists(node.Namespace))
            throw new InvalidOperationException($"cannot start the agent of {node.Name}: namespace {node.Namespace} does not exist");

        var command = _options.Command?.Invoke(node) ?? DefaultCommand(node);
        if (command.Count == 0) throw new InvalidOperationException("the agent command is empty");
        var argv = ProcessRunner.InNamespace(node.Namespace,
            [ProcessRunner.FindExecutable("sh"), "-c", RedirectScript, node.LogPath, ProcessRunner.FindExecutable(command[0]), .. command.Skip(1)]);
        var info = new ProcessStartInfo(argv[0]) { UseShellExecute = false };
        foreach (var arg in argv.Skip(1)) info.ArgumentList.Add(arg);
        info.Environment["vip_interface"] = LabTopology.HostInterface;
        info.Environment["vip_nodename"] = node.Name;
        // No diagnostic IPC socket or debugger pipes in /tmp: the runtime removes them only on a clean exit, and
        // the lab kills agents.
        info.Environment["DOTNET_EnableDiagnostics"] = "0";
        // As the DaemonSet runs it, so that the lab measures the agent that ships.
        foreach (var (key, value) in Hybrid.Facade.Manifests.RuntimeEnvironment) info.Environment[key] = value;
        foreach (var (key, value) in _options.Environment) info.Environment[key] = value;

        if (Path.GetDirectoryName(node.LogPath) is { Length: > 0 } directory) Directory.CreateDirectory(directory);
        var start = slot.Starts + 1;
        AppendLog(node, $"starting {node.Name} (start {start}): {ProcessRunner.Format(command)}");
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {ProcessRunner.Format(argv)}");

        slot.Process = process;
        slot.Pid = process.Id;
        Volatile.Write(ref slot.Starts, start);
        if (isRestart) Interlocked.Increment(ref slot.Restarts);
        _logger.LogInformation("Agent {Node} started with pid {Pid} (start {Start})", node.Name, process.Id, start);

        var started = new AgentStarted(node.Name, process.Id, start, isRestart);
        var nextStart = slot.NextStart;
        slot.NextStart = new TaskCompletionSource<AgentStarted>(TaskCreationOptions.RunContinuationsAsynchronously);
        nextStart.SetResult(started);
        _ = Task.Run(() => Started?.Invoke(started));
        slot.Monitor = MonitorAsync(slot, process, start);
    }

    private async Task MonitorAsync(Slot slot, Process process, int start)
    {
        await process.WaitForExitAsync();
        var pid = process.Id;
        var exitCode = process.ExitCode;
        AgentExited exited;
        await slot.Gate.WaitAsync();
        try
        {
            if (slot.Process == process)
            {
                slot.Process = null;
                slot.Pid = null;
            }
            slot.LastExitCode = exitCode;
            var disposing = Volatile.Read(ref _disposed) != 0;
            exited = new AgentExited(slot.Node.Name, pid, start, exitCode, Expected: slot.HeldDown || disposing);
            if (!exited.Expected) ScheduleRestartLocked(slot);
            var nextExit = slot.NextExit;
            slot.NextExit = new TaskCompletionSource<AgentExited>(TaskCreationOptions.RunContinuationsAsynchronously);
            nextExit.SetResult(exited);
        }
        finally
        {
            slot.Gate.Release();
        }
        process.Dispose();
        AppendLog(slot.Node, string.Create(CultureInfo.InvariantCulture,
            $"{slot.Node.Name} pid {pid} exited with code {exitCode}{(exited.Expected ? "" : $"; restarting in {_options.RestartDelay.TotalSeconds:0.###} s")}"));
        if (exited.Expected)
            _logger.LogInformation("Agent {Node} (pid {Pid}) stopped with exit code {ExitCode}", exited.Node, pid, exitCode);
        else
            _logger.LogWarning("Agent {Node} (pid {Pid}) exited with code {ExitCode}; restarting in {Delay}", exited.Node, pid, exitCode, _options.RestartDelay);
        Exited?.Invoke(exited);
    }

    private void ScheduleRestartLocked(Slot slot)
    {
        var timer = CancellationTokenSource.CreateLinkedTokenSource(_disposing.Token);
        slot.PendingRestart = timer;
        _ = RestartLaterAsync(slot, timer);
    }

    private async Task RestartLaterAsync(Slot slot, CancellationTokenSource timer)
    {
        try
        {
            await Task.Delay(_options.RestartDelay, timer.Token);
            await slot.Gate.WaitAsync(timer.Token);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        try
        {
            if (timer.IsCancellationRequested || slot.HeldDown || slot.Process is not null || Volatile.Read(ref _disposed) != 0) return;
            if (!NetnsLab.NamespaceExists(slot.Node.Namespace))
            {
                _logger.LogWarning("Agent {Node} not restarted: namespace {Namespace} is gone", slot.Node.Name, slot.Node.Namespace);
                return;
            }
            try
            {
                StartLocked(slot, isRestart: true);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or System.ComponentModel.Win32Exception)
            {
                _logger.LogError(e, "Agent {Node} could not be restarted; trying again in {Delay}", slot.Node.Name, _options.RestartDelay);
                ScheduleRestartLocked(slot);
            }
        }
        finally
        {
            if (ReferenceEquals(slot.PendingRestart, timer)) slot.PendingRestart = null;
            slot.Gate.Release();
            timer.Dispose();
        }
    }

    /// <summary>
    /// Ends one process: SIGTERM and a deadline when graceful, then SIGKILL to it and its descendants. Waits on
    /// its monitor, which records the exit (and disposes the Process object).
    /// </summary>
    private async Task EndAsync(string node, Process process, Task monitor, bool graceful, CancellationToken cancellationToken)
    {
        int pid;
        try { pid = process.Id; }
        catch (InvalidOperationException)
        {
            // Already exited, and its monitor disposed it: only the bookkeeping may still be running.
            await monitor.WaitAsync(cancellationToken);
            return;
        }
        if (graceful && !HasExited(process))
        {
            _logger.LogInformation("Agent {Node}: SIGTERM to pid {Pid}", node, pid);
            await ProcessSignals.TerminateAsync([pid], cancellationToken);
            try
            {
                await monitor.WaitAsync(_options.StopTimeout, cancellationToken);
                return;
            }
            catch (TimeoutException)
            {
                _logger.LogWarning("Agent {Node}: pid {Pid} ignored SIGTERM for {Timeout}; sending SIGKILL", node, pid, _options.StopTimeout);
            }
        }
        try { process.Kill(entireProcessTree: true); }
        catch (InvalidOperationException) { /* exited meanwhile */ }
        await monitor.WaitAsync(cancellationToken);
    }

    private static bool HasExited(Process process)
    {
        try { return process.HasExited; }
        catch (InvalidOperationException) { return true; }
    }

    private static void AppendLog(AgentNode node, string line)
    {
        try
        {
            File.AppendAllText(node.LogPath, $"--- hybrid lab {DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ}: {line}\n");
        }
        catch (IOException) { /* the run directory is being removed */ }
        catch (UnauthorizedAccessException) { }
    }

    private Slot Find(string node) =>
        _slots.TryGetValue(node, out var slot)
            ? slot
            : throw new ArgumentException($"no agent for node '{node}' (nodes: {string.Join(", ", _slots.Keys)})", nameof(node));

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    /// <summary>One node's agent; fields are guarded by <see cref="Gate"/> (counters are read without it).</summary>
    private sealed class Slot(AgentNode node)
    {
        public readonly AgentNode Node = node;
        public readonly SemaphoreSlim Gate = new(1, 1);
        public Process? Process;
        public int? Pid;
        public int Starts;
        public int Restarts;
        public int? LastExitCode;
        public bool HeldDown;
        public CancellationTokenSource? PendingRestart;
        public Task Monitor = Task.CompletedTask;
        public TaskCompletionSource<AgentExited> NextExit = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource<AgentStarted> NextStart = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
