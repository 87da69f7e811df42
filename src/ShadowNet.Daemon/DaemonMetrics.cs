using System.Diagnostics.Metrics;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Controller.Allocation;
using ShadowNet.Daemon.Configuration;

namespace ShadowNet.Daemon;

/// <summary>
/// The controller's instruments (meter <c>ShadowNet.Controller</c>), named by OpenTelemetry conventions
/// with units; the hook counters live with the hook server (meter <c>ShadowNet.Hooks</c>). Observable
/// instruments read snapshots and counters the parts already keep, so scraping costs the hot paths nothing.
/// </summary>
internal sealed class DaemonMetrics : IDisposable
{
    public const string MeterName = "ShadowNet.Controller";
    private readonly Meter _meter = new(MeterName);

    public DaemonMetrics(DurableAllocator allocator, BgpSpeaker speaker, RunningSettings settings)
    {
        _meter.CreateObservableGauge("shadownet.config.last_reload_successful", () => settings.LastReloadSucceeded ? 1 : 0, "1",
            "0 after a reload (SIGHUP) whose configuration file did not read, until one that did");
        _meter.CreateObservableCounter("shadownet.config.reloads", () => new[]
        {
            new Measurement<long>(settings.ReloadsTaken, new KeyValuePair<string, object?>("outcome", "taken")),
            new Measurement<long>(settings.ReloadsFailed, new KeyValuePair<string, object?>("outcome", "failed")),
        }, "{reload}", "Reloads (SIGHUP) by outcome: the file taken, or not read");
        _meter.CreateObservableGauge("shadownet.config.restart_pending", () => settings.RestartPending.Count, "{setting}",
            "Settings changed in the file, as of the last reload, that take a restart (the log names them)");
        _meter.CreateObservableGauge("shadownet.pool.addresses", () => PoolAddresses(allocator), "{address}",
            "Addresses per pool and state: free, reserved (staged), active (assigned), cooling (reuse delay)");
        var commits = _meter.CreateHistogram("shadownet.store.commit.duration", "s", "Time to commit one group of allocator operations durably",
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1] });
        allocator.GroupCommitted += (_, duration) => commits.Record(duration.TotalSeconds);
        var maintenance = _meter.CreateHistogram("shadownet.store.maintenance.duration", "s", "Time the store's housekeeping (WAL checkpoint) held the writer",
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1] });
        allocator.Maintained += duration => maintenance.Record(duration.TotalSeconds);
        _meter.CreateObservableGauge("shadownet.store.failed", () => allocator.Failure is null ? 0 : 1, "1",
            "1 once the state store has failed (a commit or its housekeeping): creates and deletes are refused until a restart");
        _meter.CreateObservableGauge("shadownet.bgp.session.established", () => speaker.Peers.Select(p =>
            new Measurement<int>(p.State == BgpSessionState.Established ? 1 : 0, Peer(p))), "{session}", "1 while the BGP session with the peer is established");
        _meter.CreateObservableGauge("shadownet.bgp.session.shutdown", () => speaker.Peers.Select(p =>
            new Measurement<int>(p.Options.ShutdownMessage is null ? 0 : 1, Peer(p))), "{session}", "1 while the configuration holds the session with the peer down (bgp:peers:N:shutdown)");
        _meter.CreateObservableCounter("shadownet.bgp.prefixes.advertised", () => speaker.Peers.Select(p =>
            new Measurement<long>(p.PrefixesSent, Peer(p))), "{prefix}", "Prefixes announced to the peer");
        _meter.CreateObservableCounter("shadownet.bgp.updates.sent", () => speaker.Peers.Select(p =>
            new Measurement<long>(p.UpdatesSent, Peer(p))), "{message}", "UPDATE messages sent to the peer");
        _meter.CreateObservableCounter("shadownet.bgp.updates.received", () => speaker.Peers.Select(p =>
            new Measurement<long>(p.UpdatesReceived, Peer(p))), "{message}", "UPDATE messages received from the peer");
        _meter.CreateObservableCounter("shadownet.bgp.updates.malformed", () => speaker.Peers.SelectMany(p => new[]
        {
            new Measurement<long>(p.UpdatesTreatedAsWithdraw, Peer(p), new("handling", "treat-as-withdraw")),
            new Measurement<long>(p.AttributesDiscarded, Peer(p), new("handling", "attribute-discard")),
        }), "{message}", "RFC 7606: UPDATEs from the peer taken as withdrawals, and attributes dropped, because they were malformed");
    }

    public void Dispose() => _meter.Dispose();

    private static IEnumerable<Measurement<long>> PoolAddresses(DurableAllocator allocator)
    {
        foreach (var pool in allocator.PoolUsageSnapshot)
        {
            var name = new KeyValuePair<string, object?>("pool", pool.Pool);
            yield return new((long)(pool.Size - pool.Used), name, new("state", "free"));
            yield return new(pool.Reserved, name, new("state", "reserved"));
            yield return new(pool.Assigned, name, new("state", "active"));
            yield return new(pool.Quarantined, name, new("state", "cooling"));
        }
    }

    private static KeyValuePair<string, object?> Peer(BgpPeer peer) => new("peer", peer.Options.DisplayName);
}
