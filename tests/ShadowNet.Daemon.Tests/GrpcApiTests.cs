using System.Net;
using System.Text.Json.Nodes;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Grpc.Net.Client;
using ShadowNet.Api.V1;
using ControllerClient = ShadowNet.Api.V1.Controller.ControllerClient;
using static ShadowNet.Daemon.Tests.Shadownetd;

namespace ShadowNet.Daemon.Tests;

/// <summary>The gRPC API of the real shadownetd, with a real BIRD 2 receiving the routes.</summary>
[Collection("shadownetd")]
public class GrpcApiTests
{
    [Fact]
    public async Task CreateOverGrpcReachesBirdAndTheListingsAndEventsShowIt()
    {
        using var folder = new TempDirectory("daemon-grpc");
        var birdPort = TestPorts.Next();
        await using var bird = Bird(birdPort);
        await bird.StartAsync();
        var (file, grpcPort) = await WriteConfigAsync(folder, birdPort);
        using var daemon = Start(file);
        try
        {
            using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{grpcPort}");
            var api = new ControllerClient(channel);
            await WaitForApiAsync(api);
            await Eventually.WaitAsync(bird.IsEstablishedAsync, up => up, Patience);

            using var watch = api.WatchEvents(new WatchEventsRequest());
            var events = watch.ResponseStream;
            var created = await api.CreateInstanceAsync(new CreateInstanceRequest { Instance = "vm-1", Application = "web", Host = "192.0.2.31" });
            Assert.Equal(("10.9.0.2", Outcome.Miss), (created.Address, created.Outcome));
            var again = await api.CreateInstanceAsync(new CreateInstanceRequest { Instance = "vm-1", Application = "web", Host = "192.0.2.31" });
            Assert.Equal(created, again);

            var routes = await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == 1, Patience);
            Assert.Equal("192.0.2.31", routes["10.9.0.2/32"].NextHop);

            Assert.True(await events.MoveNext(CancellationToken.None));
            Assert.Equal(("create", Outcome.Miss, "vm-1", "web", "10.9.0.2", "192.0.2.31"),
                (events.Current.Kind, events.Current.Outcome, events.Current.Instance, events.Current.Application, events.Current.Address, events.Current.Host));

            var allocation = Assert.Single((await api.ListAllocationsAsync(new ListAllocationsRequest())).Allocations);
            Assert.Equal(("10.9.0.2", "dynamic-v4", "active", "web", "vm-1", false, "192.0.2.31"),
                (allocation.Address, allocation.Pool, allocation.State, allocation.Application, allocation.Instance, allocation.Preallocated, allocation.Host));
            var route = Assert.Single((await api.ListRoutesAsync(new ListRoutesRequest())).Routes);
            Assert.Equal(("10.9.0.2/32", "192.0.2.31", "active"), (route.Prefix, route.NextHop, route.State));
            var pools = (await api.ListPoolsAsync(new ListPoolsRequest())).Pools.ToDictionary(p => p.Name);
            var dynamic = await Eventually.WaitAsync(async () => (await api.ListPoolsAsync(new ListPoolsRequest())).Pools.Single(p => p.Name == "dynamic-v4"), p => p.Active == 1, Patience);
            Assert.Equal(("dynamic", 253ul, 1, 0), (dynamic.Kind, dynamic.Size, dynamic.Active, dynamic.Reserved));
            var peer = Assert.Single((await api.ListPeersAsync(new ListPeersRequest())).Peers);
            Assert.Equal(("127.0.0.2", (uint)65002, "Established", 30u), (peer.Address, peer.RemoteAs, peer.State, peer.HoldTime));
            Assert.InRange(peer.StateSince.ToDateTimeOffset(), DateTimeOffset.UtcNow - Patience, DateTimeOffset.UtcNow);
            var status = await api.GetStatusAsync(new GetStatusRequest());
            Assert.Equal((1, 1, 1), (status.Peers, status.PeersEstablished, status.ActiveRoutes));

            var deleted = await api.DeleteInstanceAsync(new DeleteInstanceRequest { Instance = "vm-1", Application = "web" });
            Assert.Equal("10.9.0.2", deleted.Address);
            Assert.True(await events.MoveNext(CancellationToken.None));
            Assert.Equal(("delete", Outcome.Deleted, "vm-1"), (events.Current.Kind, events.Current.Outcome, events.Current.Instance));
            Assert.Empty(await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == 0, Patience));
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }
    }

    private static readonly (string Json, StatusCode Code, string Message)[] BadCreates =
    [
        ("""{"application":"web"}""", StatusCode.InvalidArgument, "instance: missing"),
        ("""{"instance":"vm-1"}""", StatusCode.InvalidArgument, "application: missing"),
        ($$"""{"instance":"{{new string('x', 129)}}","application":"web"}""", StatusCode.InvalidArgument, "instance: longer than 128 octets of UTF-8"),
        ("""{"instance":"vm-1","application":"web","host":"192.0.2.999"}""", StatusCode.InvalidArgument, "host: '192.0.2.999' is not an IP address"),
        ("""{"instance":"vm-1","application":"web","family":7}""", StatusCode.InvalidArgument, "family: 7 is not a known family"),
        ("""{"instance":"vm-1","application":"web","family":"FAMILY_IPV6","host":"2001:db8::1"}""", StatusCode.InvalidArgument, "no IPv6 pool can serve application 'web'"),
        ("""{"instance":"vm-1","application":"web","family":"FAMILY_IPV6"}""", StatusCode.InvalidArgument, "host: missing, and routes:defaultNextHopV6 is not set"),
    ];

    [Fact]
    public async Task BadArgumentsGetClearStatusesAndTheDaemonKeepsServing()
    {
        using var folder = new TempDirectory("daemon-grpc-bad");
        var (file, grpcPort) = await WriteConfigAsync(folder, TestPorts.Next());
        using var daemon = Start(file);
        try
        {
            using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{grpcPort}");
            var api = new ControllerClient(channel);
            await WaitForApiAsync(api);
            foreach (var (json, code, message) in BadCreates)
            {
                var request = Google.Protobuf.JsonParser.Default.Parse<CreateInstanceRequest>(json);
                var error = await Assert.ThrowsAsync<RpcException>(async () => await api.CreateInstanceAsync(request));
                Assert.Equal(code, error.StatusCode);
                Assert.StartsWith(message, error.Status.Detail, StringComparison.Ordinal);
            }

            var missing = await Assert.ThrowsAsync<RpcException>(async () => await api.DeleteInstanceAsync(new DeleteInstanceRequest { Instance = "vm-9", Application = "web" }));
            Assert.Equal((StatusCode.NotFound, "instance 'vm-9' has no IPv4 address"), (missing.StatusCode, missing.Status.Detail));
            await api.CreateInstanceAsync(new CreateInstanceRequest { Instance = "vm-1", Application = "web" });
            var conflict = await Assert.ThrowsAsync<RpcException>(async () => await api.CreateInstanceAsync(new CreateInstanceRequest { Instance = "vm-1", Application = "db" }));
            Assert.Equal(StatusCode.AlreadyExists, conflict.StatusCode);
            var page = await Assert.ThrowsAsync<RpcException>(async () => await api.ListAllocationsAsync(new ListAllocationsRequest { Limit = 10_001 }));
            Assert.Equal("limit: 10001 is not from 0 to 10000", page.Status.Detail);

            // A metric stream with a bad sample is refused at that sample, naming it.
            using (var report = api.ReportMetrics())
            {
                await report.RequestStream.WriteAsync(Sample("web", ("cpu", 0.5)));
                await report.RequestStream.WriteAsync(Sample("web", ("cpu", double.NaN)));
                var bad = await Assert.ThrowsAsync<RpcException>(async () => await report.ResponseAsync);
                Assert.Equal((StatusCode.InvalidArgument, "sample 1: values: 'cpu' is NaN, not a finite number"), (bad.StatusCode, bad.Status.Detail));
            }

            using (var report = api.ReportMetrics())
            {
                await report.RequestStream.WriteAsync(Sample("web", ("instances", -1)));
                var bad = await Assert.ThrowsAsync<RpcException>(async () => await report.ResponseAsync);
                Assert.Equal((StatusCode.InvalidArgument, "sample 0: values: 'instances' is -1; counts, rates and fractions cannot be negative"), (bad.StatusCode, bad.Status.Detail));
            }

            using (var report = api.ReportMetrics())
            {
                await report.RequestStream.WriteAsync(Sample("web", ("cpu", 0.5), ("requests_per_second", 120)));
                await report.RequestStream.WriteAsync(Sample("web", ("cpu", 0.75), ("requests_per_second", 180)));
                await report.RequestStream.CompleteAsync();
                Assert.Equal(2, (await report.ResponseAsync).Accepted);
            }

            // Still serving, and the miss was recorded with the metric window reported just before.
            var created = await api.CreateInstanceAsync(new CreateInstanceRequest { Instance = "vm-2", Application = "web" });
            Assert.Equal(Outcome.Miss, created.Outcome);
            var lines = await Eventually.WaitAsync(() => File.ReadAllLinesAsync(folder.File("misses.jsonl")), l => l.Length == 2, Patience);
            var window = JsonNode.Parse(lines[1])!["window"]!["samples"]!.AsArray();
            // Samples are taken as they arrive: the refused stream's first, good sample was kept.
            Assert.Equal([0.5, 0.5, 0.75], window.Select(s => (double)s!["cpu"]!));
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task ForecastLoopReservesForReportedInstancesAndARefusedModelLeavesTheFallbackInCharge()
    {
        using var folder = new TempDirectory("daemon-forecast");
        var garbage = folder.File("model.onnx");
        await File.WriteAllTextAsync(garbage, "not a model");
        var (file, grpcPort) = await WriteConfigAsync(folder, TestPorts.Next());
        var metricsPort = TestPorts.Next();
        var config = JsonNode.Parse(await File.ReadAllTextAsync(file))!.AsObject();
        config["prediction"] = new JsonObject { ["model"] = garbage, ["fallback"] = "static-warm:3", ["stepSeconds"] = 1 };
        config["metrics"] = new JsonObject { ["listen"] = $"127.0.0.1:{metricsPort}" };
        await File.WriteAllTextAsync(file, config.ToJsonString());
        using var daemon = Start(file);
        try
        {
            using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{grpcPort}");
            var api = new ControllerClient(channel);
            await WaitForApiAsync(api);
            using (var report = api.ReportMetrics())
            {
                await report.RequestStream.WriteAsync(Sample("web", ("instances", 2), ("load", 1.7), ("requests_per_second", 100)));
                await report.RequestStream.CompleteAsync();
                Assert.Equal(1, (await report.ResponseAsync).Accepted);
            }

            // Within a step or two: 2 running (reported) + 3 warm expected; nothing allocated yet, so 5 reserved.
            var forecast = await Eventually.WaitAsync(async () => (await api.GetForecastAsync(new GetForecastRequest { Application = "web" })).Forecasts.FirstOrDefault(),
                f => f is { Reserved: 5 }, Patience);
            Assert.NotNull(forecast);
            Assert.Equal(("static-warm:3", 5, 5, 0, 29), (forecast.Forecaster, forecast.Expected, forecast.Reserved, forecast.Active, forecast.PrefixLength));
            Assert.Equal(250, forecast.ExpectedRequestsPerSecond); // 5 instances at today's 50 requests/s each
            Assert.Equal(5, (await api.ListAllocationsAsync(new ListAllocationsRequest { Application = "web" })).Allocations.Count(a => a.State == "reserved"));

            // The damaged model was refused and counted; the fallback forecasts.
            Assert.Equal("static-warm:3", (await api.GetForecastAsync(new GetForecastRequest())).Forecaster);
            using var http = new HttpClient();
            Assert.Matches(@"shadownet_prediction_model_rejected_total\{[^}]*\} 1\b", await http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics"));

            // A create now finds its reservation.
            Assert.Equal(Outcome.Hit, (await api.CreateInstanceAsync(new CreateInstanceRequest { Instance = "web-1", Application = "web" })).Outcome);
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }
    }

    private static MetricSample Sample(string application, params (string Name, double Value)[] values)
    {
        var sample = new MetricSample { Application = application, Time = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow) };
        foreach (var (name, value) in values)
        {
            sample.Values[name] = value;
        }

        return sample;
    }

    private static async Task<(string File, int GrpcPort)> WriteConfigAsync(TempDirectory folder, int birdPort)
    {
        var grpcPort = TestPorts.Next();
        var config = Config(folder.File("state.db"), birdPort, FreeUdpPort());
        config["grpc"] = new JsonObject { ["listen"] = $"127.0.0.1:{grpcPort}" };
        config["events"] = new JsonObject { ["missLog"] = folder.File("misses.jsonl") };
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        return (file, grpcPort);
    }

    internal static async Task WaitForApiAsync(ControllerClient api)
    {
        var up = await Eventually.WaitAsync(async () =>
        {
            try
            {
                await api.GetStatusAsync(new GetStatusRequest(), deadline: DateTime.UtcNow.AddSeconds(2));
                return true;
            }
            catch (RpcException)
            {
                return false;
            }
        }, ok => ok, Patience);
        Assert.True(up, "the gRPC API did not come up");
    }
}
