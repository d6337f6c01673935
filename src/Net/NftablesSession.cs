using System.Runtime.InteropServices;

namespace Hybrid.Net;

/// <summary>
/// Runs nftables commands through libnftables (the library behind the nft command, Debian libnftables1):
/// each call parses a buffer of nft syntax and applies ALL of it as one netlink transaction, or none of it.
/// <para>
/// The session's netlink socket is opened by <see cref="Open"/> in the network namespace of the calling
/// thread (the agent runs inside its node's namespace; tests open sessions on a thread that has entered a
/// lab namespace) and stays there whichever thread runs commands later. Names of interfaces given as set
/// elements would be resolved in the CALLING thread's namespace, so callers write interface indexes.
/// libnftables is not thread-safe and keeps process-wide state, so every call of every session is
/// serialised by one process-wide lock. Calls block for the length of one transaction (a fraction of a
/// millisecond for a few set elements).
/// </para>
/// </summary>
internal sealed class NftablesSession : IDisposable
{
    private const int EINTR = 4;
    private const int MaxAttempts = 3;

    private readonly NftablesContextHandle context;

    private NftablesSession(NftablesContextHandle context) => this.context = context;

    /// <summary>
    /// Opens a libnftables context whose output and error messages are collected, not printed. (libnftables
    /// ends the process if it cannot open its netlink socket at all: the kernel has no nf_tables.)
    /// </summary>
    /// <exception cref="DllNotFoundException">libnftables.so.1 is not installed (Debian package libnftables1).</exception>
    public static NftablesSession Open()
    {
        lock (Interop.Nftables.Serialize)
        {
            var context = Interop.Nftables.NewContext(Interop.Nftables.ContextDefault);
            if (context.IsInvalid)
            {
                context.Dispose();
                throw new NftablesException("nft_ctx_new", "libnftables could not create a context");
            }
            if (Interop.Nftables.BufferOutput(context) != 0 || Interop.Nftables.BufferError(context) != 0)
            {
                context.Dispose();
                throw new NftablesException("nft_ctx_buffer_output", "libnftables could not buffer its output");
            }
            return new NftablesSession(context);
        }
    }

    /// <summary>Runs <paramref name="commands"/> as one transaction and returns what they printed (nft syntax).</summary>
    /// <exception cref="NftablesException">nft refused the commands; nothing of them was applied.</exception>
    public string Run(string commands, CancellationToken cancellationToken) =>
        Run(() => commands, json: false, cancellationToken);

    /// <summary>Like <see cref="Run(string, CancellationToken)"/>, with list commands printing JSON.</summary>
    public string RunJson(string commands, CancellationToken cancellationToken) =>
        Run(() => commands, json: true, cancellationToken);

    /// <summary>
    /// Runs the commands <paramref name="compose"/> returns; compose runs under the session lock immediately
    /// before the transaction, so values it reads (a clock) are as fresh as they can be when the kernel applies
    /// them. Cancellation is honoured until the transaction starts; a running transaction completes.
    /// </summary>
    public string Run(Func<string> compose, CancellationToken cancellationToken) => Run(compose, json: false, cancellationToken);

    private string Run(Func<string> compose, bool json, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(compose);
        lock (Interop.Nftables.Serialize)
        {
            ObjectDisposedException.ThrowIf(context.IsClosed, this);
            var flags = Interop.Nftables.GetOutputFlags(context);
            var wanted = json ? flags | Interop.Nftables.OutputJson : flags & ~Interop.Nftables.OutputJson;
            if (wanted != flags) Interop.Nftables.SetOutputFlags(context, wanted);
            for (var attempt = 1; ; attempt++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var commands = compose();
                ArgumentException.ThrowIfNullOrWhiteSpace(commands);
                var rc = Interop.Nftables.RunCommandFromBuffer(context, commands);
                var errno = Marshal.GetLastPInvokeError();
                var output = Marshal.PtrToStringUTF8(Interop.Nftables.GetOutputBuffer(context)) ?? "";
                var errors = Marshal.PtrToStringUTF8(Interop.Nftables.GetErrorBuffer(context)) ?? "";
                if (rc == 0) return output;
                // The kernel refuses a transaction with EINTR when a signal reached the thread while it ran
                // (the .NET runtime signals threads to suspend them for a GC): nothing was applied, and
                // compose runs again, so a clock it reads is fresh again.
                if (attempt < MaxAttempts && (errno == EINTR || errors.Contains("Interrupted system call", StringComparison.Ordinal))) continue;
                throw new NftablesException(commands, errors.Length > 0 ? errors.TrimEnd() : $"nft_run_cmd_from_buffer returned {rc} ({Interop.ErrnoNames.Describe(errno)})");
            }
        }
    }

    public void Dispose() => context.Dispose();
}

/// <summary>
/// nft refused a transaction (a syntax error, a missing table, a kernel error); nothing of it was applied.
/// <see cref="ErrorText"/> is nft's own message, which quotes the offending command and marks the culprit.
/// </summary>
internal sealed class NftablesException(string commands, string errorText)
    : IOException($"nftables refused the transaction: {errorText}")
{
    /// <summary>The commands that were refused.</summary>
    public string Commands { get; } = commands;

    /// <summary>nft's error message, e.g. "Error: Could not process rule: No such file or directory …".</summary>
    public string ErrorText { get; } = errorText;
}
