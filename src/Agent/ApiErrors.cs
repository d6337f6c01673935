namespace Hybrid.Agent;

/// <summary>API failures in a few words, for logs.</summary>
internal static class ApiErrors
{
    public static string Describe(Exception e) => e switch
    {
        ApiException a => $"HTTP {(int)a.Status} {a.Reason}",
        OperationCanceledException => "timed out",
        _ => e.GetBaseException().Message,
    };
}
