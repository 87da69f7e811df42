using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Net.Client;
using ShadowNet.Api.V1;
using static ShadowNet.Daemon.Tests.Shadownetd;

namespace ShadowNet.Daemon.Tests;

/// <summary>The gRPC API over TLS with client certificates (grpc:tls), against the real shadownetd.</summary>
[Collection("shadownetd")]
public class GrpcTlsTests
{
    [Fact]
    public async Task WithClientCertificatesRequiredOnlyCallersCertifiedByTheClientCaGetIn()
    {
        using var folder = new TempDirectory("daemon-tls");
        var authority = TestAuthority.Create("ShadowNet test CA");
        var server = authority.Issue("shadownetd", serverAuth: true, folder.File("server.crt"), folder.File("server.key"));
        var client = authority.Issue("hypervisor-1", serverAuth: false, folder.File("client.crt"), folder.File("client.key"));
        var stranger = TestAuthority.Create("Another CA").Issue("hypervisor-x", serverAuth: false, folder.File("stranger.crt"), folder.File("stranger.key"));
        await File.WriteAllTextAsync(folder.File("ca.crt"), authority.Certificate.ExportCertificatePem());

        var grpcPort = TestPorts.Next();
        var config = Config(folder.File("state.db"), TestPorts.Next(), FreeUdpPort());
        config["grpc"] = new JsonObject
        {
            ["listen"] = $"127.0.0.1:{grpcPort}",
            ["tls"] = new JsonObject { ["certificate"] = folder.File("server.crt"), ["key"] = folder.File("server.key"), ["clientCa"] = folder.File("ca.crt") },
        };
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        var address = $"https://127.0.0.1:{grpcPort}";

        using var daemon = Start(file);
        try
        {
            var status = await Eventually.WaitAsync(() => CallAsync(address, authority.Certificate, client), s => s is not null, Patience);
            Assert.NotNull(status);

            // No certificate, another CA's, and plain HTTP/2: refused before any call is served.
            Assert.Null(await CallAsync(address, authority.Certificate, clientCertificate: null));
            Assert.Null(await CallAsync(address, authority.Certificate, stranger));
            Assert.Null(await CallAsync($"http://127.0.0.1:{grpcPort}", authority.Certificate, client));

            // The CLI, with the same files.
            var cli = await CliTests.CliAsync("status", "--server", address, "--tls-ca", folder.File("ca.crt"), "--tls-cert", folder.File("client.crt"), "--tls-key", folder.File("client.key"));
            Assert.True(cli.Exit == 0, cli.Stderr);
            Assert.Contains("store state", cli.Stdout, StringComparison.Ordinal);
            var refused = await CliTests.CliAsync("status", "--server", address, "--tls-ca", folder.File("ca.crt"));
            Assert.Equal(1, refused.Exit);
            Assert.Contains("cannot reach shadownetd", refused.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task TlsSettingsThatCannotWorkStopStartupNamingTheKey()
    {
        using var folder = new TempDirectory("daemon-tls-config");
        var authority = TestAuthority.Create("ShadowNet test CA");
        authority.Issue("shadownetd", serverAuth: true, folder.File("server.crt"), folder.File("server.key"));
        authority.Issue("other", serverAuth: true, folder.File("other.crt"), folder.File("other.key"));
        await File.WriteAllTextAsync(folder.File("empty.pem"), "");

        const string Tcp = "127.0.0.1:50051";
        (string Listen, JsonObject Tls, string Message)[] cases =
        [
            (Tcp, new() { ["certificate"] = folder.File("missing.crt"), ["key"] = folder.File("server.key") }, "grpc:tls:certificate: cannot read"),
            (Tcp, new() { ["certificate"] = folder.File("server.crt") }, "grpc:tls:key: missing"),
            (Tcp, new() { ["certificate"] = folder.File("server.crt"), ["key"] = folder.File("other.key") }, "grpc:tls:certificate: "),
            (Tcp, new() { ["certificate"] = folder.File("server.crt"), ["key"] = folder.File("server.key"), ["clientCa"] = folder.File("empty.pem") }, "grpc:tls:clientCa: "),
            ($"unix:{folder.File("grpc.sock")}", new() { ["certificate"] = folder.File("server.crt"), ["key"] = folder.File("server.key") }, "grpc:tls: is for a TCP address"),
        ];
        foreach (var (listen, tls, message) in cases)
        {
            var config = Config(folder.File("state.db"), 1179, 4790);
            config["grpc"] = new JsonObject { ["listen"] = listen, ["tls"] = tls };
            var file = folder.File("shadownetd.json");
            await File.WriteAllTextAsync(file, config.ToJsonString());
            var (exit, stderr) = await RunToExitAsync(file);
            Assert.True(exit == 2, stderr);
            Assert.Contains(message, stderr, StringComparison.Ordinal);
        }
    }

    /// <summary>GetStatus over <paramref name="address"/>; null when the connection or the call is refused.</summary>
    private static async Task<GetStatusReply?> CallAsync(string address, X509Certificate2 trusted, X509Certificate2? clientCertificate)
    {
        var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, _) =>
            certificate is X509Certificate2 presented && ShadowNet.Daemon.Api.TlsTrust.IsServerOf(presented, [trusted]);
        if (clientCertificate is not null)
        {
            handler.SslOptions.ClientCertificates = [clientCertificate];
        }

        using var channel = GrpcChannel.ForAddress(address, new GrpcChannelOptions { HttpHandler = handler });
        try
        {
            return await new ShadowNet.Api.V1.Controller.ControllerClient(channel).GetStatusAsync(new GetStatusRequest(), deadline: DateTime.UtcNow.AddSeconds(5));
        }
        catch (RpcException)
        {
            return null;
        }
    }

    /// <summary>A throwaway certificate authority: what an operator's PKI would issue, made in memory.</summary>
    private sealed class TestAuthority
    {
        private readonly ECDsa _key;

        private TestAuthority(X509Certificate2 certificate, ECDsa key) => (Certificate, _key) = (certificate, key);

        public X509Certificate2 Certificate { get; }

        public static TestAuthority Create(string name)
        {
            var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
            return new TestAuthority(request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1)), key);
        }

        /// <summary>A certificate for 127.0.0.1, for a server or a client, written as PEM to the two files; returned with its key.</summary>
        public X509Certificate2 Issue(string name, bool serverAuth, string certificateFile, string keyFile)
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(serverAuth ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
            var names = new SubjectAlternativeNameBuilder();
            names.AddIpAddress(IPAddress.Loopback);
            request.CertificateExtensions.Add(names.Build());
            using var issued = request.Create(Certificate.SubjectName, X509SignatureGenerator.CreateForECDsa(_key),
                DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddHours(12), RandomNumberGenerator.GetBytes(8));
            File.WriteAllText(certificateFile, issued.ExportCertificatePem());
            File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
            return X509Certificate2.CreateFromPemFile(certificateFile, keyFile);
        }
    }
}
