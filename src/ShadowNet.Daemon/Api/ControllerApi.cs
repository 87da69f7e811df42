using System.Text;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;
using ShadowNet.Api.V1;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Controller.Telemetry;
using ShadowNet.Hooks.Udp;
using ShadowNet.Prediction.Features;
using Family = ShadowNet.Api.V1.Family;
using ApiMetricSample = ShadowNet.Api.V1.MetricSample;
using GrpcStatus = Grpc.Core.Status;

namespace ShadowNet.Daemon.Api;

/// <summary>
/// The gRPC face of the controller (Protos/shadownet/v1/controller.proto). Every bad argument is an
/// InvalidArgument status naming the field; outcomes the caller must handle map to the closest code.
/// </summary>
internal sealed class ControllerApi(ControllerService controller) : ShadowNet.Api.V1.Controller.ControllerBase
{
    private const int MaxIdOctets = 128;
    private const int MaxPage = 10_000;
    private const int MaxMetricValues = 64;
    private const int MaxMetricName = 64;

    public override async Task<CreateInstanceReply> CreateInstance(CreateInstanceRequest request, ServerCallContext context)
    {
        var parts = Running();
        var family = Check(request.Family);
        Id(request.Instance, "instance");
        Id(request.Application, "application");
        Address? host = null;
        if (request.Host.Length > 0)
        {
            host = Address.TryParse(request.Host, out var parsed)
                ? parsed
                : throw Invalid($"host: '{request.Host}' is not an IP address");
        }
        else if (!parts.Manager.HasDefaultNextHop(family))
        {
            throw Invalid($"host: missing, and routes:defaultNextHop{(family == IpFamily.IPv6 ? "V6" : "V4")} is not set: the route would have no next hop");
        }

        var outcome = await parts.Manager.CreateAsync(request.Instance, request.Application, family, host, context.CancellationToken);
        HookServer.CountGrpcEvent(HookKind.Create, outcome.Status);
        return outcome.Status switch
        {
            HookStatus.Hit or HookStatus.Miss => new CreateInstanceReply
            {
                Address = outcome.Address!.Value.ToString(),
                Outcome = outcome.Status == HookStatus.Hit ? Outcome.Hit : Outcome.Miss,
            },
            _ => throw Failure(outcome.Status, request.Instance, request.Application, family),
        };
    }

    public override async Task<DeleteInstanceReply> DeleteInstance(DeleteInstanceRequest request, ServerCallContext context)
    {
        var parts = Running();
        var family = Check(request.Family);
        Id(request.Instance, "instance");
        Id(request.Application, "application");
        var outcome = await parts.Manager.DeleteAsync(request.Instance, request.Application, family, context.CancellationToken);
        HookServer.CountGrpcEvent(HookKind.Delete, outcome.Status);
        return outcome.Status == HookStatus.Deleted
            ? new DeleteInstanceReply { Address = outcome.Address!.Value.ToString() }
            : throw Failure(outcome.Status, request.Instance, request.Application, family);
    }

    public override async Task<ListAllocationsReply> ListAllocations(ListAllocationsRequest request, ServerCallContext context)
    {
        var parts = Running();
        var limit = PageLimit(request.Limit);
        Address? after = null;
        if (request.After.Length > 0)
        {
            after = Address.TryParse(request.After, out var parsed) ? parsed : throw Invalid($"after: '{request.After}' is not an IP address");
        }

        var application = request.Application.Length > 0 ? request.Application : null;
        var page = await parts.Allocator.ReadAsync(a => a.Leases
            .Where(l => (application is null || l.Application == application) && (after is null || Compare(l.Address, after.Value) > 0))
            .OrderBy(l => l.Address, Comparer<Address>.Create(Compare))
            .Take(limit + 1)
            .ToList(), context.CancellationToken);
        var reply = new ListAllocationsReply();
        foreach (var lease in page.Take(limit))
        {
            reply.Allocations.Add(new Allocation
            {
                Address = lease.Address.ToString(),
                Pool = lease.Pool,
                State = lease.State switch { LeaseState.Reserved => "reserved", LeaseState.Assigned => "active", _ => "cooling" },
                Application = lease.Application ?? "",
                Instance = lease.Instance ?? "",
                Preallocated = lease.Preallocated,
                Since = Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(lease.SinceMs)),
                Host = lease.Host?.ToString() ?? "",
            });
        }

        if (page.Count > limit)
        {
            reply.Next = page[limit - 1].Address.ToString();
        }

        return reply;
    }

    public override async Task<ListRoutesReply> ListRoutes(ListRoutesRequest request, ServerCallContext context)
    {
        var parts = Running();
        var shadow = parts.Manager.Options.ShadowCommunity;
        var reply = new ListRoutesReply();
        foreach (var (prefix, attributes) in parts.Speaker.LocRib.Snapshot().OrderBy(r => r.Key))
        {
            var route = new Route { Prefix = prefix.ToString(), NextHop = attributes.NextHop?.ToString() ?? "" };
            route.Communities.AddRange(attributes.Communities.Select(c => $"{c >> 16}:{c & 0xFFFF}"));
            route.Communities.AddRange(attributes.LargeCommunities.Select(c => c.ToString()));
            var staged = shadow is { } s && ((s.Standard is { } standard && attributes.Communities.Contains(standard))
                || (s.Large is { } large && attributes.LargeCommunities.Contains(large)));
            route.State = staged ? "staged" : "active";
            reply.Routes.Add(route);
        }

        // A failed store takes the allocator's reads with it, not the list of what is still announced.
        if (parts.Allocator.Failure is null)
        {
            reply.Held = await parts.Allocator.ReadAsync(
                a => a.Leases.Count(l => l.State == LeaseState.Reserved && !parts.Manager.IsCommunityStaged(l.Address)), context.CancellationToken);
        }

        return reply;
    }

    public override Task<ListPoolsReply> ListPools(ListPoolsRequest request, ServerCallContext context)
    {
        var parts = Running();
        var reply = new ListPoolsReply();
        foreach (var pool in parts.Allocator.PoolUsageSnapshot)
        {
            reply.Pools.Add(new Pool
            {
                Name = pool.Pool,
                Kind = pool.Kind == PoolKind.Shadow ? "shadow" : "dynamic",
                Family = pool.Family == IpFamily.IPv6 ? Family.Ipv6 : Family.Ipv4,
                Size = pool.Size,
                Free = pool.Size - pool.Used,
                Reserved = pool.Reserved,
                Active = pool.Assigned,
                Cooling = pool.Quarantined,
            });
        }

        return Task.FromResult(reply);
    }

    public override Task<ListPeersReply> ListPeers(ListPeersRequest request, ServerCallContext context)
    {
        var parts = Running();
        var reply = new ListPeersReply();
        foreach (var peer in parts.Speaker.Peers)
        {
            reply.Peers.Add(new Peer
            {
                Name = peer.Options.DisplayName,
                Address = peer.Options.Address.ToString(),
                Port = peer.Options.Port,
                RemoteAs = peer.Options.RemoteAs,
                State = peer.State.ToString(),
                PrefixesSent = peer.PrefixesSent,
                UpdatesSent = peer.UpdatesSent,
                UpdatesReceived = peer.UpdatesReceived,
                EstablishedCount = peer.EstablishedCount,
                LastError = peer.LastError ?? "",
                StateSince = Timestamp.FromDateTimeOffset(peer.StateSince),
                HoldTime = peer.Session?.HoldTimeSeconds ?? 0,
                Shutdown = peer.Options.ShutdownMessage is not null,
                ShutdownMessage = peer.Options.ShutdownMessage ?? "",
            });
        }

        return Task.FromResult(reply);
    }

    public override Task<GetStatusReply> GetStatus(GetStatusRequest request, ServerCallContext context)
    {
        var parts = Running();
        return Task.FromResult(new GetStatusReply
        {
            Version = typeof(ControllerApi).Assembly.GetName().Version?.ToString() ?? "",
            Started = Timestamp.FromDateTimeOffset(controller.Started),
            Store = parts.Allocator.StoreLocation,
            AcknowledgedOperations = parts.Allocator.Acknowledged,
            Peers = parts.Speaker.Peers.Count,
            PeersEstablished = parts.Speaker.PeersEstablished,
            ActiveRoutes = parts.Speaker.LocRib.Count,
            UdpHooks = parts.Hooks?.LocalEndPoint.ToString() ?? "",
            StoreFailure = parts.Allocator.Failure?.Message ?? "",
        });
    }

    public override async Task<ListMissesReply> ListMisses(ListMissesRequest request, ServerCallContext context)
    {
        var parts = Running();
        var limit = PageLimit(request.Limit);
        if (request.AfterId < 0)
        {
            throw Invalid($"after_id: {request.AfterId} is negative");
        }

        var reply = new ListMissesReply();
        foreach (var (id, miss) in await parts.Allocator.LoadMissesAsync(request.AfterId, limit, context.CancellationToken))
        {
            reply.Misses.Add(new Miss
            {
                Id = id,
                Time = Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(miss.TimeMs)),
                Application = miss.Application,
                Instance = miss.Instance,
                Address = miss.Address.ToString(),
                Host = miss.Host?.ToString() ?? "",
                WindowJson = miss.Window ?? "",
            });
        }

        return reply;
    }

    public override Task<GetForecastReply> GetForecast(GetForecastRequest request, ServerCallContext context)
    {
        Running();
        var loop = controller.Forecasts ?? throw new RpcException(new GrpcStatus(StatusCode.FailedPrecondition, "forecasting is off: the configuration has no 'prediction' section"));
        var reply = new GetForecastReply { Forecaster = loop.ActiveForecaster, StepSeconds = (int)loop.Step.TotalSeconds };
        foreach (var forecast in loop.Forecasts().Where(f => request.Application.Length == 0 || f.Application == request.Application))
        {
            var message = new ShadowNet.Api.V1.ApplicationForecast
            {
                Application = forecast.Application,
                Forecaster = forecast.Forecaster,
                At = Timestamp.FromDateTimeOffset(forecast.At),
                Active = forecast.Active,
                Expected = forecast.Expected,
                Reserved = forecast.Reserved,
                Additional = forecast.Additional,
                PrefixLength = 32 - (int)Math.Ceiling(Math.Log2(Math.Max(1, forecast.Expected))),
                ExpectedRequestsPerSecond = forecast.ExpectedRequestsPerSecond ?? 0,
            };
            message.Quantiles.AddRange(forecast.Quantiles.Select(q => new QuantileForecast { Quantile = q.Quantile, Instances = q.Instances }));
            reply.Forecasts.Add(message);
        }

        return Task.FromResult(reply);
    }

    public override async Task WatchEvents(WatchEventsRequest request, IServerStreamWriter<Event> responseStream, ServerCallContext context)
    {
        var parts = Running();
        using var subscription = parts.Manager.Events.Subscribe();
        long reported = 0;
        try
        {
            await foreach (var item in subscription.Reader.ReadAllAsync(context.CancellationToken))
            {
                var dropped = subscription.Dropped;
                await responseStream.WriteAsync(new Event
                {
                    Time = Timestamp.FromDateTimeOffset(DateTimeOffset.FromUnixTimeMilliseconds(item.TimeMs)),
                    Kind = item.Kind == ControllerEventKind.Create ? "create" : "delete",
                    Outcome = item.Kind == ControllerEventKind.Delete ? Outcome.Deleted : item.Hit ? Outcome.Hit : Outcome.Miss,
                    Instance = item.Instance,
                    Application = item.Application,
                    Address = item.Address.ToString(),
                    Host = item.Host?.ToString() ?? "",
                    DroppedBefore = dropped - reported,
                }, context.CancellationToken);
                reported = dropped;
            }
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The watcher went away.
        }
    }

    public override async Task<ReportMetricsReply> ReportMetrics(IAsyncStreamReader<ApiMetricSample> requestStream, ServerCallContext context)
    {
        Running();
        long accepted = 0;
        await foreach (var sample in requestStream.ReadAllAsync(context.CancellationToken))
        {
            var where = $"sample {accepted}";
            Id(sample.Application, $"{where}: application");
            if (sample.Values.Count is 0 or > MaxMetricValues)
            {
                throw Invalid($"{where}: values: {sample.Values.Count} given; 1 to {MaxMetricValues} are accepted");
            }

            foreach (var (name, value) in sample.Values)
            {
                if (name.Length is 0 or > MaxMetricName)
                {
                    throw Invalid($"{where}: values: a name must have 1 to {MaxMetricName} characters");
                }

                if (!double.IsFinite(value))
                {
                    throw Invalid($"{where}: values: '{name}' is {value}, not a finite number");
                }

                if (value < 0 && Signals.TryParse(name, out _))
                {
                    throw Invalid($"{where}: values: '{name}' is {value}; counts, rates and fractions cannot be negative");
                }
            }

            var time = sample.Time is null ? DateTimeOffset.UtcNow : sample.Time.ToDateTimeOffset();
            if (!controller.Report(sample.Application, time, sample.Values))
            {
                throw new RpcException(new GrpcStatus(StatusCode.ResourceExhausted, $"{where}: too many applications are reported already"));
            }

            accepted++;
        }

        return new ReportMetricsReply { Accepted = accepted };
    }

    private (Controller.Allocation.DurableAllocator Allocator, BgpSpeaker Speaker, Controller.Routing.ActiveRouteManager Manager, HookServer? Hooks) Running() =>
        controller.Parts ?? throw new RpcException(new GrpcStatus(StatusCode.Unavailable, "shadownetd is starting or stopping"));

    private static int PageLimit(int limit) => limit switch
    {
        0 => 1000,
        < 0 or > MaxPage => throw Invalid($"limit: {limit} is not from 0 to {MaxPage}"),
        _ => limit,
    };

    private static IpFamily Check(Family family) => family switch
    {
        Family.Unspecified or Family.Ipv4 => IpFamily.IPv4,
        Family.Ipv6 => IpFamily.IPv6,
        _ => throw Invalid($"family: {(int)family} is not a known family"),
    };

    private static void Id(string value, string field)
    {
        if (value.Length == 0)
        {
            throw Invalid($"{field}: missing");
        }

        if (Encoding.UTF8.GetByteCount(value) > MaxIdOctets)
        {
            throw Invalid($"{field}: longer than {MaxIdOctets} octets of UTF-8");
        }
    }

    private static RpcException Invalid(string message) => new(new GrpcStatus(StatusCode.InvalidArgument, message));

    private static RpcException Failure(HookStatus status, string instance, string application, IpFamily family) => status switch
    {
        HookStatus.Conflict => new(new GrpcStatus(StatusCode.AlreadyExists, $"instance '{instance}' exists for another application than '{application}'")),
        HookStatus.Exhausted => new(new GrpcStatus(StatusCode.ResourceExhausted, $"no {family} address left for application '{application}' (no reservation and the dynamic pools are full)")),
        HookStatus.NotFound => new(new GrpcStatus(StatusCode.NotFound, $"instance '{instance}' has no {family} address")),
        HookStatus.Unavailable => new(new GrpcStatus(StatusCode.Unavailable, "the state store has failed; restart shadownetd")),
        _ => new(new GrpcStatus(StatusCode.InvalidArgument, $"no {family} pool can serve application '{application}', or the address may not be announced")),
    };

    private static int Compare(Address left, Address right) =>
        left.Family != right.Family ? left.Family.CompareTo(right.Family) : left.Value.CompareTo(right.Value);
}
