using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace Hybrid.Net;

/// <summary>One received netlink message: header fields and the payload after the 16-byte nlmsghdr.</summary>
internal readonly ref struct NetlinkMessage
{
    public NetlinkMessage(ushort type, ushort flags, uint sequence, uint portId, ReadOnlySpan<byte> payload)
    {
        Type = type;
        Flags = flags;
        Sequence = sequence;
        PortId = portId;
        Payload = payload;
    }

    public ushort Type { get; }
    public ushort Flags { get; }
    public uint Sequence { get; }
    public uint PortId { get; }
    public ReadOnlySpan<byte> Payload { get; }

    /// <summary>Attributes that follow a fixed family header of <paramref name="fixedHeaderSize"/> bytes.</summary>
    public NetlinkAttributeEnumerator AttributesAfter(int fixedHeaderSize) =>
        new(Payload.Length >= NetlinkProtocol.Align(fixedHeaderSize) ? Payload[NetlinkProtocol.Align(fixedHeaderSize)..] : default);

    /// <summary>
    /// For NLMSG_ERROR (and NLMSG_DONE, which carries an int too): the positive errno (0 = success ack) and the
    /// kernel's extended-ack text if present.
    /// </summary>
    public NetlinkStatus ReadStatus()
    {
        if (Payload.Length < 4) return new NetlinkStatus(0, null);
        var error = -BinaryPrimitives.ReadInt32LittleEndian(Payload);
        if (Type != NetlinkProtocol.NLMSG_ERROR || (Flags & NetlinkProtocol.NLM_F_ACK_TLVS) == 0)
            return new NetlinkStatus(error, null);
        // nlmsgerr = int error + the request's nlmsghdr (+ its payload unless capped); then the TLVs.
        var offset = 4 + NetlinkProtocol.HeaderSize;
        if ((Flags & NetlinkProtocol.NLM_F_CAPPED) == 0 && Payload.Length >= offset)
        {
            var originalLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(Payload[4..]);
            offset = 4 + NetlinkProtocol.Align(originalLength);
        }
        string? text = null;
        if (offset <= Payload.Length)
        {
            foreach (var attribute in new NetlinkAttributeEnumerator(Payload[offset..]))
                if (attribute.Type == NetlinkProtocol.NLMSGERR_ATTR_MSG) text = attribute.ReadString();
        }
        return new NetlinkStatus(error, text);
    }
}

/// <summary>Outcome of one request: errno 0 is success; <see cref="KernelMessage"/> is the extended-ack text.</summary>
internal readonly record struct NetlinkStatus(int Errno, string? KernelMessage)
{
    public bool Succeeded => Errno == 0;
}

/// <summary>Walks the messages of one received datagram; throws if a message claims more bytes than arrived.</summary>
internal ref struct NetlinkMessageEnumerator(ReadOnlySpan<byte> buffer)
{
    private ReadOnlySpan<byte> _remaining = buffer;

    public NetlinkMessage Current { get; private set; }

    public readonly NetlinkMessageEnumerator GetEnumerator() => this;

    public bool MoveNext()
    {
        if (_remaining.Length < NetlinkProtocol.HeaderSize) return false;
        var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(_remaining);
        if (length < NetlinkProtocol.HeaderSize || length > _remaining.Length)
            throw new NetlinkException("netlink receive", 0,
                $"message of {length} bytes in a datagram with {_remaining.Length} bytes left (truncated or malformed)");
        Current = new NetlinkMessage(
            BinaryPrimitives.ReadUInt16LittleEndian(_remaining[4..]),
            BinaryPrimitives.ReadUInt16LittleEndian(_remaining[6..]),
            BinaryPrimitives.ReadUInt32LittleEndian(_remaining[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(_remaining[12..]),
            _remaining[NetlinkProtocol.HeaderSize..length]);
        var next = NetlinkProtocol.Align(length);
        _remaining = next >= _remaining.Length ? default : _remaining[next..];
        return true;
    }
}

/// <summary>One rtattr: type (flag bits masked off) and value.</summary>
internal readonly ref struct NetlinkAttribute(ushort type, ReadOnlySpan<byte> value)
{
    public ushort Type { get; } = type;
    public ReadOnlySpan<byte> Value { get; } = value;

    public byte ReadUInt8() => Value.Length >= 1 ? Value[0] : (byte)0;

    public uint ReadUInt32() => Value.Length >= 4 ? BinaryPrimitives.ReadUInt32LittleEndian(Value) : 0;

    public string ReadString()
    {
        var end = Value.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end >= 0 ? Value[..end] : Value);
    }

    /// <summary>A 4- or 16-byte address in network byte order; null for other lengths.</summary>
    public IPAddress? ReadAddress() => Value.Length is 4 or 16 ? new IPAddress(Value) : null;
}

/// <summary>Walks rtattr attributes; stops at the first malformed one.</summary>
internal ref struct NetlinkAttributeEnumerator(ReadOnlySpan<byte> buffer)
{
    private ReadOnlySpan<byte> _remaining = buffer;

    public NetlinkAttribute Current { get; private set; }

    public readonly NetlinkAttributeEnumerator GetEnumerator() => this;

    public bool MoveNext()
    {
        if (_remaining.Length < NetlinkProtocol.AttributeHeaderSize) return false;
        var length = BinaryPrimitives.ReadUInt16LittleEndian(_remaining);
        if (length < NetlinkProtocol.AttributeHeaderSize || length > _remaining.Length) return false;
        var type = (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(_remaining[2..]) & NetlinkProtocol.NLA_TYPE_MASK);
        Current = new NetlinkAttribute(type, _remaining[NetlinkProtocol.AttributeHeaderSize..length]);
        var next = NetlinkProtocol.Align(length);
        _remaining = next >= _remaining.Length ? default : _remaining[next..];
        return true;
    }
}
