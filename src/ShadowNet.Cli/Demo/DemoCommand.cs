using System.CommandLine;
using System.Text.Json;
using ShadowNet.Cli.Controller;
using Spectre.Console;

namespace ShadowNet.Cli.Demo;

/// <summary>
/// <c>shadownet demo</c>: the whole loop on an embedded default, no router or metrics system to set up.
/// Ends by itself after the trace with a summary; exit code 1 when any event failed or the daemon
/// logged an error, or when BIRD (with <c>--with-bird</c>) does not hold exactly the live routes.
/// </summary>
internal static class DemoCommand
{
    private const int WarmUpSteps = 36; // the bundled model's window: the LSTM forecasts from the first shown step
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    public static Command Create()
    {
        var traces = new Option<FileInfo[]>("--trace") { Description = "Load trace(s) in the NAB 'timestamp,value' format, one application each (default: the two bundled NAB traces)", AllowMultipleArgumentsPerToken = true };
        var steps = new Option<int>("--steps") { Description = "5-minute steps to play after the warm-up", DefaultValueFactory = _ => 288 };
        var speed = new Option<double>("--speed") { Description = "Steps per second on the dashboard", DefaultValueFactory = _ => 12 };
        var peak = new Option<int>("--peak-instances") { Description = "Instances at each trace's peak", DefaultValueFactory = _ => 40 };
        var confidence = new Option<double>("--confidence") { Description = "Forecast quantile to prepare for", DefaultValueFactory = _ => 0.99 };
        var model = new Option<FileInfo?>("--model") { Description = "ONNX model (default: the bundled models/shadownet-lstm.onnx)" };
        var withBird = new Option<bool>("--with-bird") { Description = "Also start BIRD 2 on 127.0.0.2 and peer with it, to watch routes arrive at a real router" };
        var fast = new Option<bool>("--fast") { Description = "No dashboard and no pacing: as fast as it goes (for tests)" };
        var json = new Option<bool>("--json") { Description = "Print the summary as JSON" };
        var command = new Command("demo", "Run shadownetd in-process on a default configuration and play real load traces through it, with a live dashboard")
        {
            traces, steps, speed, peak, confidence, model, withBird, fast, json,
        };
        command.SetAction(async (parse, ct) =>
        {
            var options = new DemoOptions(
                parse.GetValue(traces) is { Length: > 0 } given ? given : Bundled("Demo/Traces", "*.csv"),
                Check(parse.GetValue(steps), 1, 100_000, "--steps"),
                parse.GetValue(speed) is var s && s > 0 && double.IsFinite(s) ? s : throw new UsageException("--speed: steps per second must be above 0"),
                Check(parse.GetValue(peak), 1, 10_000, "--peak-instances"),
                parse.GetValue(confidence) is var c && c is > 0 and < 1 ? c : throw new UsageException("--confidence: a quantile between 0 and 1"),
                parse.GetValue(withBird),
                parse.GetValue(model)?.FullName ?? Bundled("models", "shadownet-lstm.onnx")[0].FullName);
            foreach (var trace in options.Traces.Where(t => !t.Exists))
            {
                throw new UsageException($"--trace: {trace.FullName} does not exist");
            }

            // A model that exists but is refused is the daemon's business: it logs why, counts it, and the
            // fallback forecasts (the summary shows it, and the exit code is 1).
            if (!File.Exists(options.ModelPath))
            {
                throw new UsageException($"--model: {options.ModelPath} does not exist");
            }

            var summary = await RunAsync(options, parse.GetValue(fast) || Console.IsOutputRedirected, ct);
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(summary, Indented));
            }
            else
            {
                Dashboard.PrintSummary(summary, AnsiConsole.Console);
            }

            var birdAgrees = summary.BirdRoutes is null || summary.BirdRoutes == summary.RoutesAnnounced;
            return summary.Errors == 0 && birdAgrees ? 0 : 1;
        });
        return command;
    }

    private static async Task<DemoSummary> RunAsync(DemoOptions options, bool plain, CancellationToken cancellationToken)
    {
        await using var run = await DemoRun.StartAsync(options, WarmUpSteps, cancellationToken);
        var interval = plain ? TimeSpan.Zero : TimeSpan.FromSeconds(1 / options.StepsPerSecond);
        try
        {
            if (plain)
            {
                for (var step = 0; await run.StepAsync(step, cancellationToken); step++)
                {
                }
            }
            else
            {
                await AnsiConsole.Live(Dashboard.Render(await run.ViewAsync(0, cancellationToken))).AutoClear(false).StartAsync(async live =>
                {
                    var next = DateTime.UtcNow;
                    for (var step = 0; await run.StepAsync(step, cancellationToken); step++)
                    {
                        live.UpdateTarget(Dashboard.Render(await run.ViewAsync(step, cancellationToken)));
                        next += interval;
                        if (next > DateTime.UtcNow)
                        {
                            await Task.Delay(next - DateTime.UtcNow, cancellationToken);
                        }
                    }
                });
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Ctrl-C: sum up what ran.
        }

        return await run.SummariseAsync(CancellationToken.None);
    }

    private static FileInfo[] Bundled(string folder, string pattern)
    {
        var directory = Path.Combine(AppContext.BaseDirectory, folder);
        var files = Directory.Exists(directory) ? Directory.GetFiles(directory, pattern).Order(StringComparer.Ordinal).Select(f => new FileInfo(f)).ToArray() : [];
        return files.Length > 0 ? files : throw new UsageException($"nothing bundled in {directory} matches {pattern}: rebuild, or give the file");
    }

    private static int Check(int value, int min, int max, string option) =>
        value >= min && value <= max ? value : throw new UsageException($"{option}: {value} is not from {min} to {max}");
}
