using System.Net;
using BenchmarkDotNet.Attributes;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;

namespace ShadowNet.Benchmarks.Addressing;

/// <summary>
/// In-memory claim and release. Each invocation takes <see cref="Batch"/> addresses, then gives them
/// all back; one operation is one take or one give-back, so operations per second = 1 / mean.
/// The pools are half full of scattered addresses first, so the summary levels are exercised, not
/// just a fresh frontier.
/// </summary>
[MemoryDiagnoser]
public class AllocatorBenchmarks
{
    private const int Batch = 1024;
    private AddressPool _v4 = null!;
    private AddressPool _v6 = null!;
    private AddressAllocator _allocator = null!;
    private AddressAllocator _logged = null!;
    private char[][] _names = [];
    private readonly Address[] _taken = new Address[Batch];
    private string[] _instances = [];

    [GlobalSetup]
    public void Setup()
    {
        _v4 = new AddressPool(new PoolDefinition("v4", PoolKind.Dynamic, [IPNetwork.Parse("10.0.0.0/8")]));
        _v6 = new AddressPool(new PoolDefinition("v6", PoolKind.Dynamic, [IPNetwork.Parse("2001:db8::/64")]));
        Fragment(_v4);
        Fragment(_v6);

        _allocator = HalfFullLeaseBook();
        _logged = HalfFullLeaseBook();
        _logged.Changes = new ChangeLog();
        _instances = Enumerable.Range(0, Batch).Select(i => $"vm-{i}").ToArray();
        _names = [.. _instances.Select(i => i.ToCharArray())];
    }

    [Benchmark(OperationsPerInvoke = 2 * Batch, Description = "take+return, IPv4 /8 pool")]
    public void PoolIPv4() => TakeAndReturn(_v4);

    [Benchmark(OperationsPerInvoke = 2 * Batch, Description = "take+return, IPv6 /64 pool")]
    public void PoolIPv6() => TakeAndReturn(_v6);

    /// <summary>The whole lease book: instance index, application book, lease table, counters.</summary>
    [Benchmark(OperationsPerInvoke = 2 * Batch, Description = "Claim+Release (lease book), IPv4 /8")]
    public void ClaimRelease()
    {
        var instances = _instances;
        for (var i = 0; i < instances.Length; i++)
        {
            _allocator.Claim(instances[i], "app", IpFamily.IPv4);
        }

        for (var i = 0; i < instances.Length; i++)
        {
            _allocator.Release(instances[i], IpFamily.IPv4, out _);
        }
    }

    /// <summary>
    /// The UDP hook's path: names as characters, and every change recorded for the store in the change
    /// log, cleared once per invocation as the durable layer clears it once per commit.
    /// </summary>
    [Benchmark(OperationsPerInvoke = 2 * Batch, Description = "Claim+Release by characters, change log on, IPv4 /8")]
    public void ClaimReleaseByCharacters()
    {
        var names = _names;
        for (var i = 0; i < names.Length; i++)
        {
            _logged.Claim(names[i], "app", IpFamily.IPv4);
        }

        for (var i = 0; i < names.Length; i++)
        {
            _logged.Release(names[i], IpFamily.IPv4, out _);
        }

        _logged.Changes!.Clear();
    }

    /// <summary>200,000 leases claimed and every other one released, so the tables are at a working size.</summary>
    private static AddressAllocator HalfFullLeaseBook()
    {
        var allocator = new AddressAllocator([new PoolDefinition("v4", PoolKind.Dynamic, [IPNetwork.Parse("10.0.0.0/8")])]);
        for (var i = 0; i < 200_000; i++)
        {
            allocator.Claim($"warm-{i}", "app", IpFamily.IPv4);
        }

        for (var i = 0; i < 200_000; i += 2)
        {
            allocator.Release($"warm-{i}", IpFamily.IPv4, out _);
        }

        return allocator;
    }

    private void TakeAndReturn(AddressPool pool)
    {
        var taken = _taken;
        for (var i = 0; i < taken.Length; i++)
        {
            pool.TryTake(0, out taken[i]);
        }

        for (var i = 0; i < taken.Length; i++)
        {
            pool.Return(taken[i]);
        }
    }

    private static void Fragment(AddressPool pool)
    {
        var all = new Address[1 << 20];
        for (var i = 0; i < all.Length; i++)
        {
            pool.TryTake(0, out all[i]);
        }

        for (var i = 0; i < all.Length; i += 2)
        {
            pool.Return(all[i]);
        }
    }
}
