namespace Hybrid;

/// <summary>`hybrid agent`: placeholder until the agent lands.</summary>
internal static class AgentCommand
{
    public static Task<int> RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        Console.Error.WriteLine("hybrid agent: not implemented yet");
        return Task.FromResult(1);
    }
}
