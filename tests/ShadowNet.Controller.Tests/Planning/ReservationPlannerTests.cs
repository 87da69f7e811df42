using System.Net;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.Planning;
using ShadowNet.Controller.Routing;
using ShadowNet.Controller.State;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Controller.Tests.Planning;

public class ReservationPlannerTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 25, 8, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task GrowsAtOnceShrinksOnlyPastHysteresisAndCooldown()
    {
        using var folder = new TempDirectory("planner");
        PoolDefinition[] pools =
        [
            new("shadow", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/24")]),
            new("dynamic", PoolKind.Dynamic, [IPNetwork.Parse("10.9.0.0/24")]),
        ];
        await using var allocator = DurableAllocator.Open(pools, SqliteAllocationStore.Open(folder.File("s.db")));
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") });
        var manager = new ActiveRouteManager(allocator, speaker, pools, new RouteManagerOptions { DefaultNextHopV4 = IPAddress.Parse("192.0.2.1") });
        var planner = new ReservationPlanner(manager, allocator, new PlannerOptions { ShrinkHysteresis = 2, ShrinkCooldown = TimeSpan.FromMinutes(15) });

        // Forecast 10 with nothing running: 10 reserved at once.
        Assert.Equal(new PlanStep(10, 10, 0, 10, 0), await planner.PlanAsync("web", IpFamily.IPv4, 10, Start));

        // Three instances come: they take reservations (hits); the same forecast tops up to 7 spare.
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HookStatus.Hit, (await manager.CreateAsync($"web-{i}", "web", IpFamily.IPv4, null, default)).Status);
        }

        Assert.Equal(new PlanStep(7, 7, 3, 0, 0), await planner.PlanAsync("web", IpFamily.IPv4, 10, Start.AddMinutes(5)));

        // The forecast drops to 8 (target 5): 2 over target is within the hysteresis, nothing moves.
        Assert.Equal(new PlanStep(5, 7, 3, 0, 0), await planner.PlanAsync("web", IpFamily.IPv4, 8, Start.AddMinutes(10)));

        // Drops to 4 (target 1), 6 over, but within 15 minutes of the last growth: still kept.
        Assert.Equal(new PlanStep(1, 7, 3, 0, 0), await planner.PlanAsync("web", IpFamily.IPv4, 4, Start.AddMinutes(14)));

        // After the cool-down it shrinks to the target.
        Assert.Equal(new PlanStep(1, 1, 3, 0, 6), await planner.PlanAsync("web", IpFamily.IPv4, 4, Start.AddMinutes(16)));
        Assert.Equal(1, (await allocator.ReadAsync(a => a.GetUsage("web", IpFamily.IPv4))).Reserved);
    }

    [Fact]
    public async Task MinimumReserveKeepsAddressesReadyWhenTheForecastSeesNoGrowth()
    {
        using var folder = new TempDirectory("planner");
        PoolDefinition[] pools = [new("shadow", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/24")])];
        await using var allocator = DurableAllocator.Open(pools, SqliteAllocationStore.Open(folder.File("s.db")));
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") });
        var manager = new ActiveRouteManager(allocator, speaker, pools, new RouteManagerOptions { DefaultNextHopV4 = IPAddress.Parse("192.0.2.1") });
        var planner = new ReservationPlanner(manager, allocator, new PlannerOptions { MinimumReserve = 4 });

        // A forecast of nothing still leaves 4 ready; a jump of 4 finds them all.
        Assert.Equal(new PlanStep(4, 4, 0, 4, 0), await planner.PlanAsync("batch", IpFamily.IPv4, 0, Start));
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(HookStatus.Hit, (await manager.CreateAsync($"batch-{i}", "batch", IpFamily.IPv4, null, default)).Status);
        }

        // The forecast only says "as many as now": the floor tops up to 4 spare again.
        Assert.Equal(new PlanStep(4, 4, 4, 4, 0), await planner.PlanAsync("batch", IpFamily.IPv4, 4, Start.AddMinutes(5)));

        // A forecast above the floor wins: 10 more than running.
        Assert.Equal(new PlanStep(10, 10, 4, 6, 0), await planner.PlanAsync("batch", IpFamily.IPv4, 14, Start.AddMinutes(10)));
    }

    [Fact]
    public async Task AddressDeletedWhileTheForecastStillWantsItComesBackAsAReservationNotANewOne()
    {
        using var folder = new TempDirectory("planner");
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(Start);
        PoolDefinition[] pools =
        [
            new("shadow", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/24")], ReuseDelay: TimeSpan.FromMinutes(1)),
            new("dynamic", PoolKind.Dynamic, [IPNetwork.Parse("10.9.0.0/24")]),
        ];
        await using var allocator = DurableAllocator.Open(pools, SqliteAllocationStore.Open(folder.File("s.db")), time: time);
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") });
        var manager = new ActiveRouteManager(allocator, speaker, pools, new RouteManagerOptions { DefaultNextHopV4 = IPAddress.Parse("192.0.2.1") });
        var planner = new ReservationPlanner(manager, allocator, new PlannerOptions());

        Assert.Equal(new PlanStep(3, 3, 0, 3, 0), await planner.PlanAsync("web", IpFamily.IPv4, 3, Start));
        var created = await manager.CreateAsync("web-0", "web", IpFamily.IPv4, null, default);
        Assert.Equal(HookStatus.Hit, created.Status);
        Assert.Equal(HookStatus.Deleted, (await manager.DeleteAsync("web-0", "web", IpFamily.IPv4, default)).Status);

        // Within the reuse delay the address is quarantined: the planner reserves a new one to meet the forecast.
        Assert.Equal(new PlanStep(3, 3, 0, 1, 0), await planner.PlanAsync("web", IpFamily.IPv4, 3, Start));
        await planner.PlanAsync("web", IpFamily.IPv4, 4, Start);
        time.Advance(TimeSpan.FromMinutes(1));

        // After it, the released address is web's again (nothing new reserved), as a reservation.
        Assert.Equal(new PlanStep(5, 5, 0, 0, 0), await planner.PlanAsync("web", IpFamily.IPv4, 5, Start.AddMinutes(1)));
        var lease = await allocator.ReadAsync(a => a.TryGetByAddress(created.Address!.Value, out var l) ? l : default);
        Assert.Equal((LeaseState.Reserved, "web"), (lease.State, lease.Application));
    }
}
