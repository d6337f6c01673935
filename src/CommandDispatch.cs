using System.Runtime.InteropServices;

namespace Hybrid;

/// <summary>
/// What both executables (hybrid, hybrid-lab) do around a sub-command: usage for no arguments or help,
/// SIGINT and SIGTERM as cancellation (kubelet and systemd stop a program with SIGTERM; the command then
/// stops as it was asked to), and an unknown command named.
/// </summary>
internal static class CommandDispatch
{
    /// <param name="program">The executable's name, for messages.</param>
    /// <param name="run">Starts the named command with the remaining arguments, or returns null if there is none.</param>
    public static async Task<int> RunAsync(string program, string usage, string[] args,
        Func<string, IReadOnlyList<string>, CancellationToken, Task<int>?> run)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine(usage);
            return args.Length == 0 ? 2 : 0;
        }

        using var stopping = new CancellationTokenSource();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        var command = run(args[0], args.Skip(1).ToList(), stopping.Token);
        if (command is null)
        {
            Console.Error.WriteLine($"{program}: unknown command '{args[0]}'\n\n{usage}");
            return 2;
        }
        return await command;

        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            stopping.Cancel();
        }
    }
}
