using System.Diagnostics;
using System.Text.Json;

namespace ShadowNet.Tests.Shared;

/// <summary>
/// A real gobgpd on loopback: its own TOML, its gRPC API on a loopback port (never on all
/// interfaces), read back with the <c>gobgp</c> client. Stopped by PID.
/// </summary>
internal sealed class GobgpPeer : IAsyncDisposable
{
    private readonly TempDirectory _dir = new("gobgp");
    private Process? _process;

    /// <param name="neighbor">The TOML of the [[neighbors]] table(s).</param>
    public GobgpPeer(uint asn, string routerId, int bgpPort, string neighbor)
        : this($$"""
            [global.config]
              as = {{asn}}
              router-id = "{{routerId}}"
              port = {{bgpPort}}
              local-address-list = ["{{routerId}}"]

            {{neighbor}}
            """)
    {
    }

    /// <param name="toml">A whole gobgpd configuration.</param>
    public GobgpPeer(string toml)
    {
        ApiPort = TestPorts.Next();
        System.IO.File.WriteAllText(_dir.File("gobgpd.toml"), toml);
    }

    public int ApiPort { get; }
    public string Output { get; private set; } = "";
    private readonly System.Text.StringBuilder _log = new();

    public async Task StartAsync()
    {
        var gobgpd = ExternalProcess.Which("gobgpd", "/usr/bin/gobgpd", "/usr/sbin/gobgpd");
        _process = Process.Start(new ProcessStartInfo(gobgpd, $"-f {_dir.File("gobgpd.toml")} --api-hosts 127.0.0.1:{ApiPort} --pprof-disable")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        }) ?? throw new InvalidOperationException("gobgpd did not start");
        _process.OutputDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { lock (_log) _log.AppendLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var text = await GobgpAsync("global");
            if (text.Contains("AS:", StringComparison.Ordinal))
                return;
            if (_process.HasExited || sw.Elapsed > TimeSpan.FromSeconds(15))
                throw new InvalidOperationException($"gobgpd did not come up: {text}\n{Log}");
            await Task.Delay(100);
        }
    }

    public string Log
    {
        get
        {
            lock (_log)
                return _log.ToString();
        }
    }

    public Task<string> GobgpAsync(string arguments) =>
        ExternalProcess.RunAsync(ExternalProcess.Which("gobgp", "/usr/bin/gobgp"), $"-u 127.0.0.1 -p {ApiPort} {arguments}");

    public async Task<string> NeighborStateAsync(string address)
    {
        var json = await GobgpAsync($"neighbor {address} -j");
        try
        {
            using var doc = JsonDocument.Parse(json);
            return doc.RootElement.GetProperty("state").GetProperty("session_state").ToString();
        }
        catch (JsonException)
        {
            return json;
        }
        catch (KeyNotFoundException)
        {
            return json;
        }
    }

    public async Task<bool> IsEstablishedAsync(string address)
    {
        var s = await NeighborStateAsync(address);
        return s.Equals("6", StringComparison.Ordinal) || s.Contains("established", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Number of destinations in the global RIB of one family.</summary>
    public async Task<int> RouteCountAsync(string family)
    {
        var text = await GobgpAsync($"global rib summary -a {family}");
        foreach (var line in text.Split('\n'))
        {
            var i = line.IndexOf("Destination:", StringComparison.Ordinal);
            if (i >= 0 && int.TryParse(line[(i + 12)..].Split(',')[0].Trim(), out var n))
                return n;
        }
        return 0;
    }

    /// <summary>Prefixes a neighbor sent, before the import policy (<c>gobgp neighbor ADDR adj-in -j</c>).</summary>
    public async Task<List<string>> AdjInAsync(string neighbor, string family)
    {
        using var doc = JsonDocument.Parse(await GobgpAsync($"neighbor {neighbor} adj-in -a {family} -j"));
        return [.. doc.RootElement.EnumerateObject().Select(p => p.Name)];
    }

    /// <summary>The global RIB as prefix -> path attributes (JSON), from <c>gobgp global rib -j</c>.</summary>
    public async Task<Dictionary<string, JsonElement>> RoutesAsync(string family)
    {
        var json = await GobgpAsync($"global rib -a {family} -j");
        var result = new Dictionary<string, JsonElement>();
        using var doc = JsonDocument.Parse(json);
        foreach (var dest in doc.RootElement.EnumerateObject())
        {
            var path = dest.Value[0];
            result[dest.Name] = path.GetProperty("attrs").Clone();
        }
        return result;
    }

    public async Task KillAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process?.Dispose();
        _dir.Dispose();
    }
}
