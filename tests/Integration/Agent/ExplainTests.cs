using System.Text.RegularExpressions;
using Hybrid.Sandbox.Lab;
using k8s;
using Xunit;
using Xunit.Abstractions;

namespace Hybrid.Integration.Agent;

/// <summary>
/// `hybrid explain` against a running 3-node lab (svc_election=true, not told to explain: it reads the mode from
/// the agents' group Leases): it names the node that answers for each Service and why every other node does
/// not, and a skipped Service's reason in its Warning Event's words.
/// </summary>
[Collection(LabCollection.Name)]
public sealed class ExplainTests(ITestOutputHelper output)
{
    private static readonly IReadOnlyDictionary<string, string> Election = new Dictionary<string, string> { ["svc_election"] = "true" };

    private static async Task<string> ExplainAsync(AgentLab lab, params string[] args)
    {
        var result = await ProcessRunner.Default.RunAsync(new ProcessRequest(
            [.. AgentProgram.Command(["explain", .. args, "--kubeconfig", lab.Lab.KubeconfigPath])]) { AllowFailure = true },
            CancellationToken.None);
        lab.Report($"$ hybrid explain {string.Join(' ', args)}\n{result.StandardOutput}{result.StandardError}");
        Assert.True(result.ExitCode == 0, $"hybrid explain exited {result.ExitCode}: {result.StandardError}");
        return result.StandardOutput;
    }

    /// <summary>Why one node does or does not hold the Service's group: the text after its name in the node table
    /// (indented by four; the liveness list at the top by two).</summary>
    private static string NodeLine(string explained, string node) =>
        Regex.Match(explained, $@"^ {{4}}{Regex.Escape(node)}\s+(?<why>\S.*)$", RegexOptions.Multiline) is { Success: true } m
            ? m.Groups["why"].Value.TrimEnd()
            : throw new Xunit.Sdk.XunitException($"no line for {node} in:\n{explained}");

    [Fact]
    public async Task Explain_names_the_holder_and_why_each_other_node_does_not_hold_and_a_skipped_services_warning()
    {
        await using var lab = await AgentLab.StartAsync(output, Election);
        var nodes = lab.Lab.Nodes.Select(n => n.Name).ToList();

        // A Local Service whose only pod runs on one node: that node alone may hold it.
        const string localVip = "198.18.0.231";
        await lab.ApplyAsync(Manifests.Deployment("solo", "solo", replicas: 1));
        await lab.ApplyAsync(Manifests.Service("local-web", localVip, app: "solo", local: true));
        var podNode = await Eventually.WaitAsync(async () =>
                (await lab.Client.CoreV1.ListNamespacedPodAsync("default", labelSelector: "app=solo")).Items.SingleOrDefault()?.Spec.NodeName,
            TimeSpan.FromSeconds(10), "the solo pod to be scheduled");
        var localHolder = await lab.WaitForIngressAsync("local-web", localVip);
        Assert.Equal(podNode, localHolder);
        await lab.WaitForHoldersAsync(localVip, [localHolder]);

        var local = await ExplainAsync(lab, "local-web");
        Assert.Contains("svc_election=true (from the group Leases", local);
        Assert.Contains("Liveness is as the registrations record it", local);
        Assert.Contains($"Service default/local-web: admitted: {localVip}", local);
        Assert.Contains($"names {localHolder}; held by {localHolder}", local);
        Assert.StartsWith("holder", NodeLine(local, localHolder));
        foreach (var other in nodes.Where(n => n != localHolder))
            Assert.Equal("not eligible: no serving endpoint on this node (externalTrafficPolicy Local)", NodeLine(local, other));
        Assert.Matches($@"Normal\s+Announced: announcing {Regex.Escape(localVip)} from node {localHolder}", local);

        // A Cluster Service with pods everywhere: the two others are live and eligible, behind the holder in line.
        const string clusterVip = "198.18.0.232";
        await lab.ApplyAsync(Manifests.Deployment("test-deploy", "test", replicas: 3));
        await lab.ApplyAsync(Manifests.Service("cluster-web", clusterVip));
        var clusterHolder = await lab.WaitForIngressAsync("cluster-web", clusterVip);
        await lab.WaitForHoldersAsync(clusterVip, [clusterHolder]);

        var cluster = await ExplainAsync(lab, "-n", "default", "cluster-web");
        Assert.StartsWith("holder", NodeLine(cluster, clusterHolder));
        var others = nodes.Where(n => n != clusterHolder).Select(n => NodeLine(cluster, n)).Order().ToList();
        Assert.Equal(2, others.Count);
        Assert.Equal($"ranked lower: 2nd in line, after {clusterHolder}", others[0]);
        Assert.StartsWith($"ranked lower: 3rd in line, after {clusterHolder}, ", others[1]);

        // A Service skipped for a bad annotation says what its Warning Event says.
        await lab.ApplyAsync(Manifests.Service("bad-address", annotations: new Dictionary<string, string>
        {
            ["kube-vip.io/loadbalancerIPs"] = "198.18.0.300",
        }));
        var warning = await lab.WaitForEventAsync("bad-address", "InvalidAddress");
        var all = await ExplainAsync(lab, "--all");
        Assert.Contains($"Service default/bad-address: skipped (InvalidAddress): {warning.Note}", all);
        Assert.Contains($"Warning InvalidAddress: {warning.Note}", all);
        // --all explains every Service: the other two are there with their holders.
        Assert.Contains($"Service default/local-web: admitted: {localVip}", all);
        Assert.Contains($"Service default/cluster-web: admitted: {clusterVip}", all);

        // A Service that does not exist is an error, not an empty explanation.
        var missing = await ProcessRunner.Default.RunAsync(new ProcessRequest(
            [.. AgentProgram.Command("explain", "no-such-service", "--kubeconfig", lab.Lab.KubeconfigPath)]) { AllowFailure = true },
            CancellationToken.None);
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("service default/no-such-service not found", missing.StandardError);
    }
}
