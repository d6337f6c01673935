using Hybrid.Sandbox.Lab;
using k8s;
using Microsoft.Extensions.Logging;

namespace Hybrid.Sandbox.DataPlane;

/// <summary>
/// What carries a Service's traffic in the lab: pod routes between the nodes (<see cref="PodNetwork"/>), every
/// Pod running in its own namespace with an HTTP server (<see cref="Kubelets"/>), and every node's kube-proxy
/// in nftables (<see cref="KubeProxies"/>). Started after the Node objects exist and before the agents;
/// <see cref="StartAsync"/> returns when Pods that exist serve and every node has its rules. Disposing it
/// stops the pods' servers, deletes their namespaces and the kube-proxy tables.
/// </summary>
internal sealed class ServiceDataPlane : IAsyncDisposable
{
    private readonly PodNetwork _network;

    private ServiceDataPlane(PodNetwork network, Kubelets kubelets, KubeProxies proxies)
    {
        _network = network;
        Kubelets = kubelets;
        Proxies = proxies;
    }

    public Kubelets Kubelets { get; }
    public KubeProxies Proxies { get; }

    public static async Task<ServiceDataPlane> StartAsync(LabTopology topology, Kubernetes client, ILoggerFactory loggers,
        CancellationToken cancellationToken)
    {
        var runner = new ProcessRunner(loggers.CreateLogger<ProcessRunner>());
        var network = await PodNetwork.StartAsync(topology, runner, loggers, cancellationToken);
        Kubelets? kubelets = null;
        try
        {
            kubelets = await Kubelets.StartAsync(topology, client, runner, loggers, cancellationToken);
            var proxies = await KubeProxies.StartAsync(topology, client, runner, loggers, cancellationToken);
            return new ServiceDataPlane(network, kubelets, proxies);
        }
        catch
        {
            if (kubelets is not null) await kubelets.DisposeAsync();
            await network.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Proxies.DisposeAsync();
        await Kubelets.DisposeAsync();
        await _network.DisposeAsync();
    }
}
