namespace Hybrid.Net;

/// <summary>What a fence write did to the node's fence element.</summary>
internal enum FenceWriteKind
{
    /// <summary>The element was written with <see cref="FenceWrite.TimeoutMs"/>: the VIPs held are answered until it expires.</summary>
    Extended,

    /// <summary>The element was deleted (or was already absent): no held VIP is answered from now on.</summary>
    Removed,
}

/// <summary>
/// The result of <see cref="KernelFence.Extend"/> or <see cref="KernelFence.Expire"/>, in the monotonic clock
/// the fence was given (milliseconds).
/// </summary>
/// <param name="Kind">Whether the element now lives or is gone.</param>
/// <param name="ClockMs">The clock, read under the nftables lock immediately before the transaction.</param>
/// <param name="TimeoutMs">The timeout written (deadline − <paramref name="ClockMs"/>); 0 when removed.</param>
/// <param name="CompletedMs">The clock when the kernel had applied the transaction.</param>
internal readonly record struct FenceWrite(FenceWriteKind Kind, long ClockMs, long TimeoutMs, long CompletedMs)
{
    /// <summary>
    /// The instant by which the kernel has surely stopped answering for the held VIPs (unless extended again):
    /// the kernel starts the timeout during the transaction, which ended by <see cref="CompletedMs"/>, and
    /// rounds it down to whole ticks; +1 ms because the clock has millisecond granularity. For a removal:
    /// when the transaction had completed.
    /// </summary>
    public long AnsweringEndsByMs => Kind == FenceWriteKind.Extended ? CompletedMs + TimeoutMs + 1 : CompletedMs + 1;
}
