using Hybrid.Integration.Agent;
using Hybrid.Integration.DataPlane;
using Hybrid.Sandbox.Lab;
using k8s;
using k8s.Models;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Upnp;

/// <summary>
/// The agents with enable_upnp in the whole lab: three nodes, the data plane, and the router (miniupnpd in
/// secure mode) with the internet namespace behind it. The real curl in the internet namespace reaches a pod
/// only through the router's port mapping, the VIP's holder and its kube-proxy.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class UpnpAgentTests(ITestOutputHelper output)
{
    private const string Vip = "198.18.0.225";
    private const string Vip2 = "198.18.0.226";
    private const int Port = 32380;
    private const string ForwardUpnp = "kube-vip.io/forwardUPNP";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(45);

    private static V1LoadBalancerIngress? ExternalEntry(V1Service service) =>
        service.Status?.LoadBalancer?.Ingress?.FirstOrDefault(i => i.Ip == LabRouter.WanAddress.ToString());

    private static async Task<HashSet<string>> ReadyPodsAsync(AgentLab lab, string app, int count) =>
        await Eventually.WaitAsync(async () =>
        {
            var pods = (await lab.Client.CoreV1.ListNamespacedPodAsync("default", labelSelector: $"app={app}")).Items
                .Where(p => p.Metadata.DeletionTimestamp is null && p.Status?.Conditions?.Any(c => c.Type == "Ready" && c.Status == "True") == true)
                .Select(p => p.Metadata.Name).ToHashSet();
            return pods.Count == count ? pods : null;
        }, TimeSpan.FromSeconds(30), $"{count} Ready {app} pods");

    /// <summary>Waits until the Service's status lists the VIP first and then the router's address (ipMode Proxy,
    /// the forwarded port), written by the holder named in vipHost; returns that holder.</summary>
    private static Task<string> WaitForExternalAddressAsync(AgentLab lab, string notHolder = "") =>
        Eventually.WaitAsync(async () =>
        {
            var service = await lab.ServiceAsync("web");
            var ingress = service.Status?.LoadBalancer?.Ingress ?? [];
            var host = service.Metadata.Annotations?.TryGetValue("kube-vip.io/vipHost", out var h) == true ? h : null;
            var ok = ingress.Count == 2 && ingress[0].Ip == Vip && ExternalEntry(service) is { IpMode: "Proxy" } e
                     && e.Ports?.SingleOrDefault() is { Port: Port, Protocol: "TCP" } && host is not null && host != notHolder;
            return ok ? host : null;
        }, Patience, $"web's status to list {Vip}, then {LabRouter.WanAddress} (ipMode Proxy, port {Port})" +
                     (notHolder == "" ? "" : $", written by a node other than {notHolder}"));

    private async Task<string> RouterRulesAsync(AgentLab lab) =>
        (await ProcessRunner.Default.RunAsync(new ProcessRequest(["nft", "list", "table", "inet", MiniUpnpdGateway.TableName])
        {
            Namespace = lab.Lab.Router!.Host.Namespace,
        }, CancellationToken.None)).StandardOutput;

    [Fact]
    public async Task A_forwarded_Service_answers_from_the_Internet_the_next_holder_maps_it_again_a_newer_Service_waits_for_the_port_and_removing_the_annotation_or_the_Service_deletes_the_mapping()
    {
        Requires.Tool("miniupnpd", "miniupnpd-nftables");
        Requires.Tool("curl", "curl");
        await using var lab = await AgentLab.StartAsync(output, new Dictionary<string, string> { ["enable_upnp"] = "true" });
        var router = lab.Lab.Router ?? throw new InvalidOperationException("the lab has no router although enable_upnp=true");
        var url = $"http://{LabRouter.WanAddress}:{Port}/hostname";

        // Before anything is forwarded the Internet reaches nothing.
        Assert.False((await Curl.GetAsync(router.InternetNamespace, url)).Answered, "the router forwards a port nobody mapped");

        await lab.ApplyAsync(Manifests.Deployment("web", "web", replicas: 3));
        await lab.ApplyAsync(Manifests.Service("web", Vip, port: Port, app: "web", annotations: new Dictionary<string, string> { [ForwardUpnp] = "true" }));
        var pods = await ReadyPodsAsync(lab, "web", 3);
        var holder = await WaitForExternalAddressAsync(lab);
        Assert.Equal([holder], await lab.HoldersAsync(Vip));
        var rules = await RouterRulesAsync(lab);
        Assert.True(rules.Contains(Vip, StringComparison.Ordinal) && rules.Contains(Port.ToString(), StringComparison.Ordinal),
            $"miniupnpd's rules do not map {Port} to {Vip}:\n{rules}");
        Assert.Contains(await Curl.AnswerAsync(router.InternetNamespace, url, Patience), pods);
        lab.Report($"{url} from {router.InternetNamespace} answered through {holder}");

        // The holder dies: the next holder maps the port again (its status carries the address only once its
        // own AddPortMapping went through) and the Internet reaches the pods again.
        await lab.Agents.KillAsync(holder, restart: false);
        var next = await WaitForExternalAddressAsync(lab, notHolder: holder);
        Assert.Equal([next], await lab.HoldersAsync(Vip));
        Assert.Contains("Forwarded " + Port + "/TCP", lab.Log(next), StringComparison.Ordinal);
        Assert.Contains(await Curl.AnswerAsync(router.InternetNamespace, url, Patience), pods);
        lab.Report($"after killing {holder}: {next} holds {Vip} and mapped {Port} again");

        // A newer Service wanting the same external port: the older keeps it, the holder says so in a Warning.
        await lab.ApplyAsync(Manifests.Service("web2", Vip2, port: Port, app: "web", annotations: new Dictionary<string, string> { [ForwardUpnp] = "true" }));
        var taken = await lab.WaitForEventAsync("web2", "UPnPPortTaken", Patience);
        Assert.Equal("Warning", taken.Type);
        Assert.Contains("forwarded for default/web, which is older", taken.Note, StringComparison.Ordinal);
        Assert.Contains(await Curl.AnswerAsync(router.InternetNamespace, url, Patience), pods);
        Assert.Null(ExternalEntry(await lab.ServiceAsync("web2")));

        // web no longer forwarded: the holder deletes its mapping, status drops the address, and the port goes
        // to web2, which wanted it too.
        (await lab.Kubectl.RunAsync("annotate", "service", "web", ForwardUpnp + "-")).EnsureSuccess();
        await Eventually.WaitAsync(async () => await RouterRulesAsync(lab) is var r && !r.Contains(Vip, StringComparison.Ordinal) && r.Contains(Vip2, StringComparison.Ordinal),
            Patience, $"miniupnpd to map {Port} to {Vip2} instead of {Vip}");
        await Eventually.WaitAsync(async () =>
        {
            var service = await lab.ServiceAsync("web");
            return ExternalEntry(service) is null && service.Status?.LoadBalancer?.Ingress?.Any(i => i.Ip == Vip) == true
                   && ExternalEntry(await lab.ServiceAsync("web2")) is { IpMode: "Proxy" };
        }, Patience, $"web's status to keep {Vip} and drop {LabRouter.WanAddress}, and web2's to list it");

        // web2 deleted: its holder deletes the mapping from the VIP (miniupnpd in secure mode deletes a mapping
        // only at its client's request) before the VIP leaves the node; nothing is mapped any more.
        (await lab.Kubectl.RunAsync("delete", "service", "web2")).EnsureSuccess();
        await Eventually.WaitAsync(async () => !(await RouterRulesAsync(lab)).Contains(Vip2, StringComparison.Ordinal), Patience,
            $"miniupnpd to drop the mapping to {Vip2}");
        await lab.WaitForHoldersAsync(Vip2, []);
        Assert.False((await Curl.GetAsync(router.InternetNamespace, url)).Answered, "the Internet still reaches the pods after every mapping was deleted");
        // web's VIP itself still answers on the LAN.
        Assert.Contains(await Curl.AnswerAsync(lab.ClientNamespace, $"http://{Vip}:{Port}/hostname"), pods);
    }
}
