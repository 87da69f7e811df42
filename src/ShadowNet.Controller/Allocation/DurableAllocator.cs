using System.Runtime.InteropServices;
using System.Threading.Channels;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;
using ShadowNet.Controller.State;

namespace ShadowNet.Controller.Allocation;

public sealed record DurableAllocatorOptions
{
    /// <summary>Most operations committed in one transaction.</summary>
    public int MaxGroupSize { get; init; } = 4096;

    /// <summary>Operations waiting for the writer before callers are made to wait (back-pressure).</summary>
    public int QueueCapacity { get; init; } = 65_536;
}

/// <summary>
/// The allocator with its state on disk: one writer thread applies operations to the in-memory
/// <see cref="AddressAllocator"/> in arrival order and commits them in groups, and each caller's task
/// completes only after the group holding its operation is durable (group commit: one fsync for many
/// events, and nothing acknowledged that a crash could lose).
/// </summary>
/// <remarks>
/// While a group commits, new operations queue up and form the next group, so the group size follows
/// the load: one operation per commit when idle, thousands under a burst. A failed commit leaves memory
/// ahead of disk, so the allocator stops (every later call fails) and a restart reloads from the store.
/// </remarks>
public sealed class DurableAllocator : IAsyncDisposable
{
    private readonly AddressAllocator _allocator;
    private readonly IAllocationStore _store;
    private readonly DurableAllocatorOptions _options;
    private readonly Channel<Operation> _queue;
    private readonly List<LeaseChange> _changes = [];
    private readonly List<Operation> _group = [];
    private readonly Thread _writer;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _sequence;
    private volatile Exception? _fault;

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
        _writer = new Thread(WriterLoop) { IsBackground = true, Name = "shadownet-state-writer" };
    }

    /// <summary>Groups committed so far.</summary>
    public long Commits => Interlocked.Read(ref _commits);

    /// <summary>Operations acknowledged so far.</summary>
    public long Acknowledged => Interlocked.Read(ref _acknowledged);

    private long _commits;
    private long _acknowledged;

    public string StoreLocation => _store.Location;

    /// <summary>
    /// Loads the store, rebuilds the allocator and checks its invariants, then starts the writer. A store
    /// whose content cannot be right for these pools is a <see cref="StateStoreException"/> naming it.
    /// The allocator owns the store from here on and disposes it.
    /// </summary>
    public static DurableAllocator Open(IEnumerable<PoolDefinition> pools, IAllocationStore store, DurableAllocatorOptions? options = null, TimeProvider? time = null)
    {
        var allocator = new AddressAllocator(pools, time) { Changes = [] };
        try
        {
            allocator.Restore(store.LoadLeases());
        }
        catch (AllocationStateException e)
        {
            throw new StateStoreException($"state store '{store.Location}' does not match the configured pools: {e.Message}", e);
        }

        var durable = new DurableAllocator(allocator, store, options ?? new DurableAllocatorOptions());
        if (allocator.Changes.Count > 0)
        {
            // Quarantined addresses whose delay ran out while we were down: tidy them away before serving.
            store.Commit(CollectionsMarshal.AsSpan(allocator.Changes), ++durable._sequence);
        }

        allocator.Changes = durable._changes;
        durable._writer.Start();
        return durable;
    }

    public Task<ReserveResult> ReserveAsync(string application, IpFamily family, int count, CancellationToken cancellationToken = default) =>
        Submit(a => a.Reserve(application, family, count), cancellationToken);

    /// <summary>Reserves and reports the addresses reserved (for staging their routes).</summary>
    public Task<IReadOnlyList<Address>> ReserveAddressesAsync(string application, IpFamily family, int count, CancellationToken cancellationToken = default) =>
        Submit<IReadOnlyList<Address>>(a =>
        {
            var added = new List<Address>(count);
            a.Reserve(application, family, count, added);
            return added;
        }, cancellationToken);

    public Task<ReserveResult> ReserveForAsync(string application, string instance, IpFamily family, CancellationToken cancellationToken = default) =>
        Submit(a => a.ReserveFor(application, instance, family), cancellationToken);

    public Task<ClaimResult> ClaimAsync(string instance, string application, IpFamily family, CancellationToken cancellationToken = default) =>
        Submit(a => a.Claim(instance, application, family), cancellationToken);

    /// <summary>Releases an instance's address; the lease it had, or null when it had none.</summary>
    public Task<Lease?> ReleaseAsync(string instance, IpFamily family, CancellationToken cancellationToken = default) =>
        Submit(a => a.Release(instance, family, out var lease) ? lease : (Lease?)null, cancellationToken);

    public Task<bool> UnreserveAsync(string instance, IpFamily family, CancellationToken cancellationToken = default) =>
        Submit(a => a.Unreserve(instance, family), cancellationToken);

    public Task<IReadOnlyList<Address>> ShrinkAsync(string application, IpFamily family, int keep, CancellationToken cancellationToken = default) =>
        Submit<IReadOnlyList<Address>>(a =>
        {
            var removed = new List<Address>();
            a.Shrink(application, family, keep, removed);
            return removed;
        }, cancellationToken);

    /// <summary>
    /// Runs a read against the allocator on the writer thread, in order with the writes, so it sees every
    /// operation submitted before it; it completes once those are committed.
    /// </summary>
    public Task<T> ReadAsync<T>(Func<AddressAllocator, T> read, CancellationToken cancellationToken = default) =>
        Submit(read, cancellationToken);

    /// <summary>Stops taking operations, commits what is queued, and closes the store.</summary>
    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _stopped.Task;
        _store.Dispose();
    }

    private Task<T> Submit<T>(Func<AddressAllocator, T> apply, CancellationToken cancellationToken)
    {
        if (_fault is { } fault)
        {
            return Task.FromException<T>(Faulted(fault));
        }

        var operation = new Operation<T>(apply);
        if (!_queue.Writer.TryWrite(operation))
        {
            return SubmitSlowAsync(operation, cancellationToken);
        }

        return operation.Task;
    }

    private async Task<T> SubmitSlowAsync<T>(Operation<T> operation, CancellationToken cancellationToken)
    {
        try
        {
            await _queue.Writer.WriteAsync(operation, cancellationToken);
        }
        catch (ChannelClosedException)
        {
            throw new ObjectDisposedException(nameof(DurableAllocator), "the allocator is stopping");
        }

        return await operation.Task;
    }

    private void WriterLoop()
    {
        var reader = _queue.Reader;
        try
        {
            while (true)
            {
                if (!reader.TryPeek(out _) && !reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
                {
                    break;
                }

                while (_group.Count < _options.MaxGroupSize && reader.TryRead(out var operation))
                {
                    if (_fault is { } fault)
                    {
                        operation.Fail(Faulted(fault));
                        continue;
                    }

                    operation.Apply(_allocator);
                    _group.Add(operation);
                }

                CommitGroup();
            }
        }
        finally
        {
            _stopped.TrySetResult();
        }
    }

    private void CommitGroup()
    {
        if (_changes.Count > 0)
        {
            try
            {
                _store.Commit(CollectionsMarshal.AsSpan(_changes), _sequence + 1);
                _sequence++;
                Interlocked.Increment(ref _commits);
            }
            catch (Exception e)
            {
                _fault = e;
            }

            _changes.Clear();
        }

        foreach (var operation in _group)
        {
            if (_fault is { } fault)
            {
                operation.Fail(Faulted(fault));
            }
            else
            {
                operation.Complete();
            }
        }

        Interlocked.Add(ref _acknowledged, _fault is null ? _group.Count : 0);
        _group.Clear();
    }

    private StateStoreException Faulted(Exception cause) =>
        new($"state store '{_store.Location}' failed to commit; nothing since the last commit is acknowledged and the allocator has stopped (restart to reload): {cause.Message}", cause);

    private abstract class Operation
    {
        public abstract void Apply(AddressAllocator allocator);

        public abstract void Complete();

        public abstract void Fail(Exception error);
    }

    private sealed class Operation<T>(Func<AddressAllocator, T> apply) : Operation
    {
        private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;
        private Exception? _error;

        public Task<T> Task => _completion.Task;

        public override void Apply(AddressAllocator allocator)
        {
            try
            {
                _result = apply(allocator);
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
                _completion.TrySetException(_error);
            }
            else
            {
                _completion.TrySetResult(_result!);
            }
        }

        public override void Fail(Exception error) => _completion.TrySetException(error);
    }
}
