using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Hybrid.Sandbox.Api;
using k8s;

namespace Hybrid.Integration.Emulator;

/// <summary>
/// One emulator per test: started on a free port with its own temp directory (kubeconfig, kubectl cache,
/// manifests, sockets), a KubernetesClient and a raw HttpClient for it, and a kubectl runner. Everything is
/// removed on dispose, whether the test passed or not.
/// </summary>
internal sealed class EmulatorHarness : IAsyncDisposable
{
    private EmulatorHarness(ApiEmulator emulator, string dir)
    {
        Emulator = emulator;
        Directory = dir;
        KubeconfigPath = Path.Combine(dir, "kubeconfig");
        emulator.WriteKubeconfig(KubeconfigPath);
        Client = new Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(KubeconfigPath));
        Http = new HttpClient { BaseAddress = emulator.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
    }

    public ApiEmulator Emulator { get; }
    public string Directory { get; }
    public string KubeconfigPath { get; }
    public Kubernetes Client { get; }
    public HttpClient Http { get; }

    public static string NewDirectory()
    {
        var dir = Path.Combine(Path.GetTempPath(), "hyt-" + Guid.NewGuid().ToString("N")[..8]);
        System.IO.Directory.CreateDirectory(dir);
        return dir;
    }

    public static async Task<EmulatorHarness> StartAsync(Func<string, ApiEmulatorOptions>? options = null)
    {
        var dir = NewDirectory();
        try
        {
            var emulator = await ApiEmulator.StartAsync(options?.Invoke(dir) ?? new ApiEmulatorOptions(), CancellationToken.None);
            return new EmulatorHarness(emulator, dir);
        }
        catch
        {
            System.IO.Directory.Delete(dir, true);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        Http.Dispose();
        await Emulator.DisposeAsync();
        try { System.IO.Directory.Delete(Directory, true); } catch (IOException) { }
    }

    public string WriteFile(string name, string content)
    {
        var path = Path.Combine(Directory, name);
        File.WriteAllText(path, content);
        return path;
    }

    /// <summary>Runs the real kubectl against this emulator (its own kubeconfig and discovery cache).</summary>
    public Task<KubectlResult> KubectlAsync(params string[] args) => KubectlAsync(TimeSpan.FromSeconds(60), args);

    public async Task<KubectlResult> KubectlAsync(TimeSpan timeout, params string[] args)
    {
        var kubectl = Requires.Tool("kubectl", "kubectl");
        var psi = new ProcessStartInfo(kubectl)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("--kubeconfig");
        psi.ArgumentList.Add(KubeconfigPath);
        psi.ArgumentList.Add("--cache-dir");
        psi.ArgumentList.Add(Path.Combine(Directory, "kubectl-cache"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["HOME"] = Directory;
        psi.Environment.Remove("KUBECONFIG");
        using var process = Process.Start(psi) ?? throw new InvalidOperationException("kubectl did not start");
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
    public Process StartKubectl(params string[] args)
    {
        var psi = new ProcessStartInfo(Requires.Tool("kubectl", "kubectl"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "--kubeconfig", KubeconfigPath, "--cache-dir", Path.Combine(Directory, "kubectl-cache") }.Concat(args))
            psi.ArgumentList.Add(a);
        psi.Environment["HOME"] = Directory;
        return Process.Start(psi) ?? throw new InvalidOperationException("kubectl did not start");
    }

    public async Task<(int Status, JsonNode? Body, HttpResponseMessage Response)> SendAsync(HttpMethod method, string path, string? json = null,
        string contentType = "application/json", string? accept = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null) request.Content = new StringContent(json, Encoding.UTF8, MediaTypeHeaderValue.Parse(contentType));
        if (accept is not null) request.Headers.TryAddWithoutValidation("Accept", accept);
        var response = await Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        JsonNode? body = null;
        try { body = text.Length > 0 ? JsonNode.Parse(text) : null; } catch (System.Text.Json.JsonException) { }
        return ((int)response.StatusCode, body, response);
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

/// <summary>Waits for a condition with a deadline (never sleep-and-hope).</summary>
internal static class Eventually
{
    public static async Task<T> WaitAsync<T>(Func<Task<T?>> probe, TimeSpan timeout, string what) where T : class
    {
        var deadline = DateTime.UtcNow + timeout;
        Exception? last = null;
        while (true)
        {
            try
            {
                if (await probe() is { } value) return value;
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                last = e;
            }
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out after {timeout} waiting for {what}" + (last is null ? "" : $" (last error: {last.Message})"));
            await Task.Delay(10);
        }
    }

    public static Task WaitAsync(Func<Task<bool>> probe, TimeSpan timeout, string what) =>
        WaitAsync<object>(async () => await probe() ? new object() : null, timeout, what);

    public static Task WaitAsync(Func<bool> probe, TimeSpan timeout, string what) =>
        WaitAsync<object>(() => Task.FromResult(probe() ? new object() : null), timeout, what);
}
