using System.Net;
using Microsoft.Extensions.Time.Testing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;

namespace ShadowNet.Addressing.Tests.Allocation;

public class AddressAllocatorTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-11-25T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));

    private AddressAllocator NewAllocator(TimeSpan reuseDelay = default, string dynamicPrefix = "10.9.0.0/29") => new(
    [
        new PoolDefinition("shadow-v4", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/29")], ReuseDelay: reuseDelay),
        new PoolDefinition("dynamic-v4", PoolKind.Dynamic, [IPNetwork.Parse(dynamicPrefix)], ReuseDelay: reuseDelay),
        new PoolDefinition("shadow-v6", PoolKind.Shadow, [IPNetwork.Parse("2001:db8:1::/64")]),
        new PoolDefinition("web-only", PoolKind.Shadow, [IPNetwork.Parse("10.2.0.0/30")], Application: "web"),
    ], _time);

    /// <summary>
    /// The daemon's bench shape (1,000 live instances, a create and a delete by turns, released addresses
    /// cooling) until <paramref name="leases"/> leases are held: each create takes a new address.
    /// </summary>
    private static void ChurnUntil(AddressAllocator allocator, int leases)
    {
        var (created, deleted) = (0, 0);
        for (var i = 0; allocator.LeaseCount < leases; i++)
        {
            if (created - deleted < 1000 || i % 2 == 0)
            {
                Assert.Equal(ClaimStatus.Miss, allocator.Claim($"vm-{created++}", "web", IpFamily.IPv4).Status);
            }
            else
            {
                Assert.True(allocator.Release($"vm-{deleted++}", IpFamily.IPv4, out _));
            }
        }
    }

    private AddressAllocator CoolingAllocator(int expectedLeases) => new(
        [new PoolDefinition("dynamic", PoolKind.Dynamic, [IPNetwork.Parse("10.64.0.0/14")], ReuseDelay: TimeSpan.FromHours(1))],
        _time,
        expectedLeases);

    [Fact]
    public void ExpectedLeasesSizeTheTablesSoThatTheyDoNotGrowWhileServingBelowIt()
    {
        var allocator = CoolingAllocator(expectedLeases: 150_000);
        var (table, cooling) = (allocator.LeaseTableCapacity, allocator.CoolingCapacity("dynamic"));
        Assert.True(table >= 150_000, $"lease table sized for {table}");
        Assert.True(cooling >= 150_000, $"cooling queue sized for {cooling}");

        ChurnUntil(allocator, 150_000);

        Assert.Equal(table, allocator.LeaseTableCapacity);
        Assert.Equal(cooling, allocator.CoolingCapacity("dynamic"));
        Assert.Empty(allocator.CheckInvariants());
    }

    [Fact]
    public void WithoutExpectedLeasesTheTablesStartSmallerAndGrowUnderTheSameChurn()
    {
        // The other side of the test above: the default sizing grows (a pause of milliseconds per step,
        // bench/RESULTS.md), so that test would fail if expectedLeases were ignored.
        var allocator = CoolingAllocator(expectedLeases: 0);
        var (table, cooling) = (allocator.LeaseTableCapacity, allocator.CoolingCapacity("dynamic"));
        Assert.True(table < 150_000);

        ChurnUntil(allocator, 150_000);

        Assert.True(allocator.LeaseTableCapacity > table);
        Assert.True(allocator.CoolingCapacity("dynamic") > cooling);
    }

    [Fact]
    public void ExpectedLeasesBeyondThePoolsAreCappedAtWhatThePoolsHold()
    {
        var allocator = new AddressAllocator([new PoolDefinition("small", PoolKind.Dynamic, [IPNetwork.Parse("10.9.0.0/24")], ReuseDelay: TimeSpan.FromHours(1))], _time, AddressAllocator.MaxExpectedLeases);

        Assert.InRange(allocator.SizedForLeases, 254, 256);
        Assert.InRange(allocator.LeaseTableCapacity, 254, 1024);
        Assert.InRange(allocator.CoolingCapacity("small"), 254, 1024);
        Assert.Throws<ArgumentOutOfRangeException>(() => new AddressAllocator([], _time, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AddressAllocator([], _time, AddressAllocator.MaxExpectedLeases + 1));
    }

    [Fact]
    public void ClaimTakesTheOldestReservationAsAHitThenFallsBackToDynamicAsAMiss()
    {
        var allocator = NewAllocator();
        var reserved = new List<Address>();
        Assert.Equal(new ReserveResult(ReserveStatus.Reserved, 2, Address.Parse("10.1.0.1")), allocator.Reserve("db", IpFamily.IPv4, 2, reserved));

        Assert.Equal(new ClaimResult(ClaimStatus.Hit, reserved[0], true), allocator.Claim("db-0", "db", IpFamily.IPv4));
        Assert.Equal(new ClaimResult(ClaimStatus.Hit, reserved[1], true), allocator.Claim("db-1", "db", IpFamily.IPv4));
        Assert.Equal(new ClaimResult(ClaimStatus.Miss, Address.Parse("10.9.0.1"), false), allocator.Claim("db-2", "db", IpFamily.IPv4));
        Assert.Equal(new ApplicationUsage(0, 0, 3), allocator.GetUsage("db", IpFamily.IPv4));
        Assert.Empty(allocator.CheckInvariants());
    }

    [Fact]
    public void RetriedClaimIsIdempotentAndAnotherApplicationGetsConflict()
    {
        var allocator = NewAllocator();
        var first = allocator.Claim("vm-1", "db", IpFamily.IPv4);
        Assert.Equal(ClaimStatus.Miss, first.Status);
        Assert.Equal(new ClaimResult(ClaimStatus.Existing, first.Address, false), allocator.Claim("vm-1", "db", IpFamily.IPv4));
        Assert.Equal(ClaimStatus.Conflict, allocator.Claim("vm-1", "web", IpFamily.IPv4).Status);
        Assert.Equal(1, allocator.LeaseCount);
    }

    [Fact]
    public void ANamedReservationGoesToExactlyThatInstance()
    {
        var allocator = NewAllocator();
        allocator.Reserve("db", IpFamily.IPv4, 2);
        var named = allocator.ReserveFor("db", "db-7", IpFamily.IPv4);
        Assert.Equal(ReserveStatus.Reserved, named.Status);
        Assert.Equal(ReserveStatus.Existing, allocator.ReserveFor("db", "db-7", IpFamily.IPv4).Status);

        var claim = allocator.Claim("db-7", "db", IpFamily.IPv4);
        Assert.Equal(new ClaimResult(ClaimStatus.Hit, named.First, true), claim);
        Assert.Equal(new ApplicationUsage(2, 0, 1), allocator.GetUsage("db", IpFamily.IPv4));
    }

    [Fact]
    public void ApplicationPoolsServeOnlyTheirApplicationAndComeFirst()
    {
        var allocator = NewAllocator();
        var web = new List<Address>();
        allocator.Reserve("web", IpFamily.IPv4, 3, web);
        Assert.Equal(["10.2.0.1", "10.2.0.2", "10.1.0.1"], web.Select(a => a.ToString()));
        var db = new List<Address>();
        allocator.Reserve("db", IpFamily.IPv4, 1, db);
        Assert.Equal("10.1.0.2", db[0].ToString());
    }

    [Fact]
    public void ExhaustionOfShadowAndDynamicPoolsIsAStatusNotAnException()
    {
        var allocator = NewAllocator();
        var result = allocator.Reserve("db", IpFamily.IPv4, 100);
        Assert.Equal(new ReserveResult(ReserveStatus.Exhausted, 6, Address.Parse("10.1.0.1")), result);
        for (var i = 0; i < 6 + 6; i++)
        {
            Assert.True(allocator.Claim($"vm-{i}", "db", IpFamily.IPv4).Succeeded);
        }

        Assert.Equal(new ClaimResult(ClaimStatus.Exhausted, default, false), allocator.Claim("vm-12", "db", IpFamily.IPv4));
        Assert.Equal(ClaimStatus.Exhausted, allocator.Claim("vm-13", "db", IpFamily.IPv6).Status);
        Assert.Empty(allocator.CheckInvariants());
    }

    [Fact]
    public void ReleasedAddressWaitsOutTheReuseDelay()
    {
        var allocator = NewAllocator(TimeSpan.FromSeconds(30), dynamicPrefix: "10.9.0.0/30");
        var a = allocator.Claim("vm-a", "db", IpFamily.IPv4).Address;
        var b = allocator.Claim("vm-b", "db", IpFamily.IPv4).Address;
        Assert.True(allocator.Release("vm-a", IpFamily.IPv4, out var released));
        Assert.Equal(a, released.Address);
        Assert.True(allocator.TryGetByAddress(a, out var quarantined));
        Assert.Equal(LeaseState.Quarantined, quarantined.State);

        // The /30 has two usable addresses, both taken: the released one must not come back yet.
        Assert.Equal(ClaimStatus.Exhausted, allocator.Claim("vm-c", "db", IpFamily.IPv4).Status);
        _time.Advance(TimeSpan.FromSeconds(29.999));
        Assert.Equal(ClaimStatus.Exhausted, allocator.Claim("vm-c", "db", IpFamily.IPv4).Status);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(new ClaimResult(ClaimStatus.Miss, a, false), allocator.Claim("vm-c", "db", IpFamily.IPv4));
        Assert.NotEqual(a, b);
        Assert.Empty(allocator.CheckInvariants());
    }

    [Fact]
    public void AddressReleasedWhileItsApplicationHasDemandGoesBackToItsReservationsAfterTheReuseDelay()
    {
        var allocator = NewAllocator(TimeSpan.FromSeconds(30));
        var reserved = new List<Address>();
        Assert.Equal(6, allocator.Reserve("db", IpFamily.IPv4, 6, reserved).Count); // the whole shared /29
        allocator.SetDemand("db", IpFamily.IPv4, 6);
        var claimed = allocator.Claim("db-0", "db", IpFamily.IPv4).Address;
        Assert.True(allocator.Release("db-0", IpFamily.IPv4, out _));

        _time.Advance(TimeSpan.FromSeconds(30));
        // Another application asks the same shared pool: the freed address is db's, not free.
        Assert.Equal(0, allocator.Reserve("api", IpFamily.IPv4, 1).Count);
        Assert.Equal([claimed], allocator.Rereserved);
        Assert.True(allocator.TryGetByAddress(claimed, out var lease));
        Assert.Equal((LeaseState.Reserved, "db", (string?)null), (lease.State, lease.Application, lease.Instance));
        Assert.Equal(new ApplicationUsage(6, 0, 0), allocator.GetUsage("db", IpFamily.IPv4));
        Assert.Empty(allocator.CheckInvariants());
    }

    [Fact]
    public void AddressReleasedWithoutDemandGoesToTheFreePoolAfterTheReuseDelay()
    {
        var allocator = NewAllocator(TimeSpan.FromSeconds(30));
        allocator.Reserve("db", IpFamily.IPv4, 6);
        allocator.SetDemand("db", IpFamily.IPv4, 5); // the forecast wants no more than the five it still holds
        var claimed = allocator.Claim("db-0", "db", IpFamily.IPv4).Address;
        Assert.True(allocator.Release("db-0", IpFamily.IPv4, out _));

        _time.Advance(TimeSpan.FromSeconds(30));
        var api = new List<Address>();
        Assert.Equal(1, allocator.Reserve("api", IpFamily.IPv4, 1, api).Count);
        Assert.Equal([claimed], api);
        Assert.Empty(allocator.Rereserved);
        Assert.Empty(allocator.CheckInvariants());
    }

    [Fact]
    public void AnApplicationAskingForReservationsCountsItsOwnReturnedAddressesFirst()
    {
        var allocator = NewAllocator(TimeSpan.FromSeconds(30));
        allocator.Reserve("db", IpFamily.IPv4, 2);
        allocator.SetDemand("db", IpFamily.IPv4, 2);
        allocator.Claim("db-0", "db", IpFamily.IPv4);
        allocator.Release("db-0", IpFamily.IPv4, out _);
        _time.Advance(TimeSpan.FromSeconds(30));

        var added = new List<Address>();
        Assert.Equal(1, allocator.Reserve("db", IpFamily.IPv4, 1, added).Count);
        Assert.Empty(added); // the one it asked for is the address that came back
        Assert.Single(allocator.Rereserved);
        Assert.Equal(new ApplicationUsage(2, 0, 0), allocator.GetUsage("db", IpFamily.IPv4));
        Assert.Empty(allocator.CheckInvariants());
    }

    [Fact]
    public async Task ReuseDelayHoldsOnTheSystemClockToo()
    {
        // The system clock takes a cheaper path (coarse monotonic ticks): check it against real time.
        var allocator = new AddressAllocator([new PoolDefinition("tiny", PoolKind.Dynamic, [IPNetwork.Parse("10.9.0.0/30")], ReuseDelay: TimeSpan.FromMilliseconds(200))]);
        var started = System.Diagnostics.Stopwatch.StartNew();
        var a = allocator.Claim("vm-a", "db", IpFamily.IPv4).Address;
        allocator.Claim("vm-b", "db", IpFamily.IPv4);
        allocator.Release("vm-a", IpFamily.IPv4, out var released);
        Assert.True(released.SinceMs >= DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - 1000);
        while (allocator.Claim("vm-c", "db", IpFamily.IPv4).Status == ClaimStatus.Exhausted)
        {
            Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), "released address never came back");
            await Task.Delay(10);
        }

        Assert.True(started.Elapsed >= TimeSpan.FromMilliseconds(190), $"address reused after {started.Elapsed.TotalMilliseconds} ms");
        Assert.True(allocator.TryGetByInstance("vm-c", IpFamily.IPv4, out var lease) && lease.Address == a);
    }

    [Fact]
    public void ShrinkDropsTheNewestUnnamedReservationsAndFreesThemAtOnce()
    {
        var allocator = NewAllocator(TimeSpan.FromMinutes(5));
        var reserved = new List<Address>();
        allocator.Reserve("db", IpFamily.IPv4, 5, reserved);
        allocator.ReserveFor("db", "db-9", IpFamily.IPv4);
        var removed = new List<Address>();
        Assert.Equal(3, allocator.Shrink("db", IpFamily.IPv4, 2, removed));
        Assert.Equal(reserved.Skip(2).Reverse(), removed);
        Assert.Equal(new ApplicationUsage(2, 1, 0), allocator.GetUsage("db", IpFamily.IPv4));
        var again = new List<Address>();
        allocator.Reserve("other", IpFamily.IPv4, 1, again);
        Assert.Equal(reserved[2], again[0]);
        Assert.Empty(allocator.CheckInvariants());
    }

    [Fact]
    public void EveryChangeIsRecordedInOrderForTheStore()
    {
        var allocator = NewAllocator(TimeSpan.FromSeconds(1));
        allocator.Changes = [];
        allocator.Reserve("db", IpFamily.IPv6, 1);
        var claim = allocator.Claim("vm", "db", IpFamily.IPv6);
        allocator.Release("vm", IpFamily.IPv6, out _);
        Assert.Equal(
            [(LeaseState.Reserved, false), (LeaseState.Assigned, false), (LeaseState.Assigned, true)],
            allocator.Changes.Select(c => (c.Lease.State, c.Removed)));
        Assert.All(allocator.Changes, c => Assert.Equal(claim.Address, c.Lease.Address));
    }

    [Fact]
    public void RestoreRebuildsTheSameBook()
    {
        var allocator = NewAllocator(TimeSpan.FromSeconds(10));
        allocator.Reserve("db", IpFamily.IPv4, 3);
        allocator.ReserveFor("db", "db-5", IpFamily.IPv6);
        allocator.Claim("db-0", "db", IpFamily.IPv4, Address.Parse("192.0.2.10"));
        Assert.True(allocator.TryGetByInstance("db-0", IpFamily.IPv4, out var withHost) && withHost.Host == Address.Parse("192.0.2.10"));
        allocator.Claim("x-0", "x", IpFamily.IPv4);
        allocator.Release("x-0", IpFamily.IPv4, out _);

        var copy = NewAllocator(TimeSpan.FromSeconds(10));
        copy.Restore(allocator.Leases.ToList());
        Assert.Empty(copy.CheckInvariants());
        Assert.Equal(allocator.Leases.OrderBy(l => l.Address), copy.Leases.OrderBy(l => l.Address));
        Assert.Equal(allocator.GetUsage("db", IpFamily.IPv4), copy.GetUsage("db", IpFamily.IPv4));
        Assert.Equal(allocator.Claim("db-1", "db", IpFamily.IPv4), copy.Claim("db-1", "db", IpFamily.IPv4));
        Assert.Equal(allocator.Claim("db-5", "db", IpFamily.IPv6), copy.Claim("db-5", "db", IpFamily.IPv6));
    }

    [Fact]
    public void RestoreDropsQuarantinedLeasesWhoseDelayIsOver()
    {
        var allocator = NewAllocator(TimeSpan.FromSeconds(10));
        allocator.Claim("x-0", "x", IpFamily.IPv4);
        allocator.Release("x-0", IpFamily.IPv4, out _);
        _time.Advance(TimeSpan.FromSeconds(11));
        var copy = NewAllocator(TimeSpan.FromSeconds(10));
        copy.Restore(allocator.Leases.ToList());
        Assert.Equal(0, copy.LeaseCount);
    }

    [Theory]
    [InlineData("10.1.0.1", "nowhere", "lease 10.1.0.1 refers to pool 'nowhere', which is not configured")]
    [InlineData("10.1.0.7", "shadow-v4", "lease 10.1.0.7 lies outside the usable ranges of pool 'shadow-v4'")]
    [InlineData("10.9.0.3", "shadow-v4", "lease 10.9.0.3 lies outside the usable ranges of pool 'shadow-v4'")]
    public void RestoreRefusesLeasesThatCannotBeRight(string address, string pool, string message)
    {
        var allocator = NewAllocator();
        var lease = new Lease(Address.Parse(address), pool, LeaseState.Assigned, "db", "vm", false, 0);
        Assert.Equal(message, Assert.Throws<AllocationStateException>(() => allocator.Restore([lease])).Message);
    }

    [Fact]
    public void RestoreRefusesAnAddressOrAnInstanceTakenTwice()
    {
        var a = new Lease(Address.Parse("10.1.0.1"), "shadow-v4", LeaseState.Assigned, "db", "vm", true, 0);
        var error = Assert.Throws<AllocationStateException>(() => NewAllocator().Restore([a, a with { Instance = "vm2" }]));
        Assert.Equal("address 10.1.0.1 appears in two leases", error.Message);
        error = Assert.Throws<AllocationStateException>(() => NewAllocator().Restore([a, a with { Address = Address.Parse("10.1.0.2") }]));
        Assert.StartsWith("instance 'vm' holds two IPv4 addresses", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AGrownPoolHandsOutItsNewPrefixAndKeepsWhatItHeld()
    {
        // The new prefix sorts below the old one: the pool's ranges are searched in address order.
        var allocator = NewAllocator(dynamicPrefix: "10.9.5.0/30");
        Assert.Equal(ClaimStatus.Miss, allocator.Claim("vm-1", "web", IpFamily.IPv4).Status);
        Assert.Equal(ClaimStatus.Miss, allocator.Claim("vm-2", "web", IpFamily.IPv4).Status);
        Assert.Equal(ClaimStatus.Exhausted, allocator.Claim("vm-3", "web", IpFamily.IPv4).Status);

        var grown = new PoolDefinition("dynamic-v4", PoolKind.Dynamic, [IPNetwork.Parse("10.9.5.0/30"), IPNetwork.Parse("10.9.0.0/29")]);
        Assert.Equal(6ul, allocator.GrowPool(grown));

        Assert.Equal(new ClaimResult(ClaimStatus.Miss, Address.Parse("10.9.0.1"), false), allocator.Claim("vm-3", "web", IpFamily.IPv4));
        Assert.True(allocator.Release("vm-1", IpFamily.IPv4, out var released));
        Assert.Equal(Address.Parse("10.9.5.1"), released.Address);
        Assert.Equal(new ClaimResult(ClaimStatus.Miss, Address.Parse("10.9.0.2"), false), allocator.Claim("vm-4", "web", IpFamily.IPv4));
        Assert.Equal(grown, allocator.Pools.Single(p => p.Name == "dynamic-v4"));
        var usage = allocator.PoolUsages().Single(u => u.Pool == "dynamic-v4");
        Assert.Equal((8ul, 3), (usage.Size, usage.Assigned));
        Assert.Empty(allocator.CheckInvariants());
    }

    [Fact]
    public void OnlyAdditionsGrowAPoolAndTheRestIsRefusedNamingWhatChanged()
    {
        var allocator = NewAllocator();
        PoolDefinition Dynamic(params string[] prefixes) => new("dynamic-v4", PoolKind.Dynamic, [.. prefixes.Select(IPNetwork.Parse)]);

        var error = Assert.Throws<PoolConfigurationException>(() => allocator.GrowPool(Dynamic("10.9.1.0/29")));
        Assert.Equal("pool 'dynamic-v4': addresses 10.9.0.1-10.9.0.6 are no longer all in it; taking addresses out of a pool takes a restart", error.Message);
        error = Assert.Throws<PoolConfigurationException>(() => allocator.GrowPool(Dynamic("10.9.0.0/29", "10.1.0.0/30")));
        Assert.Equal("pool 'dynamic-v4': addresses 10.1.0.1-10.1.0.2 overlap 10.1.0.0/29 of pool 'shadow-v4'", error.Message);
        error = Assert.Throws<PoolConfigurationException>(() => allocator.GrowPool(new PoolDefinition("dynamic-v4", PoolKind.Shadow, [IPNetwork.Parse("10.9.0.0/29")])));
        Assert.StartsWith("pool 'dynamic-v4': only prefixes can be added while it runs", error.Message, StringComparison.Ordinal);
        error = Assert.Throws<PoolConfigurationException>(() => allocator.GrowPool(new PoolDefinition("spare", PoolKind.Dynamic, [IPNetwork.Parse("10.8.0.0/29")])));
        Assert.Equal("pool 'spare' is not one of this allocator's; a new pool takes a restart", error.Message);

        // Refused growth changes nothing; the same definition adds nothing.
        Assert.Equal(0ul, allocator.GrowPool(Dynamic("10.9.0.0/29")));
        Assert.Equal(6ul, allocator.PoolUsages().Single(u => u.Pool == "dynamic-v4").Size);
    }

    [Fact]
    public void APoolAddedWhileServingServesTheApplicationsThatAlreadyHaveABookDedicatedPoolsFirst()
    {
        var allocator = NewAllocator();
        Assert.Equal(new ClaimResult(ClaimStatus.Miss, Address.Parse("10.9.0.1"), false), allocator.Claim("api-1", "api", IpFamily.IPv4));

        allocator.AddPool(new PoolDefinition("api-dynamic", PoolKind.Dynamic, [IPNetwork.Parse("10.9.8.0/30")], Application: "api"));

        Assert.Equal(new ClaimResult(ClaimStatus.Miss, Address.Parse("10.9.8.1"), false), allocator.Claim("api-2", "api", IpFamily.IPv4));
        Assert.Equal(new ClaimResult(ClaimStatus.Miss, Address.Parse("10.9.0.2"), false), allocator.Claim("web-1", "web", IpFamily.IPv4));
        Assert.Equal((2ul, 1), allocator.PoolUsages().Where(u => u.Pool == "api-dynamic").Select(u => (u.Size, u.Assigned)).Single());
        Assert.Empty(allocator.CheckInvariants());

        var error = Assert.Throws<PoolConfigurationException>(() => allocator.AddPool(new PoolDefinition("api-dynamic", PoolKind.Dynamic, [IPNetwork.Parse("10.9.9.0/30")])));
        Assert.Equal("pool 'api-dynamic' is defined twice", error.Message);
        error = Assert.Throws<PoolConfigurationException>(() => allocator.AddPool(new PoolDefinition("spare", PoolKind.Dynamic, [IPNetwork.Parse("10.9.8.0/29")])));
        Assert.Equal("pool 'spare': prefix 10.9.8.0/29 overlaps 10.9.8.0/30 of pool 'api-dynamic'", error.Message);
        Assert.Equal(5, allocator.PoolCount);
    }
}
