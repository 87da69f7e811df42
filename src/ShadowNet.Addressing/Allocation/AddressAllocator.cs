using System.Runtime.InteropServices;
using ShadowNet.Addressing.Pools;

namespace ShadowNet.Addressing.Allocation;

/// <summary>
/// The Shadow Network Allocator's address book: pre-allocations (reservations) per application, claims by
/// instances (a hit takes a reservation, a miss falls back to a dynamic pool), releases with a reuse
/// delay, and the lookups the route manager and the API need.
/// </summary>
/// <remarks>
/// Single-threaded by design: one writer (the durable allocator's commit loop) calls it, so no locks sit
/// on the hot path. Every mutation is appended to <see cref="Changes"/> when it is set, in order; that
/// list is what the state store writes. A claim, a release and their lookups allocate nothing once the
/// tables have grown to their working size.
/// </remarks>
public sealed class AddressAllocator
{
    private AddressPool[] _pools;
    private readonly int _expectedLeases;
    private readonly Dictionary<string, AddressPool> _poolsByName = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    /// <summary>
    /// Lease tables start at this size (or the pools' size, if smaller) unless told how many leases to
    /// expect: growing a large table rehashes it and allocates its new arrays on the large object heap, a
    /// pause of milliseconds in the middle of the creates that made it grow.
    /// </summary>
    public const int InitialLeaseCapacity = 1 << 16;

    /// <summary>Most leases the tables can be sized for up front (<c>expectedLeases</c>).</summary>
    public const int MaxExpectedLeases = 1 << 24;

    private const int NoName = -1;

    // The lease table and the instance indexes hold no object per lease: names live in _names, pools and
    // applications are referenced (they live as long as the allocator). A gen0 collection has nothing new
    // to trace in them however many creates came since the last one (see InstanceNames).
    private readonly InstanceNames _names;
    private readonly Dictionary<Address, Row> _leases;
    private readonly Dictionary<InstanceKey, Address> _assigned;
    private readonly Dictionary<InstanceKey, Address> _reservedForInstance;
    private readonly Dictionary<InstanceKey, Address>.AlternateLookup<InstanceLookup> _assignedByName;
    private readonly Dictionary<InstanceKey, Address>.AlternateLookup<InstanceLookup> _reservedByName;
    private readonly Dictionary<string, ApplicationBook> _applications = new(StringComparer.Ordinal);
    private readonly Func<Address, bool> _onQuarantineOver;
    private readonly bool _coarseClock;
    private readonly long _startMs;
    private readonly long _startTick;

    /// <param name="pools">The pools; names unique, prefixes not overlapping.</param>
    /// <param name="time">The clock for reuse delays; the system's by default.</param>
    /// <param name="expectedLeases">
    /// Leases (reserved, assigned and cooling) to size the tables for at once, at about 300 bytes each, so
    /// that they never grow while serving below it; 0: <see cref="InitialLeaseCapacity"/>. Never more than
    /// the pools hold.
    /// </param>
    public AddressAllocator(IEnumerable<PoolDefinition> pools, TimeProvider? time = null, int expectedLeases = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(expectedLeases);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(expectedLeases, MaxExpectedLeases);
        _time = time ?? TimeProvider.System;
        _coarseClock = ReferenceEquals(_time, TimeProvider.System);
        _startMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
        _startTick = Environment.TickCount64;
        _expectedLeases = expectedLeases;
        _pools = [];
        foreach (var definition in pools)
        {
            _pools = [.. _pools, NewPool(definition)];
        }

        var wanted = expectedLeases > 0 ? expectedLeases : InitialLeaseCapacity;
        var capacity = (int)Math.Min((ulong)wanted, _pools.Aggregate(0UL, (sum, p) => sum + Math.Min(p.Size, (ulong)wanted)));
        SizedForLeases = capacity;
        _names = new InstanceNames(capacity);
        var byName = new InstanceKeyComparer(_names);
        _leases = new Dictionary<Address, Row>(capacity);
        TouchEveryPage(_leases, capacity);
        _assigned = new Dictionary<InstanceKey, Address>(capacity, byName);
        _reservedForInstance = new Dictionary<InstanceKey, Address>(byName);
        _assignedByName = _assigned.GetAlternateLookup<InstanceLookup>();
        _reservedByName = _reservedForInstance.GetAlternateLookup<InstanceLookup>();
        _onQuarantineOver = OnQuarantineOver;
    }

    /// <summary>
    /// Writes the lease table's whole storage once, so that its pages are the process's own before the
    /// first create (about 100 ms for 262,144 leases). Left to the creates, the new leases' entries,
    /// appended in order, kept meeting untouched pages: a page fault each, with a TLB shootdown that
    /// interrupts the other CPUs, 2.3% of the daemon's CPU in the closed loop (0.4% after; bench/RESULTS.md, stop 24).
    /// </summary>
    private static void TouchEveryPage(Dictionary<Address, Row> table, int count)
    {
        for (var i = 0; i < count; i++)
        {
            table.Add(Address.IPv6((UInt128)i), default);
        }

        table.Clear(); // clears in place: the storage stays, written
    }

    /// <summary>When set, every change is appended here in order (the durable layer drains it).</summary>
    public ChangeLog? Changes { get; set; }

    public int LeaseCount => _leases.Count;

    /// <summary>Leases the tables were sized for at construction; above it they grow while serving.</summary>
    public int SizedForLeases { get; }

    /// <summary>Leases the lease table holds before it grows (and rehashes).</summary>
    internal int LeaseTableCapacity => _leases.EnsureCapacity(0);

    /// <summary>Released addresses a pool's reuse-delay queue holds before it grows.</summary>
    internal int CoolingCapacity(string pool) => _poolsByName[pool].QuarantineCapacity;

    public IEnumerable<PoolDefinition> Pools => _pools.Select(p => p.Definition);

    /// <summary>
    /// A pool for <paramref name="definition"/>, checked against itself and the pools there are (a name
    /// used twice, prefixes that overlap); registered by name, not yet in <see cref="_pools"/>.
    /// </summary>
    private AddressPool NewPool(PoolDefinition definition)
    {
        definition.Validate();
        if (_poolsByName.ContainsKey(definition.Name))
        {
            throw new PoolConfigurationException($"pool '{definition.Name}' is defined twice");
        }

        foreach (var other in _pools)
        {
            foreach (var a in definition.Prefixes)
            {
                foreach (var b in other.Definition.Prefixes)
                {
                    if (PoolDefinition.Overlaps(AddressRange.Of(a), AddressRange.Of(b)))
                    {
                        throw new PoolConfigurationException($"pool '{definition.Name}': prefix {a} overlaps {b} of pool '{other.Name}'");
                    }
                }
            }
        }

        var pool = new AddressPool(definition, _expectedLeases);
        _poolsByName.Add(definition.Name, pool);
        return pool;
    }

    /// <summary>
    /// Adds a pool while serving (after the others: an application's dedicated pools still come before the
    /// shared ones, each in configuration order). Every application sees it from its next operation.
    /// </summary>
    public void AddPool(PoolDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        _pools = [.. _pools, NewPool(definition)];
        foreach (var book in _applications.Values)
        {
            book.Choose(_pools);
        }
    }

    /// <summary>
    /// Adds to a pool while serving what <paramref name="grown"/> adds to it (new prefixes: see
    /// <see cref="PoolDefinition.AddedBy"/>); the addresses it holds stay as they are. Returns how many
    /// addresses it can hand out now that it could not before.
    /// </summary>
    public ulong GrowPool(PoolDefinition grown)
    {
        ArgumentNullException.ThrowIfNull(grown);
        if (!_poolsByName.TryGetValue(grown.Name, out var pool))
        {
            throw new PoolConfigurationException($"pool '{grown.Name}' is not one of this allocator's; a new pool takes a restart");
        }

        var added = pool.Definition.AddedBy(grown);
        foreach (var other in _pools.Where(p => p != pool))
        {
            foreach (var range in added)
            {
                foreach (var prefix in other.Definition.Prefixes)
                {
                    if (PoolDefinition.Overlaps(range, AddressRange.Of(prefix)))
                    {
                        throw new PoolConfigurationException($"pool '{grown.Name}': addresses {range.First}-{range.Last} overlap {prefix} of pool '{other.Name}'");
                    }
                }
            }
        }

        var before = pool.Size;
        pool.Grow(grown, added);
        return pool.Size - before;
    }

    /// <summary>
    /// Pre-allocates <paramref name="count"/> addresses for an application from its shadow pools.
    /// Reserves what it can; the status is <see cref="ReserveStatus.Exhausted"/> when that is fewer.
    /// </summary>
    public ReserveResult Reserve(string application, IpFamily family, int count, ICollection<Address>? added = null)
    {
        if (string.IsNullOrEmpty(application) || count < 0)
        {
            return new ReserveResult(ReserveStatus.Invalid, 0, default);
        }

        var book = GetBook(application);
        var now = NowMs();
        Address first = default;
        var unnamed = book.Unnamed(family).Count;
        foreach (var pool in book.Shadow(family))
        {
            pool.ReleaseExpired(now, _onQuarantineOver);
        }

        // Addresses the application released and got back when their reuse delay ended (see SetDemand)
        // count towards the request; they are in Rereserved, not in added.
        var reserved = Math.Min(count, book.Unnamed(family).Count - unnamed);
        while (reserved < count && TryTakeFrom(book.Shadow(family), now, out var address, out var pool))
        {
            Put(new Row(address, pool, book, LeaseState.Reserved, NoName, false, now, null), instance: null);
            book.Unnamed(family).AddLast(address);
            added?.Add(address);
            if (reserved++ == 0)
            {
                first = address;
            }
        }

        return new ReserveResult(reserved == count ? ReserveStatus.Reserved : ReserveStatus.Exhausted, reserved, first);
    }

    /// <summary>
    /// Pre-allocates one address for an instance the orchestrator has already named; a claim by that
    /// instance takes exactly this address.
    /// </summary>
    public ReserveResult ReserveFor(string application, string instance, IpFamily family)
    {
        if (string.IsNullOrEmpty(application) || !IsValidName(instance))
        {
            return new ReserveResult(ReserveStatus.Invalid, 0, default);
        }

        var lookup = new InstanceLookup(instance, family);
        if (_assignedByName.TryGetValue(lookup, out var existing) || _reservedByName.TryGetValue(lookup, out existing))
        {
            return _leases[existing].Book.Name == application
                ? new ReserveResult(ReserveStatus.Existing, 1, existing)
                : new ReserveResult(ReserveStatus.Conflict, 0, existing);
        }

        var book = GetBook(application);
        var now = NowMs();
        if (!TryTakeFrom(book.Shadow(family), now, out var address, out var pool))
        {
            return new ReserveResult(ReserveStatus.Exhausted, 0, default);
        }

        var name = _names.Add(instance, lookup.Hash);
        Put(new Row(address, pool, book, LeaseState.Reserved, name, false, now, null), instance);
        _reservedForInstance.Add(new InstanceKey(name, family), address);
        book.Counts(family).ReservedForNamed++;
        return new ReserveResult(ReserveStatus.Reserved, 1, address);
    }

    /// <summary>
    /// Gives an instance its address: the reservation that names it, else the application's oldest
    /// reservation (a hit), else a dynamic pool (a miss). Idempotent for the same instance.
    /// </summary>
    public ClaimResult Claim(string instance, string application, IpFamily family, Address? host = null) =>
        Claim(instance, instance, application, family, host);

    /// <summary>
    /// <see cref="Claim(string, string, IpFamily, Address?)"/> with the name as characters: no string is
    /// made; the change recorded for the store carries the characters (<see cref="LeaseChange.Name"/>).
    /// </summary>
    public ClaimResult Claim(ReadOnlySpan<char> instance, string application, IpFamily family, Address? host = null) =>
        Claim(instance, null, application, family, host);

    /// <summary>A release by characters; <paramref name="released"/> then has no <c>Instance</c> string.</summary>
    public bool Release(ReadOnlySpan<char> instance, IpFamily family, out Lease released) => Release(instance, null, family, out released);

    /// <summary>Releases an instance's address of one family; it waits out the pool's reuse delay.</summary>
    public bool Release(string instance, IpFamily family, out Lease released) => Release(instance, instance, family, out released);

    /// <param name="instance">The name.</param>
    /// <param name="instanceString">The same name as a string, when the caller has one (else the change log
    /// carries the characters).</param>
    private ClaimResult Claim(ReadOnlySpan<char> instance, string? instanceString, string application, IpFamily family, Address? host)
    {
        if (!IsValidName(instance) || string.IsNullOrEmpty(application))
        {
            return new ClaimResult(ClaimStatus.Invalid, default, false);
        }

        var lookup = new InstanceLookup(instance, family);
        if (_assignedByName.TryGetValue(lookup, out var existing))
        {
            var lease = _leases[existing];
            return lease.Book.Name == application
                ? new ClaimResult(ClaimStatus.Existing, existing, lease.Preallocated)
                : new ClaimResult(ClaimStatus.Conflict, existing, lease.Preallocated);
        }

        var book = GetBook(application);
        var now = NowMs();
        if (_reservedForInstance.Count > 0 && _reservedByName.TryGetValue(lookup, out var key, out var named) && _leases[named].Book == book)
        {
            // The reservation's name is the instance's: its arena slot carries over to the assignment.
            _reservedForInstance.Remove(key);
            book.Counts(family).ReservedForNamed--;
            Assign(named, instanceString, key.Name, book, preallocated: true, now, host);
            return new ClaimResult(ClaimStatus.Hit, named, true);
        }

        if (book.Unnamed(family).TryTakeFirst(out var reserved))
        {
            Assign(reserved, instanceString, _names.Add(instance, lookup.Hash), book, preallocated: true, now, host);
            return new ClaimResult(ClaimStatus.Hit, reserved, true);
        }

        var dynamic = book.Dynamic(family);
        if (dynamic.Length == 0 && book.Shadow(family).Length == 0)
        {
            return new ClaimResult(ClaimStatus.Invalid, default, false);
        }

        if (!TryTakeFrom(dynamic, now, out var address, out var pool))
        {
            return new ClaimResult(ClaimStatus.Exhausted, default, false);
        }

        var name = _names.Add(instance, lookup.Hash);
        Put(new Row(address, pool, book, LeaseState.Assigned, name, false, now, host), instanceString);
        _assigned.Add(new InstanceKey(name, family), address);
        book.Counts(family).Assigned++;
        return new ClaimResult(ClaimStatus.Miss, address, false);
    }

    private bool Release(ReadOnlySpan<char> instance, string? instanceString, IpFamily family, out Lease released)
    {
        if (!_assignedByName.Remove(new InstanceLookup(instance, family), out _, out var address))
        {
            released = default;
            return false;
        }

        var row = _leases[address];
        var pool = row.Pool;
        row.Book.Counts(family).Assigned--;
        pool.AssignedCount--;
        var now = NowMs();
        if (pool.ReuseDelayMs > 0)
        {
            // The quarantined lease keeps its name (the instance that last used it) until it is dropped.
            row = row with { State = LeaseState.Quarantined, SinceMs = now };
            _leases[address] = row;
            pool.QuarantinedCount++;
            pool.Quarantine(address, now);
            released = LeaseOf(row, instanceString);
            Changes?.Add(released, removed: false, NameToLog(row, released));
        }
        else
        {
            released = LeaseOf(row, instanceString);
            Changes?.Add(released, removed: true, NameToLog(row, released));
            _leases.Remove(address);
            _names.Free(row.Instance);
            pool.Return(address);
        }

        return true;
    }

    /// <summary>Cancels the reservation made for a named instance that never came.</summary>
    public bool Unreserve(string instance, IpFamily family)
    {
        if (!_reservedByName.Remove(new InstanceLookup(instance, family), out _, out var address))
        {
            return false;
        }

        var row = _leases[address];
        row.Book.Counts(family).ReservedForNamed--;
        Drop(row, instance);
        return true;
    }

    /// <summary>
    /// Drops an application's newest unnamed reservations until <paramref name="keep"/> remain (the
    /// forecast fell). They never carried traffic, so they are free at once. Returns how many went.
    /// </summary>
    public int Shrink(string application, IpFamily family, int keep, ICollection<Address>? removed = null)
    {
        if (!_applications.TryGetValue(application ?? string.Empty, out var book))
        {
            return 0;
        }

        var unnamed = book.Unnamed(family);
        var count = 0;
        while (unnamed.Count > Math.Max(keep, 0) && unnamed.TryTakeLast(out var address))
        {
            Drop(_leases[address], instance: null);
            removed?.Add(address);
            count++;
        }

        return count;
    }

    /// <summary>
    /// Addresses that went back to their application's reservations when their reuse delay ended (see
    /// <see cref="SetDemand"/>); each is also a lease change. The caller drains the list.
    /// </summary>
    public List<Address> Rereserved { get; } = [];

    /// <summary>
    /// How many unnamed reservations an application's forecast wants now (the planner says so each step;
    /// not stored: after a restart it is 0 until the first step). While an application holds fewer, an
    /// address it released from a shadow pool goes back to its reservations when the reuse delay ends,
    /// instead of to the free pool: the application keeps its addresses (and its aggregate) through churn.
    /// </summary>
    public void SetDemand(string application, IpFamily family, int reservations)
    {
        if (!string.IsNullOrEmpty(application))
        {
            GetBook(application).Counts(family).Demand = Math.Max(0, reservations);
        }
    }

    /// <summary>Ends every reuse delay that is over, in all pools (frees the address or gives it back to its application).</summary>
    public void ExpireQuarantine()
    {
        var now = NowMs();
        foreach (var pool in _pools)
        {
            pool.ReleaseExpired(now, _onQuarantineOver);
        }
    }

    public bool TryGetByInstance(string instance, IpFamily family, out Lease lease)
    {
        if (_assignedByName.TryGetValue(new InstanceLookup(instance, family), out var address))
        {
            lease = LeaseOf(_leases[address], instance);
            return true;
        }

        lease = default;
        return false;
    }

    /// <summary>Allocates the instance's name as a string, when the lease has one.</summary>
    public bool TryGetByAddress(Address address, out Lease lease)
    {
        var found = _leases.TryGetValue(address, out var row);
        lease = found ? WithName(row) : default;
        return found;
    }

    public ApplicationUsage GetUsage(string application, IpFamily family)
    {
        if (!_applications.TryGetValue(application, out var book))
        {
            return default;
        }

        var counts = book.Counts(family);
        return new ApplicationUsage(book.Unnamed(family).Count, counts.ReservedForNamed, counts.Assigned);
    }

    /// <summary>Every lease, in no particular order (for listing; allocates).</summary>
    public IEnumerable<Lease> Leases => _leases.Values.Select(row => WithName(row));

    public IEnumerable<Lease> LeasesOf(string application) => _leases.Values.Where(row => row.Book.Name == application).Select(row => WithName(row));

    public int PoolCount => _pools.Length;

    /// <summary>A new array (for tests and listing).</summary>
    public IReadOnlyList<PoolUsage> PoolUsages()
    {
        var usages = new PoolUsage[_pools.Length];
        WritePoolUsages(usages);
        return usages;
    }

    /// <summary>Writes each pool's usage, in configuration order, into <paramref name="usages"/> (<see cref="PoolCount"/> long).</summary>
    public void WritePoolUsages(Span<PoolUsage> usages)
    {
        for (var i = 0; i < _pools.Length; i++)
        {
            var p = _pools[i];
            usages[i] = new PoolUsage(p.Name, p.Definition.Kind, p.Family, p.Size, p.Used, p.ReservedCount, p.AssignedCount, p.QuarantinedCount);
        }
    }

    /// <summary>
    /// Rebuilds the book from a store's leases. Anything that cannot be true (an address outside its
    /// pool, taken twice, an instance holding two addresses of a family) is an
    /// <see cref="AllocationStateException"/> naming the lease: a wrong store is never silently mended.
    /// </summary>
    public void Restore(IEnumerable<Lease> leases)
    {
        if (_leases.Count != 0)
        {
            throw new InvalidOperationException("Restore needs an empty allocator.");
        }

        var now = NowMs();
        var ordered = leases.OrderBy(l => l.SinceMs).ThenBy(l => l.Address).ToList();
        foreach (var lease in ordered)
        {
            if (!_poolsByName.TryGetValue(lease.Pool ?? string.Empty, out var pool))
            {
                throw new AllocationStateException($"lease {lease.Address} refers to pool '{lease.Pool}', which is not configured");
            }

            if (lease.State is not (LeaseState.Reserved or LeaseState.Assigned or LeaseState.Quarantined))
            {
                throw new AllocationStateException($"lease {lease.Address} has unknown state {(int)lease.State}");
            }

            if (string.IsNullOrEmpty(lease.Application) || (lease.State == LeaseState.Assigned && string.IsNullOrEmpty(lease.Instance)))
            {
                throw new AllocationStateException($"lease {lease.Address} ({lease.State}) has no application or instance");
            }

            if (lease.Instance is not null && !IsValidName(lease.Instance))
            {
                throw new AllocationStateException($"lease {lease.Address} names an instance of {lease.Instance.Length} characters (1 to {InstanceNames.MaxLength})");
            }

            if (lease.State == LeaseState.Quarantined && lease.SinceMs + pool.ReuseDelayMs <= now)
            {
                Changes?.Add(new LeaseChange(lease, true));
                continue;
            }

            if (!pool.TakeAt(lease.Address))
            {
                throw new AllocationStateException(pool.Contains(lease.Address)
                    ? $"address {lease.Address} appears in two leases"
                    : $"lease {lease.Address} lies outside the usable ranges of pool '{pool.Name}'");
            }

            var family = lease.Address.Family;
            var book = GetBook(lease.Application);
            var name = lease.Instance is null ? NoName : _names.Add(lease.Instance, InstanceNames.HashOf(lease.Instance));
            switch (lease.State)
            {
                case LeaseState.Assigned:
                    if (!_assigned.TryAdd(new InstanceKey(name, family), lease.Address))
                    {
                        throw new AllocationStateException($"instance '{lease.Instance}' holds two {family} addresses ({lease.Address} and {_assignedByName[new InstanceLookup(lease.Instance, family)]})");
                    }

                    book.Counts(family).Assigned++;
                    break;
                case LeaseState.Reserved when lease.Instance is not null:
                    if (!_reservedForInstance.TryAdd(new InstanceKey(name, family), lease.Address))
                    {
                        throw new AllocationStateException($"instance '{lease.Instance}' has two {family} reservations");
                    }

                    book.Counts(family).ReservedForNamed++;
                    break;
                case LeaseState.Reserved:
                    book.Unnamed(family).AddLast(lease.Address);
                    break;
                case LeaseState.Quarantined:
                    pool.Quarantine(lease.Address, lease.SinceMs);
                    break;
            }

            _leases.Add(lease.Address, new Row(lease.Address, pool, book, lease.State, name, lease.Preallocated, lease.SinceMs, lease.Host));
            Count(pool, lease.State, +1);
        }

        var violations = CheckInvariants();
        if (violations.Count > 0)
        {
            throw new AllocationStateException(string.Join("; ", violations.Take(5)));
        }
    }

    /// <summary>
    /// Checks that the indexes, the bitmaps and the counters agree with the lease table. Empty when all
    /// holds. O(leases); for start-up and tests, not the hot path.
    /// </summary>
    public IReadOnlyList<string> CheckInvariants()
    {
        var violations = new List<string>();
        var perPool = _pools.ToDictionary(p => p.Name, _ => new int[4], StringComparer.Ordinal);
        var named = 0;
        foreach (var (address, row) in _leases)
        {
            var lease = WithName(row);
            if (lease.Address != address)
            {
                violations.Add($"lease keyed {address} names {lease.Address}");
            }

            var pool = row.Pool;
            if (!_poolsByName.TryGetValue(pool.Name, out var configured) || configured != pool || !pool.Contains(address))
            {
                violations.Add($"{address} is outside pool '{lease.Pool}'");
                continue;
            }

            if (pool.IsFree(address))
            {
                violations.Add($"{address} is leased ({lease.State}) but free in the bitmap");
            }

            perPool[pool.Name][(int)lease.State]++;
            named += row.Instance == NoName ? 0 : 1;
            var key = new InstanceKey(row.Instance, address.Family);
            switch (lease.State)
            {
                case LeaseState.Assigned when row.Instance == NoName || !_assigned.TryGetValue(key, out var a) || a != address:
                    violations.Add($"{address} is assigned to '{lease.Instance}' but the instance index disagrees");
                    break;
                case LeaseState.Reserved when row.Instance != NoName && (!_reservedForInstance.TryGetValue(key, out var r) || r != address):
                    violations.Add($"{address} is reserved for '{lease.Instance}' but the reservation index disagrees");
                    break;
            }
        }

        // An index key shares its lease's name slot; a slot no lease holds is a leak.
        if (_names.Count != named)
        {
            violations.Add($"{_names.Count} instance names held but {named} leases name one");
        }

        foreach (var (key, address) in _assigned)
        {
            if (!_leases.TryGetValue(address, out var row) || row.State != LeaseState.Assigned || row.Instance != key.Name)
            {
                violations.Add($"instance '{_names.ToString(key.Name)}' points at {address}, which is not assigned to it");
            }
        }

        foreach (var (key, address) in _reservedForInstance)
        {
            if (!_leases.TryGetValue(address, out var row) || row.State != LeaseState.Reserved || row.Instance != key.Name)
            {
                violations.Add($"named reservation '{_names.ToString(key.Name)}' points at {address}, which is not reserved for it");
            }
        }

        var unnamedTotal = 0;
        foreach (var (application, book) in _applications)
        {
            foreach (var family in (ReadOnlySpan<IpFamily>)[IpFamily.IPv4, IpFamily.IPv6])
            {
                foreach (var address in book.Unnamed(family).Items())
                {
                    unnamedTotal++;
                    if (!_leases.TryGetValue(address, out var row) || row.State != LeaseState.Reserved || row.Book != book || row.Instance != NoName)
                    {
                        violations.Add($"{address} is queued as a reservation of '{application}' but its lease says otherwise");
                    }
                }
            }
        }

        var unnamedLeases = _leases.Values.Count(row => row.State == LeaseState.Reserved && row.Instance == NoName);
        if (unnamedTotal != unnamedLeases)
        {
            violations.Add($"{unnamedLeases} unnamed reservations in the table but {unnamedTotal} queued");
        }

        foreach (var pool in _pools)
        {
            var counts = perPool[pool.Name];
            var leased = (ulong)(counts[1] + counts[2] + counts[3]);
            if (pool.Used != leased)
            {
                violations.Add($"pool '{pool.Name}': bitmap has {pool.Used} taken, lease table {leased}");
            }

            if (pool.ReservedCount != counts[1] || pool.AssignedCount != counts[2] || pool.QuarantinedCount != counts[3])
            {
                violations.Add($"pool '{pool.Name}': counters {pool.ReservedCount}/{pool.AssignedCount}/{pool.QuarantinedCount} but table {counts[1]}/{counts[2]}/{counts[3]}");
            }

            if (pool.QuarantineCount != counts[3])
            {
                violations.Add($"pool '{pool.Name}': {pool.QuarantineCount} waiting in quarantine but {counts[3]} quarantined leases");
            }
        }

        return violations;
    }

    /// <summary>
    /// Wall-clock milliseconds (leases are stored with it). With the system clock, derived from the coarse
    /// monotonic tick count: reading the precise clock cost about 30 ns here, a fifth of a claim, and
    /// millisecond resolution is all a lease needs; a stepped wall clock also cannot shorten a reuse delay.
    /// </summary>
    private long NowMs() => _coarseClock
        ? _startMs + (Environment.TickCount64 - _startTick)
        : _time.GetUtcNow().ToUnixTimeMilliseconds();

    private bool TryTakeFrom(AddressPool[] pools, long now, out Address address, out AddressPool pool)
    {
        foreach (var candidate in pools)
        {
            if (candidate.TryTake(now, out address, _onQuarantineOver))
            {
                pool = candidate;
                return true;
            }
        }

        address = default;
        pool = null!;
        return false;
    }

    /// <summary>A reservation becomes the instance's: <paramref name="name"/> is its name, already in the arena.</summary>
    private void Assign(Address address, string? instance, int name, ApplicationBook book, bool preallocated, long now, Address? host)
    {
        ref var row = ref CollectionsMarshal.GetValueRefOrNullRef(_leases, address);
        row.Pool.ReservedCount--;
        row.Pool.AssignedCount++;
        row = row with { State = LeaseState.Assigned, Book = book, Instance = name, Preallocated = preallocated, SinceMs = now, Host = host };
        _assigned.Add(new InstanceKey(name, address.Family), address);
        book.Counts(address.Family).Assigned++;
        Record(row, removed: false, instance);
    }

    /// <summary><paramref name="instance"/>: the row's name as a string, if the caller has it (saves a copy).</summary>
    private void Put(Row row, string? instance)
    {
        _leases.Add(row.Address, row);
        Count(row.Pool, row.State, +1);
        Record(row, removed: false, instance);
    }

    /// <summary>Removes a reservation and frees its address (and name) at once.</summary>
    private void Drop(Row row, string? instance)
    {
        Record(row, removed: true, instance);
        _leases.Remove(row.Address);
        FreeName(row);
        row.Pool.Return(row.Address);
        Count(row.Pool, row.State, -1);
    }

    /// <summary>
    /// Appends the change for the store, before the row's name may be freed. With no string for the name
    /// (<paramref name="instance"/> null), the log copies its characters from the arena: no string is made.
    /// </summary>
    private void Record(in Row row, bool removed, string? instance)
    {
        if (Changes is { } changes)
        {
            var lease = LeaseOf(row, instance);
            changes.Add(lease, removed, NameToLog(row, lease));
        }
    }

    /// <summary>The characters the change log copies: the row's name when the lease carries no string for it.</summary>
    private ReadOnlySpan<char> NameToLog(in Row row, in Lease lease) =>
        lease.Instance is null && row.Instance != NoName ? _names[row.Instance] : default;

    private void FreeName(in Row row)
    {
        if (row.Instance != NoName)
        {
            _names.Free(row.Instance);
        }
    }

    /// <summary>The row as the public lease, with <paramref name="instance"/> as its name (null: none given).</summary>
    private static Lease LeaseOf(in Row row, string? instance) => new(
        row.Address, row.Pool.Name, row.State, row.Book.Name, row.Instance == NoName ? null : instance,
        row.Preallocated, row.SinceMs, row.Host);

    /// <summary>The row as a lease with its name as a new string (listing and lookups, not the hot path).</summary>
    private Lease WithName(in Row row) => LeaseOf(row, row.Instance == NoName ? null : _names.ToString(row.Instance));

    private static bool IsValidName(ReadOnlySpan<char> instance) => instance.Length is > 0 and <= InstanceNames.MaxLength;

    /// <summary>A reuse delay ended: true when the address stays taken as its application's reservation.</summary>
    private bool OnQuarantineOver(Address address)
    {
        if (!_leases.Remove(address, out var row))
        {
            return false;
        }

        var pool = row.Pool;
        pool.QuarantinedCount--;
        var family = address.Family;
        var book = row.Book;
        if (pool.Definition.Kind == PoolKind.Shadow && book.Unnamed(family).Count < book.Counts(family).Demand && Array.IndexOf(book.Shadow(family), pool) >= 0)
        {
            FreeName(row);
            Put(new Row(address, pool, book, LeaseState.Reserved, NoName, false, NowMs(), null), instance: null);
            book.Unnamed(family).AddLast(address);
            Rereserved.Add(address);
            return true;
        }

        Record(row, removed: true, instance: null);
        FreeName(row);
        return false;
    }

    private static void Count(AddressPool pool, LeaseState state, int delta)
    {
        switch (state)
        {
            case LeaseState.Reserved: pool.ReservedCount += delta; break;
            case LeaseState.Assigned: pool.AssignedCount += delta; break;
            case LeaseState.Quarantined: pool.QuarantinedCount += delta; break;
        }
    }

    private ApplicationBook GetBook(string application)
    {
        if (!_applications.TryGetValue(application, out var book))
        {
            book = new ApplicationBook(application, _pools);
            _applications.Add(application, book);
        }

        return book;
    }

    /// <summary>
    /// A lease as the tables hold it: pool and application by reference, the instance as a name in
    /// <see cref="_names"/> (<see cref="NoName"/>: none).
    /// </summary>
    private record struct Row(Address Address, AddressPool Pool, ApplicationBook Book, LeaseState State, int Instance, bool Preallocated, long SinceMs, Address? Host);

    /// <summary>One application's reservations and the pools it may draw from, per family.</summary>
    private sealed class ApplicationBook
    {
        private readonly RingDeque<Address> _unnamed4 = new(), _unnamed6 = new();
        private readonly FamilyCounts _counts4 = new(), _counts6 = new();
        private AddressPool[] _shadow4 = [], _shadow6 = [], _dynamic4 = [], _dynamic6 = [];

        public ApplicationBook(string application, AddressPool[] pools)
        {
            Name = application;
            Choose(pools);
        }

        /// <summary>The pools the application draws from: its dedicated ones first, then the shared ones, in configuration order.</summary>
        public void Choose(AddressPool[] pools)
        {
            AddressPool[] Of(PoolKind kind, IpFamily family) =>
            [
                .. pools.Where(p => p.Definition.Kind == kind && p.Family == family && p.Definition.Application == Name),
                .. pools.Where(p => p.Definition.Kind == kind && p.Family == family && p.Definition.Application is null),
            ];
            _shadow4 = Of(PoolKind.Shadow, IpFamily.IPv4);
            _shadow6 = Of(PoolKind.Shadow, IpFamily.IPv6);
            _dynamic4 = Of(PoolKind.Dynamic, IpFamily.IPv4);
            _dynamic6 = Of(PoolKind.Dynamic, IpFamily.IPv6);
        }

        /// <summary>The application; lease rows share this string.</summary>
        public string Name { get; }

        public RingDeque<Address> Unnamed(IpFamily family) => family == IpFamily.IPv6 ? _unnamed6 : _unnamed4;

        public FamilyCounts Counts(IpFamily family) => family == IpFamily.IPv6 ? _counts6 : _counts4;

        public AddressPool[] Shadow(IpFamily family) => family == IpFamily.IPv6 ? _shadow6 : _shadow4;

        public AddressPool[] Dynamic(IpFamily family) => family == IpFamily.IPv6 ? _dynamic6 : _dynamic4;
    }

    private sealed class FamilyCounts
    {
        public int ReservedForNamed { get; set; }

        public int Assigned { get; set; }

        /// <summary>Unnamed reservations the forecast wants (<see cref="SetDemand"/>).</summary>
        public int Demand { get; set; }
    }
}

/// <summary>Stored allocation state that cannot be right; the message names the lease at fault.</summary>
public sealed class AllocationStateException(string message) : Exception(message);
