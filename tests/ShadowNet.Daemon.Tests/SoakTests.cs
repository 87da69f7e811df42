using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Grpc.Net.Client;
using ShadowNet.Addressing;
using ShadowNet.Api.V1;
using ShadowNet.Hooks.Udp;
using Xunit.Abstractions;
using ControllerClient = ShadowNet.Api.V1.Controller.ControllerClient;
using static ShadowNet.Daemon.Tests.Shadownetd;

namespace ShadowNet.Daemon.Tests;

/// <summary>
/// Bounded soak: create/delete churn over UDP from several hypervisor clients while shadownetd is
/// SIGKILLed and BIRD restarted at random; at the end BIRD's table must be exactly the acknowledged live
/// instances, no address may be held twice, and no acknowledged event may be lost. 60 seconds here;
/// scripts/soak runs it longer (SHADOWNET_SOAK_SECONDS) and keeps the report (SHADOWNET_SOAK_REPORT).
/// </summary>
public class SoakTests(ITestOutputHelper output)
{
    private const int Workers = 4;
    private const int MaxLivePerWorker = 150;
    private const long MaxEventsPerWorker = 5_000_000; // a bound on the loop besides the clock
    private static readonly JsonSerializerOptions ReportJson = new() { WriteIndented = true, IncludeFields = true };

    [Fact]
    public async Task ChurnThroughDaemonKillsAndBirdRestartsEndsWithBirdHoldingExactlyTheLiveInstances()
    {
        var seconds = int.TryParse(Environment.GetEnvironmentVariable("SHADOWNET_SOAK_SECONDS"), out var s) && s is > 0 and <= 24 * 3600 ? s : 60;
        var seed = int.TryParse(Environment.GetEnvironmentVariable("SHADOWNET_SOAK_SEED"), out var given) ? given : Environment.TickCount;
        using var folder = new TempDirectory("soak");
        var birdPort = TestPorts.Next();
        var udpPort = FreeUdpPort();
        var grpcPort = TestPorts.Next();
        await using var bird = new BirdPeer($$"""
              local 127.0.0.2 port {{birdPort}} as 65002;
              neighbor 127.0.0.3 as 65003;
              multihop; strict bind on; passive on; hold time 30;
              graceful restart on; error wait time 1, 2;
              ipv4 { import all; export none; };
            """);
        await bird.StartAsync();
        var config = Config(folder.File("state.db"), birdPort, udpPort);
        config["bgp"]!["gracefulRestart"] = 30;
        config["pools"] = new JsonArray(
            new JsonObject { ["name"] = "shadow-v4", ["kind"] = "shadow", ["prefixes"] = new JsonArray("10.1.0.0/20") },
            new JsonObject { ["name"] = "dynamic-v4", ["kind"] = "dynamic", ["prefixes"] = new JsonArray("10.9.0.0/20"), ["exclude"] = new JsonArray("10.9.0.1") });
        config["warm"] = new JsonArray(new JsonObject { ["application"] = "web", ["family"] = "ipv4", ["count"] = 64 });
        var keys = new JsonObject();
        for (var k = 1; k <= Workers; k++)
        {
            keys[k.ToString(System.Globalization.CultureInfo.InvariantCulture)] = KeyHex; // one replay window per client
        }

        config["hooks"]!["udp"]!["keys"] = keys;
        config["grpc"] = new JsonObject { ["listen"] = $"127.0.0.1:{grpcPort}" };
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());

        var daemon = Start(file);
        var report = new SoakReport { Seconds = seconds, Seed = seed };
        var live = new Dictionary<string, (Address Address, Address Host)>[Workers];
        try
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
            var clock = Stopwatch.StartNew();
            var churn = Enumerable.Range(0, Workers).Select(w => Task.Run(() => ChurnAsync(w, udpPort, seed, live, report, stop.Token))).ToArray();

            // Chaos: every 4 to 12 seconds, SIGKILL shadownetd and start it again, or restart BIRD.
            var random = new Random(seed);
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(4 + (random.NextDouble() * 8)), stop.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }

                if (random.Next(2) == 0)
                {
                    daemon.Kill();
                    await daemon.WaitForExitAsync();
                    daemon.Dispose();
                    daemon = Start(file);
                    report.DaemonKills++;
                }
                else
                {
                    await bird.KillAsync();
                    await bird.StartAsync();
                    report.BirdRestarts++;
                }
            }

            await Task.WhenAll(churn);
            report.ChurnSeconds = clock.Elapsed.TotalSeconds;

            var expected = live.SelectMany(l => l).ToDictionary(p => $"{p.Value.Address}/32", p => p.Value.Host.ToString());
            report.Live = expected.Count;

            // The daemon's own book: every acknowledged live instance with its address, nothing else, no address twice.
            using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{grpcPort}");
            var api = new ControllerClient(channel);
            var active = await Eventually.WaitAsync(() => ActiveAsync(api), a => a is not null, Patience) ?? [];
            var wanted = live.SelectMany(l => l).ToDictionary(p => p.Key, p => p.Value.Address.ToString());
            report.LostOrChanged = wanted.Count(p => !active.TryGetValue(p.Key, out var address) || address != p.Value);
            report.Unacknowledged = active.Keys.Count(instance => !wanted.ContainsKey(instance));
            report.AddressesHeldTwice = active.Count - active.Values.Distinct().Count();

            // BIRD converges on exactly that table, next hops included.
            Dictionary<string, BirdRoute> routes = [];
            var settle = Stopwatch.StartNew();
            while (settle.Elapsed < TimeSpan.FromSeconds(60))
            {
                routes = await bird.RoutesAsync("master4");
                if (routes.Count == expected.Count && routes.All(r => expected.TryGetValue(r.Key, out var hop) && hop == r.Value.NextHop))
                {
                    break;
                }

                await Task.Delay(250);
            }

            report.RoutesMissingAtBird = expected.Keys.Count(p => !routes.ContainsKey(p));
            report.RoutesExtraAtBird = routes.Keys.Count(p => !expected.ContainsKey(p));
            report.WrongNextHopsAtBird = routes.Count(r => expected.TryGetValue(r.Key, out var hop) && hop != r.Value.NextHop);
            report.SettleSeconds = settle.Elapsed.TotalSeconds;
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
            daemon.Dispose();
        }

        var json = JsonSerializer.Serialize(report, ReportJson);
        output.WriteLine(json);
        if (Environment.GetEnvironmentVariable("SHADOWNET_SOAK_REPORT") is { Length: > 0 } path)
        {
            await File.WriteAllTextAsync(path, json);
        }

        Assert.True(report.Hits > 0 && report.Misses > 0 && report.Deletes > 0, json);
        Assert.True(report.DaemonKills + report.BirdRestarts > 0, json);
        Assert.True(report.LostOrChanged == 0 && report.Unacknowledged == 0 && report.AddressesHeldTwice == 0, json);
        Assert.True(report.RoutesMissingAtBird == 0 && report.RoutesExtraAtBird == 0 && report.WrongNextHopsAtBird == 0, json);
    }

    /// <summary>
    /// One hypervisor: creates and deletes its own instances, each event retried until acknowledged
    /// (through daemon restarts) so that the model of what is live is exact.
    /// </summary>
    private static async Task ChurnAsync(int worker, int udpPort, int seed, Dictionary<string, (Address, Address)>[] live, SoakReport report, CancellationToken stop)
    {
        var mine = live[worker] = [];
        var random = new Random(seed + worker + 1);
        var key = Convert.FromHexString(KeyHex);
        using var client = new HookClient(new IPEndPoint(IPAddress.Loopback, udpPort), (ushort)(worker + 1), key, (ulong)(DateTime.UtcNow.Ticks / 10))
        {
            FirstTimeout = TimeSpan.FromMilliseconds(100),
            MaxAttempts = 6,
        };
        // Half the clients create for "web" (a warm pool: hits), half for "api" (none: misses from the dynamic pool).
        var application = worker % 2 == 0 ? "web" : "api";
        var next = 0;
        for (long events = 0; events < MaxEventsPerWorker && !stop.IsCancellationRequested; events++)
        {
            var create = mine.Count == 0 || (mine.Count < MaxLivePerWorker && random.Next(100) < 55);
            if (create)
            {
                var instance = $"w{worker}-{next++}";
                var host = Address.Parse($"192.0.2.{1 + random.Next(200)}");
                var reply = await UntilAcknowledgedAsync(() => client.CreateAsync(instance, application, IpFamily.IPv4, host), report);
                if (reply.Status is HookStatus.Hit or HookStatus.Miss && reply.Address is { } address)
                {
                    mine[instance] = (address, host);
                    Interlocked.Increment(ref report.Creates);
                    Interlocked.Increment(ref reply.Status == HookStatus.Hit ? ref report.Hits : ref report.Misses);
                }
                else
                {
                    Interlocked.Increment(ref report.Refused);
                }
            }
            else
            {
                var instance = mine.Keys.ElementAt(random.Next(mine.Count));
                var reply = await UntilAcknowledgedAsync(() => client.DeleteAsync(instance, application, IpFamily.IPv4), report);
                // NotFound: an earlier attempt was done before its acknowledgement was lost in a restart.
                if (reply.Status is HookStatus.Deleted or HookStatus.NotFound)
                {
                    mine.Remove(instance);
                    Interlocked.Increment(ref report.Deletes);
                }
                else
                {
                    Interlocked.Increment(ref report.Refused);
                }
            }
        }
    }

    private static async Task<HookReply> UntilAcknowledgedAsync(Func<Task<HookReply>> send, SoakReport report)
    {
        for (var attempt = 0; attempt < 200; attempt++)
        {
            try
            {
                return await send();
            }
            catch (TimeoutException)
            {
                Interlocked.Increment(ref report.Timeouts); // the daemon is restarting: the same event again
            }
        }

        throw new TimeoutException("an event went unacknowledged through 200 rounds of retries");
    }

    private static async Task<Dictionary<string, string>?> ActiveAsync(ControllerClient api)
    {
        try
        {
            var active = new Dictionary<string, string>();
            var request = new ListAllocationsRequest { Limit = 1000 };
            do
            {
                var page = await api.ListAllocationsAsync(request);
                foreach (var allocation in page.Allocations.Where(a => a.State == "active"))
                {
                    active[allocation.Instance] = allocation.Address;
                }

                request.After = page.Next;
            }
            while (request.After.Length > 0);
            return active;
        }
        catch (Grpc.Core.RpcException)
        {
            return null; // still starting
        }
    }

    private sealed class SoakReport
    {
        public int Seconds { get; set; }
        public int Seed { get; set; }
        public double ChurnSeconds { get; set; }
        // Fields: the workers count with Interlocked.
        public long Creates;
        public long Deletes;
        public long Hits;
        public long Misses;
        public long Refused;
        public long Timeouts;
        public int DaemonKills { get; set; }
        public int BirdRestarts { get; set; }
        public int Live { get; set; }
        public int LostOrChanged { get; set; }
        public int Unacknowledged { get; set; }
        public int AddressesHeldTwice { get; set; }
        public int RoutesMissingAtBird { get; set; }
        public int RoutesExtraAtBird { get; set; }
        public int WrongNextHopsAtBird { get; set; }
        public double SettleSeconds { get; set; }
    }
}
