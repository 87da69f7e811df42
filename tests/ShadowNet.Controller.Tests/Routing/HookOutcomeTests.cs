using System.Net;
using ShadowNet.Addressing;
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
    public async Task APostedReservationIsMadeWithoutAnyoneWaitingAndRefusedOnceStopped()
    {
        using var folder = new TempDirectory("state");
        var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(folder.File("state.db")));
        for (var i = 0; i < 100; i++)
        {
            Assert.True(allocator.PostReserve("db", IpFamily.IPv4, 1));
        }

        // Operations apply in order: a read queued after the posts sees all of them.
        var usage = await allocator.ReadAsync(a => a.GetUsage("db", IpFamily.IPv4));
        Assert.Equal(100, usage.Reserved);
        await allocator.DisposeAsync();
        Assert.False(allocator.PostReserve("db", IpFamily.IPv4, 1));
    }
}
