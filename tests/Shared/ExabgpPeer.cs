using System.Diagnostics;
using System.Text;

namespace ShadowNet.Tests.Shared;

/// <summary>
/// A real ExaBGP 4 on loopback that connects to us and announces what its configuration says (static
/// routes, raw attributes included); its log is its standard output (see ../shared/PEERS.md).
/// </summary>
internal sealed class ExabgpPeer : IAsyncDisposable
{
    private readonly TempDirectory _dir = new("exabgp");
    private readonly StringBuilder _output = new();
    private Process? _process;

    public ExabgpPeer(string config) => System.IO.File.WriteAllText(_dir.File("exabgp.conf"), config);

    public string Log
    {
        get
        {
            lock (_output)
                return _output.ToString();
        }
    }

    public void Start()
    {
        var start = new ProcessStartInfo(ExternalProcess.Which("/usr/sbin/exabgp", "exabgp"), _dir.File("exabgp.conf"))
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["exabgp.tcp.bind"] = "";            // no listener: it connects to us
        start.Environment["exabgp.daemon.drop"] = "false";    // as root it would drop to nobody
        start.Environment["exabgp.daemon.daemonize"] = "false";
        start.Environment["exabgp.log.destination"] = "stdout";
        start.Environment["exabgp.log.all"] = "true";
        start.Environment["exabgp.log.level"] = "DEBUG";
        start.Environment["exabgp.log.message"] = "true";
        start.Environment["exabgp.api.ack"] = "false";
        start.Environment["exabgp.cache.attributes"] = "false";
        _process = Process.Start(start) ?? throw new InvalidOperationException("exabgp did not start");
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    private void Append(string? line)
    {
        if (line is null)
            return;
        lock (_output)
            _output.AppendLine(line);
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill(true);
            await _process.WaitForExitAsync();
        }
        _process?.Dispose();
        _dir.Dispose();
    }
}
