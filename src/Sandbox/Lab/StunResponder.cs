using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Hybrid.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Hybrid.Sandbox.Lab;

/// <summary>
/// A tiny STUN server for the lab's "internet" (RFC 5389): every Binding Request is answered with a Binding
/// Success Response carrying XOR-MAPPED-ADDRESS, the address and port the request came from.
/// <para>
/// Why the lab needs one: miniupnpd refuses to map ports while its WAN address is private or reserved (and the
/// lab's addresses are all in 198.18.0.0/15); with ext_perform_stun=yes it asks a STUN server for its public
/// address instead. Its test sends four requests from four sockets, three with a CHANGE-REQUEST attribute
/// (RFC 5780: answer from another address or port), and takes "all four answered, each with its own source
/// port" to mean "no filtering NAT in front of me". This responder answers all four from its one address, which
/// is exactly that: the router's WAN address is reachable as it is. (A strict RFC 5389 server would answer
/// 420 Unknown Attribute to CHANGE-REQUEST; miniupnpd would then see a filtering NAT and refuse to map.)
/// </para>
/// </summary>
internal sealed partial class StunResponder : IAsyncDisposable
{
    public const int DefaultPort = 3478;
    private const uint MagicCookie = 0x2112A442;
    private const ushort BindingRequest = 0x0001;
    private const ushort BindingSuccess = 0x0101;
    private const ushort XorMappedAddress = 0x0020;

    private readonly Socket socket;
    private readonly CancellationTokenSource stop = new();
    private readonly Task loop;
    private readonly ILogger logger;
    private int answered;

    private StunResponder(Socket socket, ILogger logger)
    {
        this.socket = socket;
        this.logger = logger;
        loop = Task.Run(() => ServeAsync(stop.Token));
    }

    /// <summary>Where it listens.</summary>
    public IPEndPoint Endpoint => (IPEndPoint)socket.LocalEndPoint!;

    /// <summary>Binding Requests answered so far.</summary>
    public int Answered => Volatile.Read(ref answered);

    /// <summary>Listens on <paramref name="listen"/> inside <paramref name="namespaceName"/> (null: this namespace).</summary>
    public static StunResponder Start(string? namespaceName, IPEndPoint listen, ILogger? logger = null)
    {
        var factory = namespaceName is null ? Hybrid.Net.SocketFactories.Current : Hybrid.Net.SocketFactories.InNamespace(namespaceName);
        var socket = factory(listen.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            socket.Bind(listen);
            return new StunResponder(socket, logger ?? NullLogger.Instance);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The answer to one datagram, or null when it is not a Binding Request (then nothing is sent).</summary>
    internal static byte[]? Answer(ReadOnlySpan<byte> request, IPEndPoint sender)
    {
        if (request.Length < 20 || (request[0] & 0xC0) != 0) return null;
        if (BinaryPrimitives.ReadUInt16BigEndian(request) != BindingRequest) return null;
        if (BinaryPrimitives.ReadUInt32BigEndian(request[4..]) != MagicCookie) return null;
        var length = BinaryPrimitives.ReadUInt16BigEndian(request[2..]);
        if (length % 4 != 0 || 20 + length > request.Length) return null;
        var transaction = request.Slice(8, 12);

        var address = sender.Address.IsIPv4MappedToIPv6 ? sender.Address.MapToIPv4() : sender.Address;
        var addressBytes = address.GetAddressBytes();
        var attributeLength = 4 + addressBytes.Length;
        var answer = new byte[20 + 4 + attributeLength];
        BinaryPrimitives.WriteUInt16BigEndian(answer, BindingSuccess);
        BinaryPrimitives.WriteUInt16BigEndian(answer.AsSpan(2), (ushort)(4 + attributeLength));
        BinaryPrimitives.WriteUInt32BigEndian(answer.AsSpan(4), MagicCookie);
        transaction.CopyTo(answer.AsSpan(8));
        var attribute = answer.AsSpan(20);
        BinaryPrimitives.WriteUInt16BigEndian(attribute, XorMappedAddress);
        BinaryPrimitives.WriteUInt16BigEndian(attribute[2..], (ushort)attributeLength);
        attribute[4] = 0;
        attribute[5] = addressBytes.Length == 4 ? (byte)0x01 : (byte)0x02;
        BinaryPrimitives.WriteUInt16BigEndian(attribute[6..], (ushort)(sender.Port ^ (MagicCookie >> 16)));
        // X-Address: the address XOR the magic cookie (IPv4), or XOR cookie and transaction id (IPv6).
        var key = answer.AsSpan(4, 16);
        for (var i = 0; i < addressBytes.Length; i++) attribute[8 + i] = (byte)(addressBytes[i] ^ key[i]);
        return answer;
    }

    private async Task ServeAsync(CancellationToken cancellationToken)
    {
        var buffer = new byte[1500];
        var any = socket.AddressFamily == AddressFamily.InterNetwork ? new IPEndPoint(IPAddress.Any, 0) : new IPEndPoint(IPAddress.IPv6Any, 0);
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                var received = await socket.ReceiveFromAsync(buffer, SocketFlags.None, any, cancellationToken);
                var sender = (IPEndPoint)received.RemoteEndPoint;
                if (Answer(buffer.AsSpan(0, received.ReceivedBytes), sender) is { } answer)
                {
                    await socket.SendToAsync(answer, SocketFlags.None, sender, cancellationToken);
                    Interlocked.Increment(ref answered);
                    LogAnswered(sender);
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (SocketException e)
            {
                // An ICMP error from an earlier answer surfaces on the next receive; the server keeps going.
                LogReceiveFailed(e.SocketErrorCode);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync();
        await loop;
        socket.Dispose();
        stop.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "STUN: answered a Binding Request from {Sender}")]
    private partial void LogAnswered(IPEndPoint sender);

    [LoggerMessage(Level = LogLevel.Debug, Message = "STUN: receive failed with {Error}")]
    private partial void LogReceiveFailed(SocketError error);
}
