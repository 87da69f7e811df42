using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ShadowNet.Daemon.Api;
using ShadowNet.Daemon.Configuration;

namespace ShadowNet.Daemon;

/// <summary>
/// Builds shadownetd's host from a checked configuration: the program's entry point uses it, and so does
/// <c>shadownet demo</c>, which runs the same daemon in-process.
/// </summary>
public static class DaemonHost
{
    /// <summary>
    /// The hosts' default configuration watches its content root (the working directory) for changes,
    /// subdirectories included: an inotify watch per directory, 1,364 of them when started from a source
    /// tree, and a walk of the whole disk when started from <c>/</c>. The daemon reads its configuration
    /// once, so nothing is watched.
    /// </summary>
    private static readonly string[] HostArguments = ["--hostBuilder:reloadConfigOnChange=false"];

    /// <param name="logging">Replaces the default console logging when given (the demo draws its own screen).</param>
    public static IHost Build(DaemonConfiguration configuration, IConfiguration settings, Action<ILoggingBuilder>? logging = null)
    {
        if (configuration.GrpcListen is { } grpc)
        {
            // The gRPC API needs Kestrel: HTTP/2, with TLS (and client certificates) if grpc:tls is set.
            var web = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = HostArguments });
            if (grpc.Tls is not null)
            {
                web.WebHost.UseKestrelHttpsConfiguration();
            }

            web.Configuration.AddConfiguration(settings);
            AddController(web.Services, configuration, settings);
            logging?.Invoke(web.Logging);
            web.Services.AddGrpc(o =>
            {
                o.MaxReceiveMessageSize = 1 << 20;
                o.Interceptors.Add<StoreFailureInterceptor>();
            });
            web.Services.AddGrpcHealthChecks().AddCheck<ControllerHealthCheck>("shadownetd");
            web.WebHost.ConfigureKestrel(kestrel =>
            {
                kestrel.Limits.MaxConcurrentConnections = 1024;
                void Http2(ListenOptions listen)
                {
                    listen.Protocols = HttpProtocols.Http2;
                    if (grpc.Tls is { } tls)
                    {
                        listen.UseHttps(new HttpsConnectionAdapterOptions
                        {
                            ServerCertificate = tls.Certificate,
                            ClientCertificateMode = tls.ClientAuthorities is null ? ClientCertificateMode.NoCertificate : ClientCertificateMode.RequireCertificate,
                            ClientCertificateValidation = tls.ClientAuthorities is { } authorities ? (certificate, _, _) => TlsTrust.IsClientOf(certificate, authorities) : null,
                        });
                    }
                }

                if (grpc.UnixSocket is { } socket)
                {
                    kestrel.ListenUnixSocket(socket, Http2);
                }
                else
                {
                    kestrel.Listen(grpc.EndPoint!, Http2);
                }
            });
            var app = web.Build();
            app.MapGrpcService<ControllerApi>();
            app.MapGrpcHealthChecksService();
            return app;
        }

        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = HostArguments });
        builder.Configuration.AddConfiguration(settings);
        AddController(builder.Services, configuration, settings);
        logging?.Invoke(builder.Logging);
        return builder.Build();
    }

    private static void AddController(IServiceCollection services, DaemonConfiguration configuration, IConfiguration settings)
    {
        services.AddSingleton(configuration);
        services.AddSingleton(new RunningSettings(settings));
        services.AddSingleton<ControllerService>();
        services.AddHostedService(sp => sp.GetRequiredService<ControllerService>());
        services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(15));
    }
}
