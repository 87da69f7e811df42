using System.Net;
using ShadowNet.Addressing;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Bgp.Wire;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.Routing;
using ShadowNet.Controller.Tests.Support;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Controller.Tests.Routing;

/// <summary>A create's route leaves while its claim commits; the reply waits for the commit.</summary>
public class EarlyAnnouncementTests
{
    private static readonly Address Host = Address.Parse("192.0.2.10");

    [Fact]
    public async Task RouteIsInTheSpeakerWhileItsClaimCommitsAndTheReplyWaitsForTheCommit()
    {
        using var gate = new ManualResetEventSlim();
        var store = new FailingStore { Gate = gate };
        await using var allocator = DurableAllocator.Open(TestPools.Small(), store);
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") });
        var manager = new ActiveRouteManager(allocator, speaker, TestPools.Small(), new RouteManagerOptions());

        var create = manager.CreateAsync("vm-0", "web", IpFamily.IPv4, Host, CancellationToken.None).AsTask();
        Assert.True(store.Committing.Wait(TimeSpan.FromSeconds(10)));
        Assert.True(RoutePrefix.TryParse("10.9.0.1/32", out var route));
        Assert.True(speaker.LocRib.TryGet(route, out var attributes), "the route waits for the commit");
        Assert.Equal(IPAddress.Parse("192.0.2.10"), attributes.NextHop);
        Assert.False(create.IsCompleted, "the reply did not wait for the commit");

        gate.Set();
        var outcome = await create.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new HookOutcome(HookStatus.Miss, Address.Parse("10.9.0.1")), outcome);
    }

    [Fact]
    public async Task AddressReleasedAndClaimedAgainWhileTheReleaseCommitsKeepsTheNewInstancesRoute()
    {
        using var gate = new ManualResetEventSlim(initialState: true);
        var store = new FailingStore { Gate = gate };
        await using var allocator = DurableAllocator.Open(TestPools.Small(), store);
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") });
        var manager = new ActiveRouteManager(allocator, speaker, TestPools.Small(), new RouteManagerOptions());
        Assert.Equal(HookStatus.Miss, (await manager.CreateAsync("vm-0", "web", IpFamily.IPv4, Host, CancellationToken.None)).Status);
        Assert.True(SpinWait.SpinUntil(() => store.Committed == 2, TimeSpan.FromSeconds(10)), "the miss record did not commit");

        // The delete's group is held in its commit while the next create takes the same address.
        gate.Reset();
        store.Committing.Reset();
        var delete = manager.DeleteAsync("vm-0", "web", IpFamily.IPv4, CancellationToken.None).AsTask();
        Assert.True(store.Committing.Wait(TimeSpan.FromSeconds(10)));
        using var claimed = new ManualResetEventSlim();
        allocator.LeasesChanged += changes =>
        {
            if (changes[^1].InstanceName.SequenceEqual("vm-1"))
            {
                claimed.Set();
            }
        };
        var create = manager.CreateAsync("vm-1", "web", IpFamily.IPv4, Address.Parse("192.0.2.20"), CancellationToken.None).AsTask();
        Assert.True(claimed.Wait(TimeSpan.FromSeconds(10)));
        gate.Set();
        Assert.Equal(HookStatus.Deleted, (await delete.WaitAsync(TimeSpan.FromSeconds(10))).Status);
        var created = await create.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new HookOutcome(HookStatus.Miss, Address.Parse("10.9.0.1")), created);

        Assert.True(RoutePrefix.TryParse("10.9.0.1/32", out var route));
        Assert.True(speaker.LocRib.TryGet(route, out var attributes), "the delete's withdrawal overtook the new create's route");
        Assert.Equal(IPAddress.Parse("192.0.2.20"), attributes.NextHop);
    }

    [Fact]
    public async Task RoutesOfAGroupThatFailsToCommitAreWithdrawnAndAcknowledgedOnesStay()
    {
        var store = new FailingStore();
        await using var allocator = DurableAllocator.Open(TestPools.Small(), store);
        await using var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") });
        var manager = new ActiveRouteManager(allocator, speaker, TestPools.Small(), new RouteManagerOptions());

        Assert.Equal(HookStatus.Miss, (await manager.CreateAsync("vm-0", "web", IpFamily.IPv4, Host, CancellationToken.None)).Status);
        store.Fail = true;
        Assert.Equal(HookStatus.Unavailable, (await manager.CreateAsync("vm-1", "web", IpFamily.IPv4, Host, CancellationToken.None)).Status);

        var routes = speaker.LocRib.Snapshot().Select(r => r.Key.ToString()).ToList();
        Assert.Equal(["10.9.0.1/32"], routes);
    }
}
