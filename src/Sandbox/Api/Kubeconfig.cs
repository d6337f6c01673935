namespace Hybrid.Sandbox.Api;

/// <summary>Writes a kubeconfig for a plain-http API server that ignores authentication (accepted by kubectl and KubernetesClient).</summary>
internal static class Kubeconfig
{
    public const string ContextName = "hybrid-emulator";

    /// <summary>A placeholder bearer token: the emulator ignores it, but KubernetesClient refuses a user without
    /// credentials.</summary>
    public const string Token = "hybrid-emulator-no-auth";

    public static string Render(Uri server, string defaultNamespace = "default")
    {
        var url = server.GetLeftPart(UriPartial.Authority);
        return $"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: {ContextName}
              cluster:
                server: {url}
            contexts:
            - name: {ContextName}
              context:
                cluster: {ContextName}
                user: {ContextName}
                namespace: {defaultNamespace}
            current-context: {ContextName}
            users:
            - name: {ContextName}
              user:
                token: {Token}
            preferences: {"{}"}

            """;
    }

    public static void Write(string path, Uri server)
    {
        var full = Path.GetFullPath(path);
        if (Path.GetDirectoryName(full) is { } dir) Directory.CreateDirectory(dir);
        var temp = full + ".tmp-" + Environment.ProcessId;
        File.WriteAllText(temp, Render(server));
        File.Move(temp, full, overwrite: true);
    }
}
