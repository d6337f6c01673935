using System.Diagnostics;
using Hybrid.Sandbox.Lab;
using Xunit;

namespace Hybrid.Integration.Lab;

/// <summary>
/// The agent supervisor, with a stand-in agent (a shell loop) since the real agent is another piece: it prints a
/// ready line with its environment, writes a marker when SIGTERM arrives and exits 0.
/// </summary>
public sealed class AgentSupervisorTests
{
    private static readonly TimeSpan RestartDelay = TimeSpan.FromMilliseconds(800);

    private const string StandIn =
        """
        trap 'echo "term $vip_nodename" > "$HYT_MARKERS/$vip_nodename.term"; exit 0' TERM
        echo "ready $vip_nodename $vip_interface $HYT_EXTRA pid $$"
        while :; do sleep 0.05; done
        """;

    [Fact]
    public async Task Crashed_agents_restart_after_the_delay_stops_are_graceful_and_nothing_outlives_dispose()
    {
        Requires.Root();
        var ct = await LabTestSupport.StartAsync();
        var topology = LabTopology.Create(new LabSpec(Name: LabTestSupport.UniqueName(), Nodes: 2, Ipv6: false));
        await using var lab = await NetnsLab.CreateAsync(topology, ct);
        var markers = Directory.CreateDirectory(Path.Combine(topology.RunDirectory, "markers")).FullName; // removed with the lab
        var supervisor = AgentSupervisor.ForTopology(topology, new AgentSupervisorOptions
        {
            Command = _ => ["sh", "-c", StandIn],
            Environment = new Dictionary<string, string> { ["HYT_MARKERS"] = markers, ["HYT_EXTRA"] = "extra-value" },
            RestartDelay = RestartDelay,
            StopTimeout = TimeSpan.FromSeconds(5),
        });
        var exits = new List<AgentExited>();
        supervisor.Exited += e => { lock (exits) exits.Add(e); };
        try
        {
            await supervisor.StartAllAsync(ct);
            foreach (var node in topology.Nodes)
            {
                await WaitForLogAsync(node.LogPath, $"ready {node.Name} eth0 extra-value pid {supervisor.Pid(node.Name)}", ct);
                Assert.Contains(supervisor.Pid(node.Name)!.Value, await NetnsLab.PidsAsync(node.Namespace, ct));
            }

            // A crash (SIGKILL) is restarted, but only after the delay.
            var crashedPid = supervisor.Pid("node-1")!.Value;
            var nextExit = supervisor.NextExitAsync("node-1", ct);
            var nextStart = supervisor.NextStartAsync("node-1", ct);
            var killedAt = Stopwatch.GetTimestamp();
            await supervisor.KillAsync("node-1", restart: true, ct);
            var crashed = await nextExit;
            Assert.Equal(new AgentExited("node-1", crashedPid, 1, 137, Expected: false), crashed);
            var restarted = await nextStart;
            Assert.True(Stopwatch.GetElapsedTime(killedAt) >= RestartDelay - TimeSpan.FromMilliseconds(20),
                $"restarted {Stopwatch.GetElapsedTime(killedAt).TotalMilliseconds} ms after the kill, before the {RestartDelay.TotalMilliseconds} ms delay");
            Assert.Equal(("node-1", 2, true), (restarted.Node, restarted.Start, restarted.IsRestart));
            Assert.NotEqual(crashedPid, restarted.Pid);
            Assert.Equal(1, supervisor.Restarts("node-1"));
            Assert.True(supervisor.IsRunning("node-1"));
            await WaitForLogAsync(topology.Node(1).LogPath, $"ready node-1 eth0 extra-value pid {restarted.Pid}", ct);
            Assert.Contains($"node-1 pid {crashedPid} exited with code 137; restarting in 0.8 s", await File.ReadAllTextAsync(topology.Node(1).LogPath, ct));

            // A graceful stop delivers SIGTERM (the trap writes its marker), exits 0 and stays down.
            var stoppedStart = supervisor.NextStartAsync("node-2", ct);
            await supervisor.StopAsync("node-2", graceful: true, ct);
            Assert.Equal("term node-2\n", await File.ReadAllTextAsync(Path.Combine(markers, "node-2.term"), ct));
            Assert.Equal(0, supervisor.LastExitCode("node-2"));
            Assert.False(supervisor.IsRunning("node-2"));
            Assert.Null(supervisor.Pid("node-2"));
            await Assert.ThrowsAsync<TimeoutException>(() => stoppedStart.WaitAsync(RestartDelay * 2, ct));

            // Killed and held down: no restart until started again, and a manual start is not a restart.
            var heldStart = supervisor.NextStartAsync("node-1", ct);
            await supervisor.KillAsync("node-1", restart: false, ct);
            await Assert.ThrowsAsync<TimeoutException>(() => heldStart.WaitAsync(RestartDelay * 2, ct));
            Assert.False(supervisor.IsRunning("node-1"));
            await supervisor.StartAsync("node-1", ct);
            var manual = await heldStart;
            Assert.Equal((3, false), (manual.Start, manual.IsRestart));
            Assert.Equal(1, supervisor.Restarts("node-1"));
            await supervisor.StartAsync("node-2", ct);
            Assert.True(supervisor.IsRunning("node-2"));
            await WaitForLogAsync(topology.Node(2).LogPath, $"ready node-2 eth0 extra-value pid {supervisor.Pid("node-2")}", ct);
        }
        finally
        {
            await supervisor.DisposeAsync();
        }

        // Dispose stopped both gracefully: markers written, nothing left in the namespaces, nothing restarted.
        Assert.Equal("term node-1\n", await File.ReadAllTextAsync(Path.Combine(markers, "node-1.term"), ct));
        foreach (var node in topology.Nodes)
        {
            Assert.False(supervisor.IsRunning(node.Name));
            Assert.Empty(await NetnsLab.PidsAsync(node.Namespace, ct));
        }
        lock (exits)
        {
            Assert.Equal(5, exits.Count);
            Assert.Single(exits, e => !e.Expected);
        }
        await Assert.ThrowsAsync<ObjectDisposedException>(() => supervisor.StartAsync("node-1", ct));
    }

    [Fact]
    public async Task An_agent_ignoring_sigterm_is_killed_after_the_stop_timeout()
    {
        Requires.Root();
        var ct = await LabTestSupport.StartAsync();
        var topology = LabTopology.Create(new LabSpec(Name: LabTestSupport.UniqueName(), Nodes: 1, Ipv6: false));
        await using var lab = await NetnsLab.CreateAsync(topology, ct);
        var stopTimeout = TimeSpan.FromMilliseconds(700);
        await using var supervisor = AgentSupervisor.ForTopology(topology, new AgentSupervisorOptions
        {
            // "stub""born": the supervisor's own log header quotes the command, only the output reads "stubborn".
            Command = _ => ["sh", "-c", "trap '' TERM; echo stub\"\"born; while :; do sleep 0.05; done"],
            StopTimeout = stopTimeout,
        });
        await supervisor.StartAsync("node-1", ct);
        await WaitForLogAsync(topology.Node(1).LogPath, "stubborn", ct);

        var started = Stopwatch.GetTimestamp();
        await supervisor.StopAsync("node-1", graceful: true, ct);

        var elapsed = Stopwatch.GetElapsedTime(started);
        Assert.True(elapsed >= stopTimeout - TimeSpan.FromMilliseconds(50),
            $"stopped after {elapsed.TotalMilliseconds} ms with exit code {supervisor.LastExitCode("node-1")}: {await File.ReadAllTextAsync(topology.Node(1).LogPath, ct)}");
        Assert.Equal(137, supervisor.LastExitCode("node-1"));
        await LabTestSupport.WaitUntilAsync(async () => (await NetnsLab.PidsAsync(topology.Node(1).Namespace, ct)).Count == 0, "no process left in the node", ct);
    }

    [Fact]
    public async Task The_default_command_runs_the_agent_executable_inside_the_node()
    {
        Requires.Root();
        var ct = await LabTestSupport.StartAsync();
        var topology = LabTopology.Create(new LabSpec(Name: LabTestSupport.UniqueName(), Nodes: 1, Ipv6: false));
        var node = AgentNode.From(topology.Node(1));

        var command = AgentSupervisor.DefaultCommand(node);
        Assert.Equal(["agent", "--kubeconfig", node.KubeconfigPath], command.TakeLast(3));

        // The same program, asked for its usage, really runs inside the namespace and is the agent.
        await using var lab = await NetnsLab.CreateAsync(topology, ct);
        await using var supervisor = new AgentSupervisor([node], new AgentSupervisorOptions
        {
            Command = n => [.. AgentSupervisor.DefaultCommand(n).SkipLast(3), "--help"],
            RestartDelay = TimeSpan.FromMinutes(5),
        });
        var exit = supervisor.NextExitAsync("node-1", ct);
        await supervisor.StartAsync("node-1", ct);
        Assert.Equal(0, (await exit).ExitCode);
        Assert.Contains("hybrid agent [--kubeconfig FILE]", await File.ReadAllTextAsync(node.LogPath, ct));
    }

    private static Task WaitForLogAsync(string path, string text, CancellationToken ct) =>
        LabTestSupport.WaitUntilAsync(
            async () => File.Exists(path) && (await File.ReadAllTextAsync(path, ct)).Contains(text),
            $"'{text}' in {path}", ct, TimeSpan.FromSeconds(15));
}
