using System.Diagnostics;
using System.Net;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;

namespace ShadowNet.Benchmarks.Addressing;

/// <summary>
/// What a growing lease table costs the create that makes it grow, with and without <c>expectedLeases</c>:
/// the bench's sequence (creates until 1,000 instances are live, then a create and a delete of the oldest
/// by turns) on the allocator alone, over the bench's /14 pool whose released addresses cool for an hour,
/// so that each create takes a new address and the table grows by one lease per two events. Every
/// operation is timed; the slowest ones are printed with the table size at the time, and the collections.
/// Usage: <c>dotnet bin/Release/net10.0/ShadowNet.Benchmarks.dll lease-growth [expected leases, 0: default] [events]</c>.
/// </summary>
internal static class LeaseGrowthProbe
{
    private const int LiveInstances = 1000;
    private const int Slowest = 8;

    public static int Run(string[] args)
    {
        var expected = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 0;
        var events = args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 500_000;
        var pool = new PoolDefinition("bench", PoolKind.Dynamic, [IPNetwork.Parse("10.64.0.0/14")], Application: "bench", ReuseDelay: TimeSpan.FromHours(1));
        GC.Collect();
        var (gen0, gen1, gen2, pause) = (GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalPauseDuration());
        var (started, bytesBefore) = (Stopwatch.GetTimestamp(), GC.GetAllocatedBytesForCurrentThread());
        var allocator = new AddressAllocator([pool], expectedLeases: expected);
        var (construction, tableBytes) = (Stopwatch.GetElapsedTime(started), GC.GetAllocatedBytesForCurrentThread() - bytesBefore);

        // The slowest operations (ticks, lease count then), smallest first.
        var slowest = new List<(long Ticks, int Leases, int Event)>();
        var names = new char[16];
        var (created, deleted, over100us, over1ms) = (0, 0, 0, 0);
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < events; i++)
        {
            var create = created - deleted < LiveInstances || i % 2 == 0;
            var name = names.AsSpan(0, Name(create ? created : deleted, names));
            var before = Stopwatch.GetTimestamp();
            var ok = create
                ? allocator.Claim(name, "bench", IpFamily.IPv4).Status is ClaimStatus.Hit or ClaimStatus.Miss
                : allocator.Release(name, IpFamily.IPv4, out _);
            var ticks = Stopwatch.GetTimestamp() - before;
            if (!ok)
            {
                Console.Error.WriteLine($"event {i}: the allocator refused {(create ? "a create" : "a delete")} (pool full?)");
                return 1;
            }

            _ = create ? created++ : deleted++;
            over100us += ticks > Stopwatch.Frequency / 10_000 ? 1 : 0;
            over1ms += ticks > Stopwatch.Frequency / 1_000 ? 1 : 0;
            if (slowest.Count < Slowest || ticks > slowest[0].Ticks)
            {
                if (slowest.Count == Slowest)
                {
                    slowest.RemoveAt(0);
                }

                slowest.Add((ticks, allocator.LeaseCount, i));
                slowest.Sort();
            }
        }

        var elapsed = clock.Elapsed;
        Console.WriteLine($"lease-growth, expectedLeases {expected}: {events} events in {elapsed.TotalMilliseconds:F0} ms ({elapsed.TotalNanoseconds / events:F0} ns each), " +
            $"{allocator.LeaseCount} leases at the end, allocator built in {construction.TotalMilliseconds:F1} ms ({tableBytes / 1048576.0:F1} MiB); operations over 0.1 ms: {over100us}, over 1 ms: {over1ms}; " +
            $"collections gen0 {GC.CollectionCount(0) - gen0} gen1 {GC.CollectionCount(1) - gen1} gen2 {GC.CollectionCount(2) - gen2}, paused {(GC.GetTotalPauseDuration() - pause).TotalMilliseconds:F1} ms");
        Console.WriteLine("slowest operations (ms at lease count): " + string.Join(", ",
            slowest.OrderByDescending(s => s.Ticks).Select(s => $"{s.Ticks * 1000.0 / Stopwatch.Frequency:F2} at {s.Leases}")));
        return 0;
    }

    private static int Name(int instance, char[] into)
    {
        "vm-".CopyTo(into);
        instance.TryFormat(into.AsSpan(3), out var written, default, System.Globalization.CultureInfo.InvariantCulture);
        return 3 + written;
    }
}
