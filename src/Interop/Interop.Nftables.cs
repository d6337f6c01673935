using System.Runtime.InteropServices;

namespace Hybrid;

internal static partial class Interop
{
    /// <summary>
    /// libnftables: the library behind the nft command. It parses nft's ruleset language and sends a whole
    /// buffer as ONE netlink transaction (all of it applies, or none). A context owns a NETLINK_NETFILTER
    /// socket opened by <see cref="NewContext"/>, so it works in the network namespace of the thread that
    /// created it. The library keeps process-wide state (an interface-name cache, one-time initialisation),
    /// so callers serialise every call across all contexts. Prototypes: nftables/libnftables.h.
    /// </summary>
    internal static partial class Nftables
    {
        /// <summary>Held around every call into the library, by every context of the process.</summary>
        internal static readonly Lock Serialize = new();

        /// <summary>NFT_CTX_DEFAULT: a context that talks to the kernel (not a dry-run parser).</summary>
        internal const uint ContextDefault = 0;

        /// <summary>NFT_CTX_OUTPUT_JSON: list commands print JSON instead of nft syntax.</summary>
        internal const uint OutputJson = 1 << 4;

        [LibraryImport(Libraries.Nftables, EntryPoint = "nft_ctx_new")]
        internal static partial NftablesContextHandle NewContext(uint flags);

        [LibraryImport(Libraries.Nftables, EntryPoint = "nft_ctx_free")]
        internal static partial void FreeContext(nint context);

        /// <summary>Collects what a command prints in a buffer instead of stdout; 0 on success.</summary>
        [LibraryImport(Libraries.Nftables, EntryPoint = "nft_ctx_buffer_output")]
        internal static partial int BufferOutput(NftablesContextHandle context);

        /// <summary>Collects error messages in a buffer instead of stderr; 0 on success.</summary>
        [LibraryImport(Libraries.Nftables, EntryPoint = "nft_ctx_buffer_error")]
        internal static partial int BufferError(NftablesContextHandle context);

        /// <summary>The output of the last command; the buffer is reused by the next one.</summary>
        [LibraryImport(Libraries.Nftables, EntryPoint = "nft_ctx_get_output_buffer")]
        internal static partial nint GetOutputBuffer(NftablesContextHandle context);

        /// <summary>The error messages of the last command; the buffer is reused by the next one.</summary>
        [LibraryImport(Libraries.Nftables, EntryPoint = "nft_ctx_get_error_buffer")]
        internal static partial nint GetErrorBuffer(NftablesContextHandle context);

        [LibraryImport(Libraries.Nftables, EntryPoint = "nft_ctx_output_get_flags")]
        internal static partial uint GetOutputFlags(NftablesContextHandle context);

        [LibraryImport(Libraries.Nftables, EntryPoint = "nft_ctx_output_set_flags")]
        internal static partial void SetOutputFlags(NftablesContextHandle context, uint flags);

        /// <summary>
        /// Parses and runs every command of the buffer as one transaction; 0 on success. On a kernel refusal
        /// libnftables leaves the kernel's errno in errno.
        /// </summary>
        [LibraryImport(Libraries.Nftables, EntryPoint = "nft_run_cmd_from_buffer", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial int RunCommandFromBuffer(NftablesContextHandle context, string commands);
    }
}

/// <summary>An nft_ctx; freed (closing its netlink socket) when released.</summary>
internal sealed class NftablesContextHandle() : Microsoft.Win32.SafeHandles.SafeHandleZeroOrMinusOneIsInvalid(ownsHandle: true)
{
    protected override bool ReleaseHandle()
    {
        lock (Interop.Nftables.Serialize) Interop.Nftables.FreeContext(handle);
        return true;
    }
}
