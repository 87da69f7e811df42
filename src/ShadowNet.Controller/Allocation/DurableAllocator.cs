using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using System.Threading.Tasks.Sources;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;
using ShadowNet.Controller.State;

namespace ShadowNet.Controller.Allocation;

/// <summary>Lease changes in the order the allocator made them.</summary>
public delegate void LeaseChanges(ReadOnlySpan<LeaseChange> changes);

public sealed record DurableAllocatorOptions
{
    /// <summary>
    /// Most operations committed in one transaction, and so most applied (their routes sent) while the
    /// group before is committing. A group only grows that large when a commit is held up: a disk whose
    /// fsync stalls for 100-350 ms now and then (this machine's) must delay acknowledgements, not routes.
    /// At 4,096 (before stop 24) a stall of 0.4 s at 10,000 events/s stopped every route behind it.
    /// </summary>
    public int MaxGroupSize { get; init; } = 65_536;

    /// <summary>Operations waiting for the writer before callers are made to wait (back-pressure).</summary>
    public int QueueCapacity { get; init; } = 65_536;

    /// <summary>Leases the in-memory tables are sized for at start (see <see cref="AddressAllocator"/>); 0: its default.</summary>
    public int ExpectedLeases { get; init; }
}

/// <summary>
/// The allocator with its state on disk: one applier thread applies operations to the in-memory
/// <see cref="AddressAllocator"/> in arrival order, one committer thread commits them in groups, and
/// each caller's task completes only after the group holding its operation is durable (group commit:
/// one fsync for many events, and nothing acknowledged that a crash could lose).
/// </summary>
/// <remarks>
/// The two threads form a pipeline: while one group's fsync runs, the next group is applied as its
/// operations arrive, so what a caller starts from an applied result (an announcement) never waits for
/// someone else's fsync; the group then goes to the committer as soon as it is free. The group size
/// follows the load: one operation per commit when idle, thousands under a burst. A failed commit
/// leaves memory ahead of disk, so the allocator stops (every later call fails, including those already
/// applied behind the failed group) and a restart reloads from the store.
/// Callers' continuations run synchronously on the committer thread when their group commits. A hop to
/// the thread pool costs about a millisecond at p90 on this two-core VM (waking an idle core is slow),
/// which is most of the latency budget; the price is that a continuation must not block. Code that may
/// block resumes elsewhere with <c>ConfigureAwait(ConfigureAwaitOptions.ForceYielding)</c>.
/// </remarks>
public sealed class DurableAllocator : IAsyncDisposable
{
    private readonly AddressAllocator _allocator;
    private readonly IAllocationStore _store;
    private readonly DurableAllocatorOptions _options;
    private readonly Channel<Operation> _queue;
    private readonly Thread _applier;
    private readonly Thread _committer;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Woken by submitters (when it sleeps) and by the committer (when it is free for the next group).
    private readonly ManualResetEventSlim _wakeApplier = new(false);
    // 1 while a thread applies: the applier thread whenever it is not waiting, or a submitter applying
    // its own batch (EndBatch) while the applier thread waits.
    private int _applying;

    // The allocator whose wake-ups this thread holds back until it ends its batch (BeginBatch).
    [ThreadStatic]
    private static DurableAllocator? t_batchFor;
    private readonly ManualResetEventSlim _wakeCommitter = new(false);
    private int _applierSleeping;

    // The group being applied (the applier's), the one committing (the committer's: set by the applier
    // when the committer is free, cleared by the committer when done, so it alone says "busy"), and the spare.
    private Group _filling = new();
    private Group? _spare = new();
    private Group? _handedOver;
    // 1 when a hand-over found the committer busy: the committer then wakes the applier when it frees,
    // and only then (CommitterLoop, TryHandOver).
    private int _groupWaiting;
    private volatile bool _applierDone;

    private int _disposed;
    private long _sequence;
    private long _commits;
    private long _acknowledged;
    private volatile Exception? _fault;
    private volatile StateStoreException? _failure;
    // Pool usage for other threads, written in place under a sequence count (odd while it is being
    // written): refreshing it after a batch allocates nothing; a reader copies it and retries if it changed.
    private PoolUsage[] _poolUsage = [];
    private int _poolUsageVersion;
    private long _poolUsageAt;
    private bool _poolUsageStale;
    private bool _outgrowthReported;

    private DurableAllocator(AddressAllocator allocator, IAllocationStore store, DurableAllocatorOptions options)
    {
        _allocator = allocator;
        _store = store;
        _options = options;
        _sequence = store.CommittedSequence;
        _queue = Channel.CreateBounded<Operation>(new BoundedChannelOptions(options.QueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _applier = new Thread(ApplierLoop) { IsBackground = true, Name = "shadownet-state-applier" };
        _committer = new Thread(CommitterLoop) { IsBackground = true, Name = "shadownet-state-committer" };
    }

    /// <summary>Groups committed so far.</summary>
    public long Commits => Interlocked.Read(ref _commits);

    /// <summary>Operations acknowledged so far.</summary>
    public long Acknowledged => Interlocked.Read(ref _acknowledged);

    public string StoreLocation => _store.Location;

    /// <summary>
    /// A copy of the pool usage as of the last refresh (after a batch when nothing more is queued, else at
    /// most every 250 ms, on the applier thread): for metrics and the API, which must not read the
    /// single-threaded allocator from another thread.
    /// </summary>
    public IReadOnlyList<PoolUsage> PoolUsageSnapshot
    {
        get
        {
            var spinner = default(SpinWait);
            while (true)
            {
                var version = Volatile.Read(ref _poolUsageVersion);
                if ((version & 1) == 0)
                {
                    // One read of the array: a pool added while serving replaces it (inside a version change).
                    var usage = Volatile.Read(ref _poolUsage);
                    var copy = new PoolUsage[usage.Length];
                    usage.CopyTo(copy, 0);
                    Interlocked.MemoryBarrier();
                    if (Volatile.Read(ref _poolUsageVersion) == version)
                    {
                        return copy;
                    }
                }

                spinner.SpinOnce();
            }
        }
    }

    /// <summary>Raised on the committer thread after each group commits: operations in it, and how long the commit took.</summary>
    public event Action<int, TimeSpan>? GroupCommitted;

    /// <summary>
    /// Raised on the committer thread once every operation of a group has completed (its continuations
    /// ran): the moment to send what they produced in one batch.
    /// </summary>
    public event Action? GroupCompleted;

    /// <summary>
    /// Raised on the applier thread with the lease changes of each operation as soon as it is applied in
    /// memory: before they are durable, while the group before commits. Subscribers see every change in
    /// the order it was made (routes follow the lease table through it, so the fsync is not on a route's
    /// path); they must not block, and if the commit fails <see cref="CommitFailed"/> lists the changes
    /// that were never stored.
    /// </summary>
    public event LeaseChanges? LeasesChanged;

    /// <summary>
    /// Raised on the applier thread before it applies a run of queued operations (<see cref="LeasesChanged"/>
    /// follows for each), and <see cref="ApplierBatchEnded"/> after them, before the group goes to the
    /// committer. The route manager holds the peers' writers in between and writes the run's routes
    /// itself at the end, so that a busy applier does not wake a writer thread for every run.
    /// </summary>
    public event Action? ApplierBatchStarting;

    /// <inheritdoc cref="ApplierBatchStarting"/>
    public event Action? ApplierBatchEnded;

    /// <summary>
    /// Raised once, on the thread that applied the change, when the leases held (reserved, assigned and
    /// cooling) first exceed what the tables were sized for (<see cref="DurableAllocatorOptions.ExpectedLeases"/>):
    /// leases held, and the sizing. From then on the tables grow while serving, a pause of milliseconds each time.
    /// </summary>
    public event Action<int, int>? LeasesOutgrewSizing;

    /// <summary>Leases the in-memory tables were sized for (<see cref="AddressAllocator.SizedForLeases"/>).</summary>
    public int SizedForLeases => _allocator.SizedForLeases;

    /// <summary>
    /// Raised on the committer thread when a group fails to commit, with the changes it held (never
    /// stored): what was started from <see cref="LeasesChanged"/> for them must be undone.
    /// </summary>
    public event LeaseChanges? CommitFailed;

    /// <summary>Raised on the committer thread after the store did housekeeping (a checkpoint): how long the committer was held.</summary>
    public event Action<TimeSpan>? Maintained;

    /// <summary>
    /// Raised once, on the committer thread, when the store first fails (a commit or its housekeeping):
    /// from then on every operation fails with <see cref="Failure"/>, and nothing more is acknowledged.
    /// </summary>
    public event Action<StateStoreException>? StoreFailed;

    /// <summary>Why the allocator stopped taking operations: the store's failure, naming it; null while it works.</summary>
    public StateStoreException? Failure => _failure;

    /// <summary>
    /// Loads the store, rebuilds the allocator and checks its invariants, then starts the writer. A store
    /// whose content cannot be right for these pools is a <see cref="StateStoreException"/> naming it.
    /// The allocator owns the store from here on and disposes it.
    /// </summary>
    public static DurableAllocator Open(IEnumerable<PoolDefinition> pools, IAllocationStore store, DurableAllocatorOptions? options = null, TimeProvider? time = null)
    {
        options ??= new DurableAllocatorOptions();
        AddressAllocator allocator;
        try
        {
            allocator = new AddressAllocator(pools, time, options.ExpectedLeases) { Changes = new ChangeLog() };
            allocator.Restore(store.LoadLeases());
        }
        catch (AllocationStateException e)
        {
            store.Dispose();
            throw new StateStoreException($"state store '{store.Location}' does not match the configured pools: {e.Message}", e);
        }
        catch
        {
            // Release the store (and its file lock) so that a corrected configuration can start at once.
            store.Dispose();
            throw;
        }

        var durable = new DurableAllocator(allocator, store, options);
        if (allocator.Changes.Count > 0)
        {
            // Quarantined addresses whose delay ran out while we were down: tidy them away before serving.
            store.Commit(allocator.Changes.AsSpan(), [], ++durable._sequence);
        }

        allocator.Changes = durable._filling.Changes;
        durable._poolUsage = new PoolUsage[allocator.PoolCount];
        allocator.WritePoolUsages(durable._poolUsage);
        durable._committer.Start();
        durable._applier.Start();
        return durable;
    }

    public ValueTask<ReserveResult> ReserveAsync(string application, IpFamily family, int count, CancellationToken cancellationToken = default) =>
        Submit(static (a, x) => a.Reserve(x.application, x.family, x.count), (application, family, count), cancellationToken);

    /// <summary>
    /// Reserves and reports the addresses that became reservations: the new ones, and any that went back
    /// to their application when a reuse delay ended.
    /// </summary>
    public ValueTask<IReadOnlyList<Address>> ReserveAddressesAsync(string application, IpFamily family, int count, CancellationToken cancellationToken = default) =>
        Submit<(string application, IpFamily family, int count), IReadOnlyList<Address>>(static (a, x) =>
        {
            var added = new List<Address>(x.count);
            a.Reserve(x.application, x.family, x.count, added);
            return DrainRereserved(a, added);
        }, (application, family, count), cancellationToken);

    /// <summary>
    /// Records the forecast's demand (<see cref="AddressAllocator.SetDemand"/>) and ends the reuse delays
    /// that are over; returns the application's usage after that. Addresses that went back to their
    /// application are lease changes like any other (<see cref="LeasesChanged"/>), so nothing is listed.
    /// </summary>
    public ValueTask<ApplicationUsage> SetDemandAsync(string application, IpFamily family, int reservations, CancellationToken cancellationToken = default) =>
        Submit(static (a, x) =>
        {
            a.SetDemand(x.application, x.family, x.reservations);
            a.ExpireQuarantine();
            a.Rereserved.Clear();
            return a.GetUsage(x.application, x.family);
        }, (application, family, reservations), cancellationToken);

    public ValueTask<ReserveResult> ReserveForAsync(string application, string instance, IpFamily family, CancellationToken cancellationToken = default) =>
        Submit(static (a, x) => a.ReserveFor(x.application, x.instance, x.family), (application, instance, family), cancellationToken);

    /// <summary>Claims an address for an instance (see <see cref="AddressAllocator.Claim"/>); allocates nothing.</summary>
    public ValueTask<ClaimResult> ClaimAsync(string instance, string application, IpFamily family, CancellationToken cancellationToken = default) =>
        ClaimAsync(instance, application, family, null, cancellationToken);

    /// <summary>Claims with the hypervisor's address, kept with the lease as the route's next hop.</summary>
    public ValueTask<ClaimResult> ClaimAsync(string instance, string application, IpFamily family, Address? host, CancellationToken cancellationToken = default) =>
        ClaimAsync(instance, application, family, host, refillOnHit: false, cancellationToken);

    /// <summary>
    /// Claims; with <paramref name="refillOnHit"/>, a hit also reserves the application one address in its
    /// place, in the same step (a warm pool kept full). The replacement commits with the claim: reserved
    /// once the claim's reply is sent, at no extra commit, and no extra wake-up of the applier thread.
    /// </summary>
    public ValueTask<ClaimResult> ClaimAsync(string instance, string application, IpFamily family, Address? host, bool refillOnHit,
        CancellationToken cancellationToken = default) =>
        Submit(static (a, x) => Refilled(a, a.Claim(x.instance, x.application, x.family, x.host), x.application, x.family, x.refillOnHit),
            (instance, application, family, host, refillOnHit), cancellationToken);

    /// <summary>
    /// A claim by a name held as characters (the UDP hook's): no string is made for it, here or in the
    /// store. <paramref name="instance"/> must stay rented until the result has been read.
    /// </summary>
    public ValueTask<ClaimResult> ClaimAsync(PooledName instance, string application, IpFamily family, Address? host, bool refillOnHit,
        CancellationToken cancellationToken = default) =>
        Submit(static (a, x) => Refilled(a, a.Claim(x.instance.Chars, x.application, x.family, x.host), x.application, x.family, x.refillOnHit),
            (instance, application, family, host, refillOnHit), cancellationToken);

    /// <summary>Stores a miss record with the next group; completes once it is durable.</summary>
    public ValueTask<bool> RecordMissAsync(MissRecord miss, CancellationToken cancellationToken = default) =>
        Submit<(DurableAllocator self, MissRecord miss), bool>(static (_, x) =>
        {
            x.self._filling.Misses.Add(x.miss);
            return true;
        }, (this, miss), cancellationToken);

    /// <summary>
    /// Stored miss records after <paramref name="afterId"/>: read on the committer thread (which owns the
    /// store) once every operation submitted before it is committed.
    /// </summary>
    public ValueTask<IReadOnlyList<(long Id, MissRecord Miss)>> LoadMissesAsync(long afterId, int limit, CancellationToken cancellationToken = default) =>
        Submit<(IAllocationStore store, long afterId, int limit), IReadOnlyList<(long Id, MissRecord Miss)>>(
            static (_, x) => x.store.LoadMisses(x.afterId, x.limit), (_store, afterId, limit), cancellationToken, onStore: true);

    /// <summary>Releases an instance's address; the lease it had, or null when it had none. Allocates nothing.</summary>
    public ValueTask<Lease?> ReleaseAsync(string instance, IpFamily family, CancellationToken cancellationToken = default) =>
        Submit(static (a, x) => a.Release(x.instance, x.family, out var lease) ? lease : (Lease?)null, (instance, family), cancellationToken);

    /// <summary>A release by a name held as characters; the lease returned has no <c>Instance</c> string.</summary>
    public ValueTask<Lease?> ReleaseAsync(PooledName instance, IpFamily family, CancellationToken cancellationToken = default) =>
        Submit(static (a, x) => a.Release(x.instance.Chars, x.family, out var lease) ? lease : (Lease?)null, (instance, family), cancellationToken);

    public ValueTask<bool> UnreserveAsync(string instance, IpFamily family, CancellationToken cancellationToken = default) =>
        Submit(static (a, x) => a.Unreserve(x.instance, x.family), (instance, family), cancellationToken);

    public ValueTask<IReadOnlyList<Address>> ShrinkAsync(string application, IpFamily family, int keep, CancellationToken cancellationToken = default) =>
        Submit<(string application, IpFamily family, int keep), IReadOnlyList<Address>>(static (a, x) =>
        {
            var removed = new List<Address>();
            a.Shrink(x.application, x.family, x.keep, removed);
            return removed;
        }, (application, family, keep), cancellationToken);

    /// <summary>With <paramref name="refillOnHit"/>, a hit reserves the application one address in its place.</summary>
    private static ClaimResult Refilled(AddressAllocator allocator, ClaimResult claim, string application, IpFamily family, bool refillOnHit)
    {
        if (refillOnHit && claim.Status == ClaimStatus.Hit)
        {
            allocator.Reserve(application, family, 1); // a pool with no room left is refilled by the planner later
        }

        return claim;
    }

    private static List<Address> DrainRereserved(AddressAllocator allocator, List<Address> into)
    {
        into.AddRange(allocator.Rereserved);
        allocator.Rereserved.Clear();
        return into;
    }

    /// <summary>
    /// Until <see cref="EndBatch"/>, operations this thread submits do not wake the applier thread: the
    /// hook receiver queues a whole received batch, then applies it itself. The applier thread waking
    /// for each batch cost the route a wake-up on another CPU (bench/RESULTS.md, stop 19).
    /// </summary>
    public void BeginBatch() => t_batchFor = this;

    /// <summary>
    /// Applies what is queued on the calling thread if <paramref name="applyHere"/> and no thread is
    /// applying (their routes are announced from here; the commit is still the committer's), else wakes
    /// the applier for it. <paramref name="beforeCommit"/> then runs on this thread before the committer
    /// is woken: the route manager sends the batch's routes there, so that the committer's wake-up (an
    /// interrupt to the other CPU, and a thread that competes with the BGP peer for it) comes after them.
    /// </summary>
    public void EndBatch(bool applyHere = true, Action? beforeCommit = null)
    {
        t_batchFor = null;
        if (!applyHere || Interlocked.CompareExchange(ref _applying, 1, 0) != 0)
        {
            WakeApplier();
            beforeCommit?.Invoke();
            return;
        }

        var reader = _queue.Reader;
        var handedOver = false;
        try
        {
            try
            {
                handedOver = ApplyQueued(reader).Operations.Count > 0 && TryHandOver(wakeCommitter: false);
            }
            finally
            {
                Volatile.Write(ref _applying, 0);
            }

            beforeCommit?.Invoke();
        }
        finally
        {
            if (handedOver)
            {
                _wakeCommitter.Set();
            }

            // A batch larger than a group leaves operations queued; a group the committer could not take
            // yet is handed over when the committer wakes the applier.
            if (reader.TryPeek(out _))
            {
                _wakeApplier.Set();
            }
        }
    }

    /// <summary>
    /// Adds to a pool what <paramref name="grown"/> adds to it (see <see cref="AddressAllocator.GrowPool"/>),
    /// in order with the other operations; nothing is stored, since the pools come from the configuration.
    /// </summary>
    public ValueTask<ulong> GrowPoolAsync(PoolDefinition grown, CancellationToken cancellationToken = default) =>
        Submit<(DurableAllocator self, PoolDefinition grown), ulong>(static (a, x) =>
        {
            var added = a.GrowPool(x.grown);
            x.self._poolUsageStale = true; // the sizes changed, and no lease did
            return added;
        }, (this, grown), cancellationToken);

    /// <summary>
    /// Adds a pool (see <see cref="AddressAllocator.AddPool"/>) in order with the other operations; its
    /// usage is in the snapshot from then on. Nothing is stored: the pools come from the configuration.
    /// </summary>
    public ValueTask<bool> AddPoolAsync(PoolDefinition definition, CancellationToken cancellationToken = default) =>
        Submit<(DurableAllocator self, PoolDefinition definition), bool>(static (a, x) =>
        {
            a.AddPool(x.definition);
            x.self.PublishPoolUsage(resize: true);
            return true;
        }, (this, definition), cancellationToken);

    /// <summary>
    /// Runs a read against the allocator on the applier thread, in order with the writes, so it sees every
    /// operation submitted before it; it completes once those are committed.
    /// </summary>
    public ValueTask<T> ReadAsync<T>(Func<AddressAllocator, T> read, CancellationToken cancellationToken = default) =>
        Submit(static (a, read) => read(a), read, cancellationToken);

    /// <summary>Stops taking operations, commits what is queued, and closes the store.</summary>
    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        _wakeApplier.Set();
        await _stopped.Task;

        // The wake-up event is left to the GC: a submitter racing with shutdown may still Set it.
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _store.Dispose();
        }
    }

    private ValueTask<TResult> Submit<TArgs, TResult>(Func<AddressAllocator, TArgs, TResult> apply, TArgs args, CancellationToken cancellationToken,
        bool onStore = false)
    {
        if (_fault is { } fault)
        {
            return ValueTask.FromException<TResult>(Faulted(fault));
        }

        var operation = PooledOperation<TArgs, TResult>.Rent(apply, args, onStore);
        return TryEnqueue(operation) ? operation.Result : SubmitSlowAsync(operation, cancellationToken);
    }

    /// <summary>Queues an operation if there is room, and wakes the applier for it.</summary>
    private bool TryEnqueue(Operation operation)
    {
        if (!_queue.Writer.TryWrite(operation))
        {
            return false;
        }

        WakeApplier();
        return true;
    }

    private async ValueTask<TResult> SubmitSlowAsync<TArgs, TResult>(PooledOperation<TArgs, TResult> operation, CancellationToken cancellationToken)
    {
        try
        {
            await _queue.Writer.WriteAsync(operation, cancellationToken);
            WakeApplier();
        }
        catch (ChannelClosedException)
        {
            throw new ObjectDisposedException(nameof(DurableAllocator), "the allocator is stopping");
        }

        return await operation.Result;
    }

    private void ApplierLoop()
    {
        var reader = _queue.Reader;
        TakeApplying();
        try
        {
            while (true)
            {
                var group = ApplyQueuedAsApplier(reader);
                if (group.Operations.Count > 0 && TryHandOver())
                {
                    continue;
                }

                // Sleep until an operation arrives (unless the group is full) or, with a group waiting,
                // until the committer is free.
                if (!SleepUntilWork(reader))
                {
                    break;
                }
            }

            while (_filling.Operations.Count > 0 && !TryHandOver())
            {
                WaitForWake();
            }
        }
        finally
        {
            _applierDone = true;
            _wakeCommitter.Set();
        }
    }

    /// <summary>
    /// <see cref="ApplyQueued"/> on the applier thread, between <see cref="ApplierBatchStarting"/> and
    /// <see cref="ApplierBatchEnded"/>, before the group goes to the committer.
    /// </summary>
    private Group ApplyQueuedAsApplier(ChannelReader<Operation> reader)
    {
        Notify(ApplierBatchStarting);
        try
        {
            return ApplyQueued(reader);
        }
        finally
        {
            Notify(ApplierBatchEnded);
        }
    }

    private static void Notify(Action? subscribers)
    {
        try
        {
            subscribers?.Invoke();
        }
        catch (Exception)
        {
            // As in Announce: a subscriber's failure must not stop the applier.
        }
    }

    /// <summary>Applies queued operations into the filling group, up to a group's size (holding <see cref="_applying"/>).</summary>
    private Group ApplyQueued(ChannelReader<Operation> reader)
    {
        var group = _filling;
        while (group.Operations.Count < _options.MaxGroupSize && reader.TryRead(out var operation))
        {
            if (_fault is { } fault)
            {
                operation.Fail(Faulted(fault));
            }
            else if (!operation.OnStore)
            {
                var before = group.Changes.Count;
                operation.Apply(_allocator);
                if (group.Changes.Count > before)
                {
                    Announce(group.Changes.AsSpan()[before..]);
                }
            }

            group.Operations.Add(operation);
        }

        RefreshPoolUsage(group.Changes.Count > 0);
        return group;
    }

    /// <summary>The applier thread sleeps without the applying role (a receiver may apply meanwhile) and takes it back.</summary>
    private void WaitForWake()
    {
        Volatile.Write(ref _applying, 0);
        _wakeApplier.Wait();
        _wakeApplier.Reset();
        TakeApplying();
    }

    /// <summary>The applier thread takes the role back after waiting; a batch applied inline is short.</summary>
    private void TakeApplying()
    {
        var spin = new SpinWait();
        while (Interlocked.CompareExchange(ref _applying, 1, 0) != 0)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    private void Announce(ReadOnlySpan<LeaseChange> changes)
    {
        try
        {
            LeasesChanged?.Invoke(changes);
        }
        catch (Exception)
        {
            // The changes are made and will commit; a subscriber's failure must not stop the applier.
        }
    }

    /// <summary>Gives the applied group to the committer if it is free, and starts filling the spare.</summary>
    private bool TryHandOver(bool wakeCommitter = true)
    {
        if (Volatile.Read(ref _handedOver) is not null)
        {
            // The flag, then a second look (Interlocked is a full fence here and in the committer's
            // release): either this thread sees the committer free, or the committer sees the flag.
            Interlocked.Exchange(ref _groupWaiting, 1);
            if (Volatile.Read(ref _handedOver) is not null)
            {
                return false;
            }
        }

        var next = _spare!;
        _spare = null;
        Volatile.Write(ref _handedOver, _filling);
        _filling = next;
        _allocator.Changes = next.Changes;
        if (wakeCommitter)
        {
            _wakeCommitter.Set();
        }

        return true;
    }

    private void CommitterLoop()
    {
        try
        {
            while (true)
            {
                var group = Volatile.Read(ref _handedOver);
                if (group is null)
                {
                    if (_applierDone && Volatile.Read(ref _handedOver) is null)
                    {
                        break;
                    }

                    _wakeCommitter.Wait();
                    _wakeCommitter.Reset();
                    continue;
                }

                CommitGroup(group);
                if (_fault is null)
                {
                    Maintain();
                }

                group.Clear();
                _spare = group;
                Interlocked.Exchange(ref _handedOver, null);
                if (Interlocked.Exchange(ref _groupWaiting, 0) != 0)
                {
                    _wakeApplier.Set();
                }
            }
        }
        finally
        {
            _stopped.TrySetResult();
        }
    }

    private void CommitGroup(Group group)
    {
        if (_fault is null && (group.Changes.Count > 0 || group.Misses.Count > 0))
        {
            try
            {
                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                _store.Commit(group.Changes.AsSpan(), CollectionsMarshal.AsSpan(group.Misses), _sequence + 1);
                _sequence++;
                Interlocked.Increment(ref _commits);
                GroupCommitted?.Invoke(group.Operations.Count, System.Diagnostics.Stopwatch.GetElapsedTime(started));
            }
            catch (Exception e)
            {
                Fail(e);
            }
        }

        if (_fault is { } fault)
        {
            // This group, or one before it, was not stored: nothing in it may be acknowledged.
            foreach (var operation in group.Operations)
            {
                operation.Fail(Faulted(fault));
            }

            try
            {
                CommitFailed?.Invoke(group.Changes.AsSpan());
            }
            catch (Exception)
            {
                // The allocator is stopping either way; a subscriber's failure must not hide the store's.
            }
        }
        else
        {
            foreach (var operation in group.Operations)
            {
                if (operation.OnStore)
                {
                    operation.Apply(_allocator);
                }
            }

            Interlocked.Add(ref _acknowledged, group.Operations.Count);
        }

        foreach (var operation in group.Operations)
        {
            try
            {
                operation.Complete();
            }
            catch (Exception)
            {
                // A caller's continuation ran here and threw; it must not take the committer down with it.
            }
        }

        try
        {
            GroupCompleted?.Invoke();
        }
        catch (Exception)
        {
            // A subscriber's failure must not take the committer down.
        }
    }

    /// <summary>
    /// Blocks the applier until an operation arrives (not when the filling group is full: it could not
    /// take it) or, when the filling group has operations, until the committer is free; false once the
    /// queue is closed and empty. Submitters wake it directly through an event: waiting on the channel's
    /// own task would route every wake-up through the thread pool, which on a busy two-core machine
    /// costs milliseconds.
    /// </summary>
    private bool SleepUntilWork(ChannelReader<Operation> reader)
    {
        while (true)
        {
            Interlocked.Exchange(ref _applierSleeping, 1);
            // Read afresh after every wake-up: a receiver may have applied into the filling group while
            // this thread slept (EndBatch), leaving it for this thread to hand over when the committer frees.
            var grouped = _filling.Operations.Count;
            if ((grouped < _options.MaxGroupSize && reader.TryPeek(out _)) || (grouped > 0 && Volatile.Read(ref _handedOver) is null))
            {
                Interlocked.Exchange(ref _applierSleeping, 0);
                return true;
            }

            if (reader.Completion.IsCompleted)
            {
                Interlocked.Exchange(ref _applierSleeping, 0);
                return false;
            }

            WaitForWake();
            Interlocked.Exchange(ref _applierSleeping, 0);
        }
    }

    private void WakeApplier()
    {
        if (t_batchFor == this)
        {
            return;
        }

        if (Volatile.Read(ref _applierSleeping) == 1)
        {
            _wakeApplier.Set();
        }
    }

    /// <summary>
    /// After a change, at most every 250 ms under load, and at once when the queue runs dry; and the first
    /// time the leases outgrow the tables' sizing, <see cref="LeasesOutgrewSizing"/>.
    /// </summary>
    private void RefreshPoolUsage(bool changed)
    {
        if (changed && !_outgrowthReported && _allocator.LeaseCount > _allocator.SizedForLeases)
        {
            _outgrowthReported = true;
            try
            {
                LeasesOutgrewSizing?.Invoke(_allocator.LeaseCount, _allocator.SizedForLeases);
            }
            catch (Exception)
            {
                // A subscriber's failure must not stop the applier.
            }
        }

        _poolUsageStale |= changed;
        var now = Environment.TickCount64;
        if (_poolUsageStale && (now - _poolUsageAt >= 250 || !_queue.Reader.TryPeek(out _)))
        {
            _poolUsageAt = now;
            _poolUsageStale = false;
            PublishPoolUsage(resize: false);
        }
    }

    /// <summary>
    /// Writes the pool usage for <see cref="PoolUsageSnapshot"/>'s readers inside a version change (odd
    /// while writing); <paramref name="resize"/> replaces the array first, for a pool added while serving.
    /// </summary>
    private void PublishPoolUsage(bool resize)
    {
        Interlocked.Increment(ref _poolUsageVersion);
        if (resize)
        {
            Volatile.Write(ref _poolUsage, new PoolUsage[_allocator.PoolCount]);
        }

        _allocator.WritePoolUsages(_poolUsage);
        Interlocked.Increment(ref _poolUsageVersion);
    }

    private void Maintain()
    {
        try
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            if (_store.Maintain(idle: !_queue.Reader.TryPeek(out _)))
            {
                Maintained?.Invoke(System.Diagnostics.Stopwatch.GetElapsedTime(started));
            }
        }
        catch (Exception e)
        {
            // Housekeeping failing means the store is failing: stop before acknowledging anything else.
            Fail(e);
        }
    }

    /// <summary>Stops the allocator for the store's failure (on the committer thread, the store's only user).</summary>
    private void Fail(Exception cause)
    {
        if (_fault is not null)
        {
            return;
        }

        _failure = Faulted(cause);
        _fault = cause;
        try
        {
            StoreFailed?.Invoke(_failure);
        }
        catch (Exception)
        {
            // A subscriber's failure must not hide the store's.
        }
    }

    private StateStoreException Faulted(Exception cause) =>
        new($"state store '{_store.Location}' failed to commit; nothing since the last commit is acknowledged and the allocator has stopped (restart to reload): {cause.Message}", cause);

    /// <summary>Operations applied together and committed in one transaction, with their changes and misses.</summary>
    private sealed class Group
    {
        public List<Operation> Operations { get; } = [];

        public ChangeLog Changes { get; } = new();

        public List<MissRecord> Misses { get; } = [];

        public void Clear()
        {
            Operations.Clear();
            Changes.Clear();
            Misses.Clear();
        }
    }

    private abstract class Operation
    {
        /// <summary>Runs on the committer, against the store, after its group commits (instead of on the applier).</summary>
        public bool OnStore { get; protected set; }

        public abstract void Apply(AddressAllocator allocator);

        public abstract void Complete();

        public abstract void Fail(Exception error);
    }

    /// <summary>
    /// One queued operation, recycled after its caller has read the result, so the claim and release
    /// path allocates nothing: the arguments travel as a value tuple and the operation is a static lambda.
    /// </summary>
    private sealed class PooledOperation<TArgs, TResult> : Operation, IValueTaskSource<TResult>
    {
        private static readonly ConcurrentQueue<PooledOperation<TArgs, TResult>> Pool = new();

        // Continuations run synchronously on the committer thread (see the class remarks).
        private ManualResetValueTaskSourceCore<TResult> _core;
        private Func<AddressAllocator, TArgs, TResult> _apply = null!;
        private TArgs _args = default!;
        private TResult _result = default!;
        private Exception? _error;

        public ValueTask<TResult> Result => new(this, _core.Version);

        public static PooledOperation<TArgs, TResult> Rent(Func<AddressAllocator, TArgs, TResult> apply, TArgs args, bool onStore)
        {
            if (!Pool.TryDequeue(out var operation))
            {
                operation = new PooledOperation<TArgs, TResult>();
            }

            operation._apply = apply;
            operation._args = args;
            operation.OnStore = onStore;
            return operation;
        }

        public override void Apply(AddressAllocator allocator)
        {
            try
            {
                _result = _apply(allocator, _args);
            }
            catch (Exception e)
            {
                // A bug in one operation must not stop the writer; the caller gets the exception.
                _error = e;
            }
        }

        public override void Complete()
        {
            if (_error is not null)
            {
                _core.SetException(_error);
            }
            else
            {
                _core.SetResult(_result);
            }
        }

        /// <summary>Records the failure; <see cref="Complete"/> delivers it.</summary>
        public override void Fail(Exception error) => _error = error;

        public TResult GetResult(short token)
        {
            try
            {
                return _core.GetResult(token);
            }
            finally
            {
                Recycle();
            }
        }

        public void Recycle()
        {
            _core.Reset();
            _apply = null!;
            _args = default!;
            _result = default!;
            _error = null;
            Pool.Enqueue(this);
        }

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}
