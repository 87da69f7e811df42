using System.CommandLine;
using System.Net;
using System.Text.Json;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Pools;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Cli.Controller;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.Planning;
using ShadowNet.Controller.Routing;
using ShadowNet.Controller.State;
using ShadowNet.Hooks.Udp;
using ShadowNet.Prediction.Features;
using ShadowNet.Prediction.Forecasting;
using ShadowNet.Prediction.Models;

namespace ShadowNet.Cli.Replay;

/// <summary>
/// <c>shadownet replay</c>, the evaluation contract of DESIGN.md: a real load series becomes instance
/// counts (<c>instances = ceil(load / capacity)</c>, capacity so the peak is <c>--peak-instances</c>); each
/// step the policy's forecast goes through the real planner, allocator (SQLite store in a temporary
/// folder) and route manager (an in-process speaker, no network), then the step's creates and deletes
/// run through the route manager. Prints one JSON object: creates, hits, misses, hit rate, mean
/// reserved-but-unused addresses and the waste ratio (that mean over mean active instances).
/// </summary>
internal static class ReplayCommand
{
    private const string Application = "replay";
    private const int StepSeconds = 300;
    private const int SeasonSteps = 86_400 / StepSeconds; // a day
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static Command Create()
    {
        var trace = new Option<FileInfo>("--trace") { Description = "CSV with 'timestamp,value' rows (the NAB format)", Required = true };
        var policy = new Option<string>("--policy") { Description = "lstm, seasonal-naive, ewma, static-warm:K or reactive", DefaultValueFactory = _ => "lstm" };
        var peak = new Option<int>("--peak-instances") { Description = "Instances at the trace's peak", DefaultValueFactory = _ => 100 };
        var confidence = new Option<double>("--confidence") { Description = "Confidence to prepare for (between two of the model's quantiles: interpolated)", DefaultValueFactory = _ => 0.99 };
        var model = new Option<FileInfo?>("--model") { Description = "ONNX model for the lstm policy (default: models/shadownet-lstm.onnx above the current folder)" };
        var measureFrom = new Option<double>("--measure-from") { Description = "Count only steps from this fraction of the trace on (0.7: the part the model did not train on); all steps still run" };
        var defaults = new PlannerOptions();
        var cooldown = new Option<double>("--shrink-cooldown") { Description = "Planner: minutes after the last growth before reservations shrink", DefaultValueFactory = _ => defaults.ShrinkCooldown.TotalMinutes };
        var hysteresis = new Option<int>("--shrink-hysteresis") { Description = "Planner: excess reservations kept without shrinking", DefaultValueFactory = _ => defaults.ShrinkHysteresis };
        var floor = new Option<int>("--minimum-reserve") { Description = "Planner: reservations kept whatever the forecast (a warm floor)", DefaultValueFactory = _ => defaults.MinimumReserve };
        var command = new Command("replay", "Replay a load trace through the real planner, allocator and route manager; print hit rate and waste as JSON")
        {
            trace, policy, peak, confidence, model, measureFrom, cooldown, hysteresis, floor,
        };
        command.SetAction(async (parse, ct) =>
        {
            var forecaster = Forecaster(parse.GetValue(policy)!, parse.GetValue(model), out var owned);
            using (owned)
            {
                var from = parse.GetValue(measureFrom);
                if (from is < 0 or >= 1)
                {
                    throw new UsageException($"--measure-from: {from} is not from 0 to below 1");
                }

                var (cooldownMinutes, excess, minimum) = (parse.GetValue(cooldown), parse.GetValue(hysteresis), parse.GetValue(floor));
                if (cooldownMinutes < 0 || excess < 0 || minimum < 0)
                {
                    throw new UsageException("--shrink-cooldown, --shrink-hysteresis and --minimum-reserve cannot be negative");
                }

                var planning = new PlannerOptions { ShrinkCooldown = TimeSpan.FromMinutes(cooldownMinutes), ShrinkHysteresis = excess, MinimumReserve = minimum };
                var result = await RunAsync(parse.GetValue(trace)!, forecaster, parse.GetValue(peak), parse.GetValue(confidence), from, planning, ct);
                Console.WriteLine(JsonSerializer.Serialize(result, Indented));
            }

            return 0;
        });
        return command;
    }

    private static IInstanceForecaster Forecaster(string policy, FileInfo? model, out IDisposable? owned)
    {
        owned = null;
        switch (policy)
        {
            case "lstm":
                var path = model?.FullName ?? FindModel();
                try
                {
                    var onnx = OnnxForecaster.Load(path, ApplicationHistory.FeatureNames);
                    owned = onnx;
                    return new LstmForecaster(onnx);
                }
                catch (ModelRejectedException e)
                {
                    throw new UsageException(e.Message);
                }

            default:
                return Baselines.TryCreate(policy, StepSeconds, out var baseline)
                    ? baseline
                    : throw new UsageException($"--policy: '{policy}' is not lstm, seasonal-naive, ewma, static-warm:K or reactive");
        }
    }

    private static string FindModel()
    {
        for (var directory = new DirectoryInfo(Environment.CurrentDirectory); directory is not null; directory = directory.Parent)
        {
            var candidate = Path.Combine(directory.FullName, "models", "shadownet-lstm.onnx");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new UsageException("no models/shadownet-lstm.onnx above the current folder: give --model");
    }

    private static async Task<ReplayResult> RunAsync(FileInfo trace, IInstanceForecaster forecaster, int peakInstances, double confidence, double measureFrom, PlannerOptions planning, CancellationToken ct)
    {
        var series = LoadTrace.Read(trace);
        var (times, load) = (series.Times, series.Load);
        var instancesAt = series.Instances(peakInstances);
        var folder = Directory.CreateTempSubdirectory("shadownet-replay-").FullName;
        try
        {
            PoolDefinition[] pools =
            [
                new("shadow", PoolKind.Shadow, [IPNetwork.Parse("10.64.0.0/16")]),
                new("dynamic", PoolKind.Dynamic, [IPNetwork.Parse("10.65.0.0/16")]),
            ];
            await using var allocator = DurableAllocator.Open(pools, SqliteAllocationStore.Open(Path.Combine(folder, "state.db"), StoreSync.Normal));
            await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65000, RouterId = IPAddress.Parse("127.0.0.1") });
            var manager = new ActiveRouteManager(allocator, speaker, pools, new RouteManagerOptions { DefaultNextHopV4 = IPAddress.Parse("192.0.2.1") });
            var planner = new ReservationPlanner(manager, allocator, planning);
            var history = new ApplicationHistory(SeasonSteps + 64, StepSeconds);
            var live = new Queue<string>();
            long creates = 0, hits = 0, misses = 0, instanceNumber = 0;
            double reservedSum = 0, activeSum = 0;
            var firstCounted = (int)(measureFrom * load.Length);

            for (var t = 0; t < load.Length; t++)
            {
                var counted = t >= firstCounted;
                var instances = instancesAt[t];
                while (live.Count < instances)
                {
                    var id = $"i{instanceNumber++}";
                    var outcome = await manager.CreateAsync(id, Application, IpFamily.IPv4, null, ct);
                    if (outcome.Status is not (HookStatus.Hit or HookStatus.Miss))
                    {
                        throw new InvalidOperationException($"create {id} failed: {outcome.Status}");
                    }

                    if (counted)
                    {
                        creates++;
                        hits += outcome.Status == HookStatus.Hit ? 1 : 0;
                        misses += outcome.Status == HookStatus.Miss ? 1 : 0;
                    }

                    live.Enqueue(id);
                }

                while (live.Count > instances)
                {
                    await manager.DeleteAsync(live.Dequeue(), Application, IpFamily.IPv4, ct);
                }

                history.Add(times[t], instances, series.LoadInInstances(t, peakInstances));
                var forecast = forecaster.Forecast(history, confidence) ?? instances;
                var step = await planner.PlanAsync(Application, IpFamily.IPv4, forecast, DateTimeOffset.FromUnixTimeSeconds(times[t]), ct);
                if (counted)
                {
                    reservedSum += step.Reserved;
                    activeSum += instances;
                }
            }

            var steps = load.Length - firstCounted;
            var meanReserved = reservedSum / steps;
            var meanActive = activeSum / steps;
            return new ReplayResult(trace.Name, forecaster.Name, steps, creates, hits, misses,
                creates == 0 ? 1 : (double)hits / creates, meanReserved, meanActive, meanReserved / meanActive);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private sealed record ReplayResult(
        string Trace, string Policy, int Steps, long Creates, long Hits, long Misses, double HitRate,
        double MeanReservedUnused, double MeanActive, double WasteRatio);
}
