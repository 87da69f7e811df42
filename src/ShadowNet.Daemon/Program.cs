using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using ShadowNet.Controller.State;
using ShadowNet.Daemon;
using ShadowNet.Daemon.Api;
using ShadowNet.Daemon.Configuration;

// shadownetd --config FILE [key=value ...]; SHADOWNET_bgp__localAs=... and the like override the file.
var file = new ConfigurationBuilder().AddCommandLine(args).Build()["config"] ?? "/etc/shadownet/shadownetd.json";
IConfigurationRoot settings;
DaemonConfiguration configuration;
try
{
    settings = new ConfigurationBuilder()
        .AddJsonFile(Path.GetFullPath(file), optional: false, reloadOnChange: false)
        .AddEnvironmentVariables("SHADOWNET_")
        .AddCommandLine(args)
        .Build();
    configuration = DaemonConfiguration.Read(settings);
}
catch (ConfigurationException e)
{
    Console.Error.WriteLine($"shadownetd: configuration error in {file}: {e.Message}");
    return 2;
}
catch (Exception e) when (e is FileNotFoundException or InvalidDataException or FormatException)
{
    Console.Error.WriteLine($"shadownetd: cannot read configuration file {file}: {e.Message}");
    return 2;
}

IHost host;
if (configuration.GrpcListen is { } grpc)
{
    // The gRPC API needs Kestrel (HTTP/2 without TLS: loopback or a Unix socket; see the README).
    var web = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
    web.Configuration.AddConfiguration(settings);
    AddController(web.Services);
    web.Services.AddGrpc(o => o.MaxReceiveMessageSize = 1 << 20);
    web.WebHost.ConfigureKestrel(kestrel =>
    {
        kestrel.Limits.MaxConcurrentConnections = 1024;
        if (grpc.UnixSocket is { } socket)
        {
            kestrel.ListenUnixSocket(socket, o => o.Protocols = HttpProtocols.Http2);
        }
        else
        {
            kestrel.Listen(grpc.EndPoint!, o => o.Protocols = HttpProtocols.Http2);
        }
    });
    var app = web.Build();
    app.MapGrpcService<ControllerApi>();
    host = app;
}
else
{
    var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = [] });
    builder.Configuration.AddConfiguration(settings);
    AddController(builder.Services);
    host = builder.Build();
}

try
{
    await host.RunAsync();
    return 0;
}
catch (StateStoreException e)
{
    Console.Error.WriteLine($"shadownetd: {e.Message}");
    return 3;
}
catch (IOException e)
{
    // Kestrel could not bind the gRPC address.
    Console.Error.WriteLine($"shadownetd: grpc:listen: {e.Message}");
    return 4;
}

void AddController(IServiceCollection services)
{
    services.AddSingleton(configuration);
    services.AddSingleton<ControllerService>();
    services.AddHostedService(sp => sp.GetRequiredService<ControllerService>());
    services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(15));
}
