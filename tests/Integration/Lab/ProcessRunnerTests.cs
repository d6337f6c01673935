using System.Diagnostics;
using Hybrid.Sandbox.Lab;
using Xunit;

namespace Hybrid.Integration.Lab;

/// <summary>The command runner the lab uses for `ip`, `sysctl` and `kill`.</summary>
public sealed class ProcessRunnerTests
{
    private static readonly ProcessRunner Runner = ProcessRunner.Default;

    [Fact]
    public async Task Output_is_captured_and_arguments_reach_the_program_verbatim()
    {
        var result = await Runner.RunAsync(new ProcessRequest(["sh", "-c", "cat; printf '%s|' \"$@\"; echo oops >&2", "sh", "a b", "$HOME", "'q'"])
        {
            StandardInput = "from stdin\n",
        }, CancellationToken.None);

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("from stdin\na b|$HOME|'q'|", result.StandardOutput);
        Assert.Equal("oops\n", result.StandardError);
        Assert.True(Path.IsPathRooted(result.Command[0]) && Path.GetFileName(result.Command[0]) == "sh", result.Command[0]);
    }

    [Fact]
    public async Task A_failing_command_throws_with_command_exit_code_and_stderr()
    {
        var error = await Assert.ThrowsAsync<ProcessFailedException>(() =>
            Runner.RunAsync(["sh", "-c", "echo 'no such thing' >&2; exit 3", "with space"], CancellationToken.None));

        Assert.Equal(3, error.ExitCode);
        Assert.Equal("no such thing\n", error.StandardError);
        Assert.Contains("exit code 3", error.Message);
        Assert.Contains("-c 'echo '\\''no such thing'\\'' >&2; exit 3' 'with space'", error.Message);
        Assert.EndsWith(": no such thing", error.Message);

        var allowed = await Runner.RunAsync(new ProcessRequest(["sh", "-c", "exit 4"]) { AllowFailure = true }, CancellationToken.None);
        Assert.Equal(4, allowed.ExitCode);
        Assert.False(allowed.Succeeded);
    }

    [Fact]
    public async Task A_command_past_its_timeout_is_killed_with_its_children()
    {
        var pidFile = Path.GetTempFileName();
        try
        {
            var started = Stopwatch.GetTimestamp();
            var error = await Assert.ThrowsAsync<TimeoutException>(() => Runner.RunAsync(
                new ProcessRequest(["sh", "-c", "sleep 30 & echo $! > \"$0\"; wait", pidFile]) { Timeout = TimeSpan.FromMilliseconds(500) },
                CancellationToken.None));

            Assert.InRange(Stopwatch.GetElapsedTime(started), TimeSpan.FromMilliseconds(450), TimeSpan.FromSeconds(10));
            Assert.Contains("did not finish within 0.5 s", error.Message);
            var child = int.Parse(File.ReadAllText(pidFile).Trim());
            await LabTestSupport.WaitUntilAsync(() => Task.FromResult(!ProcessSignals.IsAlive(child)), "the child of the timed-out command to die", CancellationToken.None);
        }
        finally
        {
            File.Delete(pidFile);
        }
    }

    [Fact]
    public async Task Cancellation_kills_the_command_and_surfaces_as_cancellation()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Runner.RunAsync(["sleep", "30"], cts.Token));
    }

    [Fact]
    public void Missing_programs_are_named()
    {
        var error = Assert.Throws<FileNotFoundException>(() => ProcessRunner.FindExecutable("hybrid-no-such-tool"));
        Assert.Contains("'hybrid-no-such-tool' not found", error.Message);
        Assert.Equal(["/x/ip", "netns", "exec", "ns1", "sh"], ProcessRunner.InNamespace("ns1", ["sh"]).Select((a, i) => i == 0 ? "/x/ip" : a));
        Assert.Equal(["sh"], ProcessRunner.InNamespace(null, ["sh"]));
    }

    [Fact]
    public async Task Commands_run_inside_a_namespace_when_asked()
    {
        Requires.Root();
        var ct = await LabTestSupport.StartAsync();
        var topology = LabTopology.Create(new LabSpec(Name: LabTestSupport.UniqueName(), Nodes: 1, Ipv6: false));
        await using var lab = await NetnsLab.CreateAsync(topology, ct);

        var inside = await Runner.RunAsync(new ProcessRequest(["ip", "-o", "link", "show"]) { Namespace = topology.Node(1).Namespace }, ct);

        Assert.Contains("eth0@", inside.StandardOutput);
        Assert.Contains(topology.Node(1).Mac, inside.StandardOutput);
        Assert.Equal(2, inside.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length); // lo and eth0 only
    }
}
