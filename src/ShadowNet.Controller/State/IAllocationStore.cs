using ShadowNet.Addressing.Allocation;

namespace ShadowNet.Controller.State;

/// <summary>
/// Where allocation state lives between runs. SQLite on local disk is the embedded default; a shared
/// store (etcd with Calico-style block claims) can implement the same contract later without touching
/// the route manager.
/// </summary>
/// <remarks>
/// Contract: <see cref="Commit"/> applies a group of changes atomically and returns only once they are
/// durable (they survive the process being killed and, with full sync, the machine losing power).
/// Callers acknowledge nothing before it returns.
/// </remarks>
public interface IAllocationStore : IDisposable
{
    /// <summary>Human-readable location for error messages (a file path, an endpoint).</summary>
    string Location { get; }

    /// <summary>Sequence number of the last committed group (0 for a new store).</summary>
    long CommittedSequence { get; }

    /// <summary>Every lease in the store. Throws <see cref="StateStoreException"/> when it is unreadable.</summary>
    IReadOnlyList<Lease> LoadLeases();

    /// <summary>
    /// Applies the changes in order and adds the miss records, in one transaction, durably; records the
    /// sequence number.
    /// </summary>
    void Commit(ReadOnlySpan<LeaseChange> changes, ReadOnlySpan<MissRecord> misses, long sequence);

    /// <summary>Miss records with an id above <paramref name="afterId"/>, oldest first, at most <paramref name="limit"/>.</summary>
    IReadOnlyList<(long Id, MissRecord Miss)> LoadMisses(long afterId, int limit);

    /// <summary>
    /// Housekeeping that may take a while (the SQLite store copies its write-ahead log into the database
    /// file). Called by the writer after it has acknowledged a group, so no caller waits on it for an
    /// operation already done; <paramref name="idle"/> says whether operations are waiting. Returns
    /// whether it did any work.
    /// </summary>
    bool Maintain(bool idle);
}

/// <summary>The state store cannot be used; the message names the store and what is wrong.</summary>
public sealed class StateStoreException : Exception
{
    public StateStoreException(string message)
        : base(message)
    {
    }

    public StateStoreException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
