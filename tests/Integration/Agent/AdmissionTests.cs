using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>What the agent announces and what it leaves alone, seen from the LAN and from the API.</summary>
[Collection(LabCollection.Name)]
public sealed class AdmissionTests(ITestOutputHelper output)
{
    private const string Vip = "198.18.0.220";

    [Fact]
    public async Task A_third_service_on_a_taken_port_gets_a_warning_and_the_first_two_keep_working()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ExposeSeedExampleAsync(Vip);
        var holder = await lab.WaitForIngressAsync("http1", Vip);
        await lab.WaitForIngressAsync("http2", Vip);

        (await lab.Kubectl.RunAsync("expose", "deployment", "test-deploy", "--port=80", "--target-port=80",
            "--type=LoadBalancer", "--name", "http3", $"--load-balancer-ip={Vip}")).EnsureSuccess();

        var warning = await lab.WaitForEventAsync("http3", "PortConflict");
        Assert.Equal("Warning", warning.Type);
        Assert.Contains("default/http1", warning.Note);
        Assert.Contains("80", warning.Note);
        Assert.Empty((await lab.ServiceAsync("http3")).Status?.LoadBalancer?.Ingress ?? []);
        Assert.Equal(holder, await lab.WaitForIngressAsync("http1", Vip));
        Assert.Equal(holder, await lab.WaitForIngressAsync("http2", Vip));
        Assert.Equal([holder], await lab.HoldersAsync(Vip));
        Assert.Equal([holder], await lab.ArpRespondersAsync(Vip));
        var describe = (await lab.Kubectl.RunAsync("describe", "svc", "http3")).EnsureSuccess().Stdout;
        Assert.Contains("PortConflict", describe);
    }

    [Fact]
    public async Task Ignored_foreign_class_and_addressless_services_are_not_announced_until_given_an_address()
    {
        await using var lab = await AgentLab.StartAsync(output);
        await lab.ApplyAsync(Manifests.Deployment("web", "test", replicas: 2));
        await lab.ApplyAsync(Manifests.Service("ignored", "198.18.0.221",
            annotations: new Dictionary<string, string> { ["kube-vip.io/ignore"] = "true" }));
        await lab.ApplyAsync(Manifests.Service("foreign", "198.18.0.222", loadBalancerClass: "example.com/other-lb"));
        await lab.ApplyAsync(Manifests.Service("pending"));
        await lab.ApplyAsync(Manifests.Service("ours-by-class", "198.18.0.224", loadBalancerClass: "kube-vip.io/kube-vip-class"));
        // Applied after the others: once it is announced, the agents have seen every service above.
        await lab.ApplyAsync(Manifests.Service("sentinel", "198.18.0.230"));
        await lab.WaitForIngressAsync("sentinel", "198.18.0.230");
        await lab.WaitForIngressAsync("ours-by-class", "198.18.0.224");

        foreach (var (name, ip) in new[] { ("ignored", "198.18.0.221"), ("foreign", "198.18.0.222") })
        {
            Assert.Empty((await lab.ServiceAsync(name)).Status?.LoadBalancer?.Ingress ?? []);
            Assert.Empty(await lab.HoldersAsync(ip));
            Assert.Empty(await lab.ArpRespondersAsync(ip));
        }
        Assert.Empty((await lab.ServiceAsync("pending")).Status?.LoadBalancer?.Ingress ?? []);
        // Not ours, or not an error: no Warning Event for any of them.
        foreach (var name in new[] { "ignored", "foreign", "pending" })
            Assert.DoesNotContain(await lab.EventsAsync(name), e => e.Type == "Warning");

        (await lab.Kubectl.RunAsync("annotate", "service", "pending", "kube-vip.io/loadbalancerIPs=198.18.0.223")).EnsureSuccess();
        var holder = await lab.WaitForIngressAsync("pending", "198.18.0.223");
        await lab.WaitForHoldersAsync("198.18.0.223", [holder]);
        Assert.Equal([holder], await lab.ArpRespondersAsync("198.18.0.223"));
    }

    [Fact]
    public async Task Strict_class_mode_announces_only_services_of_the_configured_class()
    {
        await using var lab = await AgentLab.StartAsync(output, new Dictionary<string, string>
        {
            ["lb_class_legacy_handling"] = "false",
            ["lb_class_name"] = "example.com/hybrid",
        });
        await lab.ApplyAsync(Manifests.Deployment("web", "test", replicas: 2));
        await lab.ApplyAsync(Manifests.Service("classless", "198.18.0.221"));
        await lab.ApplyAsync(Manifests.Service("kube-vip-class", "198.18.0.222", loadBalancerClass: "kube-vip.io/kube-vip-class"));
        await lab.ApplyAsync(Manifests.Service("ours", "198.18.0.223", loadBalancerClass: "example.com/hybrid"));

        var holder = await lab.WaitForIngressAsync("ours", "198.18.0.223");
        await lab.WaitForHoldersAsync("198.18.0.223", [holder]);
        foreach (var (name, ip) in new[] { ("classless", "198.18.0.221"), ("kube-vip-class", "198.18.0.222") })
        {
            Assert.Empty((await lab.ServiceAsync(name)).Status?.LoadBalancer?.Ingress ?? []);
            Assert.Empty(await lab.HoldersAsync(ip));
            Assert.Empty(await lab.ArpRespondersAsync(ip));
        }
    }
}
