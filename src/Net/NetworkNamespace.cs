using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;

namespace Hybrid.Net;

/// <summary>
/// Runs code inside a named network namespace (one created by `ip netns add NAME`, i.e. bound at
/// /var/run/netns/NAME). The code runs on a fresh, dedicated OS thread that calls setns(CLONE_NEWNET) first and
/// then ends, so no pooled thread is ever left in a foreign namespace. Sockets (netlink, AF_PACKET, UDP, TCP)
/// created by the code belong to that namespace for their whole life and keep working on any thread after the
/// dedicated thread has ended — that is how the netlink tables and the monitor get bound to a namespace.
/// <para>
/// Limitation: only the thread's network namespace changes, not the mount namespace. /sys/class/net shows the
/// namespace sysfs was mounted in, and /proc/net (= /proc/self/net) shows the namespace of the process's main
/// thread; inside the action read /proc/thread-self/net/… or, better, ask netlink. Names resolved by the action
/// (DNS, /etc/hosts) use the process's files, not /etc/netns/NAME. Tests and the lab use this; the agent itself
/// is started inside its namespace (`ip netns exec`) and never needs it.
/// </para>
/// </summary>
internal static class NetworkNamespace
{
    public const string NamedNamespaceDirectory = "/var/run/netns";

    /// <summary>Runs <paramref name="action"/> in the namespace on a dedicated thread and returns its result.
    /// Blocks the caller until the action returns; exceptions are rethrown with their original stack.</summary>
    public static T RunIn<T>(string namespaceName, Func<T> action)
    {
        var path = PathOf(namespaceName);
        T result = default!;
        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                Enter(namespaceName, path);
                result = action();
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
        })
        {
            IsBackground = true,
            Name = $"netns {namespaceName}",
        };
        thread.Start();
        thread.Join();
        failure?.Throw();
        return result;
    }

    /// <summary>Runs <paramref name="action"/> in the namespace on a dedicated thread.</summary>
    public static void RunIn(string namespaceName, Action action) =>
        RunIn(namespaceName, () =>
        {
            action();
            return true;
        });

    /// <summary>
    /// Like <see cref="RunIn{T}(string, Func{T})"/> without blocking the caller: the task completes when the action
    /// has run on its dedicated thread. Cancellation is honoured until the thread starts; a running action is
    /// not interrupted.
    /// </summary>
    public static Task<T> RunInAsync<T>(string namespaceName, Func<T> action, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var path = PathOf(namespaceName);
        var completion = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                cancellationToken.ThrowIfCancellationRequested();
                Enter(namespaceName, path);
                completion.SetResult(action());
            }
            catch (OperationCanceledException e) when (e.CancellationToken == cancellationToken)
            {
                completion.SetCanceled(cancellationToken);
            }
            catch (Exception e)
            {
                completion.SetException(e);
            }
        })
        {
            IsBackground = true,
            Name = $"netns {namespaceName}",
        };
        thread.Start();
        return completion.Task;
    }

    /// <summary>True if /var/run/netns/NAME exists.</summary>
    public static bool Exists(string namespaceName) => File.Exists(PathOf(namespaceName));

    private static string PathOf(string namespaceName)
    {
        ArgumentException.ThrowIfNullOrEmpty(namespaceName);
        if (namespaceName.Contains('/') || namespaceName is "." or "..")
            throw new ArgumentException($"'{namespaceName}' is not a network namespace name", nameof(namespaceName));
        return Path.Combine(NamedNamespaceDirectory, namespaceName);
    }

    private static void Enter(string namespaceName, string path)
    {
        using var handle = Interop.Namespace.Open(path, Interop.Namespace.O_RDONLY | Interop.Namespace.O_CLOEXEC);
        if (handle.IsInvalid)
            throw new NetworkNamespaceException(namespaceName, $"open({path})", Marshal.GetLastPInvokeError());
        if (Interop.Namespace.SetNs(handle, Interop.Namespace.CLONE_NEWNET) != 0)
            throw new NetworkNamespaceException(namespaceName, "setns(CLONE_NEWNET)", Marshal.GetLastPInvokeError());
    }
}

/// <summary>Entering a named network namespace failed (missing namespace: ENOENT; not root: EPERM).</summary>
internal sealed class NetworkNamespaceException(string namespaceName, string operation, int errno)
    : IOException($"cannot enter network namespace '{namespaceName}': {operation} failed: {Interop.ErrnoNames.Describe(errno)}")
{
    public string NamespaceName { get; } = namespaceName;
    public int Errno { get; } = errno;
}
