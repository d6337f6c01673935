namespace Hybrid.Integration;

/// <summary>Manifests quoted verbatim from the seed document, shared by the tests that apply them.</summary>
internal static class SeedManifests
{
    /// <summary>The seed's Local service; it asks for no address (kube-vip's cloud provider would assign one).</summary>
    public const string NginxService = """
        apiVersion: v1
        kind: Service
        metadata:
          name: nginx-service
        spec:
          selector:
            app: nginx
          ports:
            - port: 80
              targetPort: 80
          externalTrafficPolicy: Local
          type: LoadBalancer
        """;
}
