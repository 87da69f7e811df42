using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Cli.Controller;
using ShadowNet.Cli.Replay;
using ShadowNet.Daemon;
using ShadowNet.Daemon.Configuration;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Cli.Demo;

internal sealed record DemoOptions(
    IReadOnlyList<FileInfo> Traces, int Steps, double StepsPerSecond, int PeakInstances, double Confidence, bool WithBird, string ModelPath);

/// <summary>What the dashboard draws after each step.</summary>
internal sealed record DemoView(
    DateTimeOffset TraceTime, int Step, int Steps, bool WarmingUp, IReadOnlyList<ApplicationView> Applications,
    IReadOnlyList<PoolUsage> Pools, int RoutesAnnounced, IReadOnlyList<PeerView> Peers, int? BirdRoutes,
    long Events, long Errors, IReadOnlyList<string> Problems, IReadOnlyList<string> TryCommands);

internal sealed record ApplicationView(
    string Application, string Trace, string Forecaster, int Active, int Expected, int Reserved,
    IReadOnlyList<(double Quantile, int Instances)> Quantiles, long Creates, long Hits, long Misses,
    IReadOnlyList<int> RecentActive, IReadOnlyList<int> RecentExpected);

internal sealed record PeerView(string Peer, string State, long PrefixesSent);

/// <summary>The demo's result; counts cover the shown steps, not the warm-up.</summary>
internal sealed record DemoSummary(
    int Steps, long Events, long Creates, long Hits, long Misses, double HitRate, long Deletes, long Errors,
    int LiveInstances, int RoutesAnnounced, int? BirdRoutes, double MeanReservedUnused, double MeanActive,
    IReadOnlyList<string> Forecasters, IReadOnlyList<string> Problems);

/// <summary>
/// <c>shadownet demo</c> without the screen: shadownetd in-process on a default configuration (SQLite in
/// a temporary folder, loopback listeners, the bundled model), and a hypervisor played from real load
/// traces. Each 5-minute step of a trace becomes the application's instance count (the replay contract);
/// the demo sends the creates and deletes through the real UDP hook, reports the step's metrics to the
/// daemon and runs one forecast step, which stages the reservations for the next steps. The first
/// model-window of steps warms the history up and is not counted.
/// </summary>
internal sealed class DemoRun : IAsyncDisposable
{
    private const int LocalAs = 65003;
    private const string LocalAddress = "127.0.0.3";
    private const int RecentSteps = 24;
    private static readonly Address[] Hypervisors = [.. Enumerable.Range(11, 4).Select(i => Address.Parse($"192.0.2.{i}"))];

    private readonly DemoOptions _options;
    private readonly string _folder;
    private readonly DemoLog _log = new();
    private readonly List<DemoApplication> _applications;
    private readonly List<string> _problems = [];
    private readonly int _warmUp;
    private IHost? _host;
    private ControllerService? _controller;
    private HookClient? _client;
    private DemoBird? _bird;
    private string[] _tryCommands = [];
    private long _errors;
    private double _reservedSum;
    private double _activeSum;
    private int _counted;

    private DemoRun(DemoOptions options, string folder, List<DemoApplication> applications, int warmUp)
    {
        (_options, _folder, _applications, _warmUp) = (options, folder, applications, warmUp);
    }

    public int TotalSteps => _warmUp + _options.Steps;

    /// <summary>Reads the traces and starts BIRD (when asked) and the daemon.</summary>
    public static async Task<DemoRun> StartAsync(DemoOptions options, int warmUpSteps, CancellationToken cancellationToken)
    {
        var applications = new List<DemoApplication>();
        foreach (var file in options.Traces)
        {
            var trace = LoadTrace.Read(file);
            var total = warmUpSteps + options.Steps;
            if (trace.Load.Length < total)
            {
                throw new UsageException($"{file.Name}: {trace.Load.Length} steps; the demo needs {total} (--steps {options.Steps} plus {warmUpSteps} of warm-up)");
            }

            // Start so that the shown part is the trace's last 30% where possible: the model did not train on it.
            var start = Math.Min((int)(trace.Load.Length * 0.7) - warmUpSteps, trace.Load.Length - total);
            var name = Path.GetFileNameWithoutExtension(file.Name);
            applications.Add(new DemoApplication(DemoApplication.NameFor(name, applications.Count), trace, trace.Instances(options.PeakInstances), Math.Max(0, start), options.PeakInstances));
        }

        var run = new DemoRun(options, Directory.CreateTempSubdirectory("shadownet-demo-").FullName, applications, warmUpSteps);
        try
        {
            await run.StartDaemonAsync(cancellationToken);
            return run;
        }
        catch
        {
            await run.DisposeAsync();
            throw;
        }
    }

    private async Task StartDaemonAsync(CancellationToken cancellationToken)
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var udpPort = FreePort(SocketType.Dgram, ProtocolType.Udp);
        var metricsPort = FreePort(SocketType.Stream, ProtocolType.Tcp);
        var grpcSocket = Path.Combine(_folder, "grpc.sock");
        var settings = new Dictionary<string, string?>
        {
            ["store:path"] = Path.Combine(_folder, "state.db"),
            ["store:sync"] = "full",
            ["bgp:localAs"] = LocalAs.ToString(CultureInfo.InvariantCulture),
            ["bgp:routerId"] = LocalAddress,
            ["pools:0:name"] = "shadow-v4",
            ["pools:0:kind"] = "shadow",
            ["pools:0:prefixes:0"] = "10.64.0.0/16",
            ["pools:0:reuseDelay"] = "00:00:00",
            ["pools:0:staging"] = "held",
            ["pools:1:name"] = "dynamic-v4",
            ["pools:1:kind"] = "dynamic",
            ["pools:1:prefixes:0"] = "10.65.0.0/16",
            ["pools:1:reuseDelay"] = "00:00:00",
            ["routes:defaultNextHopV4"] = "192.0.2.3",
            ["hooks:udp:listen"] = $"127.0.0.1:{udpPort}",
            ["hooks:udp:keys:1"] = Convert.ToHexString(key),
            ["grpc:listen"] = $"unix:{grpcSocket}",
            ["metrics:listen"] = $"127.0.0.1:{metricsPort}",
            ["prediction:model"] = _options.ModelPath,
            ["prediction:fallback"] = "ewma",
            ["prediction:confidence"] = _options.Confidence.ToString(CultureInfo.InvariantCulture),
            ["events:missLog"] = Path.Combine(_folder, "misses.jsonl"),
        };
        var commands = new List<string>
        {
            $"dotnet run --project src/ShadowNet.Cli -- pools --server unix:{grpcSocket}",
            $"curl -s http://127.0.0.1:{metricsPort}/metrics | grep shadownet_hook",
        };
        // The router: BIRD when asked (it listens, ShadowNet connects); else ShadowNet waits on a loopback
        // port for whatever router an operator points at it.
        var bgpPort = FreePort(SocketType.Stream, ProtocolType.Tcp);
        settings["bgp:peers:0:address"] = DemoBird.Address;
        settings["bgp:peers:0:remoteAs"] = DemoBird.RemoteAs.ToString(CultureInfo.InvariantCulture);
        settings["bgp:peers:0:localAddress"] = LocalAddress;
        settings["bgp:peers:0:families:0"] = "ipv4";
        if (_options.WithBird)
        {
            _bird = await DemoBird.StartAsync(_folder, bgpPort, LocalAddress, LocalAs, cancellationToken);
            settings["bgp:peers:0:name"] = "bird";
            settings["bgp:peers:0:port"] = bgpPort.ToString(CultureInfo.InvariantCulture);
            commands.Insert(0, $"birdc -s {_bird.ControlSocket} show route");
        }
        else
        {
            settings["bgp:peers:0:name"] = "router";
            settings["bgp:peers:0:passive"] = "true";
            settings["bgp:listen:0"] = $"{LocalAddress}:{bgpPort}";
            commands.Add($"a router at {DemoBird.Address} (AS {DemoBird.RemoteAs}) may peer with {LocalAddress}:{bgpPort} (AS {LocalAs}); or rerun with --with-bird");
        }

        _tryCommands = [.. commands];
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var daemon = DaemonConfiguration.Read(configuration);
        daemon = daemon with { Prediction = daemon.Prediction! with { StepsOnTimer = false } };
        _host = DaemonHost.Build(daemon, configuration, logging =>
        {
            logging.ClearProviders();
            logging.AddProvider(_log);
        });
        await _host.StartAsync(cancellationToken);
        _controller = _host.Services.GetRequiredService<ControllerService>();
        _client = new HookClient(new IPEndPoint(IPAddress.Loopback, udpPort), 1, key, firstSequence: 0);
    }

    /// <summary>One trace step: events, metrics, forecast. Returns false once every step has run.</summary>
    public async Task<bool> StepAsync(int step, CancellationToken cancellationToken)
    {
        if (step >= TotalSteps)
        {
            return false;
        }

        var counted = step >= _warmUp;
        var controller = _controller!;
        foreach (var application in _applications)
        {
            var target = application.InstancesAt(step);
            while (application.Live.Count < target)
            {
                var instance = application.NextInstance();
                var outcome = await SendAsync(() => _client!.CreateAsync(instance, application.Name, IpFamily.IPv4, Hypervisors[application.Created % Hypervisors.Length], cancellationToken));
                if (outcome is HookStatus.Hit or HookStatus.Miss)
                {
                    application.Live.Enqueue(instance);
                    application.Count(counted, outcome.Value);
                }
                else
                {
                    Problem($"create {instance}: {outcome?.ToString() ?? "no acknowledgement"}");
                    break;
                }
            }

            while (application.Live.Count > target)
            {
                var instance = application.Live.Dequeue();
                var outcome = await SendAsync(() => _client!.DeleteAsync(instance, application.Name, IpFamily.IPv4, cancellationToken));
                if (outcome != HookStatus.Deleted)
                {
                    Problem($"delete {instance}: {outcome?.ToString() ?? "no acknowledgement"}");
                }

                application.Deletes += counted ? 1 : 0;
            }

            controller.Report(application.Name, application.TimeAt(step), new Dictionary<string, double>
            {
                ["instances"] = target,
                ["load"] = application.LoadAt(step),
            });
        }

        await controller.Forecasts!.StepAsync(_applications[0].TimeAt(step), cancellationToken);
        var forecasts = controller.Forecasts.Forecasts().ToDictionary(f => f.Application);
        foreach (var application in _applications)
        {
            if (forecasts.TryGetValue(application.Name, out var forecast))
            {
                application.Remember(forecast.Active, forecast.Expected);
                if (counted)
                {
                    _reservedSum += forecast.Reserved;
                    _activeSum += forecast.Active;
                }
            }
        }

        _counted += counted ? 1 : 0;
        return true;
    }

    public async Task<DemoView> ViewAsync(int step, CancellationToken cancellationToken)
    {
        var parts = _controller!.Parts;
        var forecasts = _controller.Forecasts!.Forecasts().ToDictionary(f => f.Application);
        var applications = _applications.Select(a =>
        {
            forecasts.TryGetValue(a.Name, out var f);
            return new ApplicationView(a.Name, a.Trace.Name, f?.Forecaster ?? "-", a.Live.Count, f?.Expected ?? 0, f?.Reserved ?? 0,
                f?.Quantiles ?? [], a.Creates, a.Hits, a.Misses, a.RecentActive, a.RecentExpected);
        }).ToList();
        var shown = Math.Min(step, TotalSteps - 1);
        return new DemoView(
            _applications[0].TimeAt(shown), Math.Max(0, step - _warmUp), _options.Steps, step < _warmUp, applications,
            parts?.Allocator.PoolUsageSnapshot ?? [],
            parts?.Speaker.LocRib.Count ?? 0,
            parts?.Speaker.Peers.Select(p => new PeerView(p.Options.DisplayName, p.State.ToString(), p.PrefixesSent)).ToList() ?? [],
            _bird is null ? null : await _bird.RouteCountAsync(cancellationToken),
            _applications.Sum(a => a.Creates + a.Deletes), Errors, Problems, _tryCommands);
    }

    /// <summary>After the last step: lets BIRD catch up (up to 5 s) and sums up.</summary>
    public async Task<DemoSummary> SummariseAsync(CancellationToken cancellationToken)
    {
        var speaker = _controller!.Parts!.Value.Speaker;
        int? birdRoutes = null;
        if (_bird is not null)
        {
            for (var waited = 0; waited < 50; waited++)
            {
                birdRoutes = await _bird.RouteCountAsync(cancellationToken);
                if (birdRoutes == speaker.LocRib.Count)
                {
                    break;
                }

                await Task.Delay(100, cancellationToken);
            }
        }

        var creates = _applications.Sum(a => a.Creates);
        var hits = _applications.Sum(a => a.Hits);
        var deletes = _applications.Sum(a => a.Deletes);
        var forecasters = _controller.Forecasts!.Forecasts().Select(f => $"{f.Application}: {f.Forecaster}").ToList();
        return new DemoSummary(
            _counted, creates + deletes, creates, hits, _applications.Sum(a => a.Misses), creates == 0 ? 0 : (double)hits / creates, deletes, Errors,
            _applications.Sum(a => a.Live.Count), speaker.LocRib.Count, birdRoutes,
            _counted == 0 ? 0 : _reservedSum / _counted, _counted == 0 ? 0 : _activeSum / _counted, forecasters, Problems);
    }

    private long Errors => Interlocked.Read(ref _errors) + _log.Errors;

    private IReadOnlyList<string> Problems
    {
        get
        {
            lock (_problems)
            {
                return [.. _problems, .. _log.Recent];
            }
        }
    }

    private async Task<HookStatus?> SendAsync(Func<Task<HookReply>> send)
    {
        try
        {
            return (await send()).Status;
        }
        catch (TimeoutException)
        {
            return null;
        }
    }

    private void Problem(string text)
    {
        Interlocked.Increment(ref _errors);
        lock (_problems)
        {
            if (_problems.Count < 5)
            {
                _problems.Add(text);
            }
        }
    }

    private static int FreePort(SocketType type, ProtocolType protocol)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, type, protocol);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    /// <summary>Stops the daemon the way SIGTERM does (RFC 8203 message to BIRD, store flushed), then BIRD, and removes the folder.</summary>
    public async ValueTask DisposeAsync()
    {
        _client?.Dispose();
        if (_host is not null)
        {
            await _host.StopAsync();
            _host.Dispose();
        }

        if (_bird is not null)
        {
            await _bird.DisposeAsync();
        }

        try
        {
            Directory.Delete(_folder, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>One application played from one trace.</summary>
    private sealed class DemoApplication(string name, LoadTrace trace, int[] instances, int start, int peakInstances)
    {
        private readonly Queue<int> _recentActive = new();
        private readonly Queue<int> _recentExpected = new();
        private long _next;

        public string Name { get; } = name;

        public LoadTrace Trace { get; } = trace;

        public Queue<string> Live { get; } = new();

        public long Created => _next;

        public long Creates { get; private set; }

        public long Hits { get; private set; }

        public long Misses { get; private set; }

        public long Deletes { get; set; }

        public IReadOnlyList<int> RecentActive => [.. _recentActive];

        public IReadOnlyList<int> RecentExpected => [.. _recentExpected];

        /// <summary>"elb_request_count_8c0756" -> "elb-request-count": the trace's kind as the application's name.</summary>
        public static string NameFor(string traceName, int index)
        {
            var words = traceName.Split('_').Where(w => !w.Any(char.IsDigit)).Take(3);
            var name = string.Join('-', words).ToLowerInvariant();
            return name.Length == 0 ? $"app{index}" : name;
        }

        public int InstancesAt(int step) => instances[start + step];

        public float LoadAt(int step) => Trace.LoadInInstances(start + step, peakInstances);

        public DateTimeOffset TimeAt(int step) => DateTimeOffset.FromUnixTimeSeconds(Trace.Times[start + step]);

        public string NextInstance() => $"{Name}-{_next++}";

        public void Count(bool counted, HookStatus outcome)
        {
            if (counted)
            {
                Creates++;
                Hits += outcome == HookStatus.Hit ? 1 : 0;
                Misses += outcome == HookStatus.Miss ? 1 : 0;
            }
        }

        public void Remember(int active, int expected)
        {
            _recentActive.Enqueue(active);
            _recentExpected.Enqueue(expected);
            while (_recentActive.Count > RecentSteps)
            {
                _recentActive.Dequeue();
                _recentExpected.Dequeue();
            }
        }
    }

    /// <summary>The daemon's log while the dashboard owns the screen: errors counted, the last warnings kept.</summary>
    private sealed class DemoLog : ILoggerProvider, ILogger
    {
        private readonly ConcurrentQueue<string> _recent = new();
        private long _errors;

        public long Errors => Interlocked.Read(ref _errors);

        public IReadOnlyList<string> Recent => [.. _recent];

        public ILogger CreateLogger(string categoryName) => this;

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            if (logLevel >= LogLevel.Error)
            {
                Interlocked.Increment(ref _errors);
            }

            _recent.Enqueue($"{logLevel}: {formatter(state, exception)}");
            while (_recent.Count > 3)
            {
                _recent.TryDequeue(out _);
            }
        }

        public void Dispose()
        {
        }
    }
}
