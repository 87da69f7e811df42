using System.Text.Json.Nodes;
using static ShadowNet.Daemon.Tests.CliTests;

namespace ShadowNet.Daemon.Tests;

/// <summary><c>shadownet demo</c>: the in-process daemon, the bundled traces and model, the real UDP hook.</summary>
[Collection("shadownetd")]
public class DemoTests
{
    [Fact]
    public async Task FastDemoPlaysTheBundledTracesToTheEndWithMostCreatesFindingStagedAddressesAndNoErrors()
    {
        var run = await CliAsync("demo", "--fast", "--json");
        Assert.True(run.Exit == 0, run.Stdout + run.Stderr);
        var summary = JsonNode.Parse(run.Stdout)!;
        var (creates, hits, misses, deletes) = ((long)summary["creates"]!, (long)summary["hits"]!, (long)summary["misses"]!, (long)summary["deletes"]!);
        Assert.Equal(288, (int)summary["steps"]!);
        Assert.True(creates > 100 && deletes > 100, run.Stdout);
        Assert.Equal(creates + deletes, (long)summary["events"]!);
        Assert.Equal(creates, hits + misses);
        // Reactive allocation would hit nothing; the bundled model prepares most creates ahead.
        Assert.True((double)summary["hitRate"]! > 0.9, run.Stdout);
        Assert.Equal(0L, (long)summary["errors"]!);
        Assert.Empty(summary["problems"]!.AsArray());
        Assert.True((int)summary["liveInstances"]! > 0, run.Stdout);
        Assert.Equal((int)summary["liveInstances"]!, (int)summary["routesAnnounced"]!);
        Assert.All(summary["forecasters"]!.AsArray(), f => Assert.EndsWith(": lstm", (string)f!, StringComparison.Ordinal));
    }

    [Fact]
    public async Task DemoWithBirdEndsWithBirdHoldingExactlyTheLiveInstanceRoutes()
    {
        var run = await CliAsync("demo", "--fast", "--json", "--with-bird", "--steps", "60");
        Assert.True(run.Exit == 0, run.Stdout + run.Stderr);
        var summary = JsonNode.Parse(run.Stdout)!;
        var live = (int)summary["liveInstances"]!;
        Assert.True(live > 0, run.Stdout);
        Assert.Equal(live, (int?)summary["birdRoutes"]);
        Assert.Equal(0L, (long)summary["errors"]!);
    }

    [Fact]
    public async Task DemoRefusesBadOptionsNamingThem()
    {
        var steps = await CliAsync("demo", "--fast", "--steps", "0");
        Assert.Equal((2, "shadownet: --steps: 0 is not from 1 to 100000\n"), (steps.Exit, steps.Stderr));
        var trace = await CliAsync("demo", "--fast", "--trace", "/nonexistent/trace.csv");
        Assert.Equal((2, "shadownet: --trace: /nonexistent/trace.csv does not exist\n"), (trace.Exit, trace.Stderr));
        var model = await CliAsync("demo", "--fast", "--model", "/nonexistent/model.onnx");
        Assert.Equal((2, "shadownet: --model: /nonexistent/model.onnx does not exist\n"), (model.Exit, model.Stderr));
    }

    [Fact]
    public async Task DemoWithADamagedModelRunsOnTheFallbackAndSaysSoWithExitCodeOne()
    {
        using var folder = new TempDirectory("demo-model");
        var damaged = folder.File("damaged.onnx");
        await File.WriteAllBytesAsync(damaged, (await File.ReadAllBytesAsync(Repository.File("models", "shadownet-lstm.onnx")))[..1000]);
        var run = await CliAsync("demo", "--fast", "--json", "--steps", "20", "--model", damaged);
        Assert.True(run.Exit == 1, run.Stdout + run.Stderr);
        var summary = JsonNode.Parse(run.Stdout)!;
        Assert.Equal(1L, (long)summary["errors"]!);
        Assert.Contains(summary["problems"]!.AsArray(), p => ((string)p!).Contains("damaged.onnx", StringComparison.Ordinal));
        Assert.All(summary["forecasters"]!.AsArray(), f => Assert.EndsWith(": ewma", (string)f!, StringComparison.Ordinal));
        Assert.True((long)summary["creates"]! > 0, run.Stdout);
    }
}
