using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ShadowNet.Addressing.Pools;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.Routing;
using ShadowNet.Controller.State;
using ShadowNet.Controller.Telemetry;
using ShadowNet.Controller.Planning;
using ShadowNet.Daemon.Configuration;
using ShadowNet.Daemon.Prediction;
using ShadowNet.Hooks.Udp;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace ShadowNet.Daemon;

/// <summary>
/// Starts the parts in dependency order (state, routes of live instances, BGP, hooks) and stops them
/// in reverse: hooks first so nothing new arrives, then BGP with an RFC 8203 shutdown message, then the
/// store, which commits what is queued.
/// </summary>
internal sealed partial class ControllerService(DaemonConfiguration configuration, RunningSettings running, ILoggerFactory loggers) : IHostedService
{
    /// <summary>.NET's own meter: garbage collections and pause time, thread pool, lock contention.</summary>
    private const string RuntimeMeterName = "System.Runtime";

    private readonly ILogger _log = loggers.CreateLogger("shadownetd");
    private DurableAllocator? _allocator;
    private BgpSpeaker? _speaker;
    private HookServer? _hooks;
    private DaemonMetrics? _metrics;
    private MeterProvider? _exporter;
    private MissLog? _missLog;
    private readonly SemaphoreSlim _reloading = new(1, 1);

    /// <summary>Recent metric samples per application (ReportMetrics feeds them; misses record them).</summary>
    public RecentSamples Samples { get; } = new();

    public DaemonConfiguration Configuration => configuration;

    public DateTimeOffset Started { get; private set; }

    /// <summary>The forecast loop, when the configuration has a <c>prediction</c> section.</summary>
    public ForecastLoop? Forecasts { get; private set; }

    /// <summary>The running parts, for the gRPC API; null until start-up has finished.</summary>
    public (DurableAllocator Allocator, BgpSpeaker Speaker, ActiveRouteManager Manager, HookServer? Hooks)? Parts { get; private set; }

    /// <summary>
    /// One metric sample of an application (ReportMetrics, or the demo's trace): to the forecast loop and
    /// to the recent window that a miss records. False when too many applications are reported already.
    /// </summary>
    public bool Report(string application, DateTimeOffset time, IReadOnlyDictionary<string, double> values)
    {
        Forecasts?.Observe(application, time.ToUnixTimeSeconds(), values);
        return Samples.Add(new MetricSample(time.ToUnixTimeMilliseconds(), application, values)); // the window copies the values
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _allocator = DurableAllocator.Open(
            configuration.Pools,
            SqliteAllocationStore.Open(configuration.StorePath, configuration.StoreSync),
            new DurableAllocatorOptions { ExpectedLeases = configuration.ExpectedLeases });
        _allocator.LeasesOutgrewSizing += (leases, sized) => Log.LeasesOutgrewSizing(_log, leases, sized);
        _allocator.StoreFailed += failure => Log.StoreFailed(_log, failure.Message);
        // Every originated route is a lease's (staged or active): the Loc-RIB is sized as the allocator's
        // tables were (store:expectedLeases, or the default, capped by what the pools hold).
        configuration.Bgp.ExpectedRoutes = _allocator.SizedForLeases;
        _speaker = new BgpSpeaker(configuration.Bgp, loggerFactory: loggers);
        foreach (var peer in configuration.Peers)
        {
            _speaker.AddPeer(peer);
        }

        _metrics = new DaemonMetrics(_allocator, _speaker, running);
        if (configuration.MetricsListen is { } endPoint)
        {
            // The Prometheus text format over a bare HttpListener: no web stack for one endpoint.
            _exporter = Sdk.CreateMeterProviderBuilder()
                .AddMeter(DaemonMetrics.MeterName, ForecastLoop.MeterName, HookServer.MeterName, ActiveRouteManager.MeterName, RuntimeMeterName)
                .AddPrometheusHttpListener(o =>
                {
                    o.Host = endPoint.Address.ToString();
                    o.Port = endPoint.Port;
                    o.ScrapeEndpointPath = "/metrics";
                })
                .Build();
        }

        if (configuration.MissLogPath is { } missLogPath)
        {
            try
            {
                _missLog = new MissLog(missLogPath);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new StateStoreException($"miss log '{missLogPath}' cannot be opened: {e.Message}", e);
            }
        }

        var manager = new ActiveRouteManager(_allocator, _speaker, configuration.Pools, configuration.Routes, Samples, _missLog);
        var restored = await manager.RestoreAsync(cancellationToken);
        await manager.TopUpWarmAsync(cancellationToken);

        // A restart with state (RFC 4724's R bit): routers that kept our routes as stale go on forwarding on
        // them until our End-of-RIB, which follows the whole restored table and removes only what is gone.
        _speaker.Options.Restarting = await _allocator.ReadAsync(a => a.LeaseCount, cancellationToken) > 0;
        _speaker.Start();
        if (configuration.UdpHooks is { } udp)
        {
            // Replies go out from the writer thread at the end of each group commit: no hand-off per batch.
            _hooks = new HookServer(udp with { FlushedByCaller = true }, manager);
            _allocator.GroupCompleted += _hooks.Flush;
            _hooks.Start();
            if (_hooks.ReceiverNiceProblem is { } problem)
            {
                Log.ReceiverNiceNotSet(_log, udp.ReceiverNice, problem);
            }
        }

        if (configuration.Prediction is { } prediction)
        {
            var planner = new ReservationPlanner(manager, _allocator, prediction.Planner);
            Forecasts = new ForecastLoop(prediction, planner, TimeProvider.System, loggers.CreateLogger("shadownetd.prediction"));
            if (prediction.StepsOnTimer)
            {
                Forecasts.Start();
            }
        }

        // What start-up built (the restored tables, the warm pool, the listeners, the exporter) lives as long
        // as the daemon. Promote it to the oldest generation now, while events are rare (the hook listener is
        // open: one arriving waits out these few milliseconds): left young, the first collection in service
        // copied 2-5 MB of it, a 20-30 ms pause in the middle of the creates (bench/RESULTS.md, stop 22).
        // A collection moves survivors up one generation, hence two.
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        Started = DateTimeOffset.UtcNow;
        Parts = (_allocator, _speaker, manager, _hooks);
        if (configuration.GrpcListen is { EndPoint: { } grpc, Tls.ClientAuthorities: null } && !IPAddress.IsLoopback(grpc.Address))
        {
            Log.GrpcOpenToAnyone(_log, grpc.ToString());
        }

        Log.Started(_log, configuration.StorePath, restored, _hooks?.LocalEndPoint.ToString() ?? "off", _allocator.SizedForLeases, _speaker.LocRib.Capacity);
    }

    /// <summary>
    /// SIGHUP: reads the configuration again and takes what can change while serving: the UDP hook's keys,
    /// the BGP peers (added, removed, held down, or reset when their settings changed; the others' sessions
    /// are not touched), prefixes added to pools, and new pools. Any other changed setting is named in a
    /// warning and keeps its running value until a restart. A configuration that does not read changes
    /// nothing. One reload at a time.
    /// </summary>
    public async Task ReloadAsync(string file, Func<(IConfiguration Settings, DaemonConfiguration Configuration)> read)
    {
        await _reloading.WaitAsync();
        try
        {
            IConfiguration settings;
            DaemonConfiguration reread;
            try
            {
                (settings, reread) = read();
            }
            catch (Exception e) when (e is ConfigurationException or FileNotFoundException or InvalidDataException or FormatException)
            {
                running.ReloadFailed();
                Log.ReloadFailed(_log, file, e.Message);
                return;
            }

            if (Parts is not { Speaker: var speaker, Manager: var manager, Allocator: var allocator })
            {
                running.ReloadFailed();
                Log.ReloadFailed(_log, file, "shadownetd is starting or stopping");
                return;
            }

            List<string> taken = ["bgp:peers"];
            var keys = "unchanged (the UDP hook is off)";
            if (_hooks is not null && reread.UdpHooks is { } udp)
            {
                _hooks.ReplaceKeys(udp.Keys);
                keys = string.Join(", ", _hooks.KeyIds.Order());
                taken.Add("hooks:udp:keys");
            }

            var peers = await speaker.ReconcilePeersAsync(reread.Peers);
            var (grown, added, refused) = await ReshapePoolsAsync(manager, allocator, reread, taken);
            var restart = running.Took(settings, taken);
            Log.Reloaded(_log, file, keys, peers.ToString(), grown.Count == 0 ? "none" : string.Join(", ", grown), added.Count == 0 ? "none" : string.Join(", ", added));
            if (restart.Count > 0)
            {
                Log.ReloadNeedsRestart(_log, string.Join(", ", restart), file, string.Concat(refused.Select(r => $" {r}.")));
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A signal handler has no caller to tell: the log is where it goes, and the daemon serves on.
            running.ReloadFailed();
            Log.ReloadFailed(_log, file, e.ToString());
        }
        finally
        {
            _reloading.Release();
        }
    }

    /// <summary>
    /// A pool of the file that only adds prefixes to the running pool in its place grows (its
    /// <c>pools:N:prefixes</c> and <c>exclude</c> are then taken); a pool with a new name after the
    /// running ones is added (its <c>pools:N</c> is taken). Any other change to the pools takes a restart,
    /// and why is returned for the warning that names its keys.
    /// </summary>
    private static async Task<(List<string> Grown, List<string> Added, List<string> Refused)> ReshapePoolsAsync(
        ActiveRouteManager manager, DurableAllocator allocator, DaemonConfiguration reread, List<string> taken)
    {
        var wanted = reread.Pools;
        var current = await allocator.ReadAsync(a => a.Pools.ToList());
        List<string> grown = [], added = [], refused = [];
        for (var i = 0; i < Math.Min(current.Count, wanted.Count); i++)
        {
            if (current[i].Name != wanted[i].Name)
            {
                continue;
            }

            try
            {
                // The route manager checks that the pool only grows, and adds nothing when it is as it was.
                var count = await manager.GrowPoolAsync(wanted[i]);
                if (count == 0)
                {
                    continue;
                }

                grown.Add($"{wanted[i].Name} +{count} addresses");
                taken.Add($"pools:{i}:prefixes");
                taken.Add($"pools:{i}:exclude");
            }
            catch (PoolConfigurationException e)
            {
                refused.Add(e.Message);
            }
        }

        for (var i = current.Count; i < wanted.Count; i++)
        {
            var pool = wanted[i];
            if (current.Any(p => p.Name == pool.Name))
            {
                refused.Add($"pool '{pool.Name}' moved in the list; the pools' order takes a restart");
                continue;
            }

            try
            {
                await manager.AddPoolAsync(pool, reread.Routes.Staging.GetValueOrDefault(pool.Name));
                added.Add($"{pool.Name} ({pool.UsableRanges().Aggregate(UInt128.Zero, (sum, r) => sum + r.Count)} addresses)");
                taken.Add($"pools:{i}");
            }
            catch (PoolConfigurationException e)
            {
                refused.Add(e.Message);
            }
        }

        return (grown, added, refused);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        Parts = null;
        if (_hooks is not null)
        {
            if (_allocator is not null)
            {
                _allocator.GroupCompleted -= _hooks.Flush;
            }

            await _hooks.DisposeAsync();
        }

        if (Forecasts is not null)
        {
            await Forecasts.DisposeAsync();
        }

        if (_speaker is not null)
        {
            await _speaker.StopAsync("shadownetd shutting down", cancellationToken);
            await _speaker.DisposeAsync();
        }

        if (_allocator is not null)
        {
            await _allocator.DisposeAsync();
        }

        if (_missLog is not null)
        {
            await _missLog.DisposeAsync();
        }

        _exporter?.Dispose();
        _metrics?.Dispose();
        Log.Stopped(_log);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "shadownetd started: store {Store}, {Restored} live instance routes re-announced, UDP hooks on {Hooks}; "
            + "tables sized for {Leases} leases, Loc-RIB for {Routes} routes")]
        public static partial void Started(ILogger logger, string store, int restored, string hooks, int leases, int routes);

        [LoggerMessage(2, LogLevel.Information, "shadownetd stopped: sessions closed, store flushed")]
        public static partial void Stopped(ILogger logger);

        [LoggerMessage(3, LogLevel.Warning, "hooks:udp:receiverNice {Nice} not applied ({Problem}); the UDP hook receiver runs at normal priority")]
        public static partial void ReceiverNiceNotSet(ILogger logger, int nice, string problem);

        [LoggerMessage(4, LogLevel.Warning, "{Leases} leases are held, more than the {Sized} the tables were sized for (store:expectedLeases): "
            + "they now grow while serving, a pause of milliseconds each time. Set store:expectedLeases to the most leases expected (reserved, active and cooling)")]
        public static partial void LeasesOutgrewSizing(ILogger logger, int leases, int sized);

        [LoggerMessage(5, LogLevel.Critical, "{Failure}. Creates and deletes are refused (hook status unavailable, gRPC Unavailable); "
            + "the routes of live instances stay announced. Fix the cause (disk full, I/O error) and restart shadownetd: it reloads what was acknowledged")]
        public static partial void StoreFailed(ILogger logger, string failure);

        [LoggerMessage(6, LogLevel.Warning, "the gRPC API on {EndPoint} takes calls from anyone who can reach it, creates and deletes included: "
            + "require client certificates (grpc:tls with clientCa), or listen on loopback or a Unix socket")]
        public static partial void GrpcOpenToAnyone(ILogger logger, string endPoint);

        [LoggerMessage(7, LogLevel.Information, "SIGHUP: {File} taken: hook key ids {Ids}; BGP peers {Peers}; pools grown: {Grown}; pools added: {Added}")]
        public static partial void Reloaded(ILogger logger, string file, string ids, string peers, string grown, string added);

        [LoggerMessage(8, LogLevel.Error, "SIGHUP: {File} not taken, nothing changed: {Problem}")]
        public static partial void ReloadFailed(ILogger logger, string file, string problem);

        [LoggerMessage(9, LogLevel.Warning, "SIGHUP: {Keys} changed in {File}: these take a restart, and keep their running values until then.{Why}")]
        public static partial void ReloadNeedsRestart(ILogger logger, string keys, string file, string why);
    }
}
