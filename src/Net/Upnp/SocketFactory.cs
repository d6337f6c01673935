using System.Net.Sockets;

namespace Hybrid.Net;

/// <summary>
/// Makes the sockets of the UPnP client. A socket belongs to the network namespace of the thread that created
/// it, so the agent (started inside its node's namespace) uses <see cref="SocketFactories.Current"/>, and the lab
/// and tests pass one that creates the socket inside a named namespace.
/// </summary>
internal delegate Socket SocketFactory(AddressFamily family, SocketType type, ProtocolType protocol);

internal static class SocketFactories
{
    /// <summary>Sockets in the calling thread's namespace.</summary>
    public static SocketFactory Current { get; } = (family, type, protocol) => new Socket(family, type, protocol);

    /// <summary>Sockets in the named network namespace (created on a short-lived thread that enters it).</summary>
    public static SocketFactory InNamespace(string namespaceName) =>
        (family, type, protocol) => NetworkNamespace.RunIn(namespaceName, () => new Socket(family, type, protocol));
}
