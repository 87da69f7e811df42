using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;

namespace ShadowNet.Daemon.Tests;

/// <summary>A real Prometheus (Debian's <c>prometheus</c>) on loopback that scrapes one target every second.</summary>
internal sealed class PrometheusServer : IAsyncDisposable
{
    private readonly TempDirectory _folder = new("prometheus");
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(5) };
    private Process? _process;

    public PrometheusServer(string target)
    {
        Port = TestPorts.Next();
        File.WriteAllText(_folder.File("prometheus.yml"), $$"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: shadownetd
                static_configs:
                  - targets: ['{{target}}']
            """);
    }

    public int Port { get; }

    public void Start()
    {
        var binary = ExternalProcess.Which("/usr/bin/prometheus", "prometheus");
        _process = Process.Start(new ProcessStartInfo(binary,
            $"--config.file={_folder.File("prometheus.yml")} --storage.tsdb.path={_folder.File("data")} " +
            $"--web.listen-address=127.0.0.1:{Port} --log.level=warn")
        {
            UseShellExecute = false,
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        }) ?? throw new InvalidOperationException("prometheus did not start");
        _process.ErrorDataReceived += (_, _) => { };
        _process.OutputDataReceived += (_, _) => { };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
    }

    /// <summary>The value of a PromQL instant query that yields one sample; null while it yields none.</summary>
    public async Task<double?> QueryAsync(string promQl)
    {
        try
        {
            var url = $"http://127.0.0.1:{Port}/api/v1/query?query={Uri.EscapeDataString(promQl)}";
            using var document = await _http.GetFromJsonAsync<JsonDocument>(url);
            var result = document!.RootElement.GetProperty("data").GetProperty("result");
            return result.GetArrayLength() == 0
                ? null
                : double.Parse(result[0].GetProperty("value")[1].GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (HttpRequestException)
        {
            return null; // not listening yet
        }
    }

    /// <summary>Health of the scrape target as Prometheus sees it ("up", "down", "unknown").</summary>
    public async Task<string?> TargetHealthAsync()
    {
        try
        {
            using var document = await _http.GetFromJsonAsync<JsonDocument>($"http://127.0.0.1:{Port}/api/v1/targets");
            var active = document!.RootElement.GetProperty("data").GetProperty("activeTargets");
            return active.GetArrayLength() == 0 ? null : active[0].GetProperty("health").GetString();
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill(true);
            await _process.WaitForExitAsync();
        }

        _process?.Dispose();
        _http.Dispose();
        _folder.Dispose();
    }
}
