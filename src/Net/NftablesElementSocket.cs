using System.Net.Sockets;

namespace Hybrid.Net;

/// <summary>
/// Writes nf_tables set elements over a NETLINK_NETFILTER socket of its own, one batch (one transaction) per
/// <see cref="Commit"/>. This is the fence's hot path: libnftables, which installs the table, first lists every
/// table of the namespace on every command (kube-proxy's thousands of rules included: 17–35 ms beside 1,000
/// Services), while a batch of a few elements takes tens of microseconds whatever else is in the namespace.
/// <para>
/// The socket stays in the network namespace of the thread that called <see cref="Open"/>. Commits are
/// serialised and block: the kernel applies a batch inside the send call, so every answer is queued by the
/// time it returns.
/// </para>
/// </summary>
internal sealed class NftablesElementSocket : IDisposable
{
    private const int ReceiveBufferBytes = 256 * 1024;

    private readonly Socket socket;
    private readonly Lock gate = new();
    private readonly NetlinkMessageWriter writer = new();
    private readonly byte[] receiveBuffer = new byte[64 * 1024];
    private uint nextSequence = (uint)Environment.TickCount;

    private NftablesElementSocket(Socket socket) => this.socket = socket;

    /// <summary>How long a commit waits for the kernel's answers before failing with ETIMEDOUT.</summary>
    public TimeSpan ReplyTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Opens the socket in the calling thread's network namespace.</summary>
    public static NftablesElementSocket Open() =>
        new(new Socket(NetlinkSocket.OpenHandle(Interop.Netlink.NETLINK_NETFILTER, 0, ReceiveBufferBytes, out _)));

    /// <summary>
    /// Runs <paramref name="compose"/> on an empty batch for <paramref name="table"/> and commits what it wrote as
    /// one transaction. Compose runs under the lock immediately before the send, so a clock it reads is as fresh
    /// as it can be. Cancellation is honoured until the send. A batch that writes nothing is not sent.
    /// </summary>
    /// <exception cref="NetlinkException">the kernel refused the transaction (nothing of it was applied), e.g.
    /// ENOENT for a missing table, set or element; the message names <paramref name="operation"/>.</exception>
    public void Commit(byte family, string table, Action<NftablesElementBatch> compose, string operation,
        CancellationToken cancellationToken)
    {
        lock (gate)
        {
            cancellationToken.ThrowIfCancellationRequested();
            writer.Reset();
            writer.NextSequence = nextSequence;
            WriteBatchMarker(NftablesProtocol.NFNL_MSG_BATCH_BEGIN);
            var batch = new NftablesElementBatch(writer, family, table);
            compose(batch);
            if (batch.Messages == 0) return;
            WriteBatchMarker(NftablesProtocol.NFNL_MSG_BATCH_END);
            nextSequence = writer.NextSequence;
            Send(operation);
            if (CollectAnswers(writer.SequenceOf(0), batch.Messages, operation) is { } failure) throw failure;
        }
    }

    private void WriteBatchMarker(ushort type)
    {
        writer.BeginMessage(type, NetlinkProtocol.NLM_F_REQUEST);
        NftablesElementBatch.WriteHeader(writer.AppendFixed(NftablesProtocol.NfGenMsgSize), 0, NftablesProtocol.NFNL_SUBSYS_NFTABLES);
        writer.EndMessage();
    }

    private void Send(string operation)
    {
        try
        {
            var sent = socket.Send(writer.Written.Span);
            if (sent != writer.Length)
                throw new NetlinkException($"{operation} (send)", 0, $"sent {sent} of {writer.Length} bytes");
        }
        catch (SocketException e)
        {
            throw new NetlinkException($"{operation} (send)", e.NativeErrorCode);
        }
    }

    /// <summary>
    /// Reads the answers to a batch whose BEGIN has sequence <paramref name="begin"/> and whose <paramref name="count"/>
    /// element messages follow it: null when every element message is acked, else the first refusal. A commit that
    /// fails after every message was accepted is answered on the BEGIN message (before the acks). After a refusal
    /// the kernel may answer no further message, so the rest of what is queued is read without waiting; answers
    /// to an earlier, abandoned commit are skipped by sequence.
    /// </summary>
    private NetlinkException? CollectAnswers(uint begin, int count, string operation)
    {
        var acked = 0;
        NetlinkException? failure = null;
        var deadline = Environment.TickCount64 + (long)ReplyTimeout.TotalMilliseconds;
        while (acked < count)
        {
            // After a refusal only what is already queued is read.
            var wait = failure is null ? Math.Max(0, deadline - Environment.TickCount64) : 0;
            if (!socket.Poll(TimeSpan.FromMilliseconds(wait), SelectMode.SelectRead))
                return failure ?? new NetlinkException(operation, 110 /* ETIMEDOUT */,
                    $"{acked} of {count} answers from the kernel within {ReplyTimeout.TotalSeconds:0.#} s");
            int received;
            try
            {
                received = socket.Receive(receiveBuffer);
            }
            catch (SocketException e)
            {
                return failure ?? new NetlinkException($"{operation} (receive)", e.NativeErrorCode);
            }
            foreach (var message in new NetlinkMessageEnumerator(receiveBuffer.AsSpan(0, received)))
            {
                if (message.Type != NetlinkProtocol.NLMSG_ERROR || message.Sequence - begin > (uint)count) continue;
                var status = message.ReadStatus();
                if (status.Succeeded) acked++;
                else failure ??= new NetlinkException(operation, status.Errno, status.KernelMessage);
            }
        }
        return failure;
    }

    public void Dispose() => socket.Dispose();
}
