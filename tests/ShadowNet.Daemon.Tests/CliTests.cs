using System.Diagnostics;
using System.Text.Json.Nodes;
using Google.Protobuf.WellKnownTypes;
using Grpc.Net.Client;
using ShadowNet.Api.V1;
using static ShadowNet.Daemon.Tests.Shadownetd;

namespace ShadowNet.Daemon.Tests;

/// <summary>The <c>shadownet</c> CLI and the libvirt hook script against the real shadownetd (gRPC on a Unix socket).</summary>
[Collection("shadownetd")]
public class CliTests
{
    [Fact]
    public async Task CliAndLibvirtHookCreateListAndDeleteInstances()
    {
        using var folder = new TempDirectory("daemon-cli");
        var udpPort = FreeUdpPort();
        var socket = folder.File("grpc.sock");
        var config = Config(folder.File("state.db"), TestPorts.Next(), udpPort);
        config["grpc"] = new JsonObject { ["listen"] = $"unix:{socket}" };
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        var server = $"unix:{socket}";

        using var daemon = Start(file);
        try
        {
            var status = await Eventually.WaitAsync(() => CliAsync("status", "--server", server), r => r.Exit == 0, Patience);
            Assert.True(status.Exit == 0, $"status never answered: {status.Stderr}");
            var health = await CliAsync("health", "--server", server);
            Assert.Equal((0, "serving\n"), (health.Exit, health.Stdout));

            var created = await CliAsync("hook", "create", "--instance", "vm-1", "--application", "web", "--host", "192.0.2.40", "--server", server);
            Assert.Equal((0, "vm-1 web 10.9.0.2 miss\n"), (created.Exit, created.Stdout));

            // The libvirt hook, as libvirtd runs it when a VM starts: name, operation, sub-operation, extra, XML on stdin.
            var environment = new Dictionary<string, string>
            {
                ["SHADOWNET_CLI"] = $"dotnet {Cli}",
                ["SHADOWNET_SERVER"] = server,
                ["SHADOWNET_UDP"] = $"127.0.0.1:{udpPort}",
                ["SHADOWNET_HOOK_KEY"] = KeyHex,
                ["SHADOWNET_HOST_ADDRESS"] = "192.0.2.41",
            };
            const string Xml = """
                <domain type='kvm'><name>web-7</name>
                  <metadata><shadownet:app xmlns:shadownet="https://shadownet.dev/libvirt/1" name="api"/></metadata>
                </domain>
                """;
            var started = await RunAsync(LibvirtHook, ["web-7", "started", "begin", "-"], Xml, environment);
            Assert.Equal((0, "web-7 api 10.9.0.3 miss\n"), (started.Exit, started.Stdout));

            var listing = await CliAsync("allocations", "--json", "--server", server);
            var allocations = JsonNode.Parse(listing.Stdout)!["allocations"]!.AsArray();
            Assert.Equal([("vm-1", "web", "192.0.2.40"), ("web-7", "api", "192.0.2.41")],
                allocations.Select(a => ((string)a!["instance"]!, (string)a["application"]!, (string)a["host"]!)));
            var pools = await CliAsync("pools", "--server", server);
            Assert.Matches(@"dynamic-v4\s+dynamic\s+ipv4\s+253\s+251\s+0\s+2\s+0", pools.Stdout);
            // No router answers here: the session is down, and for how long it has been.
            var peers = await CliAsync("peers", "--server", server);
            Assert.Matches(@"127\.0\.0\.2:\d+\s+65002\s+(Active|Connect)\s+\d+s\s", peers.Stdout);

            var stopped = await RunAsync(LibvirtHook, ["web-7", "release", "end", "-"], Xml, environment);
            Assert.Equal((0, "web-7 api 10.9.0.3 deleted\n"), (stopped.Exit, stopped.Stdout));
            var ignored = await RunAsync(LibvirtHook, ["web-7", "prepare", "begin", "-"], Xml, environment);
            Assert.Equal((0, ""), (ignored.Exit, ignored.Stdout));

            var missing = await CliAsync("hook", "delete", "--instance", "web-7", "--application", "api", "--server", server);
            Assert.Equal((1, "shadownet: NotFound: instance 'web-7' has no IPv4 address\n"), (missing.Exit, missing.Stderr));
            var usage = await CliAsync("hook", "create", "--instance", "x", "--application", "web", "--family", "ipv5", "--server", server);
            Assert.Equal((2, "shadownet: --family: 'ipv5' is not ipv4 or ipv6\n"), (usage.Exit, usage.Stderr));
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task ReplayCountsHitsAndWasteThroughTheRealAllocatorForEachPolicy()
    {
        using var folder = new TempDirectory("replay");
        var trace = folder.File("trace.csv");
        var start = new DateTime(2024, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        await File.WriteAllLinesAsync(trace, ["timestamp,value", .. Enumerable.Range(0, 400).Select(i =>
            $"{start.AddMinutes(5 * i):yyyy-MM-dd HH:mm:ss},{50 + (40 * Math.Sin(i * 2 * Math.PI / 96)):0.###}")]);

        async Task<JsonNode> ReplayAsync(string policy, params string[] planner)
        {
            var run = await CliAsync(["replay", "--trace", trace, "--policy", policy, "--peak-instances", "20", "--model", Repository.File("models", "shadownet-lstm.onnx"), .. planner]);
            Assert.True(run.Exit == 0, run.Stderr);
            return JsonNode.Parse(run.Stdout)!;
        }

        var reactive = await ReplayAsync("reactive");
        var warm = await ReplayAsync("static-warm:3");
        var lstm = await ReplayAsync("lstm");
        var creates = (long)reactive["Creates"]!;
        Assert.True(creates > 20, $"{creates} creates");
        Assert.Equal((0L, creates, 0.0), ((long)reactive["Hits"]!, (long)reactive["Misses"]!, (double)reactive["WasteRatio"]!));
        Assert.Equal(3.0, (double)warm["MeanReservedUnused"]!, 1);
        Assert.True((double)warm["HitRate"]! > 0.5, warm.ToJsonString());
        Assert.Equal(creates, (long)lstm["Hits"]! + (long)lstm["Misses"]!);
        Assert.True((double)lstm["HitRate"]! > 0.5, lstm.ToJsonString());

        // A planner slow to shrink keeps more reserved and idle than the default (one step's cool-down).
        var sticky = await ReplayAsync("lstm", "--shrink-cooldown", "120", "--shrink-hysteresis", "10");
        Assert.True((double)sticky["MeanReservedUnused"]! > (double)lstm["MeanReservedUnused"]!, $"{sticky.ToJsonString()} against {lstm.ToJsonString()}");

        // A floor of 20 spare addresses: never fewer reserved, so at least as many hits, and more idle.
        var floored = await ReplayAsync("lstm", "--minimum-reserve", "20");
        Assert.True((long)floored["Hits"]! >= (long)lstm["Hits"]! && (double)floored["MeanReservedUnused"]! >= 20, $"{floored.ToJsonString()} against {lstm.ToJsonString()}");

        var wrong = await CliAsync("replay", "--trace", trace, "--policy", "psychic");
        Assert.Equal((2, "shadownet: --policy: 'psychic' is not lstm, seasonal-naive, ewma, static-warm:K or reactive\n"), (wrong.Exit, wrong.Stderr));
        var negative = await CliAsync("replay", "--trace", trace, "--minimum-reserve", "-5");
        Assert.Equal((2, "shadownet: --shrink-cooldown, --shrink-hysteresis and --minimum-reserve cannot be negative\n"), (negative.Exit, negative.Stderr));
    }

    [Fact]
    public async Task ExportTrainingDataWritesEachMissWithTheMetricWindowReportedBeforeIt()
    {
        using var folder = new TempDirectory("daemon-export");
        var grpcPort = TestPorts.Next();
        var config = Config(folder.File("state.db"), TestPorts.Next(), FreeUdpPort());
        config["grpc"] = new JsonObject { ["listen"] = $"127.0.0.1:{grpcPort}" };
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        var server = $"http://127.0.0.1:{grpcPort}";
        using var daemon = Start(file);
        try
        {
            var status = await Eventually.WaitAsync(() => CliAsync("status", "--server", server), r => r.Exit == 0, Patience);
            Assert.True(status.Exit == 0, status.Stderr);
            using var channel = GrpcChannel.ForAddress(server);
            var api = new ShadowNet.Api.V1.Controller.ControllerClient(channel);
            var start = DateTimeOffset.UtcNow.AddMinutes(-5 * 45);
            using (var report = api.ReportMetrics())
            {
                for (var i = 0; i < 45; i++)
                {
                    var sample = new MetricSample { Application = "db", Time = Timestamp.FromDateTimeOffset(start.AddMinutes(5 * i)) };
                    sample.Values["instances"] = 4 + (i % 3);
                    await report.RequestStream.WriteAsync(sample);
                }

                await report.RequestStream.CompleteAsync();
                await report.ResponseAsync;
            }

            Assert.Equal(Outcome.Miss, (await api.CreateInstanceAsync(new CreateInstanceRequest { Instance = "db-1", Application = "db" })).Outcome);
            Assert.Equal(Outcome.Miss, (await api.CreateInstanceAsync(new CreateInstanceRequest { Instance = "web-1", Application = "web" })).Outcome);

            var export = folder.File("misses.jsonl");
            var lines = await Eventually.WaitAsync(async () =>
            {
                await CliAsync("export-training-data", "--out", export, "--server", server);
                return File.Exists(export) ? await File.ReadAllLinesAsync(export) : [];
            }, l => l.Length == 2, Patience);
            var db = JsonNode.Parse(lines[0])!;
            Assert.Equal(("miss", "db", "db-1", "10.9.0.2"), ((string)db["event"]!, (string)db["application"]!, (string)db["instance"]!, (string)db["address"]!));
            var samples = db["window"]!["samples"]!.AsArray();
            Assert.Equal(45, samples.Count);
            Assert.Equal([4.0, 5.0, 6.0], samples.Take(3).Select(s => (double)s!["instances"]!));
            Assert.Null(JsonNode.Parse(lines[1])!["window"]); // web reported nothing
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task ReportMetricsFeedsACsvFileToTheForecasterAndRefusesABadRowNamingIt()
    {
        using var folder = new TempDirectory("daemon-report");
        var grpcPort = TestPorts.Next();
        var config = Config(folder.File("state.db"), TestPorts.Next(), FreeUdpPort());
        config["grpc"] = new JsonObject { ["listen"] = $"127.0.0.1:{grpcPort}" };
        config["prediction"] = new JsonObject { ["fallback"] = "static-warm:2", ["stepSeconds"] = 1 };
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        var server = $"http://127.0.0.1:{grpcPort}";
        var csv = folder.File("web.csv");
        var start = DateTimeOffset.UtcNow.AddMinutes(-20);
        await File.WriteAllLinesAsync(csv,
        [
            "timestamp,instances,requests_per_second,deploys",
            .. Enumerable.Range(0, 4).Select(i => $"{start.AddMinutes(5 * i):O},{3 + i},{60 * (3 + i)},{(i == 2 ? "1" : "")}"),
        ]);
        var bad = folder.File("bad.csv");
        await File.WriteAllLinesAsync(bad, ["timestamp,instances", $"{start:O},3", $"{start.AddMinutes(5):O},lots"]);
        using var daemon = Start(file);
        try
        {
            var status = await Eventually.WaitAsync(() => CliAsync("status", "--server", server), r => r.Exit == 0, Patience);
            Assert.True(status.Exit == 0, status.Stderr);

            var sent = await CliAsync("report-metrics", "--csv", csv, "--application", "web", "--server", server);
            Assert.Equal((0, "4 samples of web accepted\n"), (sent.Exit, sent.Stdout));

            // The newest row: 6 instances at 60 requests/s each; static-warm:2 expects 8, so 480 requests/s.
            var forecast = await Eventually.WaitAsync(() => CliAsync("forecast", "--json", "--server", server),
                r => r.Stdout.Contains("\"expected\": 8", StringComparison.Ordinal), Patience);
            var web = JsonNode.Parse(forecast.Stdout)!["forecasts"]!.AsArray().Single()!;
            Assert.Equal(("web", 8, 480.0), ((string)web["application"]!, (int)web["expected"]!, (double)web["expectedRequestsPerSecond"]!));

            var refused = await CliAsync("report-metrics", "--csv", bad, "--application", "web", "--server", server);
            Assert.Equal((2, "shadownet: bad.csv line 3: instances 'lots' is not a number\n"), (refused.Exit, refused.Stderr));

            var nab = await CliAsync("report-metrics", "--csv", Repository.File("src", "ShadowNet.Cli", "Demo", "Traces", "grok_asg_anomaly.csv"), "--application", "grok", "--server", server);
            Assert.Equal(0, nab.Exit);
            Assert.Matches(@"^\d{4} samples of grok accepted\n$", nab.Stdout);
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }
    }

    /// <summary>The CLI in its own output folder, built in the same configuration as this test.</summary>
    private static string Cli => Path.Combine(Repository.Root, "src", "ShadowNet.Cli", "bin",
        Path.GetFileName(Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)))!, "net10.0", "shadownet.dll");

    private static string LibvirtHook => Repository.File("contrib", "libvirt", "qemu");

    internal static Task<(int Exit, string Stdout, string Stderr)> CliAsync(params string[] arguments) =>
        RunAsync("dotnet", [Cli, .. arguments], null, new Dictionary<string, string>());

    private static async Task<(int Exit, string Stdout, string Stderr)> RunAsync(string file, string[] arguments, string? stdin, Dictionary<string, string> environment)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            if (stdin is not null)
            {
                await process.StandardInput.WriteAsync(stdin);
            }

            process.StandardInput.Close();
        }
        catch (IOException)
        {
            // The command finished without reading its input (the hook ignores most operations): fine.
        }
        using var timeout = new CancellationTokenSource(Patience);
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }
}
