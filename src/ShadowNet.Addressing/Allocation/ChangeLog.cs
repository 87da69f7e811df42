using System.Collections;
using System.Numerics;
using System.Runtime.InteropServices;

namespace ShadowNet.Addressing.Allocation;

/// <summary>
/// The lease changes of one group of operations, in order, and the instance names they carry as
/// characters: what a store writes. Cleared and reused, so recording a change allocates nothing once the
/// log has grown to a group's size.
/// </summary>
public sealed class ChangeLog : IReadOnlyList<LeaseChange>
{
    private readonly List<LeaseChange> _changes = [];
    private char[] _names = new char[256];
    private int _namesUsed;
    private int _namesSinceClear;

    public int Count => _changes.Count;

    public LeaseChange this[int index] => _changes[index];

    public ReadOnlySpan<LeaseChange> AsSpan() => CollectionsMarshal.AsSpan(_changes);

    public void Add(LeaseChange change) => _changes.Add(change);

    /// <summary>Records a change whose instance name is given as characters (copied into the log).</summary>
    public void Add(Lease lease, bool removed, ReadOnlySpan<char> name)
    {
        if (name.IsEmpty)
        {
            _changes.Add(new LeaseChange(lease, removed));
            return;
        }

        if (_namesUsed + name.Length > _names.Length)
        {
            // A new array, not a resized one: the changes recorded so far keep pointing at the old one.
            _names = new char[Math.Max(_names.Length * 2, name.Length)];
            _namesUsed = 0;
        }

        var memory = _names.AsMemory(_namesUsed, name.Length);
        name.CopyTo(_names.AsSpan(_namesUsed));
        _namesUsed += name.Length;
        _namesSinceClear += name.Length;
        _changes.Add(new LeaseChange(lease, removed, memory));
    }

    /// <summary>Empties the log; if its names outgrew the array, the next one holds them all at once.</summary>
    public void Clear()
    {
        _changes.Clear();
        if (_namesSinceClear > _names.Length)
        {
            _names = new char[(int)BitOperations.RoundUpToPowerOf2((uint)_namesSinceClear)];
        }

        _namesUsed = 0;
        _namesSinceClear = 0;
    }

    public List<LeaseChange>.Enumerator GetEnumerator() => _changes.GetEnumerator();

    IEnumerator<LeaseChange> IEnumerable<LeaseChange>.GetEnumerator() => GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
