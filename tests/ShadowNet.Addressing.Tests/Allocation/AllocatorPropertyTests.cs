using System.Net;
using CsCheck;
using Microsoft.Extensions.Time.Testing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;

namespace ShadowNet.Addressing.Tests.Allocation;

/// <summary>
/// Long random sequences of operations against small pools (so that exhaustion, reuse and the reuse
/// delay all happen), checked after every step against an independent model of what was handed out.
/// </summary>
public class AllocatorPropertyTests
{
    private static readonly TimeSpan ReuseDelay = TimeSpan.FromSeconds(5);
    private static readonly string[] Applications = ["web", "db", "cache"];

    public enum OpKind
    {
        Reserve,
        ReserveFor,
        Claim,
        Release,
        Shrink,
        Unreserve,
        AdvanceTime,
        Grow,
    }

    public readonly record struct Op(OpKind Kind, int Application, int Instance, int Count);

    private static readonly Gen<Op> OpGen = Gen.Select(
        Gen.Frequency((3, Gen.Const(OpKind.Reserve)), (2, Gen.Const(OpKind.ReserveFor)), (6, Gen.Const(OpKind.Claim)),
            (5, Gen.Const(OpKind.Release)), (2, Gen.Const(OpKind.Shrink)), (1, Gen.Const(OpKind.Unreserve)), (3, Gen.Const(OpKind.AdvanceTime)),
            (1, Gen.Const(OpKind.Grow))),
        Gen.Int[0, Applications.Length - 1],
        Gen.Int[0, 23],
        Gen.Int[0, 6],
        (kind, app, instance, count) => new Op(kind, app, instance, count));

    [Fact]
    public void IPv4PoolsKeepEveryInvariantOverRandomOperations() =>
        OpGen.Array[200, 600].Sample(ops => Run(ops, IpFamily.IPv4), iter: 300);

    [Fact]
    public void IPv6PoolsKeepEveryInvariantOverRandomOperations() =>
        OpGen.Array[200, 600].Sample(ops => Run(ops, IpFamily.IPv6), iter: 300);

    private static PoolDefinition[] Pools(IpFamily family) => family == IpFamily.IPv4
        ?
        [
            new("shadow", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/28"), IPNetwork.Parse("10.1.1.0/29")],
                [AddressRange.Parse("10.1.0.5-10.1.0.7"), AddressRange.Parse("10.1.1.1")], ReuseDelay: ReuseDelay),
            new("web-shadow", PoolKind.Shadow, [IPNetwork.Parse("10.2.0.0/30")], Application: "web", ReuseDelay: ReuseDelay),
            new("dynamic", PoolKind.Dynamic, [IPNetwork.Parse("10.9.0.0/29")], [AddressRange.Parse("10.9.0.1")], ReuseDelay: ReuseDelay),
        ]
        :
        [
            new("shadow", PoolKind.Shadow, [IPNetwork.Parse("2001:db8:1::/124")], [AddressRange.Parse("2001:db8:1::4-2001:db8:1::6")], ReuseDelay: ReuseDelay),
            new("web-shadow", PoolKind.Shadow, [IPNetwork.Parse("2001:db8:2::/126")], Application: "web", ReuseDelay: ReuseDelay),
            new("dynamic", PoolKind.Dynamic, [IPNetwork.Parse("2001:db8:9::/125")], [AddressRange.Parse("2001:db8:9::1")], ReuseDelay: ReuseDelay),
        ];

    /// <summary>Prefixes each pool may grow by while serving, in order: one above and one below its own.</summary>
    private static Dictionary<string, IPNetwork[]> Growth(IpFamily family) => family == IpFamily.IPv4
        ? new()
        {
            ["shadow"] = [IPNetwork.Parse("10.1.2.0/30"), IPNetwork.Parse("10.0.255.0/30")],
            ["web-shadow"] = [IPNetwork.Parse("10.2.1.0/30"), IPNetwork.Parse("10.1.255.0/30")],
            ["dynamic"] = [IPNetwork.Parse("10.9.1.0/30"), IPNetwork.Parse("10.8.0.0/30")],
        }
        : new()
        {
            ["shadow"] = [IPNetwork.Parse("2001:db8:1:1::/126"), IPNetwork.Parse("2001:db8:0:ffff::/126")],
            ["web-shadow"] = [IPNetwork.Parse("2001:db8:2:1::/126"), IPNetwork.Parse("2001:db8:1:ffff::/126")],
            ["dynamic"] = [IPNetwork.Parse("2001:db8:9:1::/126"), IPNetwork.Parse("2001:db8:8::/126")],
        };

    private static void Run(Op[] ops, IpFamily family)
    {
        var growth = Growth(family);
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch.AddDays(20000));
        var pools = Pools(family);
        var allocator = new AddressAllocator(pools, time);
        var usable = pools.ToDictionary(p => p.Name, p => p.UsableRanges());

        // The model: who holds each address, and when each address was last released.
        var assigned = new Dictionary<string, Address>();             // instance -> address
        var holder = new Dictionary<Address, string>();               // address -> "app" or "app/instance"
        var reservedFor = new Dictionary<string, (Address Address, string App)>();
        var releasedAt = new Dictionary<Address, DateTimeOffset>();

        void CheckHandedOut(Address address, string who)
        {
            Assert.Equal(family, address.Family);
            Assert.True(holder.TryAdd(address, who), $"{address} handed to {who} while held by {(holder.TryGetValue(address, out var h) ? h : "?")}");
            Assert.True(allocator.TryGetByAddress(address, out var lease));
            Assert.Contains(usable[lease.Pool], r => r.Contains(address));
            if (releasedAt.TryGetValue(address, out var at))
            {
                Assert.True(time.GetUtcNow() - at >= ReuseDelay, $"{address} reused {(time.GetUtcNow() - at).TotalMilliseconds} ms after release");
            }
        }

        foreach (var op in ops)
        {
            var app = Applications[op.Application];
            // Names of 5 to 300 characters, so that freed name slots of every size are reused.
            var instance = $"{app}-{op.Instance}".PadRight(5 + (op.Instance * 13 % 296), '.');
            switch (op.Kind)
            {
                case OpKind.Reserve:
                    var added = new List<Address>();
                    var reserve = allocator.Reserve(app, family, op.Count, added);
                    Assert.Equal(reserve.Count, added.Count);
                    Assert.True(reserve.Status == ReserveStatus.Reserved || added.Count < op.Count);
                    foreach (var address in added)
                    {
                        CheckHandedOut(address, app);
                    }

                    break;
                case OpKind.ReserveFor:
                    var named = allocator.ReserveFor(app, instance, family);
                    if (named.Status == ReserveStatus.Reserved)
                    {
                        Assert.False(assigned.ContainsKey(instance) || reservedFor.ContainsKey(instance));
                        CheckHandedOut(named.First, $"{app}/{instance}");
                        reservedFor[instance] = (named.First, app);
                    }
                    else
                    {
                        Assert.True(named.Status == ReserveStatus.Exhausted || assigned.ContainsKey(instance) || reservedFor.ContainsKey(instance));
                    }

                    break;
                case OpKind.Claim:
                    var claim = allocator.Claim(instance, app, family);
                    switch (claim.Status)
                    {
                        case ClaimStatus.Existing:
                            Assert.Equal(assigned[instance], claim.Address);
                            break;
                        case ClaimStatus.Hit:
                            Assert.False(assigned.ContainsKey(instance));
                            if (reservedFor.Remove(instance, out var mine))
                            {
                                Assert.Equal(mine.Address, claim.Address);
                            }
                            else
                            {
                                Assert.Equal(app, holder[claim.Address]);
                            }

                            holder[claim.Address] = $"{app}/{instance}";
                            assigned[instance] = claim.Address;
                            break;
                        case ClaimStatus.Miss:
                            Assert.False(assigned.ContainsKey(instance));
                            Assert.Equal(0, allocator.GetUsage(app, family).Reserved);
                            CheckHandedOut(claim.Address, $"{app}/{instance}");
                            Assert.True(allocator.TryGetByAddress(claim.Address, out var lease) && lease.Pool == "dynamic");
                            assigned[instance] = claim.Address;
                            break;
                        case ClaimStatus.Exhausted:
                            Assert.False(assigned.ContainsKey(instance));
                            Assert.Equal(0, allocator.GetUsage(app, family).Reserved);
                            break;
                        default:
                            Assert.Fail($"unexpected claim status {claim.Status}");
                            break;
                    }

                    break;
                case OpKind.Release:
                    var found = allocator.Release(instance, family, out var released);
                    Assert.Equal(assigned.Remove(instance, out var had), found);
                    if (found)
                    {
                        Assert.Equal(had, released.Address);
                        holder.Remove(had);
                        releasedAt[had] = time.GetUtcNow();
                    }

                    break;
                case OpKind.Shrink:
                    var removed = new List<Address>();
                    var before = allocator.GetUsage(app, family).Reserved;
                    allocator.Shrink(app, family, op.Count, removed);
                    Assert.Equal(Math.Max(0, before - op.Count), removed.Count);
                    foreach (var address in removed)
                    {
                        Assert.Equal(app, holder[address]);
                        holder.Remove(address);
                    }

                    break;
                case OpKind.Unreserve:
                    Assert.Equal(reservedFor.Remove(instance, out var cancelled), allocator.Unreserve(instance, family));
                    if (cancelled.App is not null)
                    {
                        holder.Remove(cancelled.Address);
                    }

                    break;
                case OpKind.AdvanceTime:
                    time.Advance(TimeSpan.FromMilliseconds(op.Count * 900));
                    break;
                case OpKind.Grow:
                    // A pool grows while it holds addresses (a reload): what it held stays, the new addresses come free.
                    var current = allocator.Pools.ElementAt(op.Count % pools.Length);
                    var step = current.Prefixes.Count - pools.Single(p => p.Name == current.Name).Prefixes.Count;
                    if (step < growth[current.Name].Length)
                    {
                        var grown = current with { Prefixes = [.. current.Prefixes, growth[current.Name][step]] };
                        Assert.True(allocator.GrowPool(grown) > 0);
                        usable[grown.Name] = grown.UsableRanges();
                    }

                    break;
            }

            Assert.Empty(allocator.CheckInvariants());

            // Counts add up: what the model holds is what the allocator holds, by state.
            var leases = allocator.Leases.ToList();
            Assert.Equal(assigned.Count, leases.Count(l => l.State == LeaseState.Assigned));
            Assert.Equal(holder.Count, leases.Count(l => l.State != LeaseState.Quarantined));
            foreach (var (address, who) in holder)
            {
                Assert.True(allocator.TryGetByAddress(address, out var lease));
                Assert.Equal(who, lease.State == LeaseState.Assigned || lease.Instance is not null ? $"{lease.Application}/{lease.Instance}" : lease.Application);
            }

            var usages = allocator.PoolUsages();
            Assert.Equal((ulong)leases.Count, (ulong)usages.Sum(u => (long)u.Used));
            Assert.Equal(leases.Count, usages.Sum(u => u.Reserved + u.Assigned + u.Quarantined));
        }

        // A store round trip rebuilds the same book (a restart reads the pools as they grew: the file has them).
        var restored = new AddressAllocator([.. allocator.Pools], time);
        restored.Restore(allocator.Leases.ToList());
        Assert.Empty(restored.CheckInvariants());
    }
}
