using Hybrid.Sandbox.Lab;

namespace Hybrid.Integration.DataPlane;

/// <summary>What the real curl printed and how it exited (0 answered, 7 could not connect, 28 timed out).</summary>
internal sealed record CurlResult(int ExitCode, string Body, string Error)
{
    public bool Answered => ExitCode == 0;

    public override string ToString() => Answered ? Body : $"curl exit {ExitCode}: {Error.Trim()}";
}

/// <summary>Runs Debian's curl inside a lab namespace, as a user of the sandbox would.</summary>
internal static class Curl
{
    public const int CouldNotConnect = 7;
    public const int TimedOut = 28;

    public static async Task<CurlResult> GetAsync(string namespaceName, string url, TimeSpan? timeout = null)
    {
        Requires.Tool("curl", "curl");
        var seconds = (timeout ?? TimeSpan.FromSeconds(3)).TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);
        var result = await ProcessRunner.Default.RunAsync(new ProcessRequest(["curl", "--silent", "--show-error", "--max-time", seconds, url])
        {
            Namespace = namespaceName,
            AllowFailure = true,
            Timeout = TimeSpan.FromSeconds(30),
        }, CancellationToken.None);
        return new CurlResult(result.ExitCode, result.StandardOutput, result.StandardError);
    }

    /// <summary>Waits until the URL answers; returns the answer.</summary>
    public static async Task<string> AnswerAsync(string namespaceName, string url, TimeSpan? within = null)
    {
        CurlResult? last = null;
        try
        {
            return await Eventually.WaitAsync(async () => (last = await GetAsync(namespaceName, url)).Answered ? last.Body : null,
                within ?? TimeSpan.FromSeconds(15), $"{url} to answer from {namespaceName}");
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message}; last: {last}", e);
        }
    }
}
