namespace Hybrid.Sandbox;

/// <summary>`hybrid api`: placeholder until the emulator lands.</summary>
internal static class ApiCommand
{
    public static Task<int> RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        Console.Error.WriteLine("hybrid api: not implemented yet");
        return Task.FromResult(1);
    }
}
