namespace Hybrid.Sandbox.Lab;

/// <summary>
/// Runs a piece of work on a fresh dedicated thread that has first entered the named network namespace
/// (setns on /var/run/netns/NAME, as created by `ip netns add`). Linux keeps the network namespace per
/// thread, so only that thread moves; it ends with the work and is never reused, so nothing else ever runs
/// in the wrong namespace. Sockets the work creates (a libpcap device, a netlink socket) stay in the
/// namespace when other threads use them afterwards.
/// <para>
/// Only the network namespace changes, not the mount namespace: /sys and /proc/self still show the root
/// namespace, so the work must learn about interfaces through sockets (netlink, getifaddrs, ioctl), as
/// libpcap's device list does.
/// </para>
/// </summary>
internal static class NamespaceThread
{
    private const string NetnsDirectory = "/var/run/netns";

    public static Task<T> RunAsync<T>(string namespaceName, Func<T> work, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(namespaceName);
        ArgumentNullException.ThrowIfNull(work);
        if (namespaceName.Contains('/') || namespaceName is "." or "..")
            throw new ArgumentException($"'{namespaceName}' is not a network namespace name", nameof(namespaceName));
        cancellationToken.ThrowIfCancellationRequested();

        var path = Path.Combine(NetnsDirectory, namespaceName);
        var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                using (var namespaceFd = OpenNamespace(path))
                    Interop.Libc.SetNetworkNamespace(namespaceFd, path);
                result.SetResult(work());
            }
            catch (Exception e)
            {
                result.SetException(e);
            }
        })
        {
            IsBackground = true,
            Name = $"netns {namespaceName}",
        };
        thread.Start();
        return result.Task;
    }

    private static Microsoft.Win32.SafeHandles.SafeFileHandle OpenNamespace(string path)
    {
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        }
        catch (FileNotFoundException e)
        {
            throw new InvalidOperationException($"network namespace '{Path.GetFileName(path)}' does not exist ({path} is missing)", e);
        }
    }
}
