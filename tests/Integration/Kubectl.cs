using System.Diagnostics;

namespace Hybrid.Integration;

/// <summary>
/// Drives the real kubectl binary against a kubeconfig, with its own discovery cache and HOME so that runs
/// never share state with the user's or with each other.
/// </summary>
internal sealed class Kubectl(string kubeconfig, string workDirectory)
{
    public Task<KubectlResult> RunAsync(params string[] args) => RunAsync(TimeSpan.FromSeconds(60), args);

    public async Task<KubectlResult> RunAsync(TimeSpan timeout, params string[] args)
    {
        using var process = Start(args);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"kubectl {string.Join(' ', args)} did not finish in {timeout}: {await stderr}");
        }
        return new KubectlResult(process.ExitCode, await stdout, await stderr);
    }

    /// <summary>Starts kubectl and returns the running process (for `get -w`); the caller kills it.</summary>
    public Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo(Requires.Tool("kubectl", "kubectl"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "--kubeconfig", kubeconfig, "--cache-dir", Path.Combine(workDirectory, "kubectl-cache") }.Concat(args))
            psi.ArgumentList.Add(a);
        psi.Environment["HOME"] = workDirectory;
        psi.Environment.Remove("KUBECONFIG");
        return Process.Start(psi) ?? throw new InvalidOperationException("kubectl did not start");
    }
}

internal sealed record KubectlResult(int ExitCode, string Stdout, string Stderr)
{
    public KubectlResult EnsureSuccess()
    {
        if (ExitCode != 0) throw new Xunit.Sdk.XunitException($"kubectl exited {ExitCode}\nstdout: {Stdout}\nstderr: {Stderr}");
        return this;
    }
}
