using System.Net;
using System.Net.Sockets;
using System.Text;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Hooks.Tests.Udp;

/// <summary>The UDP server on loopback, with the real in-memory allocator behind it.</summary>
public sealed class HookServerTests : IAsyncLifetime
{
    private static readonly byte[] Key = Encoding.ASCII.GetBytes("hook-key-for-tests-0123456789");
    private readonly AllocatorHandler _handler = new();
    private HookServer _server = null!;

    public Task InitializeAsync()
    {
        _server = Started(_handler, new());
        return Task.CompletedTask;
    }

    /// <summary>A server on a free loopback port with the test key and the given settings.</summary>
    private static HookServer Started(AllocatorHandler handler, Settings settings)
    {
        var server = new HookServer(new HookServerOptions
        {
            Listen = new IPEndPoint(IPAddress.Loopback, 0),
            Keys = new Dictionary<ushort, byte[]> { [1] = Key },
            ReceiverNice = settings.ReceiverNice,
            InlineBatchLimit = settings.InlineBatchLimit,
            InlineRateLimit = settings.InlineRateLimit,
        }, handler);
        server.Start();
        return server;
    }

    private sealed record Settings(int ReceiverNice = 0, int InlineBatchLimit = 16, int InlineRateLimit = 30_000);

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task CreateIsAHitForAReservedAddressAndAMissOtherwiseAndDeleteReleases()
    {
        _handler.Reserve("web", 1);
        using var client = new HookClient(_server.LocalEndPoint, 1, Key, 1000);
        var hit = await client.CreateAsync("web-0", "web", IpFamily.IPv4, Address.Parse("192.0.2.10"));
        Assert.Equal((HookStatus.Hit, Address.Parse("10.1.0.1")), (hit.Status, hit.Address));
        var miss = await client.CreateAsync("web-1", "web", IpFamily.IPv4, null);
        Assert.Equal((HookStatus.Miss, Address.Parse("10.9.0.1")), (miss.Status, miss.Address));
        Assert.Equal(HookStatus.Deleted, (await client.DeleteAsync("web-1", "web", IpFamily.IPv4)).Status);
        Assert.Equal(HookStatus.NotFound, (await client.DeleteAsync("web-1", "web", IpFamily.IPv4)).Status);
    }

    [Fact]
    public async Task AnsweredEventsAreCountedByKindStatusAndTransport()
    {
        var before = AnsweredCounts();
        HookServer.CountGrpcEvent(HookKind.Create, HookStatus.Conflict);
        HookServer.CountGrpcEvent(HookKind.Create, HookStatus.Conflict);
        using var client = new HookClient(_server.LocalEndPoint, 1, Key, 1000);
        Assert.Equal(HookStatus.NotFound, (await client.DeleteAsync("never-created", "web", IpFamily.IPv4)).Status);
        var after = AnsweredCounts();

        // Only the daemon answers over gRPC, so that count is exact; other tests may answer UDP deletes meanwhile.
        Assert.Equal(2, after.GetValueOrDefault("create/conflict/grpc") - before.GetValueOrDefault("create/conflict/grpc"));
        Assert.True(after.GetValueOrDefault("delete/not_found/udp") > before.GetValueOrDefault("delete/not_found/udp"));
    }

    /// <summary>shadownet.hook.events as an exporter reads it: count by "kind/status/transport".</summary>
    private static Dictionary<string, long> AnsweredCounts()
    {
        var counts = new Dictionary<string, long>();
        using var listener = new System.Diagnostics.Metrics.MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == HookServer.MeterName && instrument.Name == "shadownet.hook.events")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            var byKey = tags.ToArray().ToDictionary(t => t.Key, t => t.Value as string);
            counts[$"{byKey["kind"]}/{byKey["status"]}/{byKey["transport"]}"] = value;
        });
        listener.Start();
        listener.RecordObservableInstruments();
        return counts;
    }

    [Fact]
    public async Task RetriedDatagramGetsTheSameReplyAndRunsOnce()
    {
        using var socket = Connected();
        var request = Request(HookKind.Create, 77, "vm-r");
        await socket.SendAsync(request);
        var first = await ReceiveAsync(socket);
        await socket.SendAsync(request);
        var second = await ReceiveAsync(socket);
        Assert.Equal(first, second);
        Assert.Equal(1, _handler.Creates);
    }

    [Fact]
    public async Task SequenceBelowTheWindowIsDroppedAsReplayed()
    {
        using var socket = Connected();
        await socket.SendAsync(Request(HookKind.Create, 5_000, "vm-a"));
        await ReceiveAsync(socket);
        await socket.SendAsync(Request(HookKind.Delete, 5_000 - ReplayWindow.Size, "vm-a"));
        await Eventually(() => _server.RejectedCount(DatagramRejection.Replayed) == 1);
        Assert.Equal(1, _handler.Creates);
        Assert.Equal(0, _handler.Deletes);
    }

    [Fact]
    public async Task BadDatagramsAreCountedByReasonAndTheServerKeepsServing()
    {
        using var socket = Connected();
        var good = Request(HookKind.Create, 9_000, "vm-b");
        var tampered = (byte[])good.Clone();
        tampered[^1] ^= 0xFF;
        byte[][] bad = [[], [1, 2, 3], new byte[1200], tampered, [.. Encoding.ASCII.GetBytes("SN"), 9, 1, .. new byte[60]]];
        foreach (var datagram in bad)
        {
            await socket.SendAsync(datagram);
        }

        await socket.SendAsync(good);
        var reply = await ReceiveAsync(socket);
        Assert.True(HookDatagram.TryParseReply(reply, Key, out var parsed, out _));
        Assert.Equal(HookStatus.Miss, parsed.Status);
        await Eventually(() => _server.RejectedCount(DatagramRejection.TooShort) == 2
            && _server.RejectedCount(DatagramRejection.Oversized) == 1
            && _server.RejectedCount(DatagramRejection.BadMac) == 1
            && _server.RejectedCount(DatagramRejection.UnsupportedVersion) == 1);
    }

    [Fact]
    public async Task SmallBatchWithNothingWaitingIsFinishedOnTheReceivingThreadAtItsNiceValue()
    {
        var handler = new AllocatorHandler();
        await using var server = Started(handler, new() { ReceiverNice = 5 }); // lowering the priority needs no privilege
        Assert.Null(server.ReceiverNiceProblem);

        using var socket = Connected(server);
        await socket.SendAsync(Request(HookKind.Create, 11, "vm-n"));
        await ReceiveAsync(socket);
        await Eventually(() => handler.BatchesEnded == 1);
        Assert.Equal((1, 1, 1), (handler.BatchesStarted, handler.BatchesFinishedHere, handler.Creates));
        Assert.Equal((1, 0), (server.BatchCount(finishedHere: true), server.BatchCount(finishedHere: false)));
        Assert.Equal(["shadownet-hooks-in"], handler.BatchThreads.Distinct());
        Assert.Equal(5, handler.ReceiverNice);
    }

    [Fact]
    public async Task BatchLargerThanTheInlineLimitIsHandedOn()
    {
        var handler = new AllocatorHandler();
        await using var server = Started(handler, new() { InlineBatchLimit = 0 });

        using var socket = Connected(server);
        await socket.SendAsync(Request(HookKind.Create, 12, "vm-m"));
        await ReceiveAsync(socket);
        await Eventually(() => handler.BatchesEnded == 1);
        Assert.Equal((1, 0, 1), (handler.BatchesStarted, handler.BatchesFinishedHere, handler.Creates));
    }

    [Fact]
    public async Task AboveTheInlineRateBatchesAreHandedOn()
    {
        var handler = new AllocatorHandler();
        await using var server = Started(handler, new() { InlineRateLimit = 1 }); // one datagram a second is load here
        using var socket = Connected(server);
        for (var i = 0; i < 30; i++)
        {
            await socket.SendAsync(Request(HookKind.Create, 20 + (ulong)i, $"vm-r{i}"));
            await ReceiveAsync(socket);
            await Task.Delay(1); // the 30 span more than the 10 ms over which the rate is taken
        }

        // Every batch is small with nothing waiting: only the rate can have handed some on (a machine
        // slower than one datagram a second in a window would leave them all finished here).
        await Eventually(() => handler.BatchesEnded == 30);
        Assert.True(handler.BatchesFinishedHere < 30, $"{handler.BatchesFinishedHere} of 30 finished on the receiving thread");
        Assert.Equal((handler.BatchesFinishedHere, 30 - handler.BatchesFinishedHere), (server.BatchCount(true), server.BatchCount(false)));
    }

    private Socket Connected() => Connected(_server);

    private static Socket Connected(HookServer server)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Connect(server.LocalEndPoint);
        return socket;
    }

    private static byte[] Request(HookKind kind, ulong sequence, string instance)
    {
        var buffer = new byte[HookDatagram.MaxRequestLength];
        var length = HookDatagram.WriteRequest(buffer, kind, sequence, 1, Key, IpFamily.IPv4, null, Encoding.UTF8.GetBytes(instance), "web"u8);
        return buffer[..length];
    }

    private static async Task<byte[]> ReceiveAsync(Socket socket)
    {
        var buffer = new byte[256];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        var length = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
        return buffer[..length];
    }

    private static async Task Eventually(Func<bool> condition)
    {
        for (var i = 0; i < 200 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition());
    }

    /// <summary>The hook semantics on the real allocator (the route manager will add routes around it).</summary>
    private sealed class AllocatorHandler : IHookHandler
    {
        private readonly AddressAllocator _allocator = new(
        [
            new PoolDefinition("shadow", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/24")]),
            new PoolDefinition("dynamic", PoolKind.Dynamic, [IPNetwork.Parse("10.9.0.0/24")]),
        ]);

        public int Creates { get; private set; }

        public int Deletes { get; private set; }

        public int BatchesStarted { get; private set; }

        public int BatchesEnded { get; private set; }

        public int BatchesFinishedHere { get; private set; }

        /// <summary>Names of the threads that started and ended batches.</summary>
        public List<string?> BatchThreads { get; } = [];

        /// <summary>The nice value of the thread that last started a batch (Linux: /proc/thread-self/stat, field 19).</summary>
        public int? ReceiverNice { get; private set; }

        public void BatchStarting()
        {
            BatchesStarted++;
            BatchThreads.Add(Thread.CurrentThread.Name);
            var stat = File.ReadAllText("/proc/thread-self/stat");
            ReceiverNice = int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[16], System.Globalization.CultureInfo.InvariantCulture);
        }

        public void BatchEnded(bool finishHere)
        {
            BatchThreads.Add(Thread.CurrentThread.Name);
            BatchesFinishedHere += finishHere ? 1 : 0;
            BatchesEnded++;
        }

        public void Reserve(string application, int count)
        {
            lock (_allocator)
            {
                _allocator.Reserve(application, IpFamily.IPv4, count);
            }
        }

        public ValueTask<HookOutcome> CreateAsync(ReadOnlySpan<char> instance, string application, IpFamily family, Address? host, CancellationToken cancellationToken)
        {
            lock (_allocator)
            {
                Creates++;
                var claim = _allocator.Claim(instance, application, family);
                var status = claim.Status switch
                {
                    ClaimStatus.Hit => HookStatus.Hit,
                    ClaimStatus.Miss => HookStatus.Miss,
                    ClaimStatus.Existing => claim.Preallocated ? HookStatus.Hit : HookStatus.Miss,
                    ClaimStatus.Conflict => HookStatus.Conflict,
                    ClaimStatus.Exhausted => HookStatus.Exhausted,
                    _ => HookStatus.Invalid,
                };
                return ValueTask.FromResult(new HookOutcome(status, claim.Succeeded ? claim.Address : null));
            }
        }

        public ValueTask<HookOutcome> DeleteAsync(ReadOnlySpan<char> instance, string application, IpFamily family, CancellationToken cancellationToken)
        {
            lock (_allocator)
            {
                Deletes++;
                return ValueTask.FromResult(_allocator.Release(instance, family, out var lease)
                    ? new HookOutcome(HookStatus.Deleted, lease.Address)
                    : new HookOutcome(HookStatus.NotFound, null));
            }
        }
    }
}
