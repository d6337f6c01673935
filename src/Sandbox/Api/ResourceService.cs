using System.Globalization;
using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>Options of a DELETE (query string or DeleteOptions body).</summary>
internal sealed record DeleteRequest(string? PropagationPolicy, string? PreconditionUid, string? PreconditionRv, bool DryRun);

/// <summary>A page of a list: the items, the RV the snapshot reflects, and a continue token when more remain.</summary>
internal sealed record ListPage(IReadOnlyList<StoredObject> Items, long Rv, string? Continue, long? Remaining);

/// <summary>
/// The API server's registry logic over <see cref="ObjectStore"/>: create/update/patch/delete with metadata
/// handling (uid, creationTimestamp, generateName, resourceVersion preconditions), kind rules, validation,
/// finalizers and deletionTimestamp, cascading deletion by ownerReferences, and namespace lifecycle.
/// Used by the HTTP endpoints and, in-process, by the workload simulator. Errors are <see cref="ApiException"/>s.
/// </summary>
internal sealed class ResourceService(ObjectStore store)
{
    private const int MaxInternalRetries = 50;
    private readonly Lock _serviceWrites = new();

    public ObjectStore Store => store;

    /// <summary>The resource that defines the stored shape of a bucket (core/v1 for events).</summary>
    public static ResourceType Canonical(ResourceType rt) => rt.IsEventsV1View ? ResourceCatalog.CoreEvents : rt;

    public static JsonObject View(ResourceType rt, StoredObject o) => rt.IsEventsV1View ? EventConversion.ToEventsV1(o.Node) : o.Node;

    public static byte[] ViewBytes(ResourceType rt, StoredObject o) => rt.IsEventsV1View ? Json.ToBytes(EventConversion.ToEventsV1(o.Node)) : o.Json;

    private static string Key(ResourceType rt, string? ns, string name) => ObjectStore.KeyOf(rt.Namespaced ? ns : null, name);

    public StoredObject Get(ResourceType rt, string? ns, string name) =>
        store.Get(rt.Bucket, Key(rt, ns, name)) ?? throw ApiException.NotFound(rt, name);

    public StoredObject? TryGet(ResourceType rt, string? ns, string name) => store.Get(rt.Bucket, Key(rt, ns, name));

    public ListPage List(ResourceType rt, string? ns, Selector selector, long limit = 0, string? continueToken = null)
    {
        var (all, rv) = store.List(rt.Bucket, rt.Namespaced ? ns : null);
        string? after = null;
        if (!string.IsNullOrEmpty(continueToken))
        {
            try
            {
                var decoded = System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(continueToken));
                after = decoded[(decoded.IndexOf('|') + 1)..];
            }
            catch (FormatException)
            {
                throw ApiException.BadRequest("continue key is not valid: illegal base64 data");
            }
        }
        var items = new List<StoredObject>();
        var remaining = 0L;
        string? next = null;
        foreach (var o in all)
        {
            if (after is not null && string.CompareOrdinal(o.Key, after) <= 0) continue;
            if (!selector.IsEverything && !selector.Matches(rt.IsEventsV1View ? o.Node : o.Node)) continue;
            if (limit > 0 && items.Count >= limit) { remaining++; continue; }
            items.Add(o);
        }
        if (remaining > 0)
            next = Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(rv.ToString(CultureInfo.InvariantCulture) + "|" + items[^1].Key));
        return new ListPage(items, rv, next, remaining > 0 ? remaining : null);
    }

    // ---------------------------------------------------------------- create

    public StoredObject Create(ResourceType rt, string? ns, JsonObject body, bool dryRun = false)
    {
        CheckTypeMeta(rt, body);
        var canonical = Canonical(rt);
        var obj = Normalize(canonical, rt.IsEventsV1View ? EventConversion.ToCore(body) : body);
        var meta = obj.Meta();
        SetNamespace(rt, ns, meta);
        var name = meta.Str("name");
        if (string.IsNullOrEmpty(name))
        {
            var generate = meta.Str("generateName");
            if (string.IsNullOrEmpty(generate))
                throw ApiException.Invalid(rt, "", [new("FieldValueRequired", "metadata.name", "Required value: name or generateName is required")]);
            meta["name"] = name = generate + RandomSuffix();
        }
        if (rt.Namespaced) CheckNamespaceOpen(rt, name, meta.Str("namespace")!);
        meta["uid"] = Guid.NewGuid().ToString();
        meta["creationTimestamp"] = Json.Timestamp(DateTimeOffset.UtcNow);
        meta.Remove("resourceVersion");
        meta.Remove("deletionTimestamp");
        meta.Remove("deletionGracePeriodSeconds");
        meta.Remove("selfLink");
        meta.Remove("generation");
        if (meta.Arr("finalizers") is { Count: 0 }) meta.Remove("finalizers");

        // As the API server: defaults first, then validation of the defaulted object.
        if (canonical == ResourceCatalog.Services)
        {
            lock (_serviceWrites)
            {
                var errors = MetadataRules.Validate(rt, obj, null);
                ServiceRules.Prepare(obj, null, false);
                errors.AddRange(ServiceRules.Validate(obj, null));
                if (errors.Count > 0) throw ApiException.Invalid(rt, name, errors);
                var others = store.List(rt.Bucket, null).Items.Select(o => o.Node).ToList();
                var alloc = ServiceRules.Allocate(obj, null, others, Random.Shared);
                if (alloc.Count > 0) throw ApiException.Invalid(rt, name, alloc);
                return Commit(rt, ns, name, obj, dryRun);
            }
        }
        ObjectRules.Prepare(canonical, obj, null, false);
        var invalid = ObjectRules.Validate(rt, obj, null);
        if (invalid.Count > 0) throw ApiException.Invalid(rt, name, invalid);
        return Commit(rt, ns, name, obj, dryRun);
    }

    private StoredObject Commit(ResourceType rt, string? ns, string name, JsonObject obj, bool dryRun)
    {
        var key = Key(rt, ns, name);
        if (dryRun)
            return store.Get(rt.Bucket, key) is null ? new StoredObject(obj, Json.ToBytes(obj), 0, key) : throw ApiException.AlreadyExists(rt, name);
        return store.TryCreate(rt.Bucket, key, obj) ?? throw ApiException.AlreadyExists(rt, name);
    }

    // ---------------------------------------------------------------- update

    public StoredObject Update(ResourceType rt, string? ns, string name, string? subresource, JsonObject body, bool dryRun = false)
    {
        CheckTypeMeta(rt, body);
        var bodyName = body.Obj("metadata").Str("name");
        if (!string.IsNullOrEmpty(bodyName) && bodyName != name)
            throw ApiException.BadRequest($"the name of the object ({bodyName}) does not match the name on the URL ({name})");
        var canonical = Canonical(rt);
        var requested = Normalize(canonical, rt.IsEventsV1View ? EventConversion.ToCore(body) : body);
        requested.Meta()["name"] = name;
        SetNamespace(rt, ns, requested.Meta());
        var preconditionRv = requested.Obj("metadata").Str("resourceVersion");
        for (var attempt = 0; ; attempt++)
        {
            var cur = store.Get(rt.Bucket, Key(rt, ns, name));
            if (cur is null)
            {
                if (subresource is null && rt.Bucket is "events" or "endpoints")
                {
                    var created = (JsonObject)body.DeepClone();
                    created.Meta()["name"] = name;
                    created.Meta().Remove("resourceVersion");
                    return Create(rt, ns, created, dryRun);
                }
                throw ApiException.NotFound(rt, name);
            }
            if (!string.IsNullOrEmpty(preconditionRv) && preconditionRv != cur.Node.Obj("metadata").Str("resourceVersion"))
                throw ApiException.Conflict(rt, name);
            var result = TryUpdateFrom(rt, ns, name, subresource, (JsonObject)requested.DeepClone(), cur, dryRun);
            if (result is not null) return result;
            if (!string.IsNullOrEmpty(preconditionRv)) throw ApiException.Conflict(rt, name);
            if (attempt >= MaxInternalRetries) throw ApiException.Conflict(rt, name);
        }
    }

    /// <summary>Applies the update rules to <paramref name="next"/> (canonical shape) against <paramref name="cur"/> and
    /// commits with a compare-and-swap on cur's RV; null when another write won the race.</summary>
    private StoredObject? TryUpdateFrom(ResourceType rt, string? ns, string name, string? subresource, JsonObject next, StoredObject cur, bool dryRun)
    {
        var canonical = Canonical(rt);
        var meta = next.Meta();
        var curMeta = cur.Node.Obj("metadata")!;
        var uid = meta.Str("uid");
        if (!string.IsNullOrEmpty(uid) && uid != curMeta.Str("uid"))
            throw ApiException.Conflict(rt, name, $"Precondition failed: UID in precondition: {uid}, UID in object meta: {curMeta.Str("uid")}");
        foreach (var field in new[] { "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation" })
        {
            if (curMeta[field] is { } v) meta[field] = v.DeepClone();
            else meta.Remove(field);
        }
        meta["resourceVersion"] = curMeta.Str("resourceVersion");
        if (meta.Arr("finalizers") is { Count: 0 }) meta.Remove("finalizers");
        var statusWrite = subresource == "status";
        if (statusWrite) ResetMetadataForStatus(meta, curMeta);
        var errors = new List<FieldCause>();
        if (canonical == ResourceCatalog.Services)
        {
            lock (_serviceWrites)
            {
                if (store.Get(rt.Bucket, cur.Key)?.Rv != cur.Rv) return null;
                ServiceRules.Prepare(next, cur.Node, statusWrite);
                if (!statusWrite) errors.AddRange(MetadataRules.Validate(rt, next, cur.Node));
                errors.AddRange(statusWrite ? StatusErrors(next) : ServiceRules.Validate(next, cur.Node));
                if (errors.Count > 0) throw ApiException.Invalid(rt, name, errors);
                var others = store.List(rt.Bucket, null).Items.Where(o => o.Key != cur.Key).Select(o => o.Node).ToList();
                var alloc = ServiceRules.Allocate(next, cur.Node, others, Random.Shared);
                if (alloc.Count > 0) throw ApiException.Invalid(rt, name, alloc);
                return Replace(rt, next, cur, dryRun);
            }
        }
        ObjectRules.Prepare(canonical, next, cur.Node, statusWrite);
        errors.AddRange(ObjectRules.Validate(rt, next, cur.Node));
        if (errors.Count > 0) throw ApiException.Invalid(rt, name, errors);
        return Replace(rt, next, cur, dryRun);
    }

    /// <summary>metav1.ResetObjectMetaForStatus: a status write cannot change labels, annotations, finalizers
    /// or owner references.</summary>
    private static void ResetMetadataForStatus(JsonObject meta, JsonObject current)
    {
        foreach (var field in new[] { "labels", "annotations", "finalizers", "ownerReferences" })
        {
            if (current[field] is { } v) meta[field] = v.DeepClone();
            else meta.Remove(field);
        }
    }

    private static List<FieldCause> StatusErrors(JsonObject svc)
    {
        var errors = new List<FieldCause>();
        ServiceRules.ValidateStatus(svc, errors);
        return errors;
    }

    private StoredObject? Replace(ResourceType rt, JsonObject next, StoredObject cur, bool dryRun)
    {
        if (JsonNode.DeepEquals(next, cur.Node)) return cur;
        if (dryRun) return new StoredObject(next, Json.ToBytes(next), cur.Rv, cur.Key);
        var deleting = next.Obj("metadata").Str("deletionTimestamp") is { Length: > 0 };
        if (deleting && next.Obj("metadata").Arr("finalizers") is not { Count: > 0 })
            return store.TryDelete(rt.Bucket, cur.Key, cur.Rv);
        return store.TryReplace(rt.Bucket, cur.Key, cur.Rv, next);
    }

    // ---------------------------------------------------------------- patch

    public (StoredObject Object, bool Created) Patch(ResourceType rt, string? ns, string name, string? subresource,
        string patchType, JsonNode? patch, string? fieldManager, bool dryRun = false, Action<JsonObject>? admit = null)
    {
        if (patchType == "apply" && string.IsNullOrEmpty(fieldManager))
            throw ApiException.Invalid(rt, name, [new("FieldValueRequired", "fieldManager", "Required value: is required for apply patch")]);
        for (var attempt = 0; ; attempt++)
        {
            var cur = store.Get(rt.Bucket, Key(rt, ns, name));
            if (cur is null)
            {
                if (patchType == "apply" && subresource is null && patch is JsonObject applied)
                {
                    var body = (JsonObject)applied.DeepClone();
                    body.Meta()["name"] = name;
                    admit?.Invoke(body);
                    return (Create(rt, ns, body, dryRun), true);
                }
                throw ApiException.NotFound(rt, name);
            }
            var view = rt.IsEventsV1View ? EventConversion.ToEventsV1(cur.Node) : cur.Node;
            var patched = patchType switch
            {
                "json" => JsonPatch.Apply(view, patch),
                "merge" => MergePatch.Apply(view, patch) as JsonObject ?? throw ApiException.BadRequest("merge patch must be a JSON object"),
                "strategic" or "apply" => StrategicMergePatch.Apply(Canonical(rt).Kind, view, patch),
                _ => throw new InvalidOperationException(patchType),
            };
            admit?.Invoke(patched);
            var rvAfter = patched.Obj("metadata").Str("resourceVersion");
            var rvBefore = view.Obj("metadata").Str("resourceVersion");
            var preconditioned = rvAfter != rvBefore;
            if (preconditioned && !string.IsNullOrEmpty(rvAfter)) throw ApiException.Conflict(rt, name);
            var patchedName = patched.Obj("metadata").Str("name");
            if (patchedName != name) throw ApiException.BadRequest($"the name of the object ({patchedName}) does not match the name on the URL ({name})");
            CheckTypeMeta(rt, patched);
            var next = Normalize(Canonical(rt), rt.IsEventsV1View ? EventConversion.ToCore(patched) : patched);
            SetNamespace(rt, ns, next.Meta());
            var result = TryUpdateFrom(rt, ns, name, subresource, next, cur, dryRun);
            if (result is not null) return (result, false);
            if (attempt >= MaxInternalRetries) throw ApiException.Conflict(rt, name);
        }
    }

    // ---------------------------------------------------------------- scale subresource

    /// <summary>The autoscaling/v1 Scale view of a Deployment (GET .../deployments/NAME/scale).</summary>
    public static JsonObject ScaleOf(StoredObject d)
    {
        var meta = d.Node.Obj("metadata")!;
        var selector = string.Join(',', Json.StringMap(d.Node.Obj("spec").Obj("selector").Obj("matchLabels"))
            .OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Key + "=" + kv.Value));
        return new JsonObject
        {
            ["kind"] = "Scale",
            ["apiVersion"] = "autoscaling/v1",
            ["metadata"] = new JsonObject
            {
                ["name"] = meta.Str("name"),
                ["namespace"] = meta.Str("namespace"),
                ["uid"] = meta.Str("uid"),
                ["resourceVersion"] = meta.Str("resourceVersion"),
                ["creationTimestamp"] = meta.Str("creationTimestamp"),
            },
            ["spec"] = new JsonObject { ["replicas"] = d.Node.Obj("spec").Long("replicas") ?? 0 },
            ["status"] = new JsonObject { ["replicas"] = d.Node.Obj("status").Long("replicas") ?? 0, ["selector"] = selector },
        };
    }

    /// <summary>Writes spec.replicas through the scale subresource: a PUT body, or a patch applied to the Scale view.</summary>
    public StoredObject Scale(ResourceType rt, string? ns, string name, string? patchType, JsonNode? body)
    {
        for (var attempt = 0; ; attempt++)
        {
            var cur = Get(rt, ns, name);
            var scale = ScaleOf(cur);
            var next = patchType switch
            {
                null => body as JsonObject ?? throw ApiException.BadRequest("a Scale object is required"),
                "json" => JsonPatch.Apply(scale, body),
                "merge" or "strategic" or "apply" => MergePatch.Apply(scale, body) as JsonObject ?? throw ApiException.BadRequest("merge patch must be an object"),
                _ => throw new InvalidOperationException(patchType),
            };
            var rv = next.Obj("metadata").Str("resourceVersion");
            if (!string.IsNullOrEmpty(rv) && rv != scale.Obj("metadata").Str("resourceVersion")) throw ApiException.Conflict(rt, name);
            var replicas = next.Obj("spec").Long("replicas") ?? 0;
            if (replicas < 0)
                throw ApiException.Invalid(rt, name, [new("FieldValueInvalid", "spec.replicas", $"Invalid value: {replicas}: must be greater than or equal to 0")]);
            var updated = (JsonObject)cur.Node.DeepClone();
            updated.Ensure("spec")["replicas"] = replicas;
            var result = TryUpdateFrom(rt, ns, name, null, updated, cur, false);
            if (result is not null) return result;
            if (!string.IsNullOrEmpty(rv) || attempt >= MaxInternalRetries) throw ApiException.Conflict(rt, name);
        }
    }

    // ---------------------------------------------------------------- delete

    /// <summary>Deletes (or, with finalizers, marks for deletion). Returns the final object and whether it is gone.</summary>
    public (StoredObject Object, bool Gone) Delete(ResourceType rt, string? ns, string name, DeleteRequest options)
    {
        for (var attempt = 0; ; attempt++)
        {
            var cur = store.Get(rt.Bucket, Key(rt, ns, name)) ?? throw ApiException.NotFound(rt, name);
            var meta = cur.Node.Obj("metadata")!;
            if (!string.IsNullOrEmpty(options.PreconditionUid) && options.PreconditionUid != meta.Str("uid"))
                throw ApiException.Conflict(rt, name, $"Precondition failed: UID in precondition: {options.PreconditionUid}, UID in object meta: {meta.Str("uid")}");
            if (!string.IsNullOrEmpty(options.PreconditionRv) && options.PreconditionRv != meta.Str("resourceVersion"))
                throw ApiException.Conflict(rt, name, $"Precondition failed: the ResourceVersion in the precondition ({options.PreconditionRv}) does not match the ResourceVersion in record ({meta.Str("resourceVersion")}). The object might have been modified");
            if (options.DryRun) return (cur, true);
            if (meta.Arr("finalizers") is { Count: > 0 })
            {
                if (meta.Str("deletionTimestamp") is { Length: > 0 }) return (cur, false);
                var marked = (JsonObject)cur.Node.DeepClone();
                marked.Meta()["deletionTimestamp"] = Json.Timestamp(DateTimeOffset.UtcNow);
                marked.Meta()["deletionGracePeriodSeconds"] = 0;
                var pending = store.TryReplace(rt.Bucket, cur.Key, cur.Rv, marked);
                if (pending is not null)
                {
                    if (options.PropagationPolicy != "Orphan") DeleteDependents(meta.Str("uid")!);
                    return (pending, false);
                }
                continue;
            }
            if (rt == ResourceCatalog.Namespaces) DeleteNamespaceContents(name);
            if (options.PropagationPolicy == "Foreground") DeleteDependents(meta.Str("uid")!);
            var final = store.TryDelete(rt.Bucket, cur.Key, cur.Rv);
            if (final is not null)
            {
                if (options.PropagationPolicy != "Orphan") DeleteDependents(meta.Str("uid")!);
                return (final, true);
            }
            if (attempt >= MaxInternalRetries) throw ApiException.Conflict(rt, name);
        }
    }

    /// <summary>The garbage collector's job, done at once: delete every object whose ownerReferences name the uid.</summary>
    private void DeleteDependents(string ownerUid)
    {
        foreach (var rt in ResourceCatalog.All.Where(r => !r.IsEventsV1View && r.Bucket is not ("leases" or "events")))
        {
            foreach (var o in store.List(rt.Bucket, null).Items)
            {
                var owners = o.Node.Obj("metadata").Arr("ownerReferences");
                if (owners is null || !owners.OfType<JsonObject>().Any(r => r.Str("uid") == ownerUid)) continue;
                try { Delete(rt, o.Namespace, o.Name, new DeleteRequest("Background", null, null, false)); }
                catch (ApiException e) when (e.Code == 404) { }
            }
        }
    }

    private void DeleteNamespaceContents(string ns)
    {
        foreach (var rt in ResourceCatalog.All.Where(r => r.Namespaced && !r.IsEventsV1View))
            foreach (var o in store.List(rt.Bucket, ns).Items)
            {
                try { Delete(rt, ns, o.Name, new DeleteRequest("Background", null, null, false)); }
                catch (ApiException e) when (e.Code == 404) { }
            }
    }

    // ---------------------------------------------------------------- helpers

    private static void CheckTypeMeta(ResourceType rt, JsonObject body)
    {
        var apiVersion = body.Str("apiVersion");
        if (!string.IsNullOrEmpty(apiVersion) && apiVersion != rt.GroupVersion)
            throw ApiException.BadRequest($"the API version in the data ({apiVersion}) does not match the expected API version ({rt.GroupVersion})");
        var kind = body.Str("kind");
        if (!string.IsNullOrEmpty(kind) && kind != rt.Kind)
            throw ApiException.BadRequest($"the kind in the data ({kind}) does not match the expected kind ({rt.Kind})");
    }

    private static void SetNamespace(ResourceType rt, string? ns, JsonObject meta)
    {
        if (!rt.Namespaced)
        {
            meta.Remove("namespace");
            return;
        }
        var bodyNs = meta.Str("namespace");
        if (!string.IsNullOrEmpty(bodyNs) && bodyNs != ns)
            throw ApiException.BadRequest("the namespace of the provided object does not match the namespace sent on the request");
        meta["namespace"] = ns;
    }

    private void CheckNamespaceOpen(ResourceType rt, string name, string ns)
    {
        var nsObj = store.Get(ResourceCatalog.Namespaces.Bucket, ns) ?? throw ApiException.NamespaceNotFound(ns);
        if (nsObj.Node.Obj("metadata").Str("deletionTimestamp") is { Length: > 0 })
            throw ApiException.NamespaceTerminating(rt, name, ns);
    }

    /// <summary>A copy with kind and apiVersion first, metadata next, status last: the field order of the real server.</summary>
    private static JsonObject Normalize(ResourceType rt, JsonObject body)
    {
        var result = new JsonObject { ["kind"] = rt.Kind, ["apiVersion"] = rt.GroupVersion };
        result["metadata"] = body.Obj("metadata")?.DeepClone() ?? new JsonObject();
        foreach (var (k, v) in body)
            if (k is not ("kind" or "apiVersion" or "metadata" or "status")) result[k] = v?.DeepClone();
        if (body.TryGetPropertyValue("status", out var status)) result["status"] = status?.DeepClone();
        return result;
    }

    private static string RandomSuffix()
    {
        const string alphabet = "bcdfghjklmnpqrstvwxz2456789";
        Span<char> s = stackalloc char[5];
        for (var i = 0; i < s.Length; i++) s[i] = alphabet[Random.Shared.Next(alphabet.Length)];
        return new string(s);
    }
}
