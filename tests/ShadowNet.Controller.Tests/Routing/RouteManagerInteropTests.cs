using System.Net;
using System.Text;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Pools;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.Routing;
using ShadowNet.Controller.State;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Controller.Tests.Routing;

/// <summary>
/// Hook datagrams over UDP on loopback, through the durable allocator and the route manager, into our
/// BGP speaker and on to a real BIRD 2: what BIRD holds is the proof.
/// </summary>
public class RouteManagerInteropTests
{
    private const uint OurAs = 65003;
    private const string OurAddress = "127.0.0.3";
    private static readonly byte[] Key = Encoding.ASCII.GetBytes("interop-hook-key-0123456789");
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private static PoolDefinition[] Pools() =>
    [
        new("shadow-v4", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/24")]),
        new("dynamic-v4", PoolKind.Dynamic, [IPNetwork.Parse("10.9.0.0/24")]),
    ];

    [Fact]
    public async Task UdpCreatesAppearAtBirdWithTheirNextHopHeldReservationsDoNotDeletesWithdrawAndRestartReannouncesTheLiveOnes()
    {
        using var folder = new TempDirectory("arm");
        var store = folder.File("state.db");
        var birdPort = TestPorts.Next();
        await using var bird = new BirdPeer($$"""
              local 127.0.0.2 port {{birdPort}} as 65002;
              neighbor {{OurAddress}} as {{OurAs}};
              multihop; strict bind on; passive on; hold time 30;
              ipv4 { import all; export none; };
            """);
        await bird.StartAsync();

        await using (var controller = await Controller.StartAsync(store, birdPort))
        {
            using var client = new HookClient(controller.Hooks.LocalEndPoint, 1, Key, 1);
            await controller.Allocator.ReserveAsync("web", IpFamily.IPv4, 3);

            var hit = await client.CreateAsync("web-0", "web", IpFamily.IPv4, Address.Parse("192.0.2.10"));
            Assert.Equal((HookStatus.Hit, Address.Parse("10.1.0.1")), (hit.Status, hit.Address));
            Assert.Equal(HookStatus.Hit, (await client.CreateAsync("web-1", "web", IpFamily.IPv4, Address.Parse("192.0.2.11"))).Status);
            var miss = await client.CreateAsync("db-0", "db", IpFamily.IPv4, null);
            Assert.Equal((HookStatus.Miss, Address.Parse("10.9.0.1")), (miss.Status, miss.Address));

            var routes = await RoutesWhenAsync(bird, 3);
            Assert.Equal("192.0.2.10", routes["10.1.0.1/32"].NextHop);
            Assert.Equal("192.0.2.11", routes["10.1.0.2/32"].NextHop);
            Assert.Equal("192.0.2.99", routes["10.9.0.1/32"].NextHop);

            // 10.1.0.3 is reserved for web but no instance took it: held, so BIRD never heard of it.
            Assert.False(routes.ContainsKey("10.1.0.3/32"));

            Assert.Equal(HookStatus.Deleted, (await client.DeleteAsync("web-0", "web", IpFamily.IPv4)).Status);
            routes = await RoutesWhenAsync(bird, 2);
            Assert.Equal(["10.1.0.2/32", "10.9.0.1/32"], routes.Keys.Order());
        }

        // The controller stopped (its session closed, BIRD dropped the routes); a new one on the same
        // store announces exactly the live instances again, with their next hops.
        Assert.Equal(0, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 0, Patience));
        await using (var restarted = await Controller.StartAsync(store, birdPort))
        {
            Assert.Equal(2, restarted.Restored);
            var routes = await RoutesWhenAsync(bird, 2);
            Assert.Equal("192.0.2.11", routes["10.1.0.2/32"].NextHop);
            Assert.Equal("192.0.2.99", routes["10.9.0.1/32"].NextHop);
        }
    }

    private static async Task<Dictionary<string, BirdRoute>> RoutesWhenAsync(BirdPeer bird, int count) =>
        await Eventually.WaitAsync(() => bird.RoutesAsync("master4"), r => r.Count == count, Patience);

    /// <summary>The parts of the controller this test needs, wired as the daemon will wire them.</summary>
    private sealed class Controller : IAsyncDisposable
    {
        public required DurableAllocator Allocator { get; init; }

        public required BgpSpeaker Speaker { get; init; }

        public required HookServer Hooks { get; init; }

        public int Restored { get; private set; }

        public static async Task<Controller> StartAsync(string store, int birdPort)
        {
            var allocator = DurableAllocator.Open(Pools(), SqliteAllocationStore.Open(store));
            var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = OurAs, RouterId = IPAddress.Parse(OurAddress), GracefulRestartSeconds = 0 });
            var peer = speaker.AddPeer(new BgpPeerOptions
            {
                Address = IPAddress.Parse("127.0.0.2"),
                Port = birdPort,
                RemoteAs = 65002,
                LocalAddress = IPAddress.Parse(OurAddress),
                ConnectRetry = TimeSpan.FromSeconds(1),
                ConnectRetryMax = TimeSpan.FromSeconds(2),
            });
            var manager = new ActiveRouteManager(allocator, speaker, Pools(), new RouteManagerOptions { DefaultNextHopV4 = IPAddress.Parse("192.0.2.99") });
            var restored = await manager.RestoreAsync();
            speaker.Start();
            using (var established = new CancellationTokenSource(Patience))
            {
                await peer.WaitForStateAsync(BgpSessionState.Established, established.Token);
            }

            var hooks = new HookServer(new HookServerOptions { Listen = new IPEndPoint(IPAddress.Loopback, 0), Keys = new Dictionary<ushort, byte[]> { [1] = Key } }, manager);
            hooks.Start();
            return new Controller { Allocator = allocator, Speaker = speaker, Hooks = hooks, Restored = restored };
        }

        public async ValueTask DisposeAsync()
        {
            await Hooks.DisposeAsync();
            await Speaker.StopAsync("test controller stopping");
            await Speaker.DisposeAsync();
            await Allocator.DisposeAsync();
        }
    }
}

public class ExportGuardTests
{
    [Fact]
    public async Task OnlyAddressesInsideTheConfiguredPoolsAreExportable()
    {
        using var folder = new TempDirectory("guard");
        PoolDefinition[] pools = [new("p", PoolKind.Dynamic, [IPNetwork.Parse("10.9.0.0/24")], [AddressRange.Parse("10.9.0.7")])];
        await using var allocator = DurableAllocator.Open(pools, SqliteAllocationStore.Open(folder.File("s.db")));
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") });
        var manager = new ActiveRouteManager(allocator, speaker, pools, new RouteManagerOptions());
        Assert.True(manager.IsExportable(Address.Parse("10.9.0.1")));
        Assert.False(manager.IsExportable(Address.Parse("10.9.0.0")));
        Assert.False(manager.IsExportable(Address.Parse("10.9.0.7")));
        Assert.False(manager.IsExportable(Address.Parse("10.9.1.1")));
        Assert.False(manager.IsExportable(Address.Parse("2001:db8::1")));
    }
}
