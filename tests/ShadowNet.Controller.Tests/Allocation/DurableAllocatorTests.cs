using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Controller.Allocation;
using ShadowNet.Controller.State;
using ShadowNet.Controller.Tests.Support;

namespace ShadowNet.Controller.Tests.Allocation;

public class DurableAllocatorTests
{
    [Fact]
    public async Task AcknowledgedOperationsAreThereAfterReopening()
    {
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        List<Lease> before;
        await using (var allocator = DurableAllocator.Open(TestPools.Small(TimeSpan.FromMinutes(1)), SqliteAllocationStore.Open(path)))
        {
            var reserved = await allocator.ReserveAddressesAsync("db", IpFamily.IPv4, 3);
            Assert.Equal(3, reserved.Count);
            Assert.Equal(ReserveStatus.Reserved, (await allocator.ReserveForAsync("db", "db-9", IpFamily.IPv6)).Status);
            Assert.Equal(new ClaimResult(ClaimStatus.Hit, reserved[0], true), await allocator.ClaimAsync("db-0", "db", IpFamily.IPv4));
            Assert.Equal(ClaimStatus.Miss, (await allocator.ClaimAsync("web-0", "web", IpFamily.IPv6)).Status);
            Assert.Equal(ClaimStatus.Miss, (await allocator.ClaimAsync("web-1", "web", IpFamily.IPv4)).Status);
            Assert.NotNull(await allocator.ReleaseAsync("web-1", IpFamily.IPv4));
            Assert.Equal([reserved[2]], await allocator.ShrinkAsync("db", IpFamily.IPv4, 1));
            before = await allocator.ReadAsync(a => a.Leases.OrderBy(l => l.Address).ToList());
        }

        await using (var reopened = DurableAllocator.Open(TestPools.Small(TimeSpan.FromMinutes(1)), SqliteAllocationStore.Open(path)))
        {
            var after = await reopened.ReadAsync(a => a.Leases.OrderBy(l => l.Address).ToList());
            Assert.Equal(before, after);
            Assert.Equal(5, after.Count);
            Assert.Contains(after, l => l.State == LeaseState.Quarantined && l.Instance == "web-1");
            Assert.Equal(ClaimStatus.Existing, (await reopened.ClaimAsync("db-0", "db", IpFamily.IPv4)).Status);
        }
    }

    [Fact]
    public async Task NamesGivenAsCharactersAreStoredAndFoundAfterReopening()
    {
        // The UDP hook's path: no string for the name; the store writes it from the change log.
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        await using (var allocator = DurableAllocator.Open(TestPools.Small(TimeSpan.FromMinutes(1)), SqliteAllocationStore.Open(path)))
        {
            await allocator.ReserveAddressesAsync("db", IpFamily.IPv4, 1);
            foreach (var (instance, status) in new[] { ("vm-hit-é", ClaimStatus.Hit), ("vm-miss", ClaimStatus.Miss), ("vm-gone", ClaimStatus.Miss) })
            {
                var name = PooledName.Rent(instance);
                Assert.Equal(status, (await allocator.ClaimAsync(name, "db", IpFamily.IPv4, null, refillOnHit: false)).Status);
                name.Return();
            }

            var gone = PooledName.Rent("vm-gone");
            var released = await allocator.ReleaseAsync(gone, IpFamily.IPv4);
            gone.Return();
            Assert.Equal((LeaseState.Quarantined, null), (released?.State, released?.Instance));
        }

        await using var reopened = DurableAllocator.Open(TestPools.Small(TimeSpan.FromMinutes(1)), SqliteAllocationStore.Open(path));
        var leases = await reopened.ReadAsync(a => a.Leases.Where(l => l.Instance is not null).Select(l => (l.Instance, l.State)).OrderBy(l => l.Instance).ToList());
        Assert.Equal([("vm-gone", LeaseState.Quarantined), ("vm-hit-é", LeaseState.Assigned), ("vm-miss", LeaseState.Assigned)], leases);
        Assert.Equal(ClaimStatus.Existing, (await reopened.ClaimAsync("vm-hit-é", "db", IpFamily.IPv4)).Status);
    }

    [Fact]
    public async Task PoolUsageSnapshotsAreNeverTornWhileOperationsRewriteThem()
    {
        // The snapshot is rewritten in place after batches; every copy a reader gets must add up.
        using var folder = new TempDirectory("state");
        await using var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(folder.File("state.db")));
        using var done = new CancellationTokenSource();
        var reads = 0;
        using var reading = new ManualResetEventSlim();
        var reader = Task.Run(() =>
        {
            reading.Set();
            while (!done.IsCancellationRequested && reads < 2_000_000)
            {
                foreach (var pool in allocator.PoolUsageSnapshot)
                {
                    Assert.Equal(pool.Used, (ulong)(pool.Reserved + pool.Assigned + pool.Quarantined));
                }

                reads++;
            }
        });

        // On a busy machine the reader's task can start late: the snapshots must be read while they change.
        Assert.True(reading.Wait(TimeSpan.FromSeconds(30)));
        for (var i = 0; i < 500; i++)
        {
            await Task.WhenAll(allocator.ClaimAsync($"vm-{i}", "web", IpFamily.IPv4).AsTask(), allocator.ClaimAsync($"vm-{i}", "web", IpFamily.IPv6).AsTask());
            await allocator.ReleaseAsync($"vm-{i}", IpFamily.IPv4);
        }

        await done.CancelAsync();
        await reader.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(reads > 0);
        var final = allocator.PoolUsageSnapshot.Single(p => p.Pool == "dynamic-v6");
        Assert.Equal(500, final.Assigned);
    }

    [Fact]
    public async Task AcknowledgedMissRecordsAreThereAfterReopening()
    {
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        var miss = new MissRecord(42, "web", "vm-0", Address.Parse("10.9.0.2"), null, """{"samples":[]}""");
        await using (var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(path)))
        {
            Assert.True(await allocator.RecordMissAsync(miss));
        }

        await using var reopened = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(path));
        Assert.Equal([miss], (await reopened.LoadMissesAsync(0, 100)).Select(m => m.Miss));
    }

    [Fact]
    public async Task ConcurrentOperationsShareCommits()
    {
        using var folder = new TempDirectory("state");
        await using var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(folder.File("state.db")));
        var claims = await Task.WhenAll(Enumerable.Range(0, 2000).Select(i => allocator.ClaimAsync($"vm-{i}", "web", IpFamily.IPv6).AsTask()));
        Assert.All(claims, c => Assert.Equal(ClaimStatus.Miss, c.Status));
        Assert.Equal(2000, claims.Select(c => c.Address).Distinct().Count());
        Assert.Equal(2000, allocator.Acknowledged);
        Assert.True(allocator.Commits < 2000, $"{allocator.Commits} commits for 2000 operations: no grouping");
    }

    [Fact]
    public async Task BatchIsAppliedOnTheThreadThatEndsItWhileTheApplierWaits()
    {
        using var folder = new TempDirectory("batch");
        await using var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(folder.File("s.db")));
        await allocator.ClaimAsync("first", "web", IpFamily.IPv6);
        await Task.Delay(200); // the applier thread has gone back to waiting
        var appliedOn = new System.Collections.Concurrent.ConcurrentBag<int>();
        allocator.LeasesChanged += _ => appliedOn.Add(Environment.CurrentManagedThreadId);
        var receiver = 0;
        var claims = new Task<ClaimResult>[5];
        var thread = new Thread(() =>
        {
            receiver = Environment.CurrentManagedThreadId;
            allocator.BeginBatch();
            for (var i = 0; i < claims.Length; i++)
            {
                claims[i] = allocator.ClaimAsync($"vm-{i}", "web", IpFamily.IPv6).AsTask();
            }

            allocator.EndBatch();
        });
        thread.Start();
        thread.Join();

        Assert.All(await Task.WhenAll(claims), c => Assert.Equal(ClaimStatus.Miss, c.Status));
        Assert.Equal(5, appliedOn.Count);
        Assert.All(appliedOn, id => Assert.Equal(receiver, id));
    }

    [Fact]
    public async Task BatchesAppliedByTheirReceiversAndOperationsAppliedByTheApplierLoseNothing()
    {
        // Receivers applying their own batches race the applier thread for the applier's role (and with
        // each other); every operation must be applied once and acknowledged, whoever applied it.
        using var folder = new TempDirectory("batches");
        await using var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(folder.File("s.db"), StoreSync.Normal));
        var batched = new System.Collections.Concurrent.ConcurrentBag<Task<ClaimResult>>();
        var receivers = Enumerable.Range(0, 3).Select(r => new Thread(() =>
        {
            for (var b = 0; b < 300; b++)
            {
                allocator.BeginBatch();
                for (var i = 0; i < 1 + b % 7; i++)
                {
                    batched.Add(allocator.ClaimAsync($"r{r}-{b}-{i}", "web", IpFamily.IPv6).AsTask());
                }

                allocator.EndBatch();
            }
        })).ToList();
        receivers.ForEach(t => t.Start());
        var others = await Task.WhenAll(Enumerable.Range(0, 1500).Select(i => Task.Run(() => allocator.ClaimAsync($"o-{i}", "web", IpFamily.IPv6).AsTask())));
        receivers.ForEach(t => t.Join());
        var all = (await Task.WhenAll(batched).WaitAsync(TimeSpan.FromSeconds(60))).Concat(others).ToList();

        var expected = 3 * Enumerable.Range(0, 300).Sum(b => 1 + b % 7) + 1500;
        Assert.Equal(expected, all.Count);
        Assert.All(all, c => Assert.Equal(ClaimStatus.Miss, c.Status));
        Assert.Equal(expected, all.Select(c => c.Address).Distinct().Count());
        Assert.Equal(expected, allocator.Acknowledged);
        Assert.Equal(expected, await allocator.ReadAsync(a => a.Leases.Count()));
    }

    [Fact]
    public async Task ContinuationThatThrowsDoesNotStopTheWriter()
    {
        await using var allocator = DurableAllocator.Open(TestPools.Small(), new FailingStore());
        using var thrown = new ManualResetEventSlim();
        OnCompletion(allocator.ClaimAsync("vm-0", "web", IpFamily.IPv4), () =>
        {
            thrown.Set();
            throw new InvalidOperationException("caller bug");
        });
        Assert.True(thrown.Wait(TimeSpan.FromSeconds(10)));
        Assert.Equal(ClaimStatus.Miss, (await allocator.ClaimAsync("vm-1", "web", IpFamily.IPv4).AsTask().WaitAsync(TimeSpan.FromSeconds(10))).Status);
    }

    [Fact]
    public async Task CommitFailureStopsTheAllocatorAndAcknowledgesNothingMore()
    {
        var store = new FailingStore();
        await using var allocator = DurableAllocator.Open(TestPools.Small(), store);
        var failures = new System.Collections.Concurrent.ConcurrentQueue<StateStoreException>();
        allocator.StoreFailed += failures.Enqueue;
        Assert.Equal(ClaimStatus.Miss, (await allocator.ClaimAsync("vm-0", "web", IpFamily.IPv4)).Status);
        Assert.Null(allocator.Failure);
        store.Fail = true;
        var error = await Assert.ThrowsAsync<StateStoreException>(() => allocator.ClaimAsync("vm-1", "web", IpFamily.IPv4).AsTask());
        Assert.Contains("state store 'memory' failed to commit", error.Message, StringComparison.Ordinal);
        store.Fail = false;
        await Assert.ThrowsAsync<StateStoreException>(() => allocator.ClaimAsync("vm-2", "web", IpFamily.IPv4).AsTask());
        Assert.Equal(1, store.Committed);

        // Reported once, with the store's cause, and kept for whoever asks later.
        var reported = Assert.Single(failures);
        Assert.Contains("disk full", reported.Message, StringComparison.Ordinal);
        Assert.Equal(reported.Message, allocator.Failure?.Message);
    }

    [Fact]
    public async Task LeasesOutgrowingTheSizingAreReportedOnce()
    {
        using var folder = new TempDirectory("sizing");
        await using var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(folder.File("s.db")),
            new DurableAllocatorOptions { ExpectedLeases = 4 });
        var reports = new System.Collections.Concurrent.ConcurrentQueue<(int Leases, int Sized)>();
        allocator.LeasesOutgrewSizing += (leases, sized) => reports.Enqueue((leases, sized));
        for (var i = 0; i < 4; i++)
        {
            await allocator.ClaimAsync($"vm-{i}", "web", IpFamily.IPv4);
        }

        Assert.Empty(reports);
        for (var i = 4; i < 8; i++)
        {
            await allocator.ClaimAsync($"vm-{i}", "web", IpFamily.IPv4);
        }

        Assert.Equal([(5, 4)], reports);
    }

    [Fact]
    public async Task ApplierRaisesItsLeaseChangesBetweenBatchStartingAndEndedBeforeTheGroupCommits()
    {
        // The route manager holds the peers' writers from Starting and writes the run's routes at Ended:
        // every change of the run must come in between, on the applier's thread, before the commit starts.
        using var gate = new ManualResetEventSlim();
        var store = new FailingStore { Gate = gate };
        await using var allocator = DurableAllocator.Open(TestPools.Small(), store);
        var seen = new System.Collections.Concurrent.ConcurrentQueue<string>();
        void Record(string what) => seen.Enqueue($"{what} on {Thread.CurrentThread.Name}");
        allocator.ApplierBatchStarting += () => Record("starting");
        allocator.LeasesChanged += _ => Record("changed");
        allocator.ApplierBatchEnded += () => Record("ended");

        var claim = allocator.ClaimAsync("vm-0", "web", IpFamily.IPv4).AsTask();
        Assert.True(store.Committing.Wait(TimeSpan.FromSeconds(10)));
        var beforeCommit = seen.ToArray();
        gate.Set();
        Assert.Equal(ClaimStatus.Miss, (await claim.WaitAsync(TimeSpan.FromSeconds(10))).Status);

        // Runs that found nothing queued (a wake-up with no work) raise an empty pair; leave those out.
        var runs = string.Join(", ", beforeCommit).Replace("starting on shadownet-state-applier, ended on shadownet-state-applier", "", StringComparison.Ordinal).Trim(' ', ',');
        Assert.Equal("starting on shadownet-state-applier, changed on shadownet-state-applier, ended on shadownet-state-applier", runs);
    }

    [Fact]
    public async Task BatchAppliedByItsReceiverWhileTheCommitterIsBusyIsHandedOverWhenItFrees()
    {
        // The applier thread sleeps with nothing of its own while the committer holds a group; a receiver
        // applies its batch meanwhile and cannot hand it over. The committer's wake-up must get it handed
        // over by the applier thread (it used to go back to sleep: the batch was never committed).
        await using var held = HeldFirstCommit.Start();
        var (gate, store, allocator, first) = (held.Gate, held.Store, held.Allocator, held.First);
        Thread.Sleep(100); // the applier thread goes to sleep

        string? appliedOn = null;
        allocator.LeasesChanged += _ => appliedOn = Thread.CurrentThread.Name;
        Task<ClaimResult>? second = null;
        var receiver = new Thread(() =>
        {
            allocator.BeginBatch();
            second = allocator.ClaimAsync("vm-1", "web", IpFamily.IPv4).AsTask();
            allocator.EndBatch();
        }) { Name = "receiver" };
        receiver.Start();
        receiver.Join();
        Assert.Equal("receiver", appliedOn);

        gate.Set();
        Assert.Equal(ClaimStatus.Miss, (await second!.WaitAsync(TimeSpan.FromSeconds(10))).Status);
        Assert.True(first.IsCompletedSuccessfully);
        Assert.Equal(2, store.Committed);
    }

    [Fact]
    public async Task ClaimIsAppliedWhileTheGroupBeforeItCommitsAndAcknowledgedOnlyAfterItsOwn()
    {
        await using var held = HeldFirstCommit.Start();
        var (gate, store, allocator, first) = (held.Gate, held.Store, held.Allocator, held.First);

        using var applied = new ManualResetEventSlim();
        allocator.LeasesChanged += changes =>
        {
            if (changes[^1].Lease.Instance == "vm-1")
            {
                applied.Set();
            }
        };
        var second = allocator.ClaimAsync("vm-1", "web", IpFamily.IPv4).AsTask();
        Assert.True(applied.Wait(TimeSpan.FromSeconds(10)), "the second claim waited for the first group's commit");
        Assert.False(first.IsCompleted || second.IsCompleted);

        gate.Set();
        Assert.Equal(ClaimStatus.Miss, (await second.WaitAsync(TimeSpan.FromSeconds(10))).Status);
        Assert.True(first.IsCompletedSuccessfully);
        Assert.Equal(2, store.Committed);
    }

    [Fact]
    public async Task OperationsGoOnBeingAppliedWhileACommitIsHeldUp()
    {
        // A slow fsync holds a group; the creates behind it must still be applied (their routes sent),
        // well past the 4,096 of a group that used to stop them.
        await using var held = HeldFirstCommit.Start(IpFamily.IPv6);
        var (gate, allocator, first) = (held.Gate, held.Allocator, held.First);
        var applied = 0;
        using var allApplied = new ManualResetEventSlim();
        allocator.LeasesChanged += changes =>
        {
            if (Interlocked.Add(ref applied, changes.Length) == 10_000)
            {
                allApplied.Set();
            }
        };

        var rest = Enumerable.Range(1, 10_000).Select(i => allocator.ClaimAsync($"vm-{i}", "web", IpFamily.IPv6).AsTask()).ToList();
        try
        {
            Assert.True(allApplied.Wait(TimeSpan.FromSeconds(20)), $"{Volatile.Read(ref applied)} of 10,000 applied while the commit was held");
            Assert.False(first.IsCompleted);
        }
        finally
        {
            gate.Set();
        }

        var claims = await Task.WhenAll(rest.Prepend(first)).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.All(claims, c => Assert.Equal(ClaimStatus.Miss, c.Status));
        Assert.Equal(10_001, allocator.Acknowledged);
    }

    [Fact]
    public async Task FullGroupsWaitingBehindAHeldCommitAllCommitInOrder()
    {
        await using var held = HeldFirstCommit.Start(options: new DurableAllocatorOptions { MaxGroupSize = 8 });
        var (gate, store, allocator, first) = (held.Gate, held.Store, held.Allocator, held.First);
        var rest = Enumerable.Range(1, 100).Select(i => allocator.ClaimAsync($"vm-{i}", "web", IpFamily.IPv4).AsTask()).ToList();

        gate.Set();
        var claims = await Task.WhenAll(rest.Prepend(first)).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(101, claims.Select(c => c.Address).Distinct().Count());
        Assert.True(store.Committed >= 1 + (100 / 8), $"{store.Committed} commits: groups larger than 8");
        Assert.Equal(101, allocator.Acknowledged);
    }

    [Fact]
    public async Task OneCallerAwaitingEachOperationInTurnNeverStalls()
    {
        // Like shadownet replay: each await resumes on the committer and submits the next operation, so
        // applier and committer hand groups back and forth one at a time. A lost hand-over (a race once
        // left the committer marked busy with no group, after about a million operations) stalls it.
        using var folder = new TempDirectory("turns");
        await using var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(folder.File("s.db"), StoreSync.Normal));
        var live = new Queue<string>();
        async Task TurnsAsync()
        {
            for (var i = 0; i < 10_000; i++)
            {
                if (live.Count < 20 || i % 3 != 0)
                {
                    await allocator.ClaimAsync($"vm-{i}", "web", IpFamily.IPv4);
                    live.Enqueue($"vm-{i}");
                }
                else
                {
                    await allocator.ReleaseAsync(live.Dequeue(), IpFamily.IPv4);
                }

                await allocator.ReadAsync(a => a.GetUsage("web", IpFamily.IPv4));
            }
        }

        await TurnsAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(allocator.Acknowledged >= 20_000);
    }

    [Fact]
    public async Task StoreThatDoesNotMatchThePoolsIsAStartupErrorNamingIt()
    {
        using var folder = new TempDirectory("state");
        var path = folder.File("state.db");
        await using (var allocator = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(path)))
        {
            await allocator.ClaimAsync("vm-0", "web", IpFamily.IPv4);
        }

        var fewerPools = TestPools.Small().Where(p => p.Name != "dynamic-v4");
        var error = Assert.Throws<StateStoreException>(() => DurableAllocator.Open(fewerPools, SqliteAllocationStore.Open(path)));
        Assert.Equal($"state store '{path}' does not match the configured pools: lease 10.9.0.1 refers to pool 'dynamic-v4', which is not configured", error.Message);

        // The failed start released the file: the corrected configuration opens it at once, state intact.
        await using var corrected = DurableAllocator.Open(TestPools.Small(), SqliteAllocationStore.Open(path));
        Assert.Equal(ClaimStatus.Existing, (await corrected.ClaimAsync("vm-0", "web", IpFamily.IPv4)).Status);
    }

    private static void OnCompletion(ValueTask<ClaimResult> claim, Action continuation) => claim.GetAwaiter().UnsafeOnCompleted(continuation);

    /// <summary>
    /// An allocator over a store whose first commit, vm-0's claim, is under way and held until
    /// <see cref="Gate"/> is set (a slow fsync, or a group the committer is busy with).
    /// </summary>
    private sealed class HeldFirstCommit : IAsyncDisposable
    {
        private HeldFirstCommit(IpFamily family, DurableAllocatorOptions? options)
        {
            Store = new FailingStore { Gate = Gate };
            Allocator = DurableAllocator.Open(TestPools.Small(), Store, options);
            First = Allocator.ClaimAsync("vm-0", "web", family).AsTask();
        }

        public ManualResetEventSlim Gate { get; } = new();

        public FailingStore Store { get; }

        public DurableAllocator Allocator { get; }

        public Task<ClaimResult> First { get; }

        public static HeldFirstCommit Start(IpFamily family = IpFamily.IPv4, DurableAllocatorOptions? options = null)
        {
            var held = new HeldFirstCommit(family, options);
            Assert.True(held.Store.Committing.Wait(TimeSpan.FromSeconds(10)));
            return held;
        }

        public async ValueTask DisposeAsync()
        {
            await Allocator.DisposeAsync();
            Gate.Dispose();
        }
    }
}
