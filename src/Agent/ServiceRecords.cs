using Hybrid.Facade;

namespace Hybrid.Agent;

/// <summary>What the status and Event writers need to know of each Service: its version, UID and status.</summary>
internal sealed record ServiceRecord(string Version, string Uid, IngressInput[] Ingress, string? VipHost);

/// <summary>
/// The latest version of every Service the watch delivered, reduced to what a status write compares with
/// and carries (the resourceVersion its compare-and-swap expects). Written by the Service watch, read by the
/// status and Event writers.
/// </summary>
internal sealed class ServiceRecords
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, ServiceRecord> _records = new(StringComparer.Ordinal);

    public ServiceRecord? Get(string key)
    {
        lock (_lock) return _records.GetValueOrDefault(key);
    }

    public void Observe(ServiceInput input)
    {
        var record = RecordOf(input);
        lock (_lock) _records[KubeObjects.Key(input.Namespace, input.Name)] = record;
    }

    public void Forget(string key)
    {
        lock (_lock) _records.Remove(key);
    }

    public void ReplaceAll(IEnumerable<ServiceInput> services)
    {
        lock (_lock)
        {
            _records.Clear();
            foreach (var input in services) _records[KubeObjects.Key(input.Namespace, input.Name)] = RecordOf(input);
        }
    }

    private static ServiceRecord RecordOf(ServiceInput input) =>
        new(input.ResourceVersion ?? "", input.Uid,
            input.Ingress, input.Annotations.TryGetValue(Configuration.VipHostAnnotation, out var host) ? host : null);
}
