using System.Collections.Concurrent;
using System.Reflection;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using k8s.Models;

namespace Hybrid.Sandbox.Api;

/// <summary>
/// The fields each kind has, taken from the client library's generated models (which mirror the API's Go
/// types). kube-apiserver decodes a body into those Go types: fields it does not know are reported
/// (fieldValidation=Strict: 400 "strict decoding error: unknown field …"; Warn, the default: a Warning
/// header) and never stored. This class finds them, with the server's paths (spec.containers[0].limits),
/// and removes them.
/// </summary>
internal static class KnownFields
{
    private static readonly ConcurrentDictionary<Type, IReadOnlyDictionary<string, Type>?> Properties = new();

    private static readonly Dictionary<(string Group, string Version, string Kind), Type> Models =
        typeof(V1Service).Assembly.GetTypes()
            .Select(t => (Type: t, Entity: t.GetCustomAttribute<KubernetesEntityAttribute>()))
            .Where(x => x.Entity is not null && !x.Type.Name.EndsWith("List", StringComparison.Ordinal))
            .GroupBy(x => (x.Entity!.Group ?? "", x.Entity.ApiVersion ?? "", x.Entity.Kind ?? ""))
            .ToDictionary(g => g.Key, g => g.First().Type);

    /// <summary>The model of a resource as the request addresses it (events.k8s.io/v1 and core/v1 Events differ).</summary>
    public static Type? ModelOf(ResourceType rt) => Models.GetValueOrDefault((rt.Group, rt.Version, rt.Kind));

    /// <summary>Removes the fields the kind does not have from <paramref name="body"/> and returns their paths.</summary>
    public static List<string> Prune(ResourceType rt, JsonObject body)
    {
        var unknown = new List<string>();
        if (ModelOf(rt) is { } model) Walk(body, model, "", unknown);
        return unknown;
    }

    private static void Walk(JsonNode? node, Type type, string path, List<string> unknown)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (node is null || IsLeaf(type)) return;
        if (Dictionary(type) is { } valueType)
        {
            if (node is JsonObject map)
                foreach (var (key, value) in map) Walk(value, valueType, path + "." + key, unknown);
            return;
        }
        if (Element(type) is { } elementType)
        {
            if (node is JsonArray list)
                for (var i = 0; i < list.Count; i++) Walk(list[i], elementType, $"{path}[{i}]", unknown);
            return;
        }
        if (node is not JsonObject obj || PropertiesOf(type) is not { } properties) return;
        foreach (var key in obj.Select(kv => kv.Key).ToList())
        {
            var child = path.Length == 0 ? key : path + "." + key;
            if (properties.TryGetValue(key, out var propertyType)) Walk(obj[key], propertyType, child, unknown);
            else
            {
                unknown.Add(child);
                obj.Remove(key);
            }
        }
    }

    private static bool IsLeaf(Type t) =>
        t.IsPrimitive || t.IsEnum || t == typeof(string) || t == typeof(decimal) || t == typeof(DateTime) || t == typeof(DateTimeOffset)
        || t == typeof(byte[]) || t == typeof(object) || t == typeof(IntOrString) || t == typeof(ResourceQuantity)
        || t.Namespace?.StartsWith("System.Text.Json", StringComparison.Ordinal) == true;

    private static Type? Dictionary(Type t)
    {
        var map = t.IsGenericType && t.GetGenericTypeDefinition() == typeof(IDictionary<,>) ? t
            : t.GetInterfaces().FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IDictionary<,>));
        return map?.GetGenericArguments()[1];
    }

    private static Type? Element(Type t)
    {
        if (t.IsArray) return t.GetElementType();
        var list = t.IsGenericType && t.GetGenericTypeDefinition() == typeof(IList<>) ? t
            : t.GetInterfaces().FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IList<>));
        return list?.GetGenericArguments()[0];
    }

    private static IReadOnlyDictionary<string, Type>? PropertiesOf(Type t) => Properties.GetOrAdd(t, static type =>
    {
        var properties = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Select(p => (Name: p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name, p.PropertyType))
            .Where(p => p.Name is not null)
            .ToDictionary(p => p.Name!, p => p.PropertyType, StringComparer.Ordinal);
        return properties.Count == 0 ? null : properties;
    });
}
