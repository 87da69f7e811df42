using ShadowNet.Addressing.Pools;

namespace ShadowNet.Addressing.Allocation;

/// <summary>
/// The free space of one pool: a <see cref="BlockBitmap"/> per usable range, and the released addresses
/// waiting out the reuse delay. Single-threaded; <see cref="AddressAllocator"/> owns it.
/// </summary>
internal sealed class AddressPool
{
    private AddressRange[] _ranges;
    private BlockBitmap[] _blocks;
    private readonly long _reuseDelayMs;
    private readonly RingDeque<Quarantined> _quarantine;
    private int _firstBlockWithFree;

    /// <param name="definition">The pool.</param>
    /// <param name="expectedLeases">Leases the allocator is sized for (0: not said): a pool with a reuse delay may have that many cooling.</param>
    public AddressPool(PoolDefinition definition, int expectedLeases = 0)
    {
        Definition = definition;
        _ranges = [.. definition.UsableRanges()];
        _blocks = [.. _ranges.Select(BlockFor)];

        _reuseDelayMs = (long)definition.ReuseDelay.TotalMilliseconds;
        // Sized for a busy reuse delay up front: growing it later copies it on the large object heap.
        var cooling = _reuseDelayMs > 0 ? Math.Max(1 << 14, expectedLeases) : 1 << 14;
        _quarantine = new RingDeque<Quarantined>((int)Math.Min(Size, (ulong)cooling));
    }

    public PoolDefinition Definition { get; private set; }

    public string Name => Definition.Name;

    public IpFamily Family => Definition.Family;

    public long ReuseDelayMs => _reuseDelayMs;

    /// <summary>Addresses this pool can hand out (tracked part of each range).</summary>
    public ulong Size
    {
        get
        {
            ulong size = 0;
            foreach (var block in _blocks)
            {
                size += block.Size;
            }

            return size;
        }
    }

    /// <summary>Addresses taken: reserved, assigned or waiting out the reuse delay.</summary>
    public ulong Used
    {
        get
        {
            ulong used = 0;
            foreach (var block in _blocks)
            {
                used += block.Used;
            }

            return used;
        }
    }

    public int QuarantineCount => _quarantine.Count;

    /// <summary>Released addresses the reuse-delay queue holds before it grows.</summary>
    public int QuarantineCapacity => _quarantine.Capacity;

    // Lease counts by state, kept by the allocator so that usage reads are O(1).
    public int ReservedCount { get; set; }

    public int AssignedCount { get; set; }

    public int QuarantinedCount { get; set; }

    public int CreatedChunks => _blocks.Sum(b => b.CreatedChunks);

    /// <summary>
    /// Takes the ranges <paramref name="grown"/> adds (<see cref="PoolDefinition.AddedBy"/>), all free; the
    /// ranges it had keep what they hold.
    /// </summary>
    public void Grow(PoolDefinition grown, IReadOnlyList<AddressRange> added)
    {
        var ranges = _ranges.Zip(_blocks, (range, block) => (Range: range, Block: block))
            .Concat(added.Select(range => (Range: range, Block: BlockFor(range))))
            .OrderBy(pair => pair.Range.First)
            .ToList();
        _ranges = [.. ranges.Select(pair => pair.Range)];
        _blocks = [.. ranges.Select(pair => pair.Block)];
        _firstBlockWithFree = 0;
        Definition = grown;
    }

    /// <summary>Takes the lowest free address, after returning the quarantined ones whose delay is over.</summary>
    public bool TryTake(long nowMs, out Address address, Func<Address, bool>? onQuarantineOver = null)
    {
        ReleaseExpired(nowMs, onQuarantineOver);
        for (var i = _firstBlockWithFree; i < _blocks.Length; i++)
        {
            if (_blocks[i].TryTake(out var offset))
            {
                _firstBlockWithFree = i;
                address = new Address(_ranges[i].First.Value + offset, Family);
                return true;
            }
        }

        _firstBlockWithFree = _blocks.Length;
        address = default;
        return false;
    }

    /// <summary>Gives an address back at once (a reservation that never carried traffic).</summary>
    public bool Return(Address address)
    {
        if (!TryLocate(address, out var block, out var offset) || !_blocks[block].Return(offset))
        {
            return false;
        }

        _firstBlockWithFree = Math.Min(_firstBlockWithFree, block);
        return true;
    }

    /// <summary>Gives an address back after the reuse delay; with no delay, at once.</summary>
    public bool Quarantine(Address address, long releasedAtMs)
    {
        if (_reuseDelayMs <= 0)
        {
            return Return(address);
        }

        if (!TryLocate(address, out _, out _))
        {
            return false;
        }

        // Entries arrive in release order and share one delay, so the ring stays sorted by ready time
        // (on restore the caller replays them sorted). A wall clock stepping back only makes one wait longer.
        _quarantine.AddLast(new Quarantined(address, releasedAtMs + _reuseDelayMs));
        return true;
    }

    /// <summary>Marks an address taken when rebuilding from the store; false if outside the pool or already taken.</summary>
    public bool TakeAt(Address address) => TryLocate(address, out var block, out var offset) && _blocks[block].TakeAt(offset);

    public bool IsFree(Address address) => TryLocate(address, out var block, out var offset) && _blocks[block].IsFree(offset);

    public bool Contains(Address address) => TryLocate(address, out _, out _);

    /// <summary>Time at which the oldest quarantined address becomes free, if any wait.</summary>
    public bool TryPeekQuarantine(out Address address, out long readyAtMs)
    {
        if (_quarantine.Count == 0)
        {
            address = default;
            readyAtMs = 0;
            return false;
        }

        var head = _quarantine.First;
        address = head.Address;
        readyAtMs = head.ReadyAtMs;
        return true;
    }

    /// <summary>
    /// Ends the reuse delays that are over. <paramref name="keep"/> sees each address first: true keeps it
    /// taken (the allocator gave it straight back to its application), false frees it.
    /// </summary>
    public void ReleaseExpired(long nowMs, Func<Address, bool>? keep)
    {
        while (_quarantine.Count > 0 && _quarantine.First.ReadyAtMs <= nowMs)
        {
            _quarantine.TryTakeFirst(out var entry);
            if (keep?.Invoke(entry.Address) != true)
            {
                Return(entry.Address);
            }
        }
    }

    /// <summary>A range's free space; a range past <see cref="BlockBitmap.MaxTracked"/> addresses is tracked up to that many.</summary>
    private static BlockBitmap BlockFor(AddressRange range) =>
        new(range.Count > BlockBitmap.MaxTracked ? BlockBitmap.MaxTracked : (ulong)range.Count);

    /// <summary>Finds the block and offset of an address, by binary search over the sorted ranges.</summary>
    private bool TryLocate(Address address, out int block, out ulong offset)
    {
        block = -1;
        offset = 0;
        if (address.Family != Family)
        {
            return false;
        }

        int low = 0, high = _ranges.Length - 1;
        while (low <= high)
        {
            var mid = (low + high) >>> 1;
            var range = _ranges[mid];
            if (address.Value < range.First.Value)
            {
                high = mid - 1;
            }
            else if (address.Value > range.Last.Value)
            {
                low = mid + 1;
            }
            else
            {
                var delta = address.Value - range.First.Value;
                if (delta >= _blocks[mid].Size)
                {
                    return false;
                }

                block = mid;
                offset = (ulong)delta;
                return true;
            }
        }

        return false;
    }

    private readonly record struct Quarantined(Address Address, long ReadyAtMs);
}
