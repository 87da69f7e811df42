using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Pools;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.Planning;
using ShadowNet.Controller.Routing;
using ShadowNet.Controller.State;
using ShadowNet.Daemon.Prediction;
using ShadowNet.Prediction.Forecasting;

namespace ShadowNet.Daemon.Tests;

/// <summary>The forecast loop with the committed model: one batch for every application with a full window.</summary>
public class ForecastLoopTests
{
    private const long Monday = 1_704_067_200;

    [Fact]
    public async Task ApplicationsWithAFullWindowAreForecastByTheModelInOneBatchTheOthersByTheFallback()
    {
        using var folder = new TempDirectory("forecast-loop");
        PoolDefinition[] pools = [new("shadow", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/20")])];
        await using var allocator = DurableAllocator.Open(pools, SqliteAllocationStore.Open(folder.File("s.db")));
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") });
        var manager = new ActiveRouteManager(allocator, speaker, pools, new RouteManagerOptions { DefaultNextHopV4 = IPAddress.Parse("192.0.2.1") });
        var planner = new ReservationPlanner(manager, allocator, new PlannerOptions());
        var options = new PredictionOptions { ModelPath = Repository.File("models", "shadownet-lstm.onnx"), Fallback = new StaticWarmForecaster(2) };
        await using var loop = new ForecastLoop(options, planner, TimeProvider.System, NullLogger.Instance);
        Assert.Equal("lstm", loop.ActiveForecaster);

        for (var step = 0; step < 40; step++)
        {
            var time = Monday + (step * 300);
            loop.Observe("web", time, new Dictionary<string, double> { ["instances"] = 20 + (step % 4), ["load"] = 19.5 + (step % 4) });
            loop.Observe("db", time, new Dictionary<string, double> { ["instances"] = 5 });
        }

        loop.Observe("new", Monday + (39 * 300), new Dictionary<string, double> { ["instances"] = 3 });
        await loop.StepAsync(CancellationToken.None);

        var forecasts = loop.Forecasts().ToDictionary(f => f.Application);
        Assert.Equal(("lstm", "lstm", "static-warm:2"), (forecasts["web"].Forecaster, forecasts["db"].Forecaster, forecasts["new"].Forecaster));
        Assert.Equal(5, forecasts["new"].Expected);
        Assert.Equal([(0.99, 5)], forecasts["new"].Quantiles);
        Assert.Equal([0.5, 0.9, 0.99, 0.999], forecasts["web"].Quantiles.Select(q => q.Quantile));
        Assert.Equal(forecasts["web"].Expected, forecasts["web"].Quantiles[2].Instances); // the confidence, 0.99, is one of the quantiles
        var instances = forecasts["web"].Quantiles.Select(q => q.Instances).ToArray();
        Assert.True(instances.SequenceEqual(instances.Order()), "quantiles out of order");
        Assert.InRange(forecasts["web"].Expected, 21, 40);   // at least the recent peak, not wildly above it
        Assert.InRange(forecasts["db"].Expected, 5, 12);
        foreach (var forecast in forecasts.Values)
        {
            // Nothing runs yet in the allocator: everything expected is reserved (and staged).
            Assert.Equal(forecast.Expected, forecast.Reserved);
            Assert.Equal(forecast.Expected, (await allocator.ReadAsync(a => a.GetUsage(forecast.Application, IpFamily.IPv4))).Reserved);
        }
    }

    [Fact]
    public async Task OnceTheStoreHasFailedTheLoopStaysQuietInsteadOfWarningEveryStep()
    {
        PoolDefinition[] pools = [new("shadow", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/24")])];
        var store = new BreakableStore();
        await using var allocator = DurableAllocator.Open(pools, store);
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") });
        var manager = new ActiveRouteManager(allocator, speaker, pools, new RouteManagerOptions { DefaultNextHopV4 = IPAddress.Parse("192.0.2.1") });
        var planner = new ReservationPlanner(manager, allocator, new PlannerOptions());
        var log = new ListLogger();
        await using var loop = new ForecastLoop(new PredictionOptions { Fallback = new StaticWarmForecaster(2) }, planner, TimeProvider.System, log);
        loop.Observe("web", Monday, new Dictionary<string, double> { ["instances"] = 3 });

        await loop.TickAsync(CancellationToken.None);
        Assert.Equal(5, loop.Forecasts().Single().Reserved);
        Assert.Empty(log.Warnings);

        // The store fails; the next steps' reservations fail with it, and nothing is logged for them.
        store.Failing = true;
        loop.Observe("web", Monday + 300, new Dictionary<string, double> { ["instances"] = 9 });
        await loop.TickAsync(CancellationToken.None);
        await loop.TickAsync(CancellationToken.None);
        Assert.NotNull(allocator.Failure);
        Assert.Empty(log.Warnings);
    }

    /// <summary>An in-memory store whose commits fail once <see cref="Failing"/> is set.</summary>
    private sealed class BreakableStore : IAllocationStore
    {
        private long _sequence;

        public bool Failing { get; set; }

        public string Location => "memory";

        public long CommittedSequence => _sequence;

        public IReadOnlyList<ShadowNet.Addressing.Allocation.Lease> LoadLeases() => [];

        public IReadOnlyList<(long Id, MissRecord Miss)> LoadMisses(long afterId, int limit) => [];

        public void Commit(ReadOnlySpan<ShadowNet.Addressing.Allocation.LeaseChange> changes, ReadOnlySpan<MissRecord> misses, long sequence) =>
            _sequence = Failing ? throw new IOException("disk full") : sequence;

        public bool Maintain(bool idle) => false;

        public void Dispose()
        {
        }
    }

    /// <summary>Collects the warnings and errors logged.</summary>
    private sealed class ListLogger : Microsoft.Extensions.Logging.ILogger
    {
        public List<string> Warnings { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception,
            Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= Microsoft.Extensions.Logging.LogLevel.Warning)
            {
                lock (Warnings)
                {
                    Warnings.Add(formatter(state, exception));
                }
            }
        }
    }
}
