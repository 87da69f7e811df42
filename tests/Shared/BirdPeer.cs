using System.Diagnostics;
using System.Text.RegularExpressions;

namespace ShadowNet.Tests.Shared;

/// <summary>
/// A real BIRD 2 daemon on loopback with its own config, control socket and pid file in a
/// temporary directory, stopped by PID (see ../shared/PEERS.md).
/// </summary>
internal sealed partial class BirdPeer : IAsyncDisposable
{
    private readonly TempDirectory _dir = new("bird");
    private Process? _process;

    public BirdPeer(string protocolBody, string routerId = "127.0.0.2", string extraConfig = "")
    {
        Config = $$"""
            router id {{routerId}};
            log "{{_dir.File("bird.log")}}" all;
            protocol device {}
            {{extraConfig}}
            protocol bgp sn {
            {{protocolBody}}
            }
            """;
        System.IO.File.WriteAllText(_dir.File("bird.conf"), Config);
    }

    private BirdPeer(string config)
    {
        Config = $"log \"{_dir.File("bird.log")}\" all;\n{config}";
        System.IO.File.WriteAllText(_dir.File("bird.conf"), Config);
    }

    /// <summary>BIRD with a whole configuration of the caller's (a log file is added).</summary>
    public static BirdPeer WithConfig(string config) => new(config);

    public string Config { get; }
    public string ControlSocket => _dir.File("bird.ctl");
    public string Log => System.IO.File.Exists(_dir.File("bird.log")) ? System.IO.File.ReadAllText(_dir.File("bird.log")) : "";

    public async Task StartAsync()
    {
        var bird = ExternalProcess.Which("/usr/sbin/bird", "bird");
        _process = Process.Start(new ProcessStartInfo(bird, $"-f -c {_dir.File("bird.conf")} -s {ControlSocket} -P {_dir.File("bird.pid")}")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        }) ?? throw new InvalidOperationException("bird did not start");
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var sw = Stopwatch.StartNew();
        while (!System.IO.File.Exists(ControlSocket))
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"bird exited with {_process.ExitCode}:\n{Log}");
            if (sw.Elapsed > TimeSpan.FromSeconds(10))
                throw new TimeoutException("bird control socket did not appear");
            await Task.Delay(50);
        }
    }

    public Task<string> BirdcAsync(string command) => ExternalProcess.RunAsync(ExternalProcess.Which("/usr/sbin/birdc", "birdc"), $"-s {ControlSocket} {command}");

    /// <summary>Imported route count of one table, from <c>show route count</c>.</summary>
    public async Task<int> RouteCountAsync(string table)
    {
        var text = await BirdcAsync($"show route table {table} count");
        var m = CountRegex().Match(text);
        return m.Success ? int.Parse(m.Groups[1].Value) : 0;
    }

    public async Task<string> ProtocolStateAsync()
    {
        var text = await BirdcAsync("show protocols sn");
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("sn ", StringComparison.Ordinal))
                return line;
        }
        return text;
    }

    public async Task<bool> IsEstablishedAsync() => (await ProtocolStateAsync()).Contains("Established", StringComparison.Ordinal);

    /// <summary>
    /// Parses <c>show route all</c> for a table into prefix -> (next hop, communities, large communities);
    /// <paramref name="filtered"/>: the routes the import filter rejected (kept with <c>import keep filtered</c>).
    /// </summary>
    public async Task<Dictionary<string, BirdRoute>> RoutesAsync(string table, bool filtered = false)
    {
        var text = await BirdcAsync($"show route table {table}{(filtered ? " filtered" : "")} all");
        var routes = new Dictionary<string, BirdRoute>();
        string? prefix = null;
        var current = new BirdRoute();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.TrimEnd();
            var head = RouteHeadRegex().Match(line);
            if (head.Success)
            {
                if (prefix is not null)
                    routes[prefix] = current;
                prefix = head.Groups[1].Value;
                current = new BirdRoute();
                continue;
            }
            var t = line.Trim();
            if (t.StartsWith("BGP.next_hop:", StringComparison.Ordinal))
                current = current with { NextHop = t["BGP.next_hop:".Length..].Trim() };
            else if (t.StartsWith("BGP.community:", StringComparison.Ordinal))
                current = current with { Communities = t["BGP.community:".Length..].Trim() };
            else if (t.StartsWith("BGP.large_community:", StringComparison.Ordinal))
                current = current with { LargeCommunities = t["BGP.large_community:".Length..].Trim() };
            else if (t.StartsWith("BGP.as_path:", StringComparison.Ordinal))
                current = current with { AsPath = t["BGP.as_path:".Length..].Trim() };
        }
        if (prefix is not null)
            routes[prefix] = current;
        return routes;
    }

    /// <summary>Kills BIRD by PID (no NOTIFICATION: like a crash or a reboot).</summary>
    public async Task KillAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        try
        {
            System.IO.File.Delete(ControlSocket);
        }
        catch (IOException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process?.Dispose();
        _dir.Dispose();
    }

    [GeneratedRegex(@"(\d+) of \d+ routes")]
    private static partial Regex CountRegex();

    [GeneratedRegex(@"^([0-9a-fA-F:.]+/\d+)\s")]
    private static partial Regex RouteHeadRegex();
}

internal sealed record BirdRoute(string NextHop = "", string Communities = "", string LargeCommunities = "", string AsPath = "");
