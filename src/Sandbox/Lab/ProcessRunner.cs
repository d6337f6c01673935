using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hybrid.Sandbox.Lab;

/// <summary>One command to run: an argv array (never a shell string), optionally inside a network namespace.</summary>
/// <param name="Argv">Program and arguments; the program is resolved on PATH (and /usr/sbin, /sbin).</param>
internal sealed record ProcessRequest(IReadOnlyList<string> Argv)
{
    /// <summary>Run inside this named network namespace (`ip netns exec NAME ...`); null: the caller's namespace.</summary>
    public string? Namespace { get; init; }

    /// <summary>Written to the child's standard input, which is then closed; null: stdin is empty.</summary>
    public string? StandardInput { get; init; }

    /// <summary>The child (and its descendants) are killed and a <see cref="TimeoutException"/> thrown after this.</summary>
    public TimeSpan Timeout { get; init; } = ProcessRunner.DefaultTimeout;

    /// <summary>When true a non-zero exit is returned in the result instead of throwing.</summary>
    public bool AllowFailure { get; init; }
}

/// <summary>What a finished command produced.</summary>
internal sealed record ProcessResult(IReadOnlyList<string> Command, int ExitCode, string StandardOutput, string StandardError)
{
    public bool Succeeded => ExitCode == 0;
}

/// <summary>A command exited non-zero; the message carries the command line, the exit code and its stderr.</summary>
internal sealed class ProcessFailedException(IReadOnlyList<string> command, int exitCode, string standardError)
    : Exception($"command failed with exit code {exitCode}: {ProcessRunner.Format(command)}: {standardError.Trim()}")
{
    public IReadOnlyList<string> Command { get; } = command;
    public int ExitCode { get; } = exitCode;
    public string StandardError { get; } = standardError;
}

/// <summary>
/// Runs short-lived commands (`ip`, `sysctl`, `kill`, ...) to completion and captures their output. The argv is
/// passed to the kernel as an array, so nothing is ever interpreted by a shell. A command that outlives its
/// timeout or the caller's cancellation is killed together with its descendants.
/// </summary>
internal sealed class ProcessRunner(ILogger<ProcessRunner> logger)
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(30);

    /// <summary>A runner that logs nowhere, for callers without a logger.</summary>
    public static ProcessRunner Default { get; } = new(NullLogger<ProcessRunner>.Instance);

    private static readonly string[] ExtraSearchPath = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

    public Task<ProcessResult> RunAsync(IReadOnlyList<string> argv, CancellationToken cancellationToken) =>
        RunAsync(new ProcessRequest(argv), cancellationToken);

    public async Task<ProcessResult> RunAsync(ProcessRequest request, CancellationToken cancellationToken)
    {
        var argv = CommandLine(request);
        using var process = Start(argv, request.StandardInput is not null);
        var started = Stopwatch.GetTimestamp();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(request.Timeout);
        try
        {
            var stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
            var stderr = process.StandardError.ReadToEndAsync(timeout.Token);
            if (request.StandardInput is { } input)
            {
                await process.StandardInput.WriteAsync(input.AsMemory(), timeout.Token);
                process.StandardInput.Close();
            }
            await process.WaitForExitAsync(timeout.Token);
            var result = new ProcessResult(argv, process.ExitCode, await stdout, await stderr);
            return Finish(request, result, Stopwatch.GetElapsedTime(started));
        }
        catch (OperationCanceledException)
        {
            // Also reached when the command exited but a descendant still holds its output open.
            KillTree(process);
            if (cancellationToken.IsCancellationRequested) throw;
            throw new TimeoutException($"command did not finish within {request.Timeout.TotalSeconds:0.#} s and was killed: {Format(argv)}");
        }
    }

    /// <summary>The full argv that runs <paramref name="argv"/> inside <paramref name="namespaceName"/> (or as is when null).</summary>
    public static IReadOnlyList<string> InNamespace(string? namespaceName, IReadOnlyList<string> argv) =>
        namespaceName is null ? argv : [FindExecutable("ip"), "netns", "exec", namespaceName, .. argv];

    /// <summary>Absolute path of an executable found on PATH or in the usual system directories.</summary>
    /// <exception cref="FileNotFoundException">Nowhere to be found.</exception>
    public static string FindExecutable(string name)
    {
        if (name.Contains('/')) return name;
        var path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries);
        foreach (var dir in path.Concat(ExtraSearchPath))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException($"executable '{name}' not found on PATH or in {string.Join(", ", ExtraSearchPath)}", name);
    }

    /// <summary>A command line for messages: arguments with spaces or quotes are single-quoted.</summary>
    public static string Format(IReadOnlyList<string> argv) =>
        string.Join(' ', argv.Select(a => a.Length > 0 && a.All(c => char.IsAsciiLetterOrDigit(c) || "-_./:=@,+%".Contains(c))
            ? a
            : "'" + a.Replace("'", "'\\''") + "'"));

    private static IReadOnlyList<string> CommandLine(ProcessRequest request)
    {
        if (request.Argv.Count == 0) throw new ArgumentException("a command needs at least a program name", nameof(request));
        IReadOnlyList<string> argv = [FindExecutable(request.Argv[0]), .. request.Argv.Skip(1)];
        return InNamespace(request.Namespace, argv);
    }

    private static Process Start(IReadOnlyList<string> argv, bool writesInput)
    {
        var info = new ProcessStartInfo(argv[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            // Always redirected so that a child never reads the caller's terminal; closed at once when unused.
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var arg in argv.Skip(1)) info.ArgumentList.Add(arg);
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {Format(argv)}");
        if (!writesInput) process.StandardInput.Close();
        return process;
    }

    private ProcessResult Finish(ProcessRequest request, ProcessResult result, TimeSpan elapsed)
    {
        logger.LogDebug("{Command} exited with {ExitCode} after {ElapsedMs} ms", Format(result.Command), result.ExitCode, (int)elapsed.TotalMilliseconds);
        if (!result.Succeeded && !request.AllowFailure)
            throw new ProcessFailedException(result.Command, result.ExitCode, result.StandardError);
        return result;
    }

    private static void KillTree(Process process)
    {
        try { process.Kill(entireProcessTree: true); }
        catch (InvalidOperationException) { /* exited meanwhile */ }
    }
}
