using System.Runtime.InteropServices;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using ShadowNet.Controller.State;
using ShadowNet.Daemon;
using ShadowNet.Daemon.Configuration;

// shadownetd --config FILE [key=value ...]; SHADOWNET_bgp__localAs=... and the like override the file.
// --check reads and checks the configuration, says what it describes, and exits (0 valid, 2 not): for
// an operator to run before a reload or a restart.
var check = args.Contains("--check");
args = [.. args.Where(a => a != "--check")];
var file = new ConfigurationBuilder().AddCommandLine(args).Build()["config"] ?? "/etc/shadownet/shadownetd.json";
IConfigurationRoot settings;
DaemonConfiguration configuration;
try
{
    (settings, configuration) = Load();
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

if (check)
{
    Console.WriteLine($"shadownetd: {file} is valid: {Describe(configuration)}");
    return 0;
}

var host = DaemonHost.Build(configuration, settings);

// A file-size limit (RLIMIT_FSIZE, systemd's LimitFSIZE=) reached by the store would kill the daemon with
// SIGXFSZ and take every route down with it; with the signal handled, the write fails instead, and the
// store's failure is reported and served around like any other (shadownet.store.failed).
using var fileSizeLimit = OperatingSystem.IsLinux() ? PosixSignalRegistration.Create((PosixSignal)25, signal => signal.Cancel = true) : null;

// SIGHUP (systemctl reload) reads the configuration again and takes its hook keys, BGP peers, added
// pool prefixes and new pools (a key rotation, a new router, a pool running out) without a restart; by
// default the signal would end the process.
using var reload = OperatingSystem.IsWindows() ? null : PosixSignalRegistration.Create(PosixSignal.SIGHUP, signal =>
{
    signal.Cancel = true;
    _ = host.Services.GetRequiredService<ControllerService>().ReloadAsync(file, () => Load());
});

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

static string Describe(DaemonConfiguration c) =>
    $"AS {c.Bgp.LocalAs}, {c.Peers.Count} BGP peer(s) ({string.Join(", ", c.Peers.Select(p => p.DisplayName + (p.ShutdownMessage is null ? "" : " held down")))}), "
    + $"{c.Pools.Count} pool(s) ({string.Join(", ", c.Pools.Select(p => $"{p.Name} {p.Kind.ToString().ToLowerInvariant()} {string.Join(" ", p.Prefixes)}"))}), "
    + $"store {c.StorePath}, UDP hooks {c.UdpHooks?.Listen.ToString() ?? "off"}, "
    + $"gRPC {c.GrpcListen?.EndPoint?.ToString() ?? (c.GrpcListen?.UnixSocket is { } socket ? $"unix:{socket}" : "off")}, metrics {c.MetricsListen?.ToString() ?? "off"}";

(IConfigurationRoot Settings, DaemonConfiguration Configuration) Load()
{
    var merged = new ConfigurationBuilder()
        .AddJsonFile(Path.GetFullPath(file), optional: false, reloadOnChange: false)
        .AddEnvironmentVariables("SHADOWNET_")
        .AddCommandLine(args)
        .Build();
    return (merged, DaemonConfiguration.Read(merged));
}
