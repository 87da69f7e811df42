using System.Net;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.Routing;
using ShadowNet.Controller.State;
using ShadowNet.Controller.Tests.Support;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Controller.Tests.Routing;

/// <summary>Replies come from recycled completions: each create and delete must still get its own.</summary>
public class HookOutcomeTests
{
    [Fact]
    public async Task WavesOfConcurrentCreatesAndDeletesEachGetTheirOwnOutcome()
    {
        using var folder = new TempDirectory("state");
        await using var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(folder.File("state.db")));
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") });
        var manager = new ActiveRouteManager(allocator, speaker, TestPools.Small(), new RouteManagerOptions());
        var host = Address.Parse("192.0.2.10");
        for (var wave = 0; wave < 3; wave++)
        {
            var ids = Enumerable.Range(0, 400).Select(i => $"vm-{wave}-{i}").ToArray();
            var created = await Task.WhenAll(ids.Select(id => manager.CreateAsync(id, "web", IpFamily.IPv6, host, CancellationToken.None).AsTask()));
            Assert.All(created, o => Assert.Equal(HookStatus.Miss, o.Status));
            Assert.Equal(ids.Length, created.Select(o => o.Address).Distinct().Count());

            var deleted = await Task.WhenAll(ids.Select(id => manager.DeleteAsync(id, "web", IpFamily.IPv6, CancellationToken.None).AsTask()));
            Assert.Equal(created.Select(o => o.Address), deleted.Select(o => o.Address));
            Assert.All(deleted, o => Assert.Equal(HookStatus.Deleted, o.Status));
            Assert.Equal(HookStatus.NotFound, (await manager.DeleteAsync(ids[0], "web", IpFamily.IPv6, CancellationToken.None)).Status);
        }
    }

    [Fact]
    public async Task AWarmPoolHitReservesItsReplacementInTheSameCommitAsTheClaim()
    {
        using var folder = new TempDirectory("state");
        await using var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(folder.File("state.db")));
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") });
        var manager = new ActiveRouteManager(allocator, speaker, TestPools.Small(),
            new RouteManagerOptions { Warm = [new WarmTarget("web", IpFamily.IPv4, 3)] });
        Assert.Equal(3, await manager.TopUpWarmAsync());

        for (var i = 0; i < 5; i++)
        {
            var commits = allocator.Commits;
            var created = await manager.CreateAsync($"vm-{i}", "web", IpFamily.IPv4, Address.Parse("192.0.2.10"), CancellationToken.None);
            Assert.Equal(HookStatus.Hit, created.Status);
            // The read waits for everything queued before it: the replacement was made with the claim,
            // and the two went to the store in one commit (not a second one after the reply).
            var usage = await allocator.ReadAsync(a => a.GetUsage("web", IpFamily.IPv4));
            Assert.Equal(3, usage.Reserved);
            Assert.Equal(i + 1, usage.Assigned);
            Assert.Equal(commits + 1, allocator.Commits);
        }

        // An application without a warm target is not refilled.
        Assert.Equal(ReserveStatus.Reserved, (await allocator.ReserveAsync("db", IpFamily.IPv4, 1)).Status);
        Assert.Equal(HookStatus.Hit, (await manager.CreateAsync("db-1", "db", IpFamily.IPv4, Address.Parse("192.0.2.10"), CancellationToken.None)).Status);
        Assert.Equal(0, (await allocator.ReadAsync(a => a.GetUsage("db", IpFamily.IPv4))).Reserved);
    }

    [Fact]
    public async Task ACreateThatCouldNotBeRoutedIsRefusedBeforeItTakesAnAddress()
    {
        using var folder = new TempDirectory("state");
        await using var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(folder.File("state.db")));
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") });
        var manager = new ActiveRouteManager(allocator, speaker, TestPools.Small(), new RouteManagerOptions { DefaultNextHopV6 = IPAddress.Parse("2001:db8::99") });

        // No host address and no IPv4 default next hop: nothing to route it by.
        Assert.Equal(new HookOutcome(HookStatus.Invalid, null), await manager.CreateAsync("vm-1", "web", IpFamily.IPv4, null, CancellationToken.None));
        Assert.Equal(0, await allocator.ReadAsync(a => a.LeaseCount));
        Assert.Equal(HookStatus.Miss, (await manager.CreateAsync("vm-1", "web", IpFamily.IPv4, Address.Parse("192.0.2.10"), CancellationToken.None)).Status);
        Assert.Equal(HookStatus.Miss, (await manager.CreateAsync("vm-2", "web", IpFamily.IPv6, null, CancellationToken.None)).Status);
        Assert.Equal(2, await allocator.ReadAsync(a => a.LeaseCount));
    }
}
