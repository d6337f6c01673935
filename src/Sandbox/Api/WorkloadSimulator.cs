using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// The lab's controller-manager and kubelets, in-process (enabled by <see cref="ApiEmulatorOptions.SimulateWorkloads"/>):
/// <list type="bullet">
/// <item>Node IPAM: a Node without spec.podCIDR gets the lowest free /24 of <see cref="ApiEmulatorOptions.PodNetwork"/>
/// (the lab sets its nodes' CIDRs itself, so that it knows them before any Pod exists).</item>
/// <item>Deployments: keeps spec.replicas Pods (owned directly by the Deployment; there are no ReplicaSets), with
/// the template's labels plus pod-template-hash, scheduled on the least-loaded Ready Node, Running with a
/// podIP from the node's pod CIDR (.2 upward, as host-local IPAM hands them out); keeps status
/// (replicas, updated/ready/available) current. A template change replaces the Pods; a deleted Pod is replaced
/// (possibly on another node).</item>
/// <item>Readiness gates: with <see cref="ApiEmulatorOptions.PodReadinessGates"/>, every Pod it creates gets those
/// spec.readinessGates, as a mutating webhook would add them; whoever runs the Pod sets the conditions.</item>
/// <item>Readiness: a Pod's containers are ready unless its node is not Ready or it carries the annotation or
/// label <c>sandbox.hybrid/ready: "false"</c>; the Pod is Ready when its containers are and every readiness gate's
/// condition is True.</item>
/// <item>Services with a selector: one EndpointSlice (label kubernetes.io/service-name, managed-by
/// endpointslice-controller.k8s.io, addressType IPv4, endpoints with nodeName, targetRef and
/// ready/serving/terminating, ports from the resolved targetPort) and the core/v1 Endpoints object.</item>
/// </list>
/// Every store change triggers a reconcile pass at once, so results reach watchers within milliseconds.
/// </summary>
internal sealed class WorkloadSimulator : IAsyncDisposable
{
    public const string ReadyMarker = "sandbox.hybrid/ready";
    /// <summary>Each node's pod CIDR is one /24 of the pod network, as kube-controller-manager's default node-cidr-mask-size.</summary>
    public const int PodCidrPrefixLength = 24;
    private const string ManagedBy = "endpointslice-controller.k8s.io";
    private const string EndpointsMarker = "endpoints.kubernetes.io/last-change-trigger-time";

    private readonly ResourceService _resources;
    private readonly ILogger _logger;
    private readonly IPNetwork _podNetwork;
    private readonly IReadOnlyList<string> _readinessGates;
    private readonly Channel<bool> _signal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _loop;

    public WorkloadSimulator(ResourceService resources, ILogger logger, IPNetwork podNetwork, IReadOnlyList<string> readinessGates)
    {
        if (podNetwork.BaseAddress.AddressFamily != AddressFamily.InterNetwork || podNetwork.PrefixLength > PodCidrPrefixLength)
            throw new ArgumentException($"pod network {podNetwork}: must be IPv4 and hold at least one /{PodCidrPrefixLength}", nameof(podNetwork));
        _resources = resources;
        _logger = logger;
        _podNetwork = podNetwork;
        _readinessGates = readinessGates;
        resources.Store.Changed += OnChanged;
        _signal.Writer.TryWrite(true);
        _loop = Task.Run(RunAsync);
    }

    private void OnChanged(string bucket)
    {
        if (bucket is "deployments" or "pods" or "nodes" or "services" or "endpointslices" or "endpoints")
            _signal.Writer.TryWrite(true);
    }

    private async Task RunAsync()
    {
        var token = _stopping.Token;
        try
        {
            while (await _signal.Reader.WaitToReadAsync(token))
            {
                _signal.Reader.TryRead(out _);
                try
                {
                    Reconcile();
                }
                catch (ApiException e)
                {
                    _logger.LogDebug("workload simulation retrying after {Reason}: {Message}", e.Status.Str("reason"), e.Message);
                    _signal.Writer.TryWrite(true);
                    await Task.Delay(5, token);
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    _logger.LogWarning(e, "workload simulation pass failed");
                    await Task.Delay(50, token);
                    _signal.Writer.TryWrite(true);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        _resources.Store.Changed -= OnChanged;
        await _stopping.CancelAsync();
        try { await _loop; } catch (OperationCanceledException) { }
        _stopping.Dispose();
    }

    private sealed record NodeInfo(string Name, bool Ready, string? InternalIp, string? Zone, IPNetwork? PodCidr);

    private void Reconcile()
    {
        // Deployments are read first, so that every Node that existed when one was created is in the Node list
        // below, with its pod CIDR: a Node list older than the Deployments put three replicas on two of three nodes.
        var deployments = _resources.List(ResourceCatalog.Deployments, null, Selector.Everything).Items;
        AllocatePodCidrs();
        var nodes = _resources.List(ResourceCatalog.Nodes, null, Selector.Everything).Items.Select(n => Node(n.Node)).ToDictionary(n => n.Name);
        var readyNodes = nodes.Values.Where(n => n.Ready).OrderBy(n => n.Name, StringComparer.Ordinal).ToList();
        var pods = _resources.List(ResourceCatalog.Pods, null, Selector.Everything).Items.ToList();
        var load = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var p in pods)
            if (p.Node.Obj("spec").Str("nodeName") is { Length: > 0 } n) load[n] = load.GetValueOrDefault(n) + 1;

        foreach (var d in deployments)
            ReconcileDeployment(d, pods, nodes, readyNodes, load);

        // The garbage collector: a pass that read a Deployment just before it was deleted may have created
        // Pods for it after its dependents were deleted; Pods whose owning Deployment is gone go too.
        var live = _resources.List(ResourceCatalog.Deployments, null, Selector.Everything).Items.Select(d => d.Node.Uid()).ToHashSet();
        foreach (var p in _resources.List(ResourceCatalog.Pods, null, Selector.Everything).Items)
            if (p.Node.Obj("metadata").Arr("ownerReferences")?.OfType<JsonObject>()
                    .Any(r => r.Str("kind") == "Deployment" && !live.Contains(r.Str("uid") ?? "")) == true)
                TryDelete(ResourceCatalog.Pods, p);

        pods = _resources.List(ResourceCatalog.Pods, null, Selector.Everything).Items.ToList();
        foreach (var p in pods) ReconcilePodReadiness(p, nodes);
        pods = _resources.List(ResourceCatalog.Pods, null, Selector.Everything).Items.ToList();

        var services = _resources.List(ResourceCatalog.Services, null, Selector.Everything).Items;
        foreach (var s in services) ReconcileService(s, pods, nodes);
        var serviceKeys = services.Select(s => s.Key).ToHashSet(StringComparer.Ordinal);
        foreach (var ep in _resources.List(ResourceCatalog.Endpoints, null, Selector.Everything).Items)
            if (ep.Node.Obj("metadata").Obj("annotations").Str(EndpointsMarker) is not null && !serviceKeys.Contains(ep.Key))
                TryDelete(ResourceCatalog.Endpoints, ep);
    }

    private NodeInfo Node(JsonObject n)
    {
        var name = n.Name();
        var status = n.Obj("status");
        var conditions = status.Arr("conditions")?.OfType<JsonObject>().ToList();
        var readyCond = conditions?.FirstOrDefault(c => c.Str("type") == "Ready");
        var ready = (readyCond is null || readyCond.Str("status") == "True")
                    && n.Obj("spec").Bool("unschedulable") != true
                    && n.Obj("metadata").Str("deletionTimestamp") is null;
        var ip = status.Arr("addresses")?.OfType<JsonObject>().FirstOrDefault(a => a.Str("type") == "InternalIP")?.Str("address");
        var podCidr = IPNetwork.TryParse(n.Obj("spec").Str("podCIDR"), out var cidr) && cidr.BaseAddress.AddressFamily == AddressFamily.InterNetwork
            ? cidr
            : (IPNetwork?)null;
        return new NodeInfo(name, ready, ip, n.Obj("metadata").Obj("labels").Str("topology.kubernetes.io/zone"), podCidr);
    }

    /// <summary>The node IPAM controller: every Node without spec.podCIDR gets the lowest /24 of the pod network no
    /// other Node has (the first /24 stays unused, so that node K's CIDR is the K-th when nodes come in order).</summary>
    private void AllocatePodCidrs()
    {
        var nodes = _resources.List(ResourceCatalog.Nodes, null, Selector.Everything).Items;
        var used = nodes.Select(n => n.Node.Obj("spec").Str("podCIDR")).Where(c => c is not null).ToHashSet(StringComparer.Ordinal);
        var count = 1 << (PodCidrPrefixLength - _podNetwork.PrefixLength);
        var first = BinaryPrimitives.ReadUInt32BigEndian(_podNetwork.BaseAddress.GetAddressBytes());
        foreach (var node in nodes.Where(n => n.Node.Obj("spec").Str("podCIDR") is null).OrderBy(n => n.Name, StringComparer.Ordinal))
        {
            var free = Enumerable.Range(1, count - 1)
                .Select(i => $"{ToAddress(first + ((uint)i << (32 - PodCidrPrefixLength)))}/{PodCidrPrefixLength}")
                .FirstOrDefault(c => !used.Contains(c));
            if (free is null)
            {
                _logger.LogWarning("no free /{Prefix} in pod network {Network} for node {Node}", PodCidrPrefixLength, _podNetwork, node.Name);
                return;
            }
            used.Add(free);
            var next = (JsonObject)node.Node.DeepClone();
            var spec = next.Ensure("spec");
            spec["podCIDR"] = free;
            spec["podCIDRs"] = new JsonArray(free);
            _resources.Update(ResourceCatalog.Nodes, null, node.Name, null, next);
        }
    }

    private static IPAddress ToAddress(uint value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, value);
        return new IPAddress(bytes);
    }

    private static bool Owns(StoredObject owner, StoredObject obj) =>
        obj.Node.Obj("metadata").Arr("ownerReferences")?.OfType<JsonObject>().Any(r => r.Str("uid") == owner.Node.Uid()) == true;

    private void ReconcileDeployment(StoredObject d, List<StoredObject> pods, Dictionary<string, NodeInfo> nodes, List<NodeInfo> readyNodes, Dictionary<string, int> load)
    {
        if (d.Node.Obj("metadata").Str("deletionTimestamp") is not null) return;
        var ns = d.Namespace;
        var spec = d.Node.Obj("spec")!;
        var template = spec.Obj("template") ?? new JsonObject();
        var hash = TemplateHash(template);
        var desired = (int)(spec.Long("replicas") ?? 1);
        var owned = pods.Where(p => p.Namespace == ns && Owns(d, p) && p.Node.Obj("metadata").Str("deletionTimestamp") is null).ToList();

        foreach (var p in owned.ToList())
        {
            var nodeName = p.Node.Obj("spec").Str("nodeName");
            var stale = p.Node.Obj("metadata").Obj("labels").Str("pod-template-hash") != hash;
            var orphaned = string.IsNullOrEmpty(nodeName) ? readyNodes.Any(n => HasRoom(n, load)) : !nodes.ContainsKey(nodeName);
            if (stale || orphaned)
            {
                TryDelete(ResourceCatalog.Pods, p);
                owned.Remove(p);
                if (!string.IsNullOrEmpty(nodeName) && load.ContainsKey(nodeName)) load[nodeName]--;
            }
        }
        for (var i = owned.Count; i < desired; i++)
        {
            var node = readyNodes.Where(n => HasRoom(n, load))
                .OrderBy(n => load.GetValueOrDefault(n.Name)).ThenBy(n => n.Name, StringComparer.Ordinal).FirstOrDefault();
            var pod = _resources.Create(ResourceCatalog.Pods, ns, NewPod(d, template, hash, node, pods));
            if (node is not null) load[node.Name] = load.GetValueOrDefault(node.Name) + 1;
            owned.Add(pod);
            pods.Add(pod);
        }
        foreach (var p in owned.OrderByDescending(p => p.Node.Obj("metadata").Str("creationTimestamp"), StringComparer.Ordinal)
                     .ThenByDescending(p => p.Name, StringComparer.Ordinal).Take(Math.Max(0, owned.Count - desired)).ToList())
        {
            TryDelete(ResourceCatalog.Pods, p);
            owned.Remove(p);
        }

        var ready = owned.Count(p => IsReady(p.Node));
        var status = new JsonObject
        {
            ["observedGeneration"] = d.Node.Obj("metadata").Long("generation") ?? 1,
            ["replicas"] = owned.Count,
            ["updatedReplicas"] = owned.Count,
            ["readyReplicas"] = ready,
            ["availableReplicas"] = ready,
        };
        if (owned.Count - ready > 0) status["unavailableReplicas"] = owned.Count - ready;
        if (ready == 0) status.Remove("readyReplicas");
        if (ready == 0) status.Remove("availableReplicas");
        var old = d.Node.Obj("status");
        var available = ready >= desired ? "True" : "False";
        status["conditions"] = new JsonArray(
            Condition(old, "Available", available, available == "True" ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
                available == "True" ? "Deployment has minimum availability." : "Deployment does not have minimum availability.", true),
            Condition(old, "Progressing", "True", "NewReplicaSetAvailable", $"ReplicaSet \"{d.Name}-{hash}\" has successfully progressed.", true));
        if (JsonNode.DeepEquals(status, old)) return;
        var next = (JsonObject)d.Node.DeepClone();
        next["status"] = status;
        _resources.Update(ResourceCatalog.Deployments, ns, d.Name, "status", next);
    }

    /// <summary>A node takes Pods while its pod CIDR has a free address (.0, .1 — the node's side — and broadcast are not).</summary>
    private static bool HasRoom(NodeInfo node, Dictionary<string, int> load) =>
        node.PodCidr is { } cidr && load.GetValueOrDefault(node.Name) < (1 << (32 - cidr.PrefixLength)) - 3;

    private static JsonObject Condition(JsonObject? oldStatus, string type, string value, string reason, string message, bool withUpdateTime)
    {
        var old = oldStatus.Arr("conditions")?.OfType<JsonObject>().FirstOrDefault(c => c.Str("type") == type);
        var now = Json.Timestamp(DateTimeOffset.UtcNow);
        var same = old is not null && old.Str("status") == value && old.Str("reason") == reason;
        var c = new JsonObject { ["type"] = type, ["status"] = value };
        if (withUpdateTime) c["lastUpdateTime"] = same ? old!.Str("lastUpdateTime") ?? now : now;
        c["lastTransitionTime"] = same ? old!.Str("lastTransitionTime") ?? now : now;
        c["reason"] = reason;
        c["message"] = same ? old!.Str("message") ?? message : message;
        return c;
    }

    private static string TemplateHash(JsonObject template)
    {
        var bytes = SHA256.HashData(Encoding.UTF8.GetBytes(Json.ToText(template)));
        const string alphabet = "bcdfghjklmnpqrstvwxz2456789";
        var sb = new StringBuilder(10);
        for (var i = 0; i < 10; i++) sb.Append(alphabet[bytes[i] % alphabet.Length]);
        return sb.ToString();
    }

    private JsonObject NewPod(StoredObject d, JsonObject template, string hash, NodeInfo? node, List<StoredObject> pods)
    {
        var now = Json.Timestamp(DateTimeOffset.UtcNow);
        var labels = (template.Obj("metadata").Obj("labels")?.DeepClone() as JsonObject) ?? new JsonObject();
        labels["pod-template-hash"] = hash;
        var meta = new JsonObject
        {
            ["generateName"] = $"{d.Name}-{hash}-",
            ["namespace"] = d.Namespace,
            ["labels"] = labels,
        };
        if (template.Obj("metadata").Obj("annotations") is { } annotations) meta["annotations"] = annotations.DeepClone();
        meta["ownerReferences"] = new JsonArray(new JsonObject
        {
            ["apiVersion"] = "apps/v1",
            ["kind"] = "Deployment",
            ["name"] = d.Name,
            ["uid"] = d.Node.Uid(),
            ["controller"] = true,
            ["blockOwnerDeletion"] = true,
        });
        var spec = (template.Obj("spec")?.DeepClone() as JsonObject) ?? new JsonObject();
        if (_readinessGates.Count > 0)
        {
            var gates = spec.Arr("readinessGates") ?? new JsonArray();
            foreach (var gate in _readinessGates.Where(g => !gates.OfType<JsonObject>().Any(o => o.Str("conditionType") == g)))
                gates.Add(new JsonObject { ["conditionType"] = gate });
            spec["readinessGates"] = gates;
        }
        var containers = spec.Arr("containers")?.OfType<JsonObject>().ToList() ?? [];
        var ip = node is null ? null : AllocatePodIp(node, pods);
        JsonObject status;
        if (node is null || ip is null)
        {
            status = new JsonObject
            {
                ["phase"] = "Pending",
                ["conditions"] = new JsonArray(new JsonObject
                {
                    ["type"] = "PodScheduled", ["status"] = "False", ["lastProbeTime"] = null, ["lastTransitionTime"] = now,
                    ["reason"] = "Unschedulable",
                ["message"] = node is null ? "0/0 nodes are available: no Ready node." : $"node {node.Name} has no free pod address",
                }),
                ["qosClass"] = "BestEffort",
            };
        }
        else
        {
            spec["nodeName"] = node.Name;
            var ready = node.Ready && labels.Str(ReadyMarker) != "false" && meta.Obj("annotations").Str(ReadyMarker) != "false";
            status = new JsonObject
            {
                ["phase"] = "Running",
                ["conditions"] = PodConditions(ready && spec.Arr("readinessGates") is not { Count: > 0 }, ready, now),
                ["hostIP"] = node.InternalIp,
                ["hostIPs"] = node.InternalIp is null ? null : new JsonArray(new JsonObject { ["ip"] = node.InternalIp }),
                ["podIP"] = ip,
                ["podIPs"] = new JsonArray(new JsonObject { ["ip"] = ip }),
                ["startTime"] = now,
                ["containerStatuses"] = new JsonArray(containers.Select(c => (JsonNode)new JsonObject
                {
                    ["name"] = c.Str("name"),
                    ["state"] = new JsonObject { ["running"] = new JsonObject { ["startedAt"] = now } },
                    ["lastState"] = new JsonObject(),
                    ["ready"] = ready,
                    ["restartCount"] = 0,
                    ["image"] = c.Str("image"),
                    ["imageID"] = "",
                    ["containerID"] = "containerd://" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32)),
                    ["started"] = true,
                }).ToArray()),
                ["qosClass"] = "BestEffort",
            };
            if (node.InternalIp is null)
            {
                status.Remove("hostIP");
                status.Remove("hostIPs");
            }
        }
        return new JsonObject { ["apiVersion"] = "v1", ["kind"] = "Pod", ["metadata"] = meta, ["spec"] = spec, ["status"] = status };
    }

    private static JsonArray PodConditions(bool ready, bool containersReady, string now)
    {
        JsonObject C(string type, bool value) => new()
        {
            ["type"] = type, ["status"] = value ? "True" : "False", ["lastProbeTime"] = null, ["lastTransitionTime"] = now,
        };
        return new JsonArray(C("PodReadyToStartContainers", true), C("Initialized", true), C("Ready", ready), C("ContainersReady", containersReady), C("PodScheduled", true));
    }

    /// <summary>The lowest address of the node's pod CIDR from .2 up (.1 is the node's side) that no Pod has; null when
    /// the node has no CIDR yet or the CIDR is full.</summary>
    private static string? AllocatePodIp(NodeInfo node, List<StoredObject> pods)
    {
        if (node.PodCidr is not { } cidr) return null;
        var used = pods.Select(p => p.Node.Obj("status").Str("podIP")).Where(ip => ip is not null).ToHashSet(StringComparer.Ordinal);
        var first = BinaryPrimitives.ReadUInt32BigEndian(cidr.BaseAddress.GetAddressBytes());
        var size = 1u << (32 - cidr.PrefixLength);
        for (var host = 2u; host < size - 1; host++)
        {
            var ip = ToAddress(first + host).ToString();
            if (!used.Contains(ip)) return ip;
        }
        return null;
    }

    private static bool IsReady(JsonObject pod) =>
        pod.Obj("status").Arr("conditions")?.OfType<JsonObject>().Any(c => c.Str("type") == "Ready" && c.Str("status") == "True") == true;

    private static bool HasCondition(JsonObject pod, string type) =>
        pod.Obj("status").Arr("conditions")?.OfType<JsonObject>().Any(c => c.Str("type") == type && c.Str("status") == "True") == true;

    /// <summary>
    /// Keeps a simulated pod's ContainersReady condition in line with its node and the sandbox.hybrid/ready marker,
    /// and its Ready condition with that and its readiness gates (as the kubelet does).
    /// </summary>
    private void ReconcilePodReadiness(StoredObject p, Dictionary<string, NodeInfo> nodes)
    {
        var meta = p.Node.Obj("metadata");
        if (meta.Arr("ownerReferences")?.OfType<JsonObject>().Any(r => r.Str("kind") == "Deployment") != true) return;
        var nodeName = p.Node.Obj("spec").Str("nodeName");
        if (string.IsNullOrEmpty(nodeName) || !nodes.TryGetValue(nodeName, out var node)) return;
        var containersReady = node.Ready && meta.Obj("labels").Str(ReadyMarker) != "false" && meta.Obj("annotations").Str(ReadyMarker) != "false";
        var gatesMet = p.Node.Obj("spec").Arr("readinessGates")?.OfType<JsonObject>()
            .All(g => HasCondition(p.Node, g.Str("conditionType") ?? "")) ?? true;
        var want = new Dictionary<string, bool> { ["Ready"] = containersReady && gatesMet, ["ContainersReady"] = containersReady };
        if (want.All(w => HasCondition(p.Node, w.Key) == w.Value)) return;
        var next = (JsonObject)p.Node.DeepClone();
        var now = Json.Timestamp(DateTimeOffset.UtcNow);
        foreach (var c in next.Obj("status").Arr("conditions")?.OfType<JsonObject>() ?? [])
            if (c.Str("type") is { } type && want.TryGetValue(type, out var value) && (c.Str("status") == "True") != value)
            {
                c["status"] = value ? "True" : "False";
                c["lastTransitionTime"] = now;
            }
        foreach (var cs in next.Obj("status").Arr("containerStatuses")?.OfType<JsonObject>() ?? []) cs["ready"] = containersReady;
        _resources.Update(ResourceCatalog.Pods, p.Namespace, p.Name, "status", next);
    }

    private void ReconcileService(StoredObject svc, List<StoredObject> pods, Dictionary<string, NodeInfo> nodes)
    {
        var spec = svc.Node.Obj("spec");
        var selector = Json.StringMap(spec.Obj("selector"));
        if (selector.Count == 0 || spec.Str("type") == "ExternalName" || svc.Node.Obj("metadata").Str("deletionTimestamp") is not null) return;
        var ns = svc.Namespace;
        var selected = pods.Where(p => p.Namespace == ns && Selector.MapMatches(selector, p.Node.Obj("metadata").Obj("labels"))
                                       && p.Node.Obj("status").Str("podIP") is { Length: > 0 }
                                       && p.Node.Obj("status").Str("phase") is not ("Succeeded" or "Failed"))
            .OrderBy(p => p.Name, StringComparer.Ordinal).ToList();
        var servicePorts = spec.Arr("ports")?.OfType<JsonObject>().ToList() ?? [];

        var sliceEndpoints = new JsonArray();
        var ready = new JsonArray();
        var notReady = new JsonArray();
        foreach (var p in selected)
        {
            var isReady = IsReady(p.Node);
            var terminating = p.Node.Obj("metadata").Str("deletionTimestamp") is not null;
            var nodeName = p.Node.Obj("spec").Str("nodeName");
            var ip = p.Node.Obj("status").Str("podIP")!;
            var targetRef = new JsonObject { ["kind"] = "Pod", ["namespace"] = ns, ["name"] = p.Name, ["uid"] = p.Node.Uid() };
            var endpoint = new JsonObject
            {
                ["addresses"] = new JsonArray(ip),
                ["conditions"] = new JsonObject { ["ready"] = isReady && !terminating, ["serving"] = isReady, ["terminating"] = terminating },
                ["targetRef"] = targetRef.DeepClone(),
            };
            if (!string.IsNullOrEmpty(nodeName))
            {
                endpoint["nodeName"] = nodeName;
                if (nodes.TryGetValue(nodeName, out var n) && n.Zone is not null) endpoint["zone"] = n.Zone;
            }
            sliceEndpoints.Add(endpoint);
            var address = new JsonObject { ["ip"] = ip };
            if (!string.IsNullOrEmpty(nodeName)) address["nodeName"] = nodeName;
            address["targetRef"] = targetRef;
            (isReady && !terminating ? ready : notReady).Add(address);
        }
        var ports = new JsonArray();
        var endpointPorts = new JsonArray();
        foreach (var sp in servicePorts)
        {
            var port = ResolveTargetPort(sp, selected.FirstOrDefault());
            if (port is null) continue;
            ports.Add(new JsonObject { ["name"] = sp.Str("name") ?? "", ["protocol"] = sp.Str("protocol") ?? "TCP", ["port"] = port });
            var ep = new JsonObject();
            if (sp.Str("name") is { Length: > 0 } name) ep["name"] = name;
            ep["port"] = port;
            ep["protocol"] = sp.Str("protocol") ?? "TCP";
            endpointPorts.Add(ep);
        }

        var labels = (svc.Node.Obj("metadata").Obj("labels")?.DeepClone() as JsonObject) ?? new JsonObject();
        labels["endpointslice.kubernetes.io/managed-by"] = ManagedBy;
        labels["kubernetes.io/service-name"] = svc.Name;
        var sliceName = svc.Name + "-" + TemplateHash(new JsonObject { ["uid"] = svc.Node.Uid() })[..5];
        var desiredSlice = new JsonObject
        {
            ["kind"] = "EndpointSlice",
            ["apiVersion"] = "discovery.k8s.io/v1",
            ["metadata"] = new JsonObject
            {
                ["name"] = sliceName,
                ["generateName"] = svc.Name + "-",
                ["namespace"] = ns,
                ["labels"] = labels,
                ["ownerReferences"] = new JsonArray(new JsonObject
                {
                    ["apiVersion"] = "v1", ["kind"] = "Service", ["name"] = svc.Name, ["uid"] = svc.Node.Uid(),
                    ["controller"] = true, ["blockOwnerDeletion"] = true,
                }),
            },
            ["addressType"] = "IPv4",
            ["endpoints"] = sliceEndpoints,
            ["ports"] = ports,
        };
        var existing = _resources.List(ResourceCatalog.EndpointSlices, ns,
            Selector.Parse($"kubernetes.io/service-name={svc.Name},endpointslice.kubernetes.io/managed-by={ManagedBy}", null)).Items;
        foreach (var stale in existing.Where(s => s.Name != sliceName)) TryDelete(ResourceCatalog.EndpointSlices, stale);
        var current = existing.FirstOrDefault(s => s.Name == sliceName);
        if (current is null) _resources.Create(ResourceCatalog.EndpointSlices, ns, desiredSlice);
        else if (!SameContent(current.Node, desiredSlice, "addressType", "endpoints", "ports")
                 || !JsonNode.DeepEquals(current.Node.Obj("metadata").Obj("labels"), labels))
        {
            var next = (JsonObject)current.Node.DeepClone();
            next.Meta()["labels"] = labels.DeepClone();
            next["endpoints"] = sliceEndpoints.DeepClone();
            next["ports"] = ports.DeepClone();
            _resources.Update(ResourceCatalog.EndpointSlices, ns, sliceName, null, next);
        }

        var subsets = new JsonArray();
        if (ready.Count + notReady.Count > 0)
        {
            var subset = new JsonObject();
            if (ready.Count > 0) subset["addresses"] = ready;
            if (notReady.Count > 0) subset["notReadyAddresses"] = notReady;
            subset["ports"] = endpointPorts;
            subsets.Add(subset);
        }
        var epLabels = (svc.Node.Obj("metadata").Obj("labels")?.DeepClone() as JsonObject) ?? new JsonObject();
        var currentEp = _resources.TryGet(ResourceCatalog.Endpoints, ns, svc.Name);
        if (currentEp is null)
        {
            var meta = new JsonObject
            {
                ["name"] = svc.Name,
                ["namespace"] = ns,
                ["annotations"] = new JsonObject { [EndpointsMarker] = Json.Timestamp(DateTimeOffset.UtcNow) },
            };
            if (epLabels.Count > 0) meta["labels"] = epLabels;
            var ep = new JsonObject { ["kind"] = "Endpoints", ["apiVersion"] = "v1", ["metadata"] = meta };
            if (subsets.Count > 0) ep["subsets"] = subsets;
            _resources.Create(ResourceCatalog.Endpoints, ns, ep);
        }
        else
        {
            var curSubsets = currentEp.Node.Arr("subsets") ?? new JsonArray();
            if (JsonNode.DeepEquals(curSubsets, subsets)) return;
            var next = (JsonObject)currentEp.Node.DeepClone();
            if (subsets.Count > 0) next["subsets"] = subsets;
            else next.Remove("subsets");
            next.Meta().Ensure("annotations")[EndpointsMarker] = Json.Timestamp(DateTimeOffset.UtcNow);
            _resources.Update(ResourceCatalog.Endpoints, ns, svc.Name, null, next);
        }
    }

    private static bool SameContent(JsonObject a, JsonObject b, params string[] keys) => keys.All(k => JsonNode.DeepEquals(a[k], b[k]));

    private static long? ResolveTargetPort(JsonObject servicePort, StoredObject? pod)
    {
        var tp = servicePort["targetPort"];
        if (Json.IsNumber(tp)) return servicePort.Long("targetPort");
        if (Json.IsString(tp))
        {
            var name = servicePort.Str("targetPort");
            if (int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var n)) return n;
            foreach (var c in pod?.Node.Obj("spec").Arr("containers")?.OfType<JsonObject>() ?? [])
                foreach (var p in c.Arr("ports")?.OfType<JsonObject>() ?? [])
                    if (p.Str("name") == name) return p.Long("containerPort");
            return null;
        }
        return servicePort.Long("port");
    }

    private void TryDelete(ResourceType rt, StoredObject o)
    {
        try { _resources.Delete(rt, o.Namespace, o.Name, new DeleteRequest("Background", null, null, false)); }
        catch (ApiException e) when (e.Code == 404) { }
    }
}
