using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using ShadowNet.Controller.State;
using ShadowNet.Daemon;
using ShadowNet.Daemon.Configuration;

// shadownetd --config FILE [key=value ...]; SHADOWNET_bgp__localAs=... and the like override the file.
var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = args, DisableDefaults = false });
var file = builder.Configuration["config"] ?? "/etc/shadownet/shadownetd.json";
builder.Configuration.Sources.Clear();
DaemonConfiguration configuration;
try
{
    builder.Configuration
        .AddJsonFile(Path.GetFullPath(file), optional: false, reloadOnChange: false)
        .AddEnvironmentVariables("SHADOWNET_")
        .AddCommandLine(args);
    configuration = DaemonConfiguration.Read(builder.Configuration);
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

builder.Services.AddSingleton(configuration);
builder.Services.AddHostedService<ControllerService>();
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(15));
try
{
    await builder.Build().RunAsync();
    return 0;
}
catch (StateStoreException e)
{
    Console.Error.WriteLine($"shadownetd: {e.Message}");
    return 3;
}
