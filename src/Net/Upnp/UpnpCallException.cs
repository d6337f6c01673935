using Hybrid.Domain;

namespace Hybrid.Net;

/// <summary>A call to the gateway failed; <see cref="Failure"/> says how, for the domain to classify.</summary>
internal sealed class UpnpCallException(string action, CallFailure failure, Exception? inner = null)
    : Exception($"{action} failed: {Describe(failure)}", inner)
{
    public string Action { get; } = action;
    public CallFailure Failure { get; } = failure;

    /// <summary>The UPnP error code of a SOAP fault, else null.</summary>
    public int? UpnpErrorCode => Failure is CallFailure.SoapFault fault ? fault.code : null;

    private static string Describe(CallFailure failure) => failure switch
    {
        CallFailure.SoapFault f => $"UPnP error {f.code} {f.description}",
        CallFailure.HttpStatus s => $"HTTP status {s.status}",
        CallFailure.Unreachable u => $"no answer: {u.detail}",
        CallFailure.Malformed m => $"unreadable answer: {m.detail}",
        _ => failure.ToString() ?? "",
    };
}
