namespace ShadowNet.Addressing.Allocation;

/// <summary>
/// The instance names of the lease table, kept as characters in one arena: a name is an int (its
/// offset), not a string per lease.
/// </summary>
/// <remarks>
/// Why: every create brings a new name that lives as long as its lease. Held as strings, each survived
/// its first collections and was written into the lease tables, which live in the oldest generation; a
/// gen0 collection then had to copy the young names and scan the tables' dirty cards. A daemon in
/// service paused 13-62 ms that way at 10,000 creates a second (bench/RESULTS.md, stop 21). The arena
/// holds no references, so the collector never looks inside it.
/// Each name takes a slot of a power-of-two size (16 characters at least): a header of the length and the
/// name's hash code (so that the indexes never hash a stored name again: not when they insert it, not when
/// they grow), then the name. Freed slots go to their size's free list and are reused first, so a steady
/// churn of creates and deletes keeps the arena at its size. Single-threaded, as the allocator is.
/// </remarks>
internal sealed class InstanceNames
{
    /// <summary>Longest name kept (the hook datagram and the API allow 128 UTF-8 octets).</summary>
    public const int MaxLength = 1024;

    private const int SmallestSlot = 16;
    private const int Header = 3; // length, hash code low and high halves
    private const int SizeClasses = 8; // 16, 32, ... 2,048 characters: a 1,024-character name and its header need 2,048

    private readonly int[][] _free = new int[SizeClasses][];
    private readonly int[] _freeCount = new int[SizeClasses];
    private char[] _chars;
    private int _used;

    public InstanceNames(int expectedNames)
    {
        _chars = new char[Math.Max(expectedNames, 1) * SmallestSlot];
        for (var i = 0; i < _free.Length; i++)
        {
            _free[i] = [];
        }
    }

    /// <summary>Names held now (slots in use).</summary>
    public int Count { get; private set; }

    /// <summary>Characters of the arena ever handed out as slots: it grows only when no freed slot fits.</summary>
    public int Extent => _used;

    public ReadOnlySpan<char> this[int name] => _chars.AsSpan(name + Header, _chars[name]);

    /// <summary>The hash code of a stored name, as <see cref="HashOf"/> gave it.</summary>
    public int HashCodeOf(int name) => _chars[name + 1] | (_chars[name + 2] << 16);

    /// <summary>Copies a name in and returns its handle; <paramref name="hash"/> is <see cref="HashOf"/> of it.</summary>
    public int Add(ReadOnlySpan<char> name, int hash)
    {
        if (name.Length is 0 or > MaxLength)
        {
            throw new ArgumentOutOfRangeException(nameof(name), $"an instance name is 1 to {MaxLength} characters");
        }

        var sizeClass = SizeClassOf(name.Length);
        int at;
        if (_freeCount[sizeClass] > 0)
        {
            at = _free[sizeClass][--_freeCount[sizeClass]];
        }
        else
        {
            var size = SmallestSlot << sizeClass;
            if (_used + size > _chars.Length)
            {
                // Rare (the arena doubles); a copy of characters, nothing for the collector to trace.
                Array.Resize(ref _chars, Math.Max(_chars.Length * 2, _used + size));
            }

            at = _used;
            _used += size;
        }

        _chars[at] = (char)name.Length;
        _chars[at + 1] = (char)hash;
        _chars[at + 2] = (char)(hash >>> 16);
        name.CopyTo(_chars.AsSpan(at + Header));
        Count++;
        return at;
    }

    public void Free(int name)
    {
        var sizeClass = SizeClassOf(_chars[name]);
        ref var list = ref _free[sizeClass];
        if (_freeCount[sizeClass] == list.Length)
        {
            Array.Resize(ref list, Math.Max(16, list.Length * 2));
        }

        list[_freeCount[sizeClass]++] = name;
        Count--;
    }

    public string ToString(int name) => new(this[name]);

    public static int HashOf(ReadOnlySpan<char> name) => string.GetHashCode(name);

    /// <summary>Slot sizes hold the header too: 13 characters fit in 16.</summary>
    private static int SizeClassOf(int length)
    {
        var sizeClass = 0;
        while ((SmallestSlot << sizeClass) < length + Header)
        {
            sizeClass++;
        }

        return sizeClass;
    }
}

/// <summary>A key of the allocator's instance indexes: a name in the arena and a family.</summary>
internal readonly record struct InstanceKey(int Name, IpFamily Family);

/// <summary>
/// Looks an instance up by the caller's characters, without copying them into the arena. The name is
/// hashed once here; a claim that then adds the name reuses the hash.
/// </summary>
internal readonly ref struct InstanceLookup(ReadOnlySpan<char> name, IpFamily family)
{
    public ReadOnlySpan<char> Name { get; } = name;

    public IpFamily Family { get; } = family;

    public int Hash { get; } = InstanceNames.HashOf(name);
}

/// <summary>Compares index keys by the names' characters, so a key and a lookup of the same name meet.</summary>
internal sealed class InstanceKeyComparer(InstanceNames names) : IEqualityComparer<InstanceKey>, IAlternateEqualityComparer<InstanceLookup, InstanceKey>
{
    public bool Equals(InstanceKey x, InstanceKey y) =>
        x.Family == y.Family && (x.Name == y.Name || names[x.Name].SequenceEqual(names[y.Name]));

    public int GetHashCode(InstanceKey key) => names.HashCodeOf(key.Name) ^ (int)key.Family;

    public bool Equals(InstanceLookup lookup, InstanceKey key) => lookup.Family == key.Family && lookup.Name.SequenceEqual(names[key.Name]);

    public int GetHashCode(InstanceLookup lookup) => lookup.Hash ^ (int)lookup.Family;

    /// <summary>Keys go in with a name already in the arena; a lookup never adds one.</summary>
    public InstanceKey Create(InstanceLookup lookup) => throw new NotSupportedException("instance keys are added with their arena name");
}
