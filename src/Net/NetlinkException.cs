namespace Hybrid.Net;

/// <summary>
/// The kernel (or the socket layer) refused a netlink operation. Carries the errno, its symbolic name and the
/// kernel's extended-ack text when it sent one, e.g.
/// "RTM_NEWADDR 198.18.0.5/32 on ifindex 4242 failed: ENODEV (No such device)".
/// </summary>
internal sealed class NetlinkException(string operation, int errno, string? kernelMessage = null)
    : IOException(Format(operation, errno, kernelMessage))
{
    /// <summary>What was attempted, e.g. "RTM_DELADDR 198.18.0.5/32 on ifindex 3".</summary>
    public string Operation { get; } = operation;

    /// <summary>Positive errno value (0 when the failure was not an errno, e.g. a malformed reply).</summary>
    public int Errno { get; } = errno;

    /// <summary>Symbolic name of <see cref="Errno"/>, e.g. "ENODEV".</summary>
    public string ErrnoName => Interop.ErrnoNames.Name(Errno);

    /// <summary>The kernel's NLMSGERR_ATTR_MSG text, when it gave one.</summary>
    public string? KernelMessage { get; } = kernelMessage;

    private static string Format(string operation, int errno, string? kernelMessage) =>
        $"{operation} failed: {(errno == 0 ? "protocol error" : Interop.ErrnoNames.Describe(errno))}"
        + (string.IsNullOrEmpty(kernelMessage) ? "" : $" (kernel: {kernelMessage})");
}
