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

    /// <summary>The real kubectl against this emulator (its own kubeconfig and discovery cache).</summary>
    public Kubectl Kubectl => _kubectl ??= new Kubectl(KubeconfigPath, Directory);

    private Kubectl? _kubectl;

    public Task<KubectlResult> KubectlAsync(params string[] args) => Kubectl.RunAsync(args);

    public Task<KubectlResult> KubectlAsync(TimeSpan timeout, params string[] args) => Kubectl.RunAsync(timeout, args);

    /// <summary>Starts kubectl and returns the running process (for `get -w`); the caller kills it.</summary>
    public Process StartKubectl(params string[] args) => Kubectl.Start(args);

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
