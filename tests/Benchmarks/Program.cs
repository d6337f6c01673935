using System.Reflection;

namespace Hybrid.Benchmarks;

/// <summary>One benchmark: prints its numbers (p50/p99, rates, sizes) to stdout. Never a pass/fail test.</summary>
internal interface IBenchmark
{
    /// <summary>Short name used on the command line.</summary>
    string Name { get; }

    /// <summary>One line saying what is measured and what the target is.</summary>
    string Description { get; }

    Task RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken);
}

internal static class Program
{
    private static async Task<int> Main(string[] args)
    {
        var benchmarks = typeof(Program).Assembly.GetTypes()
            .Where(t => typeof(IBenchmark).IsAssignableFrom(t) && t is { IsInterface: false, IsAbstract: false })
            .Select(t => (IBenchmark)Activator.CreateInstance(t)!)
            .OrderBy(b => b.Name, StringComparer.Ordinal)
            .ToList();

        if (args.Length == 0 || args[0] is "-h" or "--help" or "list")
        {
            Console.WriteLine("usage: dotnet run -c Release --project tests/Benchmarks -- <name>|all [options]");
            foreach (var b in benchmarks) Console.WriteLine($"  {b.Name,-22} {b.Description}");
            return args.Length == 0 ? 2 : 0;
        }

        using var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cts.Cancel(); };
        var selected = args[0] == "all" ? benchmarks : benchmarks.Where(b => b.Name == args[0]).ToList();
        if (selected.Count == 0)
        {
            Console.Error.WriteLine($"unknown benchmark '{args[0]}'; try 'list'");
            return 2;
        }
        foreach (var b in selected)
        {
            Console.WriteLine($"== {b.Name}: {b.Description}");
            await b.RunAsync(args.Skip(1).ToList(), cts.Token);
        }
        return 0;
    }
}
