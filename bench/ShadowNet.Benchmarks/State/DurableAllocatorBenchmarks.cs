using System.Net;
using BenchmarkDotNet.Attributes;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.State;

namespace ShadowNet.Benchmarks.State;

/// <summary>
/// Acknowledged operations through the SQLite store with group commit: <see cref="Concurrency"/> claims
/// in flight at once, then as many releases; an operation counts once its group is durable.
/// Operations per second = 2 x Concurrency / mean. No reuse delay here, so a release deletes its row
/// and the table stays at steady state however many iterations BenchmarkDotNet runs.
/// </summary>
[MemoryDiagnoser]
public class DurableAllocatorBenchmarks
{
    private DurableAllocator _allocator = null!;
    private string _folder = "";
    private string[] _instances = [];
    private ValueTask<ClaimResult>[] _claims = [];
    private ValueTask<Lease?>[] _releases = [];

    [Params(StoreSync.Full, StoreSync.Normal)]
    public StoreSync Sync { get; set; }

    [Params(256, 4096)]
    public int Concurrency { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _folder = Directory.CreateTempSubdirectory("shadownet-bench-").FullName;
        _allocator = DurableAllocator.Open(
            [new PoolDefinition("v4", PoolKind.Dynamic, [IPNetwork.Parse("10.0.0.0/8")])],
            SqliteAllocationStore.Open(Path.Combine(_folder, "state.db"), Sync));
        _instances = Enumerable.Range(0, Concurrency).Select(i => $"vm-{i}").ToArray();
        _claims = new ValueTask<ClaimResult>[Concurrency];
        _releases = new ValueTask<Lease?>[Concurrency];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _allocator.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Directory.Delete(_folder, recursive: true);
    }

    // Each ValueTask is stored once and awaited once below: the pattern CA2012 guards against is not here.
    [Benchmark(Description = "acknowledged claims then releases")]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2012", Justification = "stored once, awaited once")]
    public async Task ClaimThenRelease()
    {
        for (var i = 0; i < _instances.Length; i++)
        {
            _claims[i] = _allocator.ClaimAsync(_instances[i], "app", IpFamily.IPv4);
        }

        for (var i = 0; i < _claims.Length; i++)
        {
            await _claims[i];
        }

        for (var i = 0; i < _instances.Length; i++)
        {
            _releases[i] = _allocator.ReleaseAsync(_instances[i], IpFamily.IPv4);
        }

        for (var i = 0; i < _releases.Length; i++)
        {
            await _releases[i];
        }
    }
}
