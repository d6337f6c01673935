using System.Net;
using Hybrid.Sandbox.Lab;

namespace Hybrid.Sandbox;

/// <summary>
/// `hybrid who-has IP`: from a running sandbox's client namespace, asks the LAN who has the address (one ARP
/// request) and prints every node that answers: the quickest way to see that exactly one node answers for a VIP.
/// </summary>
internal static class WhoHasCommand
{
    private const string Usage = "usage: sudo ./hybrid who-has IPV4 [--name hybrid] [--window-ms 300]";

    public static async Task<int> RunAsync(IReadOnlyList<string> args, CancellationToken cancellationToken)
    {
        var name = "hybrid";
        var window = 300;
        IPAddress? target = null;
        for (var i = 0; i < args.Count; i++)
        {
            switch (args[i])
            {
                case "--name" when i + 1 < args.Count:
                    name = args[++i];
                    break;
                case "--window-ms" when i + 1 < args.Count && int.TryParse(args[i + 1], out var w) && w > 0:
                    window = w;
                    i++;
                    break;
                default:
                    if (IPAddress.TryParse(args[i], out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
                    {
                        target = ip;
                        break;
                    }
                    Console.Error.WriteLine($"hybrid who-has: unexpected argument '{args[i]}'\n{Usage}");
                    return 2;
            }
        }
        if (target is null)
        {
            Console.Error.WriteLine(Usage);
            return 2;
        }
        var client = $"{name}-client";
        if (!Hybrid.Net.NetworkNamespace.Exists(client))
        {
            Console.Error.WriteLine($"hybrid who-has: no sandbox named '{name}' is running (namespace {client} does not exist)");
            return 1;
        }
        var answers = await ArpProbe.ResolveAsync(client, LabTopology.HostInterface, target, TimeSpan.FromMilliseconds(window), cancellationToken);
        if (answers.Count == 0) Console.WriteLine($"{target}: nobody answered");
        foreach (var answer in answers.GroupBy(a => a.Mac.ToString()).Select(g => g.First()))
        {
            // Lab MACs are 02:48:59:NN:00:00, NN = the node number.
            var bytes = answer.Mac.GetAddressBytes();
            var node = bytes is [0x02, 0x48, 0x59, var n, 0, 0] ? $"node-{n:x}" : "?";
            Console.WriteLine($"{target} is at {string.Join(':', bytes.Select(b => b.ToString("x2")))} ({node})");
        }
        return answers.Select(a => a.Mac.ToString()).Distinct().Count() == 1 ? 0 : 1;
    }
}
