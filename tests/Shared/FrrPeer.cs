using System.Diagnostics;
using System.Text.Json.Nodes;

namespace ShadowNet.Tests.Shared;

/// <summary>
/// A real FRR bgpd on loopback without zebra (no kernel routes), its config, pid file and vty socket in a
/// temporary directory, queried with <c>vtysh -d bgpd</c> and stopped by PID.
/// </summary>
internal sealed class FrrPeer : IAsyncDisposable
{
    private readonly TempDirectory _dir = new("frr");
    private readonly string _address;
    private readonly int _port;
    private Process? _process;

    public FrrPeer(string config, string address, int port)
    {
        (_address, _port) = (address, port);
        System.IO.File.WriteAllText(_dir.File("bgpd.conf"), config);
    }

    public string Log => System.IO.File.Exists(_dir.File("bgpd.log")) ? System.IO.File.ReadAllText(_dir.File("bgpd.log")) : "";

    public async Task StartAsync()
    {
        var bgpd = ExternalProcess.Which("/usr/lib/frr/bgpd");
        // -Z: no zebra, -n: no kernel, -S: no user switch, -P 0: no vty TCP port; the vty socket is in our folder.
        _process = Process.Start(new ProcessStartInfo(bgpd,
            $"-f {_dir.File("bgpd.conf")} -i {_dir.File("bgpd.pid")} -z {_dir.File("zserv.api")} --vty_socket {_dir.Path} " +
            $"-l {_address} -p {_port} -n -Z -S -P 0 --log file:{_dir.File("bgpd.log")}")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        }) ?? throw new InvalidOperationException("bgpd did not start");
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var waited = Stopwatch.StartNew();
        while (!System.IO.File.Exists(_dir.File("bgpd.vty")))
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"bgpd exited with {_process.ExitCode}:\n{Log}");
            if (waited.Elapsed > TimeSpan.FromSeconds(10))
                throw new TimeoutException("bgpd's vty socket did not appear");
            await Task.Delay(50);
        }
    }

    public async Task<JsonNode> ShowJsonAsync(string command)
    {
        var text = await ExternalProcess.RunAsync(ExternalProcess.Which("/usr/bin/vtysh"), $"--vty_socket {_dir.Path} -d bgpd -c \"{command} json\"");
        return JsonNode.Parse(text) ?? throw new InvalidDataException($"vtysh '{command}': no JSON");
    }

    /// <summary>Prefixes in the BGP table (what FRR would forward on) with their next hops.</summary>
    public async Task<Dictionary<string, string>> BestRoutesAsync()
    {
        var routes = (await ShowJsonAsync("show bgp ipv4 unicast"))["routes"]!.AsObject();
        return routes.ToDictionary(r => r.Key, r => (string)r.Value!.AsArray()[0]!["nexthops"]!.AsArray()[0]!["ip"]!);
    }

    /// <summary>Prefixes the neighbor sent, before the import policy (soft-reconfiguration inbound keeps them).</summary>
    public async Task<List<string>> ReceivedRoutesAsync(string neighbor) =>
        [.. (await ShowJsonAsync($"show bgp ipv4 unicast neighbors {neighbor} received-routes"))["receivedRoutes"]!.AsObject().Select(r => r.Key)];

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }

        _process?.Dispose();
        _dir.Dispose();
    }
}
