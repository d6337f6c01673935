using System.Net.Sockets;
using System.Text;
using Hybrid.Sandbox.Lab;
using k8s;
using Xunit;

namespace Hybrid.Integration.Lab;

/// <summary>The API bridge: http://127.0.0.1:6443 inside a node namespace reaches a Unix-socket server outside.</summary>
public sealed class ApiBridgeTests
{
    [Fact]
    public async Task Request_from_inside_a_node_reaches_the_unix_socket_server_until_the_bridge_stops()
    {
        Requires.Root();
        Requires.Tool("socat", "socat");
        var ct = await LabTestSupport.StartAsync();
        var topology = LabTopology.Create(new LabSpec(Name: LabTestSupport.UniqueName(), Nodes: 2, Ipv6: false));
        await using var lab = await NetnsLab.CreateAsync(topology, ct);
        var node = topology.Node(2);
        await using var server = VersionServer.Start(node.ApiSocketPath);
        ApiBridge.WriteNodeKubeconfig(node.KubeconfigPath);

        var bridge = await ApiBridge.StartAsync(node.Namespace, node.ApiSocketPath, ct);
        try
        {
            Assert.Equal(new Uri("http://127.0.0.1:6443"), bridge.Server);
            Assert.Contains(bridge.Pid, await NetnsLab.PidsAsync(node.Namespace, ct));

            var response = await GetVersionAsync(lab, node.Namespace, ct);
            Assert.True(response.StandardOutput.Contains("HTTP/1.1 200 OK"), $"exit {response.ExitCode}: {response.StandardError}; server saw {server.RequestLines.Count} requests; bridge: {bridge.RecentErrors}");
            Assert.Contains("\"gitVersion\":\"v1.32.0-lab\"", response.StandardOutput);
            Assert.Equal(["GET /version HTTP/1.0"], server.RequestLines);

            // The other node has no bridge: its 127.0.0.1:6443 is closed.
            var other = await GetVersionAsync(lab, topology.Node(1).Namespace, ct);
            Assert.Contains("Connection refused", other.StandardError);

            // Starting a second bridge on the same port in the same namespace fails with socat's reason.
            var clash = await Assert.ThrowsAsync<InvalidOperationException>(() => ApiBridge.StartAsync(node.Namespace, node.ApiSocketPath, ct));
            Assert.Contains("Address already in use", clash.Message);

            await bridge.StopAsync(ct);
            Assert.False(bridge.IsRunning);
            var afterStop = await GetVersionAsync(lab, node.Namespace, ct);
            Assert.NotEqual(0, afterStop.ExitCode);
            Assert.Contains("Connection refused", afterStop.StandardError);
            Assert.Single(server.RequestLines);
        }
        finally
        {
            await bridge.DisposeAsync();
        }

        // The kubeconfig the agents get is one the Kubernetes client accepts as is.
        var config = KubernetesClientConfiguration.BuildConfigFromConfigFile(node.KubeconfigPath);
        Assert.Equal("http://127.0.0.1:6443", config.Host.TrimEnd('/'));
        Assert.Equal("default", config.Namespace);
        Assert.Equal("hybrid-lab", config.CurrentContext);
    }

    /// <summary>`GET /version` over plain TCP from inside a namespace, socat as the HTTP client.</summary>
    private static Task<ProcessResult> GetVersionAsync(NetnsLab lab, string namespaceName, CancellationToken ct) =>
        lab.ExecAsync(namespaceName, new ProcessRequest(["socat", "-t", "5", "-", "TCP4:127.0.0.1:6443,connect-timeout=3"])
        {
            StandardInput = "GET /version HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
            AllowFailure = true,
        }, ct);

    /// <summary>Stands in for the API emulator: answers every request on a Unix socket with a version document.</summary>
    private sealed class VersionServer : IAsyncDisposable
    {
        private const string Body = """{"major":"1","minor":"32","gitVersion":"v1.32.0-lab"}""";
        private readonly Socket _listener;
        private readonly string _path;
        private readonly CancellationTokenSource _stop = new();
        private readonly List<string> _requestLines = [];
        private readonly Task _accepting;

        private VersionServer(string path)
        {
            _path = path;
            File.Delete(path);
            _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            _listener.Bind(new UnixDomainSocketEndPoint(path));
            _listener.Listen(16);
            _accepting = AcceptAsync();
        }

        public IReadOnlyList<string> RequestLines
        {
            get
            {
                lock (_requestLines) return [.. _requestLines];
            }
        }

        public static VersionServer Start(string path) => new(path);

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket client;
                try { client = await _listener.AcceptAsync(_stop.Token); }
                catch (OperationCanceledException) { return; }
                catch (SocketException) { return; }
                _ = ServeAsync(client);
            }
        }

        private async Task ServeAsync(Socket client)
        {
            using var _ = client;
            var buffer = new byte[4096];
            var received = new StringBuilder();
            while (!received.ToString().Contains("\r\n\r\n"))
            {
                var n = await client.ReceiveAsync(buffer, _stop.Token);
                if (n == 0) return;
                received.Append(Encoding.ASCII.GetString(buffer, 0, n));
            }
            lock (_requestLines) _requestLines.Add(received.ToString().Split("\r\n")[0]);
            var response = $"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {Body.Length}\r\nConnection: close\r\n\r\n{Body}";
            await client.SendAsync(Encoding.ASCII.GetBytes(response), _stop.Token);
            client.Shutdown(SocketShutdown.Both);
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Dispose();
            await _accepting;
            File.Delete(_path);
            _stop.Dispose();
        }
    }
}
