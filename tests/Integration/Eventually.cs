namespace Hybrid.Integration;

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
