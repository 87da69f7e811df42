using ShadowNet.Addressing.Allocation;
using ShadowNet.Controller.State;

namespace ShadowNet.Controller.Tests.Support;

/// <summary>An in-memory store whose commits can be made to fail, or held until the test lets them go.</summary>
internal sealed class FailingStore : IAllocationStore
{
    public bool Fail { get; set; }

    /// <summary>When set, each commit waits for it (the test holds a group mid-commit).</summary>
    public ManualResetEventSlim? Gate { get; set; }

    /// <summary>Set when a commit has started (and, with a <see cref="Gate"/>, is waiting on it).</summary>
    public ManualResetEventSlim Committing { get; } = new();

    public int Committed { get; private set; }

    public string Location => "memory";

    public long CommittedSequence => Committed;

    public IReadOnlyList<Lease> LoadLeases() => [];

    public IReadOnlyList<(long Id, MissRecord Miss)> LoadMisses(long afterId, int limit) => [];

    public void Commit(ReadOnlySpan<LeaseChange> changes, ReadOnlySpan<MissRecord> misses, long sequence)
    {
        Committing.Set();
        Gate?.Wait(TimeSpan.FromSeconds(30));
        if (Fail)
        {
            throw new IOException("disk full");
        }

        Committed++;
    }

    public bool Maintain(bool idle) => false;

    public void Dispose()
    {
    }
}
