using System.Net;
using System.Runtime.CompilerServices;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;

namespace ShadowNet.Addressing.Tests.Allocation;

/// <summary>Instance names kept in the allocator's arena rather than as a string per lease.</summary>
public class InstanceNamesTests
{
    [Fact]
    public void ANameReadsBackAsItWasAddedWhateverItsLength()
    {
        var names = new InstanceNames(4);
        var texts = new[] { "a", new string('b', 15), new string('c', 16), "vm-ñ-日本", new string('d', InstanceNames.MaxLength) };
        var handles = texts.Select(t => Add(names, t)).ToList();
        for (var i = 0; i < texts.Length; i++)
        {
            Assert.Equal(texts[i], names.ToString(handles[i]));
            Assert.Equal(InstanceNames.HashOf(texts[i]), names.HashCodeOf(handles[i]));
        }

        Assert.Equal(texts.Length, names.Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => Add(names, new string('e', InstanceNames.MaxLength + 1)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Add(names, ""));
    }

    [Fact]
    public void ChurnReusesFreedSlotsSoTheArenaStopsGrowing()
    {
        var names = new InstanceNames(16);
        var live = new Queue<int>();
        for (var i = 0; i < 1000; i++)
        {
            live.Enqueue(Add(names, $"vm-{i}".PadRight(i % 40 + 1, 'x')));
        }

        var extent = names.Extent;
        for (var i = 1000; i < 100_000; i++)
        {
            names.Free(live.Dequeue());
            live.Enqueue(Add(names, $"vm-{i}".PadRight(i % 40 + 1, 'x')));
        }

        Assert.Equal(1000, names.Count);
        Assert.Equal(extent, names.Extent);
        Assert.Equal("vm-99999".PadRight(99_999 % 40 + 1, 'x'), names.ToString(live.Last()));
    }

    [Fact]
    public void AllocatorKeepsNoReferenceToTheInstanceStringsItWasGiven()
    {
        var allocator = new AddressAllocator([new PoolDefinition("p", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/24")])]);
        allocator.Reserve("web", IpFamily.IPv4, 4);
        var (claimed, reserved) = ClaimAndReserveForNewNames(allocator);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        // The strings are gone; the names are still known, by their characters.
        Assert.False(claimed.TryGetTarget(out _));
        Assert.False(reserved.TryGetTarget(out _));
        Assert.True(allocator.TryGetByInstance("vm-claimed", IpFamily.IPv4, out var lease));
        Assert.Equal(("vm-claimed", "web", LeaseState.Assigned), (lease.Instance, lease.Application, lease.State));
        Assert.Equal(ReserveStatus.Existing, allocator.ReserveFor("web", "vm-named", IpFamily.IPv4).Status);
        Assert.Empty(allocator.CheckInvariants());
    }

    [Fact]
    public void AClaimAndItsReleaseAllocateNothingOnceTheTablesHaveGrown()
    {
        var allocator = new AddressAllocator([new PoolDefinition("p", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/20")])]);
        var instances = Enumerable.Range(0, 2000).Select(i => $"vm-{i}").ToArray();
        allocator.Reserve("web", IpFamily.IPv4, instances.Length);
        RunChurn(allocator, instances);
        allocator.Reserve("web", IpFamily.IPv4, instances.Length);

        var before = GC.GetAllocatedBytesForCurrentThread();
        RunChurn(allocator, instances);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Empty(allocator.CheckInvariants());

        static void RunChurn(AddressAllocator allocator, string[] instances)
        {
            foreach (var instance in instances)
            {
                allocator.Claim(instance, "web", IpFamily.IPv4);
            }

            foreach (var instance in instances)
            {
                allocator.Release(instance, IpFamily.IPv4, out _);
            }
        }
    }

    [Fact]
    public void ClaimsAndReleasesByCharactersRecordTheNameInTheChangeLogAndAllocateNothing()
    {
        var allocator = new AddressAllocator([new PoolDefinition("p", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/20")])]);
        var names = Enumerable.Range(0, 500).Select(i => $"vm-{i}".ToCharArray()).ToArray();
        var log = new ChangeLog();
        allocator.Changes = log;
        allocator.Reserve("web", IpFamily.IPv4, 2 * names.Length);
        Assert.Equal(names.Length, RunChurn(allocator, names));
        log.Clear(); // as the durable layer does after each commit

        var before = GC.GetAllocatedBytesForCurrentThread();
        var hits = RunChurn(allocator, names);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(names.Length, hits);

        // The last round's changes: each claim and each release names its instance, as characters.
        Assert.Equal(2 * names.Length, log.Count);
        Assert.All(log, c => Assert.Null(c.Lease.Instance));
        Assert.Equal("vm-499", log[names.Length - 1].InstanceName.ToString());
        Assert.Equal((true, "vm-0"), (log[names.Length].Removed, log[names.Length].InstanceName.ToString()));
        Assert.Empty(allocator.CheckInvariants());

        // Hits that were then released; no assertion inside, so that nothing but the allocator is measured.
        static int RunChurn(AddressAllocator allocator, char[][] names)
        {
            var hits = 0;
            foreach (var name in names)
            {
                hits += allocator.Claim(name, "web", IpFamily.IPv4).Status == ClaimStatus.Hit ? 1 : 0;
            }

            foreach (var name in names)
            {
                hits -= allocator.Release(name, IpFamily.IPv4, out _) ? 0 : 1;
            }

            return hits;
        }
    }

    [Fact]
    public void ChangeLogNamesKeepTheirCharactersAcrossTheLogsGrowthUntilItIsCleared()
    {
        var log = new ChangeLog();
        var lease = new Lease(Address.Parse("10.1.0.1"), "p", LeaseState.Assigned, "web", null, true, 0);
        for (var round = 0; round < 2; round++)
        {
            for (var i = 0; i < 300; i++)
            {
                log.Add(lease, removed: false, $"instance-{round}-{i}");
            }

            log.Add(lease with { Instance = "as-a-string" }, removed: true, default);
            Assert.Equal(301, log.Count);
            Assert.Equal(Enumerable.Range(0, 300).Select(i => $"instance-{round}-{i}"), log.Take(300).Select(c => c.InstanceName.ToString()));
            Assert.Equal(("as-a-string", true), (log[300].InstanceName.ToString(), log[300].HasInstance));
            log.Clear();
        }

        log.Add(lease, removed: false, default);
        Assert.False(log[0].HasInstance);
    }

    [Fact]
    public void ANameLongerThanTheLimitIsAnInvalidClaimOrReservation()
    {
        var allocator = new AddressAllocator([new PoolDefinition("p", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/24")])]);
        allocator.Reserve("web", IpFamily.IPv4, 1);
        var tooLong = new string('v', InstanceNames.MaxLength + 1);
        Assert.Equal(ClaimStatus.Invalid, allocator.Claim(tooLong, "web", IpFamily.IPv4).Status);
        Assert.Equal(ReserveStatus.Invalid, allocator.ReserveFor("web", tooLong, IpFamily.IPv4).Status);
        Assert.Equal(ClaimStatus.Hit, allocator.Claim(tooLong[..InstanceNames.MaxLength], "web", IpFamily.IPv4).Status);
        Assert.Empty(allocator.CheckInvariants());
    }

    private static int Add(InstanceNames names, string name) => names.Add(name, InstanceNames.HashOf(name));

    // Not inlined: the strings must not stay alive in the test's own frame.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (WeakReference<string> Claimed, WeakReference<string> Reserved) ClaimAndReserveForNewNames(AddressAllocator allocator)
    {
        var claimed = new string("vm-claimed".AsSpan());
        var named = new string("vm-named".AsSpan());
        Assert.Equal(ClaimStatus.Hit, allocator.Claim(claimed, "web", IpFamily.IPv4).Status);
        Assert.Equal(ReserveStatus.Reserved, allocator.ReserveFor("web", named, IpFamily.IPv4).Status);
        return (new WeakReference<string>(claimed), new WeakReference<string>(named));
    }
}
