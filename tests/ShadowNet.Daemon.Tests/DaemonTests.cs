using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using ShadowNet.Addressing;
using ShadowNet.Hooks.Udp;
using static ShadowNet.Daemon.Tests.Shadownetd;

namespace ShadowNet.Daemon.Tests;

/// <summary>The real shadownetd process, configured by file, with a real BIRD 2 on loopback.</summary>
[Collection("shadownetd")]
public class DaemonTests
{
    public static TheoryData<string, string, string> BadValues() => new()
    {
        { "bgp.localAs", "0", "bgp:localAs: '0' is not a whole number from 1 to 4294967295" },
        { "bgp.routerId", "\"::1\"", "bgp:routerId: a BGP identifier is an IPv4 address" },
        { "bgp.peers.0.remoteAs", "\"sixty\"", "bgp:peers:0:remoteAs: 'sixty' is not a whole number" },
        { "bgp.peers.0.holdTime", "2", "bgp:peers:0:holdTime: must be 0 or at least 3" },
        { "bgp.peers.0.password", "\"" + new string('k', 81) + "\"", "bgp:peers:0:password: is longer than 80 octets of UTF-8" },
        { "bgp.peers.0.password", "\"\"", "bgp:peers:0:password: is empty" },
        { "bgp.peers.0.ttlSecurityHops", "255", "bgp:peers:0:ttlSecurityHops: '255' is not a whole number from 1 to 254" },
        { "bgp.peers.0.shutdown", "\"" + new string('m', 256) + "\"", "bgp:peers:0:shutdown: is longer than 255 octets of UTF-8" },
        { "pools.0.prefixes.0", "\"10.1.0.5/16\"", "pools:0:prefixes:0: '10.1.0.5/16' is not a prefix" },
        { "pools.0.prefixes.0", "\"10.1.0.0\"", "pools:0:prefixes:0: '10.1.0.0' is not a prefix" },
        { "pools.1.kind", "\"spare\"", "pools:1:kind: 'spare' is not 'shadow' or 'dynamic'" },
        { "pools.1.prefixes.0", "\"10.1.0.0/25\"", "pools: pool 'dynamic-v4': prefix 10.1.0.0/25 overlaps 10.1.0.0/24 of pool 'shadow-v4'" },
        { "hooks.udp.keys.1", "\"0011\"", "hooks:udp:keys:1: 2 octets; at least 16 are needed" },
        { "hooks.udp.listen", "\"127.0.0.1\"", "hooks:udp:listen: '127.0.0.1' is not an address:port" },
        { "hooks.udp.receiverNice", "-21", "hooks:udp:receiverNice: '-21' is not a whole number from -20 to 19" },
        { "store.sync", "\"sometimes\"", "store:sync: 'sometimes' is not 'full' or 'normal'" },
        { "store.expectedLeases", "-5", "store:expectedLeases: '-5' is not a whole number from 0 to 16777216" },
        { "pools.0.staging", "\"community\"", "routes:shadowCommunity: missing; pools with staging 'community' need it" },
        { "grpc", "{\"listen\":\"nowhere\"}", "grpc:listen: 'nowhere' is not an address:port" },
        { "metrics", "{\"listen\":\"127.0.0.1:0\"}", "metrics:listen: '127.0.0.1:0' is not an address:port" },
        { "warm", "[{\"application\":\"web\",\"count\":-1}]", "warm:0:count: '-1' is not a whole number" },
        { "prediction", "{\"fallback\":\"psychic\"}", "prediction:fallback: 'psychic' is not reactive, seasonal-naive, ewma or static-warm:K" },
        { "prediction", "{\"confidence\":1.5}", "prediction:confidence: '1.5' is not a number between 0 and 1" },
        { "prediction", "{\"shrinkCooldown\":\"soon\"}", "prediction:shrinkCooldown: 'soon' is not a time span (like 00:05:00)" },
        { "prediction", "{\"shrinkCooldown\":\"-00:05:00\"}", "prediction:shrinkCooldown: '-00:05:00' is not a time span (like 00:05:00)" },
        { "prediction", "{\"shrinkHysteresis\":-1}", "prediction:shrinkHysteresis: '-1' is not a whole number from 0 to 1000000" },
        { "prediction", "{\"minimumReserve\":\"a few\"}", "prediction:minimumReserve: 'a few' is not a whole number from 0 to 1000000" },
        { "prediction", "{\"prometheus\":{\"url\":\"ftp://x\"}}", "prediction:prometheus:url: 'ftp://x' is not an http(s) URL" },
        { "prediction", "{\"prometheus\":{\"url\":\"http://127.0.0.1:9090\",\"applications\":{\"web\":{\"load\":\"x\"}}}}", "prediction:prometheus:applications:web:instances: missing" },
        { "pools.0.staging", "\"sent\"", "pools:0:staging: 'sent' is not 'held' or 'community'" },
        { "routes.shadowCommunity", "\"65003:1:0:0\"", "routes:shadowCommunity: '65003:1:0:0' is not a community" },
        {
            "bgp.peers", "[{\"address\":\"127.0.0.2\",\"port\":1179,\"remoteAs\":65002},{\"address\":\"127.0.0.2\",\"port\":1179,\"remoteAs\":65004}]",
            "bgp:peers:1:address: 127.0.0.2 port 1179 is bgp:peers:0's too"
        },
    };

    [Theory]
    [MemberData(nameof(BadValues))]
    public async Task InvalidConfigurationStopsStartupNamingTheKey(string path, string json, string message)
    {
        using var folder = new TempDirectory("daemon-config");
        var config = Config(folder.File("state.db"), 1179, 4790);
        Set(config, path, JsonNode.Parse(json)!);
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        var (exit, stderr) = await RunToExitAsync(file);
        Assert.Equal(2, exit);
        Assert.Contains(message, stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CheckSaysWhatAValidFileDescribesAndNamesTheKeyOfABadOneWithoutStarting()
    {
        using var folder = new TempDirectory("daemon-check");
        var config = Config(folder.File("state.db"), 1179, 4790);
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());

        var (exit, output) = await RunToExitAsync(file, "--check");
        Assert.Equal(0, exit);
        Assert.Contains($"{file} is valid: AS 65003, 1 BGP peer(s) (127.0.0.2:1179), 2 pool(s) (shadow-v4 shadow 10.1.0.0/24, dynamic-v4 dynamic 10.9.0.0/24), "
            + $"store {folder.File("state.db")}, UDP hooks 127.0.0.1:4790, gRPC off, metrics off", output, StringComparison.Ordinal);

        config["bgp"]!["peers"]![0]!["holdTime"] = 2;
        await File.WriteAllTextAsync(file, config.ToJsonString());
        (exit, output) = await RunToExitAsync(file, "--check");
        Assert.Equal((2, true), (exit, output.Contains("bgp:peers:0:holdTime: must be 0 or at least 3", StringComparison.Ordinal)));
        Assert.False(File.Exists(folder.File("state.db")), "a check opened the store");
    }

    [Fact]
    public void SampleConfigurationInTheOperatorGuideIsTheRepositoryFileAndIsValid()
    {
        // The documented sample is the one checked here, so that it cannot drift from the code.
        var sample = File.ReadAllText(Repository.File("config", "shadownet.example.json")).TrimEnd();
        var guide = File.ReadAllText(Repository.File("docs", "operator-guide.md"));
        var start = guide.IndexOf("```json\n", StringComparison.Ordinal) + "```json\n".Length;
        Assert.Equal(sample, guide[start..guide.IndexOf("```", start, StringComparison.Ordinal)].TrimEnd());
        var configuration = new ConfigurationBuilder()
            .AddJsonFile(Repository.File("config", "shadownet.example.json"))
            .Build();
        var read = Configuration.DaemonConfiguration.Read(configuration);
        Assert.Equal((65003u, 3, 1), (read.Bgp.LocalAs, read.Pools.Count, read.Peers.Count));
        Assert.NotNull(read.UdpHooks);
        Assert.NotNull(read.GrpcListen);
        Assert.NotNull(read.MetricsListen);
        Assert.Equal("/opt/shadownet/shadownet-lstm.onnx", read.Prediction?.ModelPath);
        Assert.Equal(new Controller.Planning.PlannerOptions(), read.Prediction?.Planner);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TheHostWatchesNoConfigurationFileForChanges(bool withGrpc)
    {
        var settings = new ConfigurationBuilder().AddJsonFile(Repository.File("config", "shadownet.example.json")).Build();
        var configuration = Configuration.DaemonConfiguration.Read(settings);
        configuration = withGrpc ? configuration : configuration with { GrpcListen = null };
        using var host = DaemonHost.Build(configuration, settings);

        // The hosts' defaults add appsettings files from the working directory; none may be watched.
        var files = ((IConfigurationRoot)host.Services.GetRequiredService<IConfiguration>()).Providers.OfType<FileConfigurationProvider>().ToList();
        Assert.NotEmpty(files);
        Assert.All(files, f => Assert.False(f.Source.ReloadOnChange, $"{f.Source.Path} is watched"));
    }

    [Fact]
    public void ThePlannersShrinkCooldownHysteresisAndMinimumReserveComeFromThePredictionSection()
    {
        var configuration = new ConfigurationBuilder()
            .AddJsonFile(Repository.File("config", "shadownet.example.json"))
            .AddInMemoryCollection(new Dictionary<string, string?> { ["prediction:shrinkCooldown"] = "00:15:00", ["prediction:shrinkHysteresis"] = "4", ["prediction:minimumReserve"] = "3" })
            .Build();
        var planner = Configuration.DaemonConfiguration.Read(configuration).Prediction!.Planner;
        Assert.Equal((TimeSpan.FromMinutes(15), 4, 3), (planner.ShrinkCooldown, planner.ShrinkHysteresis, planner.MinimumReserve));
    }

    [Fact]
    public void ExpectedLeasesComeFromTheStoreSection()
    {
        ConfigurationManager Settings(string? expected)
        {
            var settings = new ConfigurationManager();
            settings.AddJsonFile(Repository.File("config", "shadownet.example.json"));
            settings["store:expectedLeases"] = expected;
            return settings;
        }

        var (unsized, sized) = (Configuration.DaemonConfiguration.Read(Settings(null)), Configuration.DaemonConfiguration.Read(Settings("300000")));
        Assert.Equal((0, 300_000), (unsized.ExpectedLeases, sized.ExpectedLeases));
    }

    [Fact]
    public async Task DamagedStoreStopsStartupNamingTheFile()
    {
        using var folder = new TempDirectory("daemon-store");
        var store = folder.File("state.db");
        await File.WriteAllBytesAsync(store, Encoding.ASCII.GetBytes(new string('x', 4096)));
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, Config(store, 1179, FreeUdpPort()).ToJsonString());
        var (exit, stderr) = await RunToExitAsync(file);
        Assert.Equal(3, exit);
        Assert.Contains($"state store '{store}' is not a database", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AStoreThatFailsWhileServingIsReportedRefusesChangesKeepsRoutesAndLosesNothingAcknowledged()
    {
        using var folder = new TempDirectory("daemon-store-fails");
        var udpPort = FreeUdpPort();
        var grpcPort = TestPorts.Next();
        var metricsPort = TestPorts.Next();
        var config = Config(folder.File("state.db"), TestPorts.Next(), udpPort);
        config["grpc"] = new JsonObject { ["listen"] = $"127.0.0.1:{grpcPort}" };
        config["metrics"] = new JsonObject { ["listen"] = $"127.0.0.1:{metricsPort}" };
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"http://127.0.0.1:{grpcPort}");
        var api = new ShadowNet.Api.V1.Controller.ControllerClient(channel);
        using var client = new HookClient(new IPEndPoint(IPAddress.Loopback, udpPort), 1, Convert.FromHexString(KeyHex), 1_000) { MaxAttempts = 12 };
        var acknowledged = new List<string>();

        var (daemon, output) = StartCollectingOutput(file);
        using (daemon)
        {
            try
            {
                Assert.Equal(HookStatus.Miss, (await client.CreateAsync("vm-0", "web", IpFamily.IPv4, null)).Status);
                acknowledged.Add("vm-0");
                var health = new Grpc.Health.V1.Health.HealthClient(channel);
                Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, (await health.CheckAsync(new())).Status);

                // The store's files may not grow from here (as on a full disk): the first commit or
                // checkpoint that needs another page fails. Bounded: 200 creates at most.
                using (var limit = Process.Start("prlimit", $"--pid {daemon.Id} --fsize=0"))
                {
                    await limit.WaitForExitAsync();
                    Assert.Equal(0, limit.ExitCode);
                }

                var status = HookStatus.Miss;
                for (var i = 1; i < 200 && status != HookStatus.Unavailable; i++)
                {
                    status = (await client.CreateAsync($"vm-{i}", "web", IpFamily.IPv4, null)).Status;
                    if (status == HookStatus.Miss)
                    {
                        acknowledged.Add($"vm-{i}");
                    }
                }

                Assert.Equal(HookStatus.Unavailable, status);
                Assert.False(daemon.HasExited);

                // Refused over both hooks, with the reason; reported in the status, the metrics and the log (once).
                Assert.Equal(HookStatus.Unavailable, (await client.CreateAsync("vm-late", "web", IpFamily.IPv4, null)).Status);
                Assert.Equal(HookStatus.Unavailable, (await client.DeleteAsync("vm-0", "web", IpFamily.IPv4)).Status);
                var refused = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () =>
                    await api.CreateInstanceAsync(new ShadowNet.Api.V1.CreateInstanceRequest { Instance = "vm-grpc", Application = "web" }));
                Assert.Equal(Grpc.Core.StatusCode.Unavailable, refused.StatusCode);
                Assert.Contains("state store has failed", refused.Status.Detail, StringComparison.Ordinal);
                var unreadable = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () =>
                    await api.ListAllocationsAsync(new ShadowNet.Api.V1.ListAllocationsRequest()));
                Assert.Equal(Grpc.Core.StatusCode.Unavailable, unreadable.StatusCode);
                Assert.Contains("failed to commit", unreadable.Status.Detail, StringComparison.Ordinal);
                var failure = (await api.GetStatusAsync(new ShadowNet.Api.V1.GetStatusRequest())).StoreFailure;
                Assert.Contains($"state store '{folder.File("state.db")}' failed", failure, StringComparison.Ordinal);
                using var http = new HttpClient();
                Assert.Matches(@"\nshadownet_store_failed\{[^}]*\} 1\n", await http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics"));
                await Eventually.WaitAsync(() => Task.FromResult(output()), o => o.Contains("Creates and deletes are refused", StringComparison.Ordinal), Patience);
                Assert.Single(output().Split('\n'), l => l.Contains("Creates and deletes are refused", StringComparison.Ordinal));
                Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.NotServing, (await health.CheckAsync(new())).Status);
                var probe = await CliTests.CliAsync("health", "--server", $"http://127.0.0.1:{grpcPort}");
                Assert.Equal((1, "not serving\n"), (probe.Exit, probe.Stdout));

                // The routes of the acknowledged instances stay announced.
                var routes = (await api.ListRoutesAsync(new ShadowNet.Api.V1.ListRoutesRequest())).Routes;
                Assert.Equal(acknowledged.Count, routes.Count(r => r.State == "active"));
            }
            finally
            {
                daemon.Kill();
                await daemon.WaitForExitAsync();
            }
        }

        // Restarted (the disk "fixed"): every acknowledged create is there, and the store works again.
        using var restarted = Start(file);
        try
        {
            var allocations = await Eventually.WaitAsync(async () =>
            {
                try
                {
                    return (await api.ListAllocationsAsync(new ShadowNet.Api.V1.ListAllocationsRequest())).Allocations;
                }
                catch (Grpc.Core.RpcException)
                {
                    return null;
                }
            }, a => a is not null, Patience);
            Assert.Equal(acknowledged.Order(), allocations!.Where(a => a.State == "active").Select(a => a.Instance).Order());
            Assert.Equal(HookStatus.Miss, (await client.CreateAsync("vm-after", "web", IpFamily.IPv4, null)).Status);
        }
        finally
        {
            restarted.Kill();
            await restarted.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task SighupRotatesTheHookKeysWithoutARestartAndABadFileKeepsTheKeysInUse()
    {
        using var folder = new TempDirectory("daemon-sighup");
        var udpPort = FreeUdpPort();
        var config = Config(folder.File("state.db"), TestPorts.Next(), udpPort);
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        const string NewKeyHex = "6e65772d6b65792d61667465722d726f746174696f6e";
        var hook = new IPEndPoint(IPAddress.Loopback, udpPort);
        using var oldKey = new HookClient(hook, 1, Convert.FromHexString(KeyHex), 300) { MaxAttempts = 10 };
        using var newKey = new HookClient(hook, 2, Convert.FromHexString(NewKeyHex), 300) { MaxAttempts = 10 };
        // For the creates that must go unanswered: three tries, 2.1 s (the attempts' timeouts double).
        using var oldKeyOnce = new HookClient(hook, 1, Convert.FromHexString(KeyHex), 300) { MaxAttempts = 3 };
        using var newKeyOnce = new HookClient(hook, 2, Convert.FromHexString(NewKeyHex), 300) { MaxAttempts = 3 };

        var (daemon, output) = StartCollectingOutput(file);
        using (daemon)
        {
            try
            {
                Assert.Equal(HookStatus.Miss, (await oldKey.CreateAsync("vm-1", "web", IpFamily.IPv4, null)).Status);
                await Assert.ThrowsAsync<TimeoutException>(() => newKeyOnce.CreateAsync("vm-2", "web", IpFamily.IPv4, null));

                // A file that does not read: logged, naming the key; the keys in use stay.
                config["hooks"]!["udp"]!["keys"] = new JsonObject { ["2"] = "0011" };
                await File.WriteAllTextAsync(file, config.ToJsonString());
                Signal(daemon, "HUP");
                await Eventually.WaitAsync(() => Task.FromResult(output()), o => o.Contains("not taken", StringComparison.Ordinal), Patience);
                Assert.Contains("hooks:udp:keys:2: 2 octets", output(), StringComparison.Ordinal);
                Assert.Equal(HookStatus.Miss, (await oldKey.CreateAsync("vm-3", "web", IpFamily.IPv4, null)).Status);

                // The rotation: key 2 in, key 1 out.
                config["hooks"]!["udp"]!["keys"] = new JsonObject { ["2"] = NewKeyHex };
                await File.WriteAllTextAsync(file, config.ToJsonString());
                Signal(daemon, "HUP");
                await Eventually.WaitAsync(() => Task.FromResult(output()), o => o.Contains("key ids 2;", StringComparison.Ordinal), Patience);
                Assert.Equal(HookStatus.Miss, (await newKey.CreateAsync("vm-4", "web", IpFamily.IPv4, null)).Status);
                await Assert.ThrowsAsync<TimeoutException>(() => oldKeyOnce.CreateAsync("vm-5", "web", IpFamily.IPv4, null));
                Assert.False(daemon.HasExited);
            }
            finally
            {
                daemon.Kill();
                await daemon.WaitForExitAsync();
            }
        }
    }

    [Fact]
    public async Task SighupAddsRemovesAndResetsBgpPeersLeavingTheOthersSessionsUp()
    {
        using var folder = new TempDirectory("daemon-peers");
        var (portA, portB, udpPort) = (TestPorts.Next(), TestPorts.Next(), FreeUdpPort());
        await using var birdA = Bird(portA, logStates: true);
        await using var birdB = Bird(portB, logStates: true);
        await birdA.StartAsync();
        await birdB.StartAsync();
        var config = Config(folder.File("state.db"), portA, udpPort);
        var metricsPort = TestPorts.Next();
        config["metrics"] = new JsonObject { ["listen"] = $"127.0.0.1:{metricsPort}" };
        using var http = new HttpClient();
        Task<string> Metrics() => http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics");
        var peers = (JsonArray)config["bgp"]!["peers"]!;
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        using var client = new HookClient(new IPEndPoint(IPAddress.Loopback, udpPort), 1, Convert.FromHexString(KeyHex), 1_000) { MaxAttempts = 12 };
        // BIRD logs "State changed to up" each time the session comes up.
        static int Ups(BirdPeer bird) => bird.Log.Split("State changed to up").Length - 1;
        static int Reloads(string log) => log.Split("SIGHUP: ").Length - 1;

        var (daemon, output) = StartCollectingOutput(file);
        async Task ReloadAsync(string expected)
        {
            await File.WriteAllTextAsync(file, config.ToJsonString());
            var before = Reloads(output());
            Signal(daemon, "HUP");
            await Eventually.WaitAsync(() => Task.FromResult(output()), o => Reloads(o) > before, Patience);
            Assert.Contains(expected, output(), StringComparison.Ordinal);
        }

        using (daemon)
        {
            try
            {
                Assert.Equal(HookStatus.Miss, (await client.CreateAsync("vm-1", "web", IpFamily.IPv4, Address.Parse("192.0.2.11"))).Status);
                await Eventually.WaitAsync(() => birdA.RouteCountAsync("master4"), n => n == 1, Patience);
                Assert.False(await birdB.IsEstablishedAsync());

                // A new router: B gets the table; A's session is not touched.
                peers.Add(new JsonObject
                {
                    ["name"] = "bird-b", ["address"] = "127.0.0.2", ["port"] = portB, ["remoteAs"] = 65002,
                    ["localAddress"] = "127.0.0.3", ["families"] = new JsonArray("ipv4"), ["holdTime"] = 30,
                });
                await ReloadAsync("BGP peers added bird-b, removed none, reset none, 1 unchanged");
                var routes = await Eventually.WaitAsync(() => birdB.RoutesAsync("master4"), r => r.Count == 1, Patience);
                Assert.Equal("192.0.2.11", routes["10.9.0.2/32"].NextHop);
                Assert.True(Ups(birdA) == 1, birdA.Log);

                // A leaves the configuration (Cease, Peer De-configured); B's hold time changes, so its session is
                // reset (Cease, Other Configuration Change) and comes back with the new one and the table.
                peers.RemoveAt(0);
                peers[0]!["holdTime"] = 20;
                await ReloadAsync($"BGP peers added none, removed 127.0.0.2:{portA}, reset bird-b, 0 unchanged");
                await Eventually.WaitAsync(() => Task.FromResult(birdA.Log), l => l.Contains("Received: Peer de-configured", StringComparison.Ordinal), Patience);
                await Eventually.WaitAsync(() => birdA.RouteCountAsync("master4"), n => n == 0, Patience);
                await Eventually.WaitAsync(() => Task.FromResult(birdB.Log), l => l.Contains("Received: Other configuration change", StringComparison.Ordinal), Patience);
                await Eventually.WaitAsync(() => Task.FromResult(Ups(birdB)), n => n == 2, Patience);
                Assert.Matches(@"Hold timer:\s+[\d.]+/20", await birdB.BirdcAsync("show protocols all sn"));
                Assert.Equal(HookStatus.Miss, (await client.CreateAsync("vm-2", "web", IpFamily.IPv4, Address.Parse("192.0.2.12"))).Status);
                await Eventually.WaitAsync(() => birdB.RouteCountAsync("master4"), n => n == 2, Patience);

                // A peer setting that cannot work changes nothing; a setting that takes a restart is named and waits.
                // Both are in the metrics too.
                peers[0]!["holdTime"] = 2;
                await ReloadAsync("not taken, nothing changed: bgp:peers:0:holdTime: must be 0 or at least 3");
                await Eventually.WaitAsync(Metrics, m => System.Text.RegularExpressions.Regex.IsMatch(m, @"\nshadownet_config_last_reload_successful\{[^}]*\} 0\n"), Patience);
                Assert.Matches(@"\nshadownet_config_reloads_total\{[^}]*outcome=""failed""[^}]*\} 1\n", await Metrics());
                peers[0]!["holdTime"] = 20;
                config["routes"]!["defaultNextHopV4"] = "192.0.2.98";
                await ReloadAsync("BGP peers added none, removed none, reset none, 1 unchanged");
                Assert.Contains("SIGHUP: routes:defaultNextHopV4 changed in", output(), StringComparison.Ordinal);
                var metrics = await Eventually.WaitAsync(Metrics, m => System.Text.RegularExpressions.Regex.IsMatch(m, @"\nshadownet_config_last_reload_successful\{[^}]*\} 1\n"), Patience);
                Assert.Matches(@"\nshadownet_config_restart_pending\{[^}]*\} 1\n", metrics);
                Assert.Matches(@"\nshadownet_config_reloads_total\{[^}]*outcome=""taken""[^}]*\} 3\n", metrics);
                Assert.Equal(2, Ups(birdB));
                Assert.False(await birdA.IsEstablishedAsync());
                Assert.False(daemon.HasExited);
            }
            finally
            {
                daemon.Kill();
                await daemon.WaitForExitAsync();
            }
        }
    }

    [Fact]
    public async Task APeerHeldDownForMaintenanceIsToldWhyStaysDownAndComesBackWhenReleased()
    {
        using var folder = new TempDirectory("daemon-shutdown");
        var (birdPort, udpPort, grpcPort, metricsPort) = (TestPorts.Next(), FreeUdpPort(), TestPorts.Next(), TestPorts.Next());
        await using var bird = Bird(birdPort, logStates: true);
        await bird.StartAsync();
        var config = Config(folder.File("state.db"), birdPort, udpPort);
        config["grpc"] = new JsonObject { ["listen"] = $"127.0.0.1:{grpcPort}" };
        config["metrics"] = new JsonObject { ["listen"] = $"127.0.0.1:{metricsPort}" };
        var peer = config["bgp"]!["peers"]![0]!.AsObject();
        peer["name"] = "tor-a";
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"http://127.0.0.1:{grpcPort}");
        var api = new ShadowNet.Api.V1.Controller.ControllerClient(channel);
        using var http = new HttpClient();
        using var client = new HookClient(new IPEndPoint(IPAddress.Loopback, udpPort), 1, Convert.FromHexString(KeyHex), 1_000) { MaxAttempts = 12 };
        static int Ups(BirdPeer bird) => bird.Log.Split("State changed to up").Length - 1;

        var (daemon, output) = StartCollectingOutput(file);
        using (daemon)
        {
            async Task ReloadAsync(int resets)
            {
                await File.WriteAllTextAsync(file, config.ToJsonString());
                Signal(daemon, "HUP");
                await Eventually.WaitAsync(() => Task.FromResult(output()), o => o.Split("BGP peers added none, removed none, reset tor-a, 0 unchanged").Length - 1 == resets, Patience);
            }

            try
            {
                Assert.Equal(HookStatus.Miss, (await client.CreateAsync("vm-1", "web", IpFamily.IPv4, null)).Status);
                Assert.Single(await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == 1, Patience));

                peer["shutdown"] = "maintenance window 7";
                await ReloadAsync(resets: 1);
                await Eventually.WaitAsync(() => Task.FromResult(bird.Log), l => l.Contains("Received: Administrative shutdown: \"maintenance window 7\"", StringComparison.Ordinal), Patience);
                Assert.Empty(await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == 0, Patience));
                var listed = Assert.Single((await api.ListPeersAsync(new ShadowNet.Api.V1.ListPeersRequest())).Peers);
                Assert.Equal(("Idle", true, "maintenance window 7"), (listed.State, listed.Shutdown, listed.ShutdownMessage));
                await Eventually.WaitAsync(() => http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics"),
                    m => System.Text.RegularExpressions.Regex.IsMatch(m, @"\nshadownet_bgp_session_shutdown\{[^}]*peer=""tor-a""[^}]*\} 1\n"), Patience);
                // Creates go on while it is down; the session stays down (the daemon does not connect).
                Assert.Equal(HookStatus.Miss, (await client.CreateAsync("vm-2", "web", IpFamily.IPv4, null)).Status);
                await Task.Delay(TimeSpan.FromSeconds(3));
                Assert.Equal((1, false), (Ups(bird), await bird.IsEstablishedAsync()));

                peer.Remove("shutdown");
                await ReloadAsync(resets: 2);
                Assert.Equal(2, await Eventually.WaitAsync(() => Task.FromResult(Ups(bird)), n => n == 2, Patience));
                Assert.Equal(2, (await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == 2, Patience)).Count);
            }
            finally
            {
                daemon.Kill();
                await daemon.WaitForExitAsync();
            }
        }
    }

    [Fact]
    public async Task SighupGrowsAPoolThatRanOutAndAddsANewOneBothAnnouncedWhileTakingAddressesOutWaitsForARestart()
    {
        using var folder = new TempDirectory("daemon-grow");
        var (birdPort, udpPort) = (TestPorts.Next(), FreeUdpPort());
        await using var bird = Bird(birdPort);
        await bird.StartAsync();
        var config = Config(folder.File("state.db"), birdPort, udpPort);
        var dynamic = config["pools"]![1]!.AsObject();
        dynamic["prefixes"] = new JsonArray("10.9.0.0/30"); // two addresses: .1 and .2
        dynamic.Remove("exclude");
        var metricsPort = TestPorts.Next();
        config["metrics"] = new JsonObject { ["listen"] = $"127.0.0.1:{metricsPort}" };
        using var http = new HttpClient();
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        using var client = new HookClient(new IPEndPoint(IPAddress.Loopback, udpPort), 1, Convert.FromHexString(KeyHex), 1_000) { MaxAttempts = 12 };
        async Task<(HookStatus, Address?)> CreateAsync(string instance, string application = "web")
        {
            var reply = await client.CreateAsync(instance, application, IpFamily.IPv4, Address.Parse("192.0.2.20"));
            return (reply.Status, reply.Status == HookStatus.Exhausted ? null : reply.Address);
        }

        var (daemon, output) = StartCollectingOutput(file);
        using (daemon)
        {
            async Task ReloadAsync(string expected)
            {
                await File.WriteAllTextAsync(file, config.ToJsonString());
                Signal(daemon, "HUP");
                await Eventually.WaitAsync(() => Task.FromResult(output()), o => o.Contains(expected, StringComparison.Ordinal), Patience);
            }

            try
            {
                Assert.Equal((HookStatus.Miss, Address.Parse("10.9.0.1")), await CreateAsync("vm-1"));
                Assert.Equal((HookStatus.Miss, Address.Parse("10.9.0.2")), await CreateAsync("vm-2"));
                Assert.Equal((HookStatus.Exhausted, null), await CreateAsync("vm-3"));

                dynamic["prefixes"] = new JsonArray("10.9.0.0/30", "10.9.1.0/30");
                await ReloadAsync("pools grown: dynamic-v4 +2 addresses");
                Assert.Equal((HookStatus.Miss, Address.Parse("10.9.1.1")), await CreateAsync("vm-3"));
                // The export guard took the new prefix with the pool: its address is announced.
                var routes = await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == 3, Patience);
                Assert.Equal("192.0.2.20", routes["10.9.1.1/32"].NextHop);

                // Taking a prefix out waits for a restart, with the reason; the pool serves on as it was.
                dynamic["prefixes"] = new JsonArray("10.9.1.0/30");
                await ReloadAsync("pools:1:prefixes:0, pools:1:prefixes:1 changed in");
                Assert.Contains("pools grown: none", output(), StringComparison.Ordinal);
                Assert.Contains("pool 'dynamic-v4': addresses 10.9.0.1-10.9.0.2 are no longer all in it", output(), StringComparison.Ordinal);
                Assert.Equal((HookStatus.Miss, Address.Parse("10.9.1.2")), await CreateAsync("vm-4"));
                Assert.Equal(4, (await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == 4, Patience)).Count);

                // A new pool after the others, for an application of its own: taken while serving, announced.
                dynamic["prefixes"] = new JsonArray("10.9.0.0/30", "10.9.1.0/30");
                ((JsonArray)config["pools"]!).Add(new JsonObject
                {
                    ["name"] = "api-dynamic", ["kind"] = "dynamic", ["prefixes"] = new JsonArray("10.9.2.0/30"), ["application"] = "api",
                });
                await ReloadAsync("pools grown: none; pools added: api-dynamic (2 addresses)");
                Assert.Equal((HookStatus.Miss, Address.Parse("10.9.2.1")), await CreateAsync("api-1", "api"));
                Assert.Equal("192.0.2.20", (await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == 5, Patience))["10.9.2.1/32"].NextHop);
                // The pools' usage (metrics, ListPools) has the new pool, and the grown one's size.
                var metrics = await Eventually.WaitAsync(() => http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics"),
                    m => System.Text.RegularExpressions.Regex.IsMatch(m, @"shadownet_pool_addresses\{[^}]*pool=""api-dynamic""[^}]*state=""active""[^}]*\} 1\n"), Patience);
                Assert.Matches(@"shadownet_pool_addresses\{[^}]*pool=""dynamic-v4""[^}]*state=""free""[^}]*\} 0\n", metrics);
            }
            finally
            {
                daemon.Kill();
                await daemon.WaitForExitAsync();
            }
        }
    }

    [Fact]
    public async Task TheLocRibIsSizedForAsManyRoutesAsTheAllocatorsTablesHoldLeases()
    {
        using var folder = new TempDirectory("daemon-sizing");
        var config = Config(folder.File("state.db"), TestPorts.Next(), FreeUdpPort());
        config["store"]!["expectedLeases"] = 300;
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());

        var (daemon, output) = StartCollectingOutput(file);
        using (daemon)
        {
            try
            {
                await Eventually.WaitAsync(() => Task.FromResult(output()), o => o.Contains("shadownetd started", StringComparison.Ordinal), Patience);
                var sizing = System.Text.RegularExpressions.Regex.Match(output(), @"tables sized for (\d+) leases, Loc-RIB for (\d+) routes");
                Assert.True(sizing.Success, output());
                Assert.Equal(300, int.Parse(sizing.Groups[1].Value, CultureInfo.InvariantCulture));
                Assert.InRange(int.Parse(sizing.Groups[2].Value, CultureInfo.InvariantCulture), 300, 400); // a prime at least as large
            }
            finally
            {
                daemon.Kill();
                await daemon.WaitForExitAsync();
            }
        }
    }

    [Fact]
    public async Task LeasesPastExpectedLeasesAreWarnedAboutOnceNamingTheKey()
    {
        // No BGP peer answers here: the hook serves without one, and the warning is about the tables.
        using var folder = new TempDirectory("daemon-outgrown");
        var udpPort = FreeUdpPort();
        var config = Config(folder.File("state.db"), TestPorts.Next(), udpPort);
        config["store"]!["expectedLeases"] = 3;
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());

        var (daemon, output) = StartCollectingOutput(file);
        using (daemon)
        {
            try
            {
                using var client = new HookClient(new IPEndPoint(IPAddress.Loopback, udpPort), 1, Convert.FromHexString(KeyHex), 1_000) { MaxAttempts = 12 };
                for (var i = 0; i < 3; i++)
                {
                    Assert.Equal(HookStatus.Miss, (await client.CreateAsync($"vm-{i}", "web", IpFamily.IPv4, null)).Status);
                }

                Assert.DoesNotContain("store:expectedLeases", output(), StringComparison.Ordinal);
                for (var i = 3; i < 6; i++)
                {
                    Assert.Equal(HookStatus.Miss, (await client.CreateAsync($"vm-{i}", "web", IpFamily.IPv4, null)).Status);
                }

                await Eventually.WaitAsync(() => Task.FromResult(output()), o => o.Contains("store:expectedLeases", StringComparison.Ordinal), Patience);
                var warnings = output().Split('\n').Count(l => l.Contains("leases are held, more than the 3 the tables were sized for", StringComparison.Ordinal));
                Assert.Equal(1, warnings);
            }
            finally
            {
                daemon.Kill();
                await daemon.WaitForExitAsync();
            }
        }
    }

    [Fact]
    public async Task CreatesReachBirdAndSurviveSigkillAndSigtermClosesTheSessionCleanly()
    {
        using var folder = new TempDirectory("daemon");
        var birdPort = TestPorts.Next();
        var udpPort = FreeUdpPort();
        await using var bird = Bird(birdPort);
        await bird.StartAsync();
        var file = folder.File("shadownetd.json");
        var config = Config(folder.File("state.db"), birdPort, udpPort);
        config["events"] = new JsonObject { ["missLog"] = folder.File("misses.jsonl") };
        await File.WriteAllTextAsync(file, config.ToJsonString());
        var hooks = new IPEndPoint(IPAddress.Loopback, udpPort);
        var key = Convert.FromHexString(KeyHex);

        using (var daemon = Start(file))
        {
            using var client = new HookClient(hooks, 1, key, 1_000) { MaxAttempts = 12 };
            for (var i = 0; i < 5; i++)
            {
                var reply = await client.CreateAsync($"vm-{i}", "web", IpFamily.IPv4, Address.Parse($"192.0.2.{10 + i}"));
                Assert.Equal((HookStatus.Miss, Address.Parse($"10.9.0.{2 + i}")), (reply.Status, reply.Address));
            }

            Assert.Equal(HookStatus.Deleted, (await client.DeleteAsync("vm-0", "web", IpFamily.IPv4)).Status);
            var routes = await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == 4, Patience);
            Assert.Equal("192.0.2.14", routes["10.9.0.6/32"].NextHop);

            // Each miss is a JSON line for retraining.
            var lines = await Eventually.WaitAsync(() => File.ReadAllLinesAsync(folder.File("misses.jsonl")), l => l.Length == 5, Patience);
            var miss = JsonNode.Parse(lines[4])!;
            Assert.Equal(("miss", "unexpected scaling, no pre-allocation", "web", "vm-4", "10.9.0.6", "192.0.2.14"),
                ((string)miss["event"]!, (string)miss["reason"]!, (string)miss["application"]!, (string)miss["instance"]!, (string)miss["address"]!, (string)miss["host"]!));

            // kill -9: no NOTIFICATION, no flush. BIRD drops the routes (graceful restart is off).
            daemon.Kill();
            await daemon.WaitForExitAsync();
            await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 0, Patience);
        }

        using (var restarted = Start(file))
        {
            var routes = await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == 4, Patience);
            Assert.Equal(["10.9.0.3/32", "10.9.0.4/32", "10.9.0.5/32", "10.9.0.6/32"], routes.Keys.Order());
            Assert.Equal("192.0.2.11", routes["10.9.0.3/32"].NextHop);

            // A retried create of a live instance is idempotent across the restart.
            using var client = new HookClient(hooks, 1, key, 1_000_000) { MaxAttempts = 12 };
            Assert.Equal((HookStatus.Miss, Address.Parse("10.9.0.3")), ((await client.CreateAsync("vm-1", "web", IpFamily.IPv4, Address.Parse("192.0.2.11"))).Status, (await client.CreateAsync("vm-1", "web", IpFamily.IPv4, Address.Parse("192.0.2.11"))).Address));

            Signal(restarted, "TERM");
            using var exit = new CancellationTokenSource(Patience);
            await restarted.WaitForExitAsync(exit.Token);
            Assert.Equal(0, restarted.ExitCode);
            await Eventually.WaitAsync(() => Task.FromResult(bird.Log), log => log.Contains("shadownetd shutting down", StringComparison.Ordinal), Patience);
        }
    }

    [Fact]
    public async Task SigkilledDaemonWithGracefulRestartKeepsBirdForwardingAndItsEndOfRibRemovesOnlyWhatIsGone()
    {
        using var folder = new TempDirectory("daemon-gr");
        var birdPort = TestPorts.Next();
        var udpPort = FreeUdpPort();
        await using var bird = new BirdPeer($$"""
              local 127.0.0.2 port {{birdPort}} as 65002;
              neighbor 127.0.0.3 as 65003;
              multihop; strict bind on; passive on; hold time 30;
              graceful restart on;
              ipv4 { import all; export none; };
            """);
        await bird.StartAsync();
        var file = folder.File("shadownetd.json");
        var config = Config(folder.File("state.db"), birdPort, udpPort);
        config["bgp"]!["gracefulRestart"] = 60;
        await File.WriteAllTextAsync(file, config.ToJsonString());
        var key = Convert.FromHexString(KeyHex);

        using (var daemon = Start(file))
        {
            using var client = new HookClient(new IPEndPoint(IPAddress.Loopback, udpPort), 1, key, 1_000) { MaxAttempts = 12 };
            for (var i = 0; i < 4; i++)
            {
                Assert.Equal(HookStatus.Miss, (await client.CreateAsync($"vm-{i}", "web", IpFamily.IPv4, Address.Parse($"192.0.2.{10 + i}"))).Status);
            }

            await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 4, Patience);
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }

        await Eventually.WaitAsync(() => bird.IsEstablishedAsync(), up => !up, Patience);
        Assert.Equal(4, await bird.RouteCountAsync("master4")); // kept as stale: still forwarding

        // The state a crash leaves when a delete was acknowledged and stored but its withdraw never left:
        // vm-3 is gone from the store while BIRD still has its route.
        using (var store = new SqliteConnection($"Data Source={folder.File("state.db")};Pooling=False"))
        {
            store.Open();
            using var delete = store.CreateCommand();
            delete.CommandText = "DELETE FROM leases WHERE instance = 'vm-3'";
            Assert.Equal(1, delete.ExecuteNonQuery());
        }

        using var restarted = Start(file);
        try
        {
            var fewest = int.MaxValue;
            var clock = Stopwatch.StartNew();
            Dictionary<string, BirdRoute> routes;
            do
            {
                routes = await bird.RoutesAsync("master4");
                fewest = Math.Min(fewest, routes.Count);
                await Task.Delay(50);
            }
            while (routes.Count != 3 && clock.Elapsed < Patience);

            Assert.True(fewest >= 3, $"BIRD held only {fewest} of our routes at one point of the restart");
            Assert.Equal(["10.9.0.2/32", "10.9.0.3/32", "10.9.0.4/32"], routes.Keys.Order());
            Assert.Equal("192.0.2.10", routes["10.9.0.2/32"].NextHop);
            Assert.True(await bird.IsEstablishedAsync());
        }
        finally
        {
            restarted.Kill();
            await restarted.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task StagedRoutesAreHeldOrFilteredAtBirdUntilTheirCreate()
    {
        using var folder = new TempDirectory("daemon-staging");
        var birdPort = TestPorts.Next();
        var udpPort = FreeUdpPort();
        // BIRD's side of the community policy of DESIGN.md: staged routes are kept but not used.
        await using var bird = Bird(birdPort, """
            import keep filtered on;
            import filter { if ((65003, 1, 0) ~ bgp_large_community) then reject; accept; };
            export none;
            """);
        await bird.StartAsync();
        var config = Config(folder.File("state.db"), birdPort, udpPort);
        ((JsonArray)config["pools"]!).Add(new JsonObject
        {
            ["name"] = "shadow-api", ["kind"] = "shadow", ["prefixes"] = new JsonArray("10.2.0.0/24"), ["application"] = "api", ["staging"] = "community",
        });
        config["routes"]!["shadowCommunity"] = "65003:1:0";
        config["warm"] = new JsonArray(
            new JsonObject { ["application"] = "web", ["count"] = 2 },
            new JsonObject { ["application"] = "api", ["count"] = 2 });
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());

        using var daemon = Start(file);
        try
        {
            // Community mode: both reservations reach BIRD and are filtered out; held mode: nothing is sent.
            var filtered = await Eventually.WaitAsync(() => bird.RoutesAsync("master4", filtered: true), r => r.Count == 2, Patience);
            Assert.All(filtered, r => Assert.StartsWith("10.2.0.", r.Key, StringComparison.Ordinal));
            Assert.All(filtered.Values, r => Assert.Contains("(65003, 1, 0)", r.LargeCommunities, StringComparison.Ordinal));
            Assert.Empty(await bird.RoutesAsync("master4"));

            using var client = new HookClient(new IPEndPoint(IPAddress.Loopback, udpPort), 1, Convert.FromHexString(KeyHex), 1_000) { MaxAttempts = 12 };
            var web = await client.CreateAsync("web-1", "web", IpFamily.IPv4, Address.Parse("192.0.2.21"));
            var api = await client.CreateAsync("api-1", "api", IpFamily.IPv4, Address.Parse("192.0.2.22"));
            Assert.Equal((HookStatus.Hit, HookStatus.Hit), (web.Status, api.Status));
            Assert.Contains($"{api.Address}/32", filtered.Keys);

            // Activation: the held one is sent, the filtered one re-sent without the community and now used.
            var routes = await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == 2, Patience);
            Assert.Equal("192.0.2.21", routes[$"{web.Address}/32"].NextHop);
            Assert.Equal("192.0.2.22", routes[$"{api.Address}/32"].NextHop);
            Assert.Equal("", routes[$"{api.Address}/32"].LargeCommunities);
            filtered = await Eventually.WaitAsync(() => bird.RoutesAsync("master4", filtered: true), r => r.Count == 2 && !r.ContainsKey($"{api.Address}/32"), Patience);
            Assert.DoesNotContain($"{api.Address}/32", filtered.Keys); // the warm pool staged a replacement

            Assert.Equal(HookStatus.Deleted, (await client.DeleteAsync("api-1", "api", IpFamily.IPv4)).Status);
            Assert.Equal(HookStatus.Deleted, (await client.DeleteAsync("web-1", "web", IpFamily.IPv4)).Status);
            Assert.Empty(await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == 0, Patience));
            Assert.Equal(2, (await bird.RoutesAsync("master4", filtered: true)).Count);
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task ForecastLoopReadsInstancesFromPrometheusAndCountsQueriesThatGiveNothing()
    {
        using var folder = new TempDirectory("daemon-promfeed");
        var udpPort = FreeUdpPort();
        var metricsPort = TestPorts.Next();
        var grpcPort = TestPorts.Next();
        await using var prometheus = new PrometheusServer($"127.0.0.1:{metricsPort}");
        var config = Config(folder.File("state.db"), TestPorts.Next(), udpPort);
        config["metrics"] = new JsonObject { ["listen"] = $"127.0.0.1:{metricsPort}" };
        config["grpc"] = new JsonObject { ["listen"] = $"127.0.0.1:{grpcPort}" };
        config["prediction"] = new JsonObject
        {
            ["fallback"] = "static-warm:3",
            ["stepSeconds"] = 1,
            ["prometheus"] = new JsonObject
            {
                ["url"] = $"http://127.0.0.1:{prometheus.Port}",
                ["applications"] = new JsonObject
                {
                    // The daemon's own metric stands in for an orchestrator's instance count.
                    ["web"] = new JsonObject { ["instances"] = "sum(shadownet_pool_addresses{state=\"active\"})" },
                    ["db"] = new JsonObject { ["instances"] = "no_such_metric" },
                },
            },
        };
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        prometheus.Start();
        using var daemon = Start(file);
        try
        {
            using var client = new HookClient(new IPEndPoint(IPAddress.Loopback, udpPort), 1, Convert.FromHexString(KeyHex), 1_000) { MaxAttempts = 12 };
            Assert.NotEqual(HookStatus.Unavailable, (await client.CreateAsync("web-1", "web", IpFamily.IPv4, null)).Status);
            Assert.NotEqual(HookStatus.Unavailable, (await client.CreateAsync("web-2", "web", IpFamily.IPv4, null)).Status);

            // Prometheus scrapes 2 active, the feed reads them, the fallback adds 3: 5 expected, 3 reserved.
            using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"http://127.0.0.1:{grpcPort}");
            var api = new ShadowNet.Api.V1.Controller.ControllerClient(channel);
            var forecast = await Eventually.WaitAsync(async () =>
            {
                try
                {
                    return (await api.GetForecastAsync(new ShadowNet.Api.V1.GetForecastRequest { Application = "web" })).Forecasts.FirstOrDefault();
                }
                catch (Grpc.Core.RpcException)
                {
                    return null;
                }
            }, f => f is { Expected: 5, Active: 2, Reserved: 3 }, Patience);
            Assert.True(forecast is { Expected: 5, Active: 2, Reserved: 3 }, forecast?.ToString() ?? "no forecast");

            using var http = new HttpClient();
            var exposition = await Eventually.WaitAsync(() => http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics"),
                text => text.Contains("shadownet_prediction_feed_errors_total{", StringComparison.Ordinal), Patience);
            Assert.Matches(@"shadownet_prediction_feed_errors_total\{[^}]*application=""db""[^}]*\} [1-9]", exposition);
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task PrometheusScrapesHitsMissesPoolSizesAndEveryMetricTheShippedAlertRulesWatch()
    {
        using var folder = new TempDirectory("daemon-metrics");
        var udpPort = FreeUdpPort();
        var metricsPort = TestPorts.Next();
        var config = Config(folder.File("state.db"), TestPorts.Next(), udpPort);
        var grpcPort = TestPorts.Next();
        config["metrics"] = new JsonObject { ["listen"] = $"127.0.0.1:{metricsPort}" };
        config["grpc"] = new JsonObject { ["listen"] = $"127.0.0.1:{grpcPort}" };
        config["warm"] = new JsonArray(new JsonObject { ["application"] = "web", ["family"] = "ipv4", ["count"] = 2 });
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        await using var prometheus = new PrometheusServer($"127.0.0.1:{metricsPort}");
        prometheus.Start();

        using var daemon = Start(file);
        try
        {
            using var client = new HookClient(new IPEndPoint(IPAddress.Loopback, udpPort), 1, Convert.FromHexString(KeyHex), 1_000) { MaxAttempts = 12 };
            Assert.Equal(HookStatus.Hit, (await client.CreateAsync("web-1", "web", IpFamily.IPv4, null)).Status);
            Assert.Equal(HookStatus.Hit, (await client.CreateAsync("web-2", "web", IpFamily.IPv4, null)).Status);
            Assert.Equal(HookStatus.Miss, (await client.CreateAsync("db-1", "db", IpFamily.IPv4, null)).Status);
            using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"http://127.0.0.1:{grpcPort}");
            var api = new ShadowNet.Api.V1.Controller.ControllerClient(channel);
            Assert.Equal(ShadowNet.Api.V1.Outcome.Miss, (await api.CreateInstanceAsync(new ShadowNet.Api.V1.CreateInstanceRequest { Instance = "db-2", Application = "db" })).Outcome);

            // Read back through Prometheus' HTTP API, as a dashboard would.
            var hits = await Eventually.WaitAsync(() => prometheus.QueryAsync("sum(shadownet_hook_events_total{kind=\"create\",status=\"hit\"})"), v => v == 2, Patience);
            var misses = await Eventually.WaitAsync(() => prometheus.QueryAsync("sum(shadownet_hook_events_total{kind=\"create\",status=\"miss\"})"), v => v == 2, Patience);
            Assert.True((hits, misses) == (2, 2), $"hits {hits}, misses {misses}, target {await prometheus.TargetHealthAsync()}");
            Assert.Equal(1, await prometheus.QueryAsync("sum(shadownet_hook_events_total{kind=\"create\",status=\"miss\",transport=\"grpc\"})"));
            Assert.Equal(4, await Eventually.WaitAsync(() => prometheus.QueryAsync("sum(shadownet_route_activation_duration_seconds_count)"), v => v == 4, Patience));

            // The warm pool was topped up after each hit: two reserved, two active in the shadow pool.
            Assert.Equal(2, await Eventually.WaitAsync(() => prometheus.QueryAsync("shadownet_pool_addresses{pool=\"shadow-v4\",state=\"reserved\"}"), v => v == 2, Patience));
            Assert.Equal(2, await prometheus.QueryAsync("shadownet_pool_addresses{pool=\"shadow-v4\",state=\"active\"}"));
            Assert.Equal(2, await prometheus.QueryAsync("shadownet_pool_addresses{pool=\"dynamic-v4\",state=\"active\"}"));

            // .NET's runtime meter is scraped too: the collection and allocation counters behind the latency tail.
            Assert.True(await prometheus.QueryAsync("dotnet_gc_heap_total_allocated_bytes_total") > 0, "no .NET runtime metrics at Prometheus");

            // Every metric the shipped alert rules (contrib/prometheus) watch is one the daemon exports:
            // a renamed metric would leave its alert silent. One bad datagram makes the rejection counter appear.
            using (var garbage = new System.Net.Sockets.UdpClient())
            {
                await garbage.SendAsync(new byte[] { 1, 2, 3 }, new IPEndPoint(IPAddress.Loopback, udpPort));
            }

            var watched = System.Text.RegularExpressions.Regex.Matches(await File.ReadAllTextAsync(Repository.File("contrib", "prometheus", "shadownet-alerts.yml")), @"\bshadownet_[a-z_]+")
                .Select(m => m.Value).Distinct().ToArray();
            Assert.NotEmpty(watched);
            using var http = new HttpClient();
            var exposition = await Eventually.WaitAsync(() => http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics"),
                text => text.Contains("shadownet_hook_datagrams_rejected_total{", StringComparison.Ordinal), Patience);
            Assert.All(watched, name => Assert.Matches($@"\n{name}[{{ ]", exposition));
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task ShippedAlertRulesPassPromtoolsCheckAndTheirOwnUnitTests()
    {
        var promtool = ExternalProcess.Which("/usr/bin/promtool", "promtool");
        var rules = Repository.File("contrib", "prometheus");
        foreach (var arguments in new[] { "check rules shadownet-alerts.yml", "test rules shadownet-alerts.test.yml" })
        {
            using var process = Process.Start(new ProcessStartInfo(promtool, arguments) { WorkingDirectory = rules, RedirectStandardOutput = true, RedirectStandardError = true })!;
            var output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync();
            Assert.True(process.ExitCode == 0, $"promtool {arguments}: {output}");
        }
    }

    private static void Set(JsonObject config, string path, JsonNode value)
    {
        JsonNode node = config;
        var parts = path.Split('.');
        foreach (var part in parts[..^1])
        {
            node = node is JsonArray array ? array[int.Parse(part, System.Globalization.CultureInfo.InvariantCulture)]! : node[part]!;
        }

        var last = parts[^1];
        if (node is JsonArray target)
        {
            target[int.Parse(last, System.Globalization.CultureInfo.InvariantCulture)] = value;
        }
        else
        {
            node[last] = value;
        }
    }
}
