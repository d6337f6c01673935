using k8s.Autorest;

namespace Hybrid.Agent;

/// <summary>API failures in a few words, for logs.</summary>
internal static class ApiErrors
{
    public static string Describe(Exception e) => e switch
    {
        HttpOperationException h => $"HTTP {(int)h.Response.StatusCode} {h.Response.ReasonPhrase}",
        OperationCanceledException => "timed out",
        _ => e.GetBaseException().Message,
    };
}
