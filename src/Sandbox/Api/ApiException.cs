using System.Text.Json.Nodes;

namespace Hybrid.Sandbox.Api;

/// <summary>One invalid field, as in the API server's field.Error: reason (FieldValueInvalid, FieldValueRequired...),
/// the field path, and the message without the path.</summary>
internal sealed record FieldCause(string Reason, string Field, string Message);

/// <summary>A failed API request carrying the exact metav1.Status body the real API server sends.</summary>
internal sealed class ApiException(int code, JsonObject status) : Exception(status.Str("message"))
{
    public int Code { get; } = code;
    public JsonObject Status { get; } = status;
    public int? RetryAfterSeconds { get; init; }

    private static JsonObject Body(int code, string reason, string message, JsonObject? details)
    {
        var o = new JsonObject
        {
            ["kind"] = "Status",
            ["apiVersion"] = "v1",
            ["metadata"] = new JsonObject(),
            ["status"] = "Failure",
            ["message"] = message,
            ["reason"] = reason,
        };
        if (details is not null) o["details"] = details;
        o["code"] = code;
        return o;
    }

    private static JsonObject Details(ResourceType rt, string name)
    {
        var d = new JsonObject { ["name"] = name };
        if (rt.Group.Length > 0) d["group"] = rt.Group;
        d["kind"] = rt.Plural;
        return d;
    }

    public static ApiException NotFound(ResourceType rt, string name) =>
        new(404, Body(404, "NotFound", $"{rt.QualifiedPlural} \"{name}\" not found", Details(rt, name)));

    public static ApiException AlreadyExists(ResourceType rt, string name) =>
        new(409, Body(409, "AlreadyExists", $"{rt.QualifiedPlural} \"{name}\" already exists", Details(rt, name)));

    public static ApiException Conflict(ResourceType rt, string name, string why = "the object has been modified; please apply your changes to the latest version and try again") =>
        new(409, Body(409, "Conflict", $"Operation cannot be fulfilled on {rt.QualifiedPlural} \"{name}\": {why}", Details(rt, name)));

    public static ApiException Invalid(ResourceType rt, string name, IReadOnlyList<FieldCause> causes)
    {
        var parts = causes.Select(c => $"{c.Field}: {c.Message}").ToList();
        var summary = parts.Count == 1 ? parts[0] : "[" + string.Join(", ", parts) + "]";
        var details = new JsonObject { ["name"] = name };
        if (rt.Group.Length > 0) details["group"] = rt.Group;
        details["kind"] = rt.Kind;
        details["causes"] = new JsonArray(causes.Select(c => (JsonNode)new JsonObject
        {
            ["reason"] = c.Reason,
            ["message"] = c.Message,
            ["field"] = c.Field,
        }).ToArray());
        // GroupKind.String(): "Deployment.apps", "Service".
        var qualifiedKind = rt.Group.Length == 0 ? rt.Kind : rt.Kind + "." + rt.Group;
        return new(422, Body(422, "Invalid", $"{qualifiedKind} \"{name}\" is invalid: {summary}", details));
    }

    /// <summary>422 for bad request options (CreateOptions, PatchOptions...): "CreateOptions.meta.k8s.io \"\" is invalid: …".</summary>
    public static ApiException InvalidOptions(string optionsKind, IReadOnlyList<FieldCause> causes)
    {
        var parts = causes.Select(c => $"{c.Field}: {c.Message}").ToList();
        var summary = parts.Count == 1 ? parts[0] : "[" + string.Join(", ", parts) + "]";
        var details = new JsonObject
        {
            ["group"] = "meta.k8s.io",
            ["kind"] = optionsKind,
            ["causes"] = new JsonArray(causes.Select(c => (JsonNode)new JsonObject { ["reason"] = c.Reason, ["message"] = c.Message, ["field"] = c.Field }).ToArray()),
        };
        return new(422, Body(422, "Invalid", $"{optionsKind}.meta.k8s.io \"\" is invalid: {summary}", details));
    }

    public static ApiException BadRequest(string message) => new(400, Body(400, "BadRequest", message, null));

    public static ApiException UnsupportedMediaType(string message) => new(415, Body(415, "UnsupportedMediaType", message, null));

    public static ApiException MethodNotAllowed(string message = "the server does not allow this method on the requested resource") =>
        new(405, Body(405, "MethodNotAllowed", message, null));

    public static ApiException NotAcceptable(string message) => new(406, Body(406, "NotAcceptable", message, null));

    public static ApiException PathNotFound() =>
        new(404, Body(404, "NotFound", "the server could not find the requested resource", new JsonObject()));

    public static ApiException Gone(string message) => new(410, Body(410, "Expired", message, null));

    public static ApiException UnprocessablePatch(string message) => new(422, Body(422, "Invalid", message, null));

    public static ApiException NamespaceNotFound(string ns) =>
        new(404, Body(404, "NotFound", $"namespaces \"{ns}\" not found", new JsonObject { ["name"] = ns, ["kind"] = "namespaces" }));

    public static ApiException NamespaceTerminating(ResourceType rt, string name, string ns) =>
        new(403, Body(403, "Forbidden", $"{rt.QualifiedPlural} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated", Details(rt, name)));

    /// <summary>An injected fault (the lab's /_lab/faults): the reason the real server uses for that code.</summary>
    public static ApiException Injected(int code, string? message, int? retryAfter)
    {
        var (reason, text) = code switch
        {
            409 => ("Conflict", "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again (injected fault)"),
            429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later (injected fault)"),
            500 => ("InternalError", "Internal error occurred: injected fault"),
            503 => ("ServiceUnavailable", "the server is currently unable to handle the request (injected fault)"),
            504 => ("Timeout", "the server was unable to return a response in the time allotted (injected fault)"),
            404 => ("NotFound", "the server could not find the requested resource (injected fault)"),
            410 => ("Expired", "too old resource version (injected fault)"),
            403 => ("Forbidden", "forbidden (injected fault)"),
            _ => ("InternalError", $"injected fault with status {code}"),
        };
        var body = Body(code, reason, message ?? text, retryAfter is { } s ? new JsonObject { ["retryAfterSeconds"] = s } : null);
        return new ApiException(code, body) { RetryAfterSeconds = retryAfter };
    }

    public static JsonObject Success(ResourceType rt, string name, string uid)
    {
        var d = new JsonObject { ["name"] = name };
        if (rt.Group.Length > 0) d["group"] = rt.Group;
        d["kind"] = rt.Plural;
        d["uid"] = uid;
        return new JsonObject
        {
            ["kind"] = "Status",
            ["apiVersion"] = "v1",
            ["metadata"] = new JsonObject(),
            ["status"] = "Success",
            ["details"] = d,
        };
    }
}
