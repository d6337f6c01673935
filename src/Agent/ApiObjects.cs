using System.Text.Json.Serialization;

namespace Hybrid.Agent;

// The agent's view of the Kubernetes objects it reads and writes: only the fields a decision or a write
// needs (the server's other fields are skipped while reading), serialized by the source-generated
// ApiJson below. The client library's models would keep ~800 types and their serializers in every node's
// memory for a handful of fields.

internal sealed class ObjectMeta
{
    public string Name { get; set; } = "";
    [JsonPropertyName("namespace")] public string? Namespace { get; set; }
    public string? Uid { get; set; }
    public string? ResourceVersion { get; set; }
    public DateTimeOffset? CreationTimestamp { get; set; }
    public Dictionary<string, string>? Labels { get; set; }
    public Dictionary<string, string>? Annotations { get; set; }
}

internal sealed class ListMeta
{
    public string? ResourceVersion { get; set; }
}

/// <summary>A list response of any kind.</summary>
internal sealed class ObjectList<T>
{
    public ListMeta Metadata { get; set; } = new();
    public List<T> Items { get; set; } = [];
}

/// <summary>What a kind's objects have in common: the watch resumes from their resourceVersion.</summary>
internal interface IApiObject
{
    ObjectMeta Metadata { get; }
}

internal sealed class PortObject
{
    public string? Protocol { get; set; }
    public int Port { get; set; }
}

internal sealed class ServiceObject : IApiObject
{
    public ObjectMeta Metadata { get; set; } = new();
    public ServiceSpec? Spec { get; set; }
    public ServiceStatus? Status { get; set; }
}

internal sealed class ServiceSpec
{
    public string? Type { get; set; }
    public string? LoadBalancerClass { get; set; }
    [JsonPropertyName("loadBalancerIP")] public string? LoadBalancerIp { get; set; }
    public List<PortObject>? Ports { get; set; }
    public string? ExternalTrafficPolicy { get; set; }
    public Dictionary<string, string>? Selector { get; set; }
    public List<string>? IpFamilies { get; set; }
    public string? IpFamilyPolicy { get; set; }
}

internal sealed class ServiceStatus
{
    public LoadBalancerStatus? LoadBalancer { get; set; }
}

internal sealed class LoadBalancerStatus
{
    public List<IngressObject>? Ingress { get; set; }
}

internal sealed class IngressObject
{
    public string? Ip { get; set; }
    public string? IpMode { get; set; }
    public List<PortObject>? Ports { get; set; }
}

internal sealed class EndpointSliceObject : IApiObject
{
    public ObjectMeta Metadata { get; set; } = new();
    public List<EndpointObject>? Endpoints { get; set; }
}

internal sealed class EndpointObject
{
    public string? NodeName { get; set; }
    public EndpointConditions? Conditions { get; set; }
}

internal sealed class EndpointConditions
{
    public bool? Ready { get; set; }
    public bool? Serving { get; set; }
    public bool? Terminating { get; set; }
}

internal sealed class LeaseObject : IApiObject
{
    public string? ApiVersion { get; set; }
    public string? Kind { get; set; }
    public ObjectMeta Metadata { get; set; } = new();
    public LeaseSpec? Spec { get; set; }
}

internal sealed class LeaseSpec
{
    public string? HolderIdentity { get; set; }
    public int? LeaseDurationSeconds { get; set; }
    public int? LeaseTransitions { get; set; }
    /// <summary>MicroTime, written as <see cref="ApiTime.Micro"/>; never read.</summary>
    public string? AcquireTime { get; set; }
    public string? RenewTime { get; set; }
}

internal sealed class NodeObject : IApiObject
{
    public ObjectMeta Metadata { get; set; } = new();
    public NodeStatus? Status { get; set; }
}

internal sealed class NodeStatus
{
    public List<NodeAddress>? Addresses { get; set; }
}

internal sealed class NodeAddress
{
    public string? Type { get; set; }
    public string? Address { get; set; }
}

internal sealed class ConfigMapObject : IApiObject
{
    public ObjectMeta Metadata { get; set; } = new();
    public Dictionary<string, string>? Data { get; set; }
}

/// <summary>An events.k8s.io/v1 Event, as the agent posts it.</summary>
internal sealed class EventObject
{
    public string ApiVersion { get; set; } = "events.k8s.io/v1";
    public string Kind { get; set; } = "Event";
    public ObjectMeta Metadata { get; set; } = new();
    public string? EventTime { get; set; }
    public string? ReportingController { get; set; }
    public string? ReportingInstance { get; set; }
    public string? Action { get; set; }
    public string? Reason { get; set; }
    public string? Note { get; set; }
    public string? Type { get; set; }
    public ObjectReference? Regarding { get; set; }
}

internal sealed class ObjectReference
{
    public string? ApiVersion { get; set; }
    public string? Kind { get; set; }
    [JsonPropertyName("namespace")] public string? Namespace { get; set; }
    public string? Name { get; set; }
    public string? Uid { get; set; }
}

/// <summary>A core/v1 Event as `hybrid explain` reads it (every poster fills in different times).</summary>
internal sealed class CoreEventObject
{
    public ObjectMeta Metadata { get; set; } = new();
    public ObjectReference? InvolvedObject { get; set; }
    public string? Type { get; set; }
    public string? Reason { get; set; }
    public string? Message { get; set; }
    public DateTimeOffset? EventTime { get; set; }
    public DateTimeOffset? FirstTimestamp { get; set; }
    public DateTimeOffset? LastTimestamp { get; set; }
}

/// <summary>A DELETE's body: delete only the version the caller saw.</summary>
internal sealed class DeleteOptions
{
    public string ApiVersion { get; set; } = "v1";
    public string Kind { get; set; } = "DeleteOptions";
    public Preconditions? Preconditions { get; set; }
}

internal sealed class Preconditions
{
    public string? ResourceVersion { get; set; }
}

/// <summary>The server's explanation of a failure (also the object of a watch's ERROR event).</summary>
internal sealed class StatusObject
{
    public int? Code { get; set; }
    public string? Reason { get; set; }
    public string? Message { get; set; }
}

[JsonSourceGenerationOptions(
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ObjectList<ServiceObject>))]
[JsonSerializable(typeof(ObjectList<EndpointSliceObject>))]
[JsonSerializable(typeof(ObjectList<LeaseObject>))]
[JsonSerializable(typeof(ObjectList<NodeObject>))]
[JsonSerializable(typeof(ObjectList<ConfigMapObject>))]
[JsonSerializable(typeof(ObjectList<CoreEventObject>))]
[JsonSerializable(typeof(ServiceObject))]
[JsonSerializable(typeof(EndpointSliceObject))]
[JsonSerializable(typeof(LeaseObject))]
[JsonSerializable(typeof(NodeObject))]
[JsonSerializable(typeof(ConfigMapObject))]
[JsonSerializable(typeof(EventObject))]
[JsonSerializable(typeof(DeleteOptions))]
[JsonSerializable(typeof(StatusObject))]
internal sealed partial class ApiJson : JsonSerializerContext;
