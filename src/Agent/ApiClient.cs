using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Security.Cryptography.X509Certificates;
using Hybrid.Facade;
using k8s;
using k8s.Authentication;
using k8s.Exceptions;

namespace Hybrid.Agent;

/// <summary>The API server answered a request with an error status.</summary>
internal sealed class ApiException(HttpStatusCode status, string? reason, string body)
    : Exception($"HTTP {(int)status} {reason}: {body}")
{
    public HttpStatusCode Status { get; } = status;
    public string? Reason { get; } = reason;
}

/// <summary>
/// The agent's requests to the API server: JSON in and out through <see cref="ApiJson"/>, with the server,
/// CA, client certificate and token of a kubeconfig or the in-cluster account as KubernetesClient.Aot reads
/// them. Its client class is not used: constructing one roots its serializer context, which names every
/// Kubernetes type (about 15 MiB of every node's memory for a handful of fields).
/// </summary>
internal sealed class ApiClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly Uri _server;
    private readonly ServiceClientCredentials? _credentials;

    public ApiClient(KubernetesClientConfiguration config)
    {
        if (string.IsNullOrWhiteSpace(config.Host)) throw new KubeConfigException("the configuration names no server");
        var server = new Uri(config.Host).AbsoluteUri;
        // A relative path resolved against a URL ending in '/' keeps any prefix of the server's URL.
        _server = new Uri(server.EndsWith('/') ? server : server + "/");
        _credentials = Kubernetes.CreateCredentials(config);
        _http = new HttpClient(Handler(config, _server), disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
        ListTimeout = config.HttpClientTimeout;
    }

    private const string Json = "application/json";
    private const string MergePatch = "application/merge-patch+json";

    /// <summary>How long a list may take (the configuration's client timeout, 100 s by default).</summary>
    public TimeSpan ListTimeout { get; }

    public async Task<T> GetAsync<T>(string path, JsonTypeInfo<T> type, CancellationToken cancellationToken)
    {
        using var response = await SendAsync(HttpMethod.Get, path, null, HttpCompletionOption.ResponseContentRead, cancellationToken);
        return await ReadAsync(response, type, path, cancellationToken);
    }

    public async Task<TResult> CreateAsync<TBody, TResult>(string path, TBody body, JsonTypeInfo<TBody> bodyType, JsonTypeInfo<TResult> resultType,
        CancellationToken cancellationToken)
    {
        using var content = JsonContent(JsonSerializer.SerializeToUtf8Bytes(body, bodyType), Json);
        using var response = await SendAsync(HttpMethod.Post, path, content, HttpCompletionOption.ResponseContentRead, cancellationToken);
        return await ReadAsync(response, resultType, path, cancellationToken);
    }

    /// <summary>A JSON merge patch (RFC 7386); returns the object as the server stored it.</summary>
    public async Task<T> MergePatchAsync<T>(string path, string patch, JsonTypeInfo<T> resultType, CancellationToken cancellationToken)
    {
        using var content = JsonContent(Encoding.UTF8.GetBytes(patch), MergePatch);
        using var response = await SendAsync(HttpMethod.Patch, path, content, HttpCompletionOption.ResponseContentRead, cancellationToken);
        return await ReadAsync(response, resultType, path, cancellationToken);
    }

    public async Task DeleteAsync(string path, DeleteOptions options, CancellationToken cancellationToken)
    {
        using var content = JsonContent(JsonSerializer.SerializeToUtf8Bytes(options, ApiJson.Default.DeleteOptions), Json);
        using var response = await SendAsync(HttpMethod.Delete, path, content, HttpCompletionOption.ResponseContentRead, cancellationToken);
        await EnsureSuccessAsync(response, cancellationToken);
    }

    /// <summary>A GET whose body the caller streams (a watch); the caller disposes the response.</summary>
    public Task<HttpResponseMessage> OpenAsync(string pathAndQuery, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Get, pathAndQuery, null, HttpCompletionOption.ResponseHeadersRead, cancellationToken);

    /// <exception cref="ApiException">the server answered with an error status.</exception>
    public static async Task EnsureSuccessAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode) return;
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        throw new ApiException(response.StatusCode, response.ReasonPhrase, body);
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string pathAndQuery, HttpContent? content,
        HttpCompletionOption completion, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, new Uri(_server, pathAndQuery))
        {
            Content = content,
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(Json));
        // Tokens (static, a file re-read as it rotates, exec) are added per request; certificates are the handler's.
        if (_credentials is not null) await _credentials.ProcessHttpRequestAsync(request, cancellationToken);
        return await _http.SendAsync(request, completion, cancellationToken);
    }

    private static async Task<T> ReadAsync<T>(HttpResponseMessage response, JsonTypeInfo<T> type, string path, CancellationToken cancellationToken)
    {
        await EnsureSuccessAsync(response, cancellationToken);
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        return await JsonSerializer.DeserializeAsync(body, type, cancellationToken)
            ?? throw new JsonException($"empty response from {path}");
    }

    /// <summary>TLS as the configuration says: its CA alone trusted (or no check if it says so), its client certificate.</summary>
    private static SocketsHttpHandler Handler(KubernetesClientConfiguration config, Uri server)
    {
        var handler = new SocketsHttpHandler
        {
            // Pings, the domain's WatchTiming: a dead server is noticed by every request on the connection.
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
            KeepAlivePingDelay = TimeSpan.FromMilliseconds(Configuration.ApiPingAfterMs),
            KeepAlivePingTimeout = TimeSpan.FromMilliseconds(Configuration.ApiPingTimeoutMs),
            EnableMultipleHttp2Connections = true,
        };
        if (server.Scheme != Uri.UriSchemeHttps) return handler;
        if (!string.IsNullOrEmpty(config.TlsServerName)) handler.SslOptions.TargetHost = config.TlsServerName;
        if (config.SkipTlsVerify)
            handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true;
        else if (config.SslCaCerts is { Count: > 0 } ca)
            handler.SslOptions.RemoteCertificateValidationCallback = (sender, certificate, chain, errors) =>
                certificate is not null && chain is not null && Kubernetes.CertificateValidationCallBack(sender, ca, certificate, chain, errors);
        if (ClientCertificate(config) is { } certificate)
        {
            handler.SslOptions.ClientCertificates = [certificate];
            handler.SslOptions.LocalCertificateSelectionCallback = (_, _, _, _, _) => certificate;
        }
        return handler;
    }

    /// <summary>The client certificate and key of the configuration (inline base64 PEM or files), if it has one.</summary>
    private static X509Certificate2? ClientCertificate(KubernetesClientConfiguration config)
    {
        static string? Pem(string? data, string? file) =>
            !string.IsNullOrEmpty(data) ? Encoding.UTF8.GetString(Convert.FromBase64String(data))
            : !string.IsNullOrEmpty(file) ? File.ReadAllText(file)
            : null;
        var certificate = Pem(config.ClientCertificateData, config.ClientCertificateFilePath);
        var key = Pem(config.ClientCertificateKeyData, config.ClientKeyFilePath);
        return certificate is null || key is null ? null : X509Certificate2.CreateFromPem(certificate, key);
    }

    public void Dispose() => _http.Dispose();

    private static ByteArrayContent JsonContent(byte[] bytes, string type)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue(type);
        return content;
    }
}
