namespace Hybrid.Sandbox;

/// <summary>`hybrid sandbox`: placeholder until the lab lands.</summary>
internal static class SandboxCommand
{
    public static Task<int> RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        Console.Error.WriteLine("hybrid sandbox: not implemented yet");
        return Task.FromResult(1);
    }
}
