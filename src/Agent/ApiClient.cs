using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using k8s;

namespace Hybrid.Agent;

/// <summary>The API server answered a request with an error status.</summary>
internal sealed class ApiException(HttpStatusCode status, string? reason, string body)
    : Exception($"HTTP {(int)status} {reason}: {body}")
{
    public HttpStatusCode Status { get; } = status;
    public string? Reason { get; } = reason;
}

/// <summary>
/// The agent's requests to the API server: JSON in and out through <see cref="ApiJson"/>, over the HttpClient,
/// server URL and credentials that KubernetesClient.Aot built from the kubeconfig or the in-cluster account
/// (certificates and CA in its handler, tokens added per request). Its typed calls are not used: they
/// serialize through a context that names every Kubernetes type.
/// </summary>
internal sealed class ApiClient(Kubernetes transport)
{
    private const string Json = "application/json";
    private const string MergePatch = "application/merge-patch+json";

    /// <summary>How long a list may take (the client's own timeout, 100 s by default).</summary>
    public TimeSpan ListTimeout => transport.HttpClientTimeout;

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
        // BaseUri ends in '/': a relative path keeps any prefix of the server's URL.
        using var request = new HttpRequestMessage(method, new Uri(transport.BaseUri, pathAndQuery))
        {
            Content = content,
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(Json));
        // Tokens (static, file, exec) are added per request; certificates and the CA are in the HttpClient's handler.
        if (transport.Credentials is { } credentials) await credentials.ProcessHttpRequestAsync(request, cancellationToken);
        return await transport.HttpClient.SendAsync(request, completion, cancellationToken);
    }

    private static async Task<T> ReadAsync<T>(HttpResponseMessage response, JsonTypeInfo<T> type, string path, CancellationToken cancellationToken)
    {
        await EnsureSuccessAsync(response, cancellationToken);
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        return await JsonSerializer.DeserializeAsync(body, type, cancellationToken)
            ?? throw new JsonException($"empty response from {path}");
    }

    private static ByteArrayContent JsonContent(byte[] bytes, string type)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue(type);
        return content;
    }
}
