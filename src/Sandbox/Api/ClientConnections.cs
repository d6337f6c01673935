using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Connections;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// Open connections per client, so a partition can abort them at once. A client is the name of the Unix-socket
/// listener a connection arrived on, or else its remote IP address. Registered by the connection middleware
/// that <see cref="ApiEmulator"/> installs on every listener.
/// </summary>
internal sealed class ClientConnections
{
    public const string ClientItemKey = "hybrid.client";

    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, ConnectionContext>> _byClient = new(StringComparer.Ordinal);

    public static string ClientOf(ConnectionContext connection, string? listenerName)
    {
        if (listenerName is not null) return listenerName;
        return connection.RemoteEndPoint is IPEndPoint ip ? Normalize(ip.Address) : "unknown";
    }

    public static string Normalize(IPAddress address) => (address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address).ToString();

    public void Register(string client, ConnectionContext connection) =>
        _byClient.GetOrAdd(client, static _ => new ConcurrentDictionary<string, ConnectionContext>())[connection.ConnectionId] = connection;

    public void Unregister(string client, ConnectionContext connection)
    {
        if (_byClient.TryGetValue(client, out var set)) set.TryRemove(connection.ConnectionId, out _);
    }

    /// <summary>Aborts every open connection of the client; returns how many.</summary>
    public int Abort(string client)
    {
        if (!_byClient.TryGetValue(client, out var set)) return 0;
        var n = 0;
        foreach (var (id, connection) in set)
        {
            set.TryRemove(id, out _);
            connection.Abort(new ConnectionAbortedException("partitioned by the lab"));
            n++;
        }
        return n;
    }

    public int Count(string client) => _byClient.TryGetValue(client, out var set) ? set.Count : 0;
}
