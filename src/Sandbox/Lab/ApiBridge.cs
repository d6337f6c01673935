using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hybrid.Sandbox.Lab;

/// <summary>
/// Makes the in-process API server, listening on a Unix socket in the root namespace, reachable as
/// `http://127.0.0.1:6443` inside one host namespace: a `socat TCP-LISTEN:6443,bind=127.0.0.1,fork,reuseaddr
/// UNIX-CONNECT:SOCKET` runs inside the namespace (Unix sockets are files, so they cross network namespaces).
/// Every host gets its own socket, so the server knows which node a request comes from and can cut one node
/// off (a partition) by closing that socket. Stopping the bridge kills socat and the connections it forked.
/// </summary>
internal sealed class ApiBridge : IAsyncDisposable
{
    public const int DefaultPort = 6443;
    private static readonly TimeSpan DefaultStartTimeout = TimeSpan.FromSeconds(10);
    private const int StderrLinesKept = 20;

    private readonly Process _process;
    private readonly ILogger _logger;
    private readonly Queue<string> _stderr = new();
    private int _stopped;

    private ApiBridge(string namespaceName, string socketPath, int port, Process process, ILogger logger)
    {
        Namespace = namespaceName;
        SocketPath = socketPath;
        Port = port;
        _process = process;
        _logger = logger;
        Pid = process.Id;
    }

    public string Namespace { get; }
    public string SocketPath { get; }
    public int Port { get; }

    /// <summary>Pid of socat (the listener; connections are served by forked children).</summary>
    public int Pid { get; }

    /// <summary>The URL that reaches the API server from inside <see cref="Namespace"/>.</summary>
    public Uri Server => new($"http://127.0.0.1:{Port.ToString(CultureInfo.InvariantCulture)}");

    public bool IsRunning => !_process.HasExited;

    /// <summary>The last lines socat wrote to stderr (its errors, e.g. a Unix socket nobody listens on).</summary>
    public string RecentErrors => Stderr();

    /// <summary>
    /// Starts socat inside <paramref name="namespaceName"/> and returns once its TCP port accepts connections.
    /// The Unix socket need not exist yet: socat connects to it per accepted connection.
    /// </summary>
    /// <exception cref="InvalidOperationException">socat exited (port in use, namespace missing); the message
    /// carries its stderr.</exception>
    /// <exception cref="TimeoutException">The port did not listen before the deadline.</exception>
    public static async Task<ApiBridge> StartAsync(
        string namespaceName, string socketPath, CancellationToken cancellationToken,
        int port = DefaultPort, TimeSpan? startTimeout = null, ILogger<ApiBridge>? logger = null)
    {
        if (socketPath.IndexOfAny([',', ':', '!', '"', '\'', '\\', ' ', '{', '}', '[', ']', '%']) >= 0)
            throw new ArgumentException($"socket path '{socketPath}' contains characters socat treats as syntax", nameof(socketPath));
        if (port is < 1 or > 65535) throw new ArgumentOutOfRangeException(nameof(port), port, "TCP port 1..65535");

        var argv = ProcessRunner.InNamespace(namespaceName,
        [
            ProcessRunner.FindExecutable("socat"),
            // After one side closes its write half (an HTTP/1.0 client may), socat by default gives the other side
            // only 0.5 s to finish: too short for a busy API server's first answer. Both sides closing still ends
            // the connection at once.
            "-t", "30",
            string.Create(CultureInfo.InvariantCulture, $"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"),
            $"UNIX-CONNECT:{socketPath}",
        ]);
        var info = new ProcessStartInfo(argv[0])
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var arg in argv.Skip(1)) info.ArgumentList.Add(arg);
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {ProcessRunner.Format(argv)}");
        process.StandardInput.Close();
        var bridge = new ApiBridge(namespaceName, socketPath, port, process, (ILogger?)logger ?? NullLogger.Instance);
        process.ErrorDataReceived += (_, e) => bridge.KeepStderr(e.Data);
        process.OutputDataReceived += (_, _) => { };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();

        try
        {
            await bridge.WaitUntilListeningAsync(startTimeout ?? DefaultStartTimeout, cancellationToken);
        }
        catch
        {
            await bridge.DisposeAsync();
            throw;
        }
        bridge._logger.LogInformation("API bridge in {Namespace}: {Server} -> {Socket} (pid {Pid})", namespaceName, bridge.Server, socketPath, bridge.Pid);
        return bridge;
    }

    /// <summary>Kills socat and every connection it forked; from then on the port refuses connections.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0)
        {
            await _process.WaitForExitAsync(cancellationToken);
            return;
        }
        try { _process.Kill(entireProcessTree: true); }
        catch (InvalidOperationException) { /* already exited */ }
        await _process.WaitForExitAsync(cancellationToken);
        _logger.LogInformation("API bridge in {Namespace} stopped", Namespace);
    }

    public async ValueTask DisposeAsync()
    {
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try { await StopAsync(deadline.Token); }
        finally { _process.Dispose(); }
    }

    /// <summary>
    /// A kubeconfig for use inside a host namespace: plain http to the bridge, one context that is the current one
    /// and names no user (KubernetesClient rejects a user entry without credentials; kubectl accepts both).
    /// </summary>
    public static string NodeKubeconfig(int port = DefaultPort, string contextName = "hybrid-lab", string defaultNamespace = "default") =>
        string.Create(CultureInfo.InvariantCulture, $"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: {contextName}
              cluster:
                server: http://127.0.0.1:{port}
            contexts:
            - name: {contextName}
              context:
                cluster: {contextName}
                namespace: {defaultNamespace}
            current-context: {contextName}
            preferences: {"{}"}

            """);

    /// <summary>Writes <see cref="NodeKubeconfig"/> to <paramref name="path"/> (mode 0600), creating its directory.</summary>
    public static void WriteNodeKubeconfig(string path, int port = DefaultPort, string contextName = "hybrid-lab", string defaultNamespace = "default")
    {
        if (Path.GetDirectoryName(path) is { Length: > 0 } directory) Directory.CreateDirectory(directory);
        File.WriteAllText(path, NodeKubeconfig(port, contextName, defaultNamespace));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    private void KeepStderr(string? line)
    {
        if (line is null) return;
        lock (_stderr)
        {
            _stderr.Enqueue(line);
            while (_stderr.Count > StderrLinesKept) _stderr.Dequeue();
        }
    }

    private string Stderr()
    {
        lock (_stderr) return string.Join(" | ", _stderr);
    }

    /// <summary>
    /// Polls /proc/PID/net/tcp, which shows the TCP table of the namespace PID lives in, until socat's
    /// 127.0.0.1:PORT is in LISTEN state. Checking comm first makes sure `ip netns exec` has already switched
    /// namespace and exec'd socat, and matching the socket inode against socat's open files makes sure the
    /// listener is socat's own (not one of the root namespace, nor another bridge on that port).
    /// </summary>
    private async Task WaitUntilListeningAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + timeout;
        var local = string.Create(CultureInfo.InvariantCulture, $"0100007F:{Port:X4}");
        while (true)
        {
            if (_process.HasExited)
            {
                await _process.WaitForExitAsync(cancellationToken); // flushes the stderr reader
                throw new InvalidOperationException(
                    $"API bridge in {Namespace} exited with code {_process.ExitCode}: {Stderr()}");
            }
            if (IsListening(local)) return;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"API bridge in {Namespace} did not listen on 127.0.0.1:{Port} within {timeout.TotalSeconds:0.#} s");
            await Task.Delay(10, cancellationToken);
        }
    }

    private bool IsListening(string local)
    {
        try
        {
            if (File.ReadAllText($"/proc/{Pid}/comm").Trim() != "socat") return false;
            // Columns: sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode; st 0A is LISTEN.
            var listening = File.ReadLines($"/proc/{Pid}/net/tcp").Skip(1)
                .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                .Where(columns => columns.Length > 9 && columns[1] == local && columns[3] == "0A")
                .Select(columns => $"socket:[{columns[9]}]")
                .ToHashSet();
            // The listener must be socat's own socket, not another listener on that port in the namespace.
            return listening.Count > 0 && Directory.EnumerateFileSystemEntries($"/proc/{Pid}/fd")
                .Any(fd => new FileInfo(fd).LinkTarget is { } target && listening.Contains(target));
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }
}
