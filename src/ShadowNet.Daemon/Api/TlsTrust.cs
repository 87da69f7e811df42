using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ShadowNet.Daemon.Api;

/// <summary>
/// Certificate checks against the operator's own authorities rather than the machine's store: the daemon
/// checks callers against <c>grpc:tls:clientCa</c>, the CLI checks the daemon against <c>--tls-ca</c>.
/// </summary>
public static class TlsTrust
{
    private static readonly Oid ServerAuthentication = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuthentication = new("1.3.6.1.5.5.7.3.2");

    /// <summary>True when <paramref name="certificate"/> chains to one of <paramref name="authorities"/>, is in date, and may authenticate a client.</summary>
    public static bool IsClientOf(X509Certificate2 certificate, X509Certificate2Collection authorities) =>
        ChainsTo(certificate, authorities, ClientAuthentication);

    /// <summary>True when <paramref name="certificate"/> chains to one of <paramref name="authorities"/>, is in date, and may authenticate a server.</summary>
    public static bool IsServerOf(X509Certificate2 certificate, X509Certificate2Collection authorities) =>
        ChainsTo(certificate, authorities, ServerAuthentication);

    private static bool ChainsTo(X509Certificate2 certificate, X509Certificate2Collection authorities, Oid usage)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(authorities);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck; // the operator's own authority publishes no revocation list
        chain.ChainPolicy.ApplicationPolicy.Add(usage);
        return chain.Build(certificate);
    }
}
