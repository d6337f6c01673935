using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Hybrid.Net;

namespace Hybrid.Benchmarks;

/// <summary>One probe request: when it was sent and, if a pod answered 200, when the answer was complete.</summary>
internal readonly record struct ProbeResult(long SentTicks, long? AnsweredTicks);

/// <summary>
/// A client in a lab namespace that sends `GET /hostname` to an address every <c>interval</c>, open loop: a
/// new TCP connection per request (as a browser's new visit; a new connection gets a fresh DNAT decision),
/// whatever the earlier requests are doing, each given up after <c>timeout</c>. Sockets are made inside the
/// namespace and used from the thread pool.
/// </summary>
internal sealed class HttpProbe(string namespaceName, IPEndPoint target, TimeSpan interval, TimeSpan timeout) : IAsyncDisposable
{
    private readonly List<Task<ProbeResult>> _requests = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly byte[] _request = Encoding.ASCII.GetBytes($"GET /hostname HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    private Task? _loop;

    public void Start() => _loop = Task.Run(LoopAsync);

    private async Task LoopAsync()
    {
        using var timer = new PeriodicTimer(interval);
        try
        {
            do
            {
                lock (_requests) _requests.Add(OnceAsync());
            }
            while (await timer.WaitForNextTickAsync(_stop.Token));
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task<ProbeResult> OnceAsync()
    {
        var sent = Stopwatch.GetTimestamp();
        try
        {
            using var socket = NetworkNamespace.RunIn(namespaceName, () => new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
            using var deadline = new CancellationTokenSource(timeout);
            await socket.ConnectAsync(target, deadline.Token);
            await socket.SendAsync(_request, SocketFlags.None, deadline.Token);
            var buffer = new byte[4096];
            var received = new StringBuilder();
            int n;
            while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None, deadline.Token)) > 0)
                received.Append(Encoding.ASCII.GetString(buffer, 0, n));
            return new ProbeResult(sent, received.ToString().StartsWith("HTTP/1.1 200", StringComparison.Ordinal) ? Stopwatch.GetTimestamp() : null);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or IOException)
        {
            return new ProbeResult(sent, null);
        }
    }

    /// <summary>Stops sending and waits for the requests in flight; returns every request sent.</summary>
    public async Task<IReadOnlyList<ProbeResult>> StopAsync()
    {
        await _stop.CancelAsync();
        if (_loop is not null) await _loop;
        Task<ProbeResult>[] requests;
        lock (_requests) requests = [.. _requests];
        return await Task.WhenAll(requests);
    }

    /// <summary>Answers so far (requests still in flight are not counted).</summary>
    public IReadOnlyList<ProbeResult> Completed()
    {
        lock (_requests) return _requests.Where(t => t.IsCompletedSuccessfully).Select(t => t.Result).ToList();
    }

    /// <summary>
    /// The longest time the client went without an answer from <paramref name="fromTicks"/> on: between two
    /// consecutive completed answers (by when they arrived), or from the start to the first answer.
    /// </summary>
    public static double LongestGapMs(IReadOnlyList<ProbeResult> results, long fromTicks)
    {
        var answers = results.Where(r => r.AnsweredTicks is { } t && t >= fromTicks).Select(r => r.AnsweredTicks!.Value).Order().ToList();
        var last = results.Where(r => r.AnsweredTicks is { } t && t < fromTicks).Select(r => r.AnsweredTicks!.Value).DefaultIfEmpty(fromTicks).Max();
        var longest = 0.0;
        foreach (var t in answers)
        {
            longest = Math.Max(longest, BenchLab.Ms(last, t));
            last = t;
        }
        return longest;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stop.IsCancellationRequested) await StopAsync();
        _stop.Dispose();
    }
}
