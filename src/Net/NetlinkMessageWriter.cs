using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace Hybrid.Net;

/// <summary>
/// Encodes netlink messages back to back into one buffer (so several requests go out in one send): a 16-byte
/// nlmsghdr, a fixed family header (ifaddrmsg, ifinfomsg, rtmsg) and rtattr attributes, each padded to 4 bytes.
/// Sequence numbers are taken from <see cref="NextSequence"/>, which the socket sets before encoding.
/// </summary>
internal sealed class NetlinkMessageWriter
{
    private byte[] _buffer = new byte[4096];
    private readonly List<int> _messageOffsets = [];
    private int _length;
    private int _messageStart = -1;

    /// <summary>Sequence number the next <see cref="BeginMessage"/> uses (then incremented).</summary>
    public uint NextSequence { get; set; } = 1;

    public int Length => _length;

    public int MessageCount => _messageOffsets.Count;

    public ReadOnlyMemory<byte> Written => _buffer.AsMemory(0, _length);

    public void Reset()
    {
        _length = 0;
        _messageStart = -1;
        _messageOffsets.Clear();
    }

    /// <summary>Starts a message; returns its sequence number.</summary>
    public uint BeginMessage(ushort type, ushort flags)
    {
        if (_messageStart >= 0) throw new InvalidOperationException("previous netlink message not ended");
        _messageStart = _length;
        _messageOffsets.Add(_length);
        var sequence = NextSequence++;
        var header = Grow(NetlinkProtocol.HeaderSize);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], type);
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], sequence);
        // nlmsg_len is written by EndMessage; nlmsg_pid stays 0 (the kernel fills in our port id).
        return sequence;
    }

    /// <summary>Appends a zeroed fixed-size family header (e.g. 8 bytes of ifaddrmsg) for the caller to fill.</summary>
    public Span<byte> AppendFixed(int size)
    {
        EnsureInMessage();
        var padded = NetlinkProtocol.Align(size);
        return Grow(padded)[..size];
    }

    public void AddAttribute(ushort type, ReadOnlySpan<byte> value)
    {
        EnsureInMessage();
        var length = NetlinkProtocol.AttributeHeaderSize + value.Length;
        if (length > ushort.MaxValue) throw new ArgumentOutOfRangeException(nameof(value), "netlink attribute too long");
        var span = Grow(NetlinkProtocol.Align(length));
        BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)length);
        BinaryPrimitives.WriteUInt16LittleEndian(span[2..], type);
        value.CopyTo(span[NetlinkProtocol.AttributeHeaderSize..]);
    }

    public void AddUInt8(ushort type, byte value) => AddAttribute(type, [value]);

    public void AddUInt32(ushort type, uint value)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        AddAttribute(type, bytes);
    }

    /// <summary>A NUL-terminated string attribute (IFLA_IFNAME and friends).</summary>
    public void AddString(ushort type, string value)
    {
        Span<byte> bytes = stackalloc byte[Encoding.UTF8.GetByteCount(value) + 1];
        Encoding.UTF8.GetBytes(value, bytes);
        bytes[^1] = 0;
        AddAttribute(type, bytes);
    }

    /// <summary>An address in network byte order (4 or 16 bytes).</summary>
    public void AddAddress(ushort type, IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        if (!address.TryWriteBytes(bytes, out var written)) throw new ArgumentException("unsupported address", nameof(address));
        AddAttribute(type, bytes[..written]);
    }

    /// <summary>Starts an attribute that holds attributes (NLA_F_NESTED); returns its offset for <see cref="EndNested"/>.</summary>
    public int BeginNested(ushort type)
    {
        EnsureInMessage();
        var start = _length;
        var header = Grow(NetlinkProtocol.AttributeHeaderSize);
        BinaryPrimitives.WriteUInt16LittleEndian(header[2..], (ushort)(type | NetlinkProtocol.NLA_F_NESTED));
        return start;
    }

    /// <summary>Ends the nested attribute begun at <paramref name="start"/>: writes its length.</summary>
    public void EndNested(int start)
    {
        EnsureInMessage();
        var length = _length - start;
        if (length > ushort.MaxValue) throw new InvalidOperationException("nested netlink attribute too long");
        BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(start), (ushort)length);
    }

    public void EndMessage()
    {
        EnsureInMessage();
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(_messageStart), (uint)(_length - _messageStart));
        _messageStart = -1;
    }

    /// <summary>Sets and clears nlmsg_flags bits of an already written message.</summary>
    public void PatchFlags(int messageIndex, ushort set, ushort clear)
    {
        var flagsAt = _buffer.AsSpan(_messageOffsets[messageIndex] + 6, 2);
        var flags = BinaryPrimitives.ReadUInt16LittleEndian(flagsAt);
        BinaryPrimitives.WriteUInt16LittleEndian(flagsAt, (ushort)((flags | set) & ~clear));
    }

    /// <summary>Sequence number of an already written message.</summary>
    public uint SequenceOf(int messageIndex) =>
        BinaryPrimitives.ReadUInt32LittleEndian(_buffer.AsSpan(_messageOffsets[messageIndex] + 8));

    private void EnsureInMessage()
    {
        if (_messageStart < 0) throw new InvalidOperationException("no netlink message begun");
    }

    private Span<byte> Grow(int count)
    {
        if (_length + count > _buffer.Length)
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + count));
        var span = _buffer.AsSpan(_length, count);
        span.Clear();
        _length += count;
        return span;
    }
}
