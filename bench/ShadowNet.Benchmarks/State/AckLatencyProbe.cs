using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Runtime.CompilerServices;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.State;

namespace ShadowNet.Benchmarks.State;

/// <summary>
/// Open-loop acknowledgement latency of the durable allocator: operations are issued on a fixed
/// schedule (<c>rate</c> per second, claims of new instances alternating with releases of the oldest,
/// about 1,000 live). The issuer never waits for an acknowledgement, so a stall cannot hold back the
/// load (no coordinated omission). Latency runs from submission to acknowledgement; "p99 sched" runs
/// from the scheduled time instead and so also holds the issuer's own lateness (it sleeps in 1 ms
/// steps rather than spin, because on two cores a spinning issuer takes the writer's core).
/// BenchmarkDotNet measures throughput; it does not report per-operation percentiles, hence this probe.
/// </summary>
/// <remarks>Usage: <c>dotnet run -c Release -- ack-latency [rate] [seconds] [runs]</c></remarks>
internal static class AckLatencyProbe
{
    public static async Task<int> RunAsync(string[] args)
    {
        var rate = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 10_000;
        var seconds = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 10;
        var runs = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 3;
        Console.WriteLine($"open loop, {rate} operations/s for {seconds} s, {runs} runs per mode; latency = acknowledgement - submission");
        Console.WriteLine("sync    run  ops     achieved/s  p50 ms  p90 ms  p99 ms  p99.9 ms  max ms  p99 sched  commits  ops/commit");
        foreach (var sync in new[] { StoreSync.Full, StoreSync.Normal })
        {
            for (var run = 1; run <= runs; run++)
            {
                await RunOnceAsync(sync, run, rate, seconds);
            }
        }

        return 0;
    }

    private static async Task RunOnceAsync(StoreSync sync, int run, int rate, int seconds)
    {
        var folder = Directory.CreateTempSubdirectory("shadownet-latency-").FullName;
        try
        {
            await using var allocator = DurableAllocator.Open(
                [new PoolDefinition("v4", PoolKind.Dynamic, [IPNetwork.Parse("10.0.0.0/8")], ReuseDelay: TimeSpan.FromSeconds(30))],
                SqliteAllocationStore.Open(Path.Combine(folder, "state.db"), sync));
            var total = rate * seconds;
            var latencies = new double[total];
            var lateness = new double[total];
            var instances = Enumerable.Range(0, total).Select(i => $"vm-{i}").ToArray();
            var commitsBefore = allocator.Commits;
            var commitTimes = new double[total];
            var commitCount = 0;
            allocator.GroupCommitted += (_, duration) => commitTimes[commitCount++] = duration.TotalMilliseconds;
            var clock = Stopwatch.StartNew();

            // One probe per operation, made before the clock starts, so the timed loop itself allocates
            // nothing and the GC pauses measured are the allocator's own.
            var probes = Enumerable.Range(0, total).Select(i => new AckProbe(latencies, i, clock)).ToArray();
            var done = new CountdownEvent(total);
            foreach (var probe in probes)
            {
                probe.Done = done;
            }

            var gcBefore = (GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2));
            var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
            clock.Restart();
            int claimed = 0, released = 0;
            for (var i = 0; i < total; i++)
            {
                var scheduled = (double)i / rate;
                // Sleep rather than spin: on two cores a spinning issuer takes the core the writer needs.
                // Late issue is charged to the operation (latency counts from the scheduled time).
                while (clock.Elapsed.TotalSeconds < scheduled)
                {
                    Thread.Sleep(1);
                }

                var issued = clock.Elapsed.TotalMilliseconds;
                lateness[i] = issued - (scheduled * 1000);
                probes[i].Issued = issued;

                // Claim until about 1,000 are live, then alternate release and claim.
                if (i % 2 == 0 || claimed - released < 1000)
                {
                    probes[i].Watch(allocator.ClaimAsync(instances[claimed++], "app", IpFamily.IPv4));
                }
                else
                {
                    probes[i].Watch(allocator.ReleaseAsync(instances[released++], IpFamily.IPv4));
                }
            }

            done.Wait(TimeSpan.FromSeconds(60));
            var elapsed = clock.Elapsed.TotalSeconds;
            var allocatedPerOperation = (GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore) / (double)total;
            var gcs = (GC.CollectionCount(0) - gcBefore.Item1, GC.CollectionCount(1) - gcBefore.Item2, GC.CollectionCount(2) - gcBefore.Item3);
            var commits = allocator.Commits - commitsBefore;
            for (var i = 0; i < total; i++)
            {
                lateness[i] += latencies[i];
            }

            Array.Sort(latencies);
            Array.Sort(lateness);
            var commitSorted = commitTimes[..commitCount];
            Array.Sort(commitSorted);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  commit ms p50 {commitSorted[commitSorted.Length / 2]:F3} p99 {commitSorted[(int)(commitSorted.Length * 0.99)]:F3} max {commitSorted[^1]:F3}; GCs gen0/1/2 {gcs.Item1}/{gcs.Item2}/{gcs.Item3}; {allocatedPerOperation:F0} B allocated per operation (whole process)"));
            double P(double q) => latencies[Math.Min(total - 1, (int)(q * total))];
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{sync,-7} {run,3}  {total,6}  {total / elapsed,10:F0}  {P(0.5),6:F3}  {P(0.9),6:F3}  {P(0.99),6:F3}  {P(0.999),8:F3}  {latencies[^1],6:F2}  {lateness[(int)(0.99 * total)],11:F3}  {commits,7}  {(double)total / commits,10:F1}"));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Records when one operation is acknowledged; its completion delegate is made once, up front.</summary>
    private sealed class AckProbe
    {
        private readonly double[] _latencies;
        private readonly int _index;
        private readonly Stopwatch _clock;
        private readonly Action _onClaim;
        private readonly Action _onRelease;
        private ValueTaskAwaiter<ClaimResult> _claim;
        private ValueTaskAwaiter<Lease?> _release;

        public AckProbe(double[] latencies, int index, Stopwatch clock)
        {
            _latencies = latencies;
            _index = index;
            _clock = clock;
            _onClaim = () => Record(_claim.GetResult().Succeeded);
            _onRelease = () => Record(_release.GetResult() is not null);
        }

        public double Issued { get; set; }

        public CountdownEvent Done { get; set; } = null!;

        public void Watch(ValueTask<ClaimResult> claim)
        {
            _claim = claim.GetAwaiter();
            _claim.UnsafeOnCompleted(_onClaim);
        }

        public void Watch(ValueTask<Lease?> release)
        {
            _release = release.GetAwaiter();
            _release.UnsafeOnCompleted(_onRelease);
        }

        private void Record(bool succeeded)
        {
            _latencies[_index] = succeeded ? _clock.Elapsed.TotalMilliseconds - Issued : double.PositiveInfinity;
            Done.Signal();
        }
    }
}
