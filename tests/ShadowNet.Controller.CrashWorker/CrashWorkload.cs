using System.Net;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;
using ShadowNet.Controller.Allocation;

namespace ShadowNet.Controller.CrashWorker;

/// <summary>
/// The workload and its report format, shared by the child (which runs it) and the test (which checks
/// the store against the report). Each worker owns one application and runs one operation at a time, so
/// at a kill each worker has at most one operation whose outcome the parent does not know.
/// </summary>
/// <remarks>
/// Report lines, one per event, written before (B) and after (A) the operation is acknowledged:
/// <code>
/// B {worker} {op} {instance|family} {count}
/// A {worker} RES {family} {addr,addr,...}
/// A {worker} RFOR {instance} {addr}
/// A {worker} CLAIM {instance} {addr|-} {hit|miss|existing|exhausted}
/// A {worker} REL {instance} {addr|-}
/// A {worker} SHRINK {family} {addr,addr,...}
/// </code>
/// </remarks>
public static class CrashWorkload
{
    public static readonly TimeSpan ReuseDelay = TimeSpan.FromHours(1);

    public static PoolDefinition[] Pools() =>
    [
        new("shadow-v4", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/16")], [AddressRange.Parse("10.1.0.1")], ReuseDelay: ReuseDelay),
        new("dynamic-v4", PoolKind.Dynamic, [IPNetwork.Parse("10.9.0.0/16")], ReuseDelay: ReuseDelay),
        new("shadow-v6", PoolKind.Shadow, [IPNetwork.Parse("2001:db8:1::/64")], ReuseDelay: ReuseDelay),
        new("dynamic-v6", PoolKind.Dynamic, [IPNetwork.Parse("2001:db8:9::/64")], ReuseDelay: ReuseDelay),
    ];

    public static string Application(int worker) => $"app{worker}";

    /// <summary>Instances carry their family in their name, so a worker's instances are single-family.</summary>
    public static IpFamily FamilyOf(string instance) => instance.EndsWith("-6", StringComparison.Ordinal) ? IpFamily.IPv6 : IpFamily.IPv4;

    public static async Task RunWorkerAsync(DurableAllocator allocator, int worker, int run, int seed, TextWriter output, CancellationToken cancellationToken)
    {
        var random = new Random(seed * 7919 + worker);
        var application = Application(worker);
        var assigned = await allocator.ReadAsync(a => a.LeasesOf(application).Where(l => l.State == LeaseState.Assigned).Select(l => l.Instance!).ToList(), cancellationToken);
        var counter = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            var family = random.Next(2) == 0 ? IpFamily.IPv4 : IpFamily.IPv6;
            var suffix = family == IpFamily.IPv6 ? "6" : "4";
            var roll = random.Next(100);
            if (roll < 15)
            {
                var count = random.Next(1, 4);
                output.WriteLine($"B {worker} RES {Family(family)} {count}");
                var added = await allocator.ReserveAddressesAsync(application, family, count, cancellationToken);
                output.WriteLine($"A {worker} RES {Family(family)} {List(added)}");
            }
            else if (roll < 20)
            {
                var instance = $"w{worker}-r{run}-n{counter++}-{suffix}";
                output.WriteLine($"B {worker} RFOR {instance} 1");
                var result = await allocator.ReserveForAsync(application, instance, family, cancellationToken);
                output.WriteLine($"A {worker} RFOR {instance} {(result.Status == ReserveStatus.Reserved ? result.First.ToString() : "-")}");
            }
            else if (roll < 50)
            {
                var instance = $"w{worker}-r{run}-i{counter++}-{suffix}";
                output.WriteLine($"B {worker} CLAIM {instance} 1");
                var result = await allocator.ClaimAsync(instance, application, family, cancellationToken);
                output.WriteLine($"A {worker} CLAIM {instance} {(result.Succeeded ? result.Address.ToString() : "-")} {result.Status.ToString().ToLowerInvariant()}");
                if (result.Succeeded)
                {
                    assigned.Add(instance);
                }
            }
            else if (roll < 85)
            {
                if (assigned.Count == 0)
                {
                    continue;
                }

                var index = random.Next(assigned.Count);
                var instance = assigned[index];
                assigned[index] = assigned[^1];
                assigned.RemoveAt(assigned.Count - 1);
                output.WriteLine($"B {worker} REL {instance} 1");
                var released = await allocator.ReleaseAsync(instance, FamilyOf(instance), cancellationToken);
                output.WriteLine($"A {worker} REL {instance} {(released is { } lease ? lease.Address.ToString() : "-")}");
            }
            else
            {
                var keep = random.Next(0, 3);
                output.WriteLine($"B {worker} SHRINK {Family(family)} {keep}");
                var removed = await allocator.ShrinkAsync(application, family, keep, cancellationToken);
                output.WriteLine($"A {worker} SHRINK {Family(family)} {List(removed)}");
            }
        }
    }

    public static string Family(IpFamily family) => family == IpFamily.IPv6 ? "6" : "4";

    private static string List(IReadOnlyList<Address> addresses) => addresses.Count == 0 ? "-" : string.Join(',', addresses);
}
