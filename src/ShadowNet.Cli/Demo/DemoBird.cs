using System.Diagnostics;
using System.Text.RegularExpressions;
using ShadowNet.Cli.Controller;

namespace ShadowNet.Cli.Demo;

/// <summary>
/// A throwaway BIRD 2 for <c>shadownet demo --with-bird</c>: passive on 127.0.0.2, config and control
/// socket in the demo's folder, stopped with the demo. It imports what ShadowNet announces and exports
/// nothing, so <c>birdc show route</c> shows the routes arriving at a real router.
/// </summary>
internal sealed partial class DemoBird : IAsyncDisposable
{
    public const string Address = "127.0.0.2";
    public const int RemoteAs = 65002;
    private readonly Process _process;

    private DemoBird(Process process, string controlSocket, int port) => (_process, ControlSocket, Port) = (process, controlSocket, port);

    public string ControlSocket { get; }

    public int Port { get; }

    public static async Task<DemoBird> StartAsync(string folder, int port, string shadowNetAddress, int shadowNetAs, CancellationToken cancellationToken)
    {
        var bird = new[] { "/usr/sbin/bird", "/usr/bin/bird" }.FirstOrDefault(File.Exists)
            ?? throw new UsageException("--with-bird: BIRD 2 is not installed (sudo apt-get install bird2)");
        var config = Path.Combine(folder, "bird.conf");
        var control = Path.Combine(folder, "bird.ctl");
        await File.WriteAllTextAsync(config, $$"""
            router id {{Address}};
            log "{{Path.Combine(folder, "bird.log")}}" all;
            protocol device {}
            protocol bgp shadownet {
              local {{Address}} port {{port}} as {{RemoteAs}};
              neighbor {{shadowNetAddress}} as {{shadowNetAs}};
              multihop; strict bind on; passive on;
              ipv4 { import all; export none; };
              ipv6 { import all; export none; };
            }
            """, cancellationToken);
        var process = Process.Start(new ProcessStartInfo(bird, ["-f", "-c", config, "-s", control, "-P", Path.Combine(folder, "bird.pid")])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        }) ?? throw new UsageException("--with-bird: bird did not start");
        var waited = Stopwatch.StartNew();
        while (!File.Exists(control))
        {
            if (process.HasExited)
            {
                throw new UsageException($"--with-bird: bird exited with {process.ExitCode}: {await process.StandardError.ReadToEndAsync(cancellationToken)}");
            }

            if (waited.Elapsed > TimeSpan.FromSeconds(10))
            {
                process.Kill();
                throw new UsageException("--with-bird: bird's control socket did not appear within 10 s");
            }

            await Task.Delay(50, cancellationToken);
        }

        return new DemoBird(process, control, port);
    }

    /// <summary>Routes BIRD holds (all tables), from <c>birdc show route count</c>; null when birdc fails.</summary>
    public async Task<int?> RouteCountAsync(CancellationToken cancellationToken)
    {
        var birdc = new[] { "/usr/sbin/birdc", "/usr/bin/birdc" }.FirstOrDefault(File.Exists) ?? "birdc";
        using var process = Process.Start(new ProcessStartInfo(birdc, ["-s", ControlSocket, "show", "route", "count"])
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        });
        if (process is null)
        {
            return null;
        }

        var output = await process.StandardOutput.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        // One line per table, then "Total: ..." when there are several: the last line counts them all.
        var matches = RouteCount().Matches(output);
        return matches.Count > 0 ? int.Parse(matches[^1].Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : null;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    // "120 of 120 routes for 120 networks in table master4", ..., "Total: 120 of 120 routes for 120 networks in 2 tables".
    [GeneratedRegex(@"(\d+) of \d+ routes for \d+ networks")]
    private static partial Regex RouteCount();
}
