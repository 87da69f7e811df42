namespace ShadowNet.Addressing.Allocation;

public enum LeaseState : byte
{
    /// <summary>Pre-allocated for an application (and maybe a named instance); its route is staged.</summary>
    Reserved = 1,

    /// <summary>In use by an instance; its route is active.</summary>
    Assigned = 2,

    /// <summary>Released by an instance and waiting out the pool's reuse delay.</summary>
    Quarantined = 3,
}

/// <summary>
/// What the allocator knows about one taken address; also the row the state store keeps.
/// </summary>
/// <param name="Address">The address.</param>
/// <param name="Pool">Name of the pool it came from.</param>
/// <param name="State">Reserved, assigned or quarantined.</param>
/// <param name="Application">The application it is reserved for or assigned to.</param>
/// <param name="Instance">Assigned: the instance using it. Reserved: the instance it is meant for, if the
/// orchestrator named one. Quarantined: the instance that last used it.</param>
/// <param name="Preallocated">Assigned: true when the instance took a reservation (a hit), false when it
/// came from a dynamic pool (a miss).</param>
/// <param name="SinceMs">Unix milliseconds of the last change of state.</param>
/// <param name="Host">Assigned: the hypervisor the instance runs on, the next hop of its route (null: the
/// configured default). Kept so that a restart re-announces the route exactly as it was.</param>
public readonly record struct Lease(
    Address Address,
    string Pool,
    LeaseState State,
    string? Application,
    string? Instance,
    bool Preallocated,
    long SinceMs,
    Address? Host = null);

/// <summary>One change to the lease table, in the order the allocator made it: what a store writes.</summary>
/// <param name="Lease">The lease after the change (for a removal, as it was). Its <c>Instance</c> is null
/// when the change came from a call that gave the name as characters: see <see cref="InstanceName"/>.</param>
/// <param name="Removed">True when the address went back to free.</param>
/// <param name="Name">The instance's name when the lease's <c>Instance</c> is not a string: characters in
/// the change log, valid until the log is cleared (the store writes them; no string is made per change).</param>
public readonly record struct LeaseChange(Lease Lease, bool Removed, ReadOnlyMemory<char> Name = default)
{
    /// <summary>The instance's name, however it was given; empty when the lease names none.</summary>
    public ReadOnlySpan<char> InstanceName => Lease.Instance is { } instance ? instance : Name.Span;

    /// <summary>True when the lease names an instance.</summary>
    public bool HasInstance => Lease.Instance is not null || !Name.IsEmpty;
}

public enum ClaimStatus : byte
{
    /// <summary>The instance took an address reserved for its application.</summary>
    Hit,

    /// <summary>No reservation: the address came from a dynamic pool.</summary>
    Miss,

    /// <summary>The instance already had an address of this family (a retried create); nothing changed.</summary>
    Existing,

    /// <summary>The instance id is in use by another application; nothing changed.</summary>
    Conflict,

    /// <summary>No reservation and every dynamic pool the application may use is full.</summary>
    Exhausted,

    /// <summary>Empty instance or application id, or no pool of that family.</summary>
    Invalid,
}

public readonly record struct ClaimResult(ClaimStatus Status, Address Address, bool Preallocated)
{
    public bool Succeeded => Status is ClaimStatus.Hit or ClaimStatus.Miss or ClaimStatus.Existing;
}

public enum ReserveStatus : byte
{
    Reserved,
    Existing,
    Conflict,
    Exhausted,
    Invalid,
}

public readonly record struct ReserveResult(ReserveStatus Status, int Count, Address First);

/// <summary>How many addresses of one family an application holds.</summary>
public readonly record struct ApplicationUsage(int Reserved, int ReservedForNamed, int Assigned);

/// <summary>How full a pool is.</summary>
public readonly record struct PoolUsage(
    string Pool,
    Pools.PoolKind Kind,
    IpFamily Family,
    ulong Size,
    ulong Used,
    int Reserved,
    int Assigned,
    int Quarantined);
