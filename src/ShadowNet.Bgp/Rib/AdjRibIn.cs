using System.Runtime.InteropServices;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Bgp.Rib;

/// <summary>
/// Routes one peer sent us, kept per prefix with an interned attribute set. Nothing here is
/// installed anywhere by default; it is for counting, max-prefix and display.
/// </summary>
public sealed class AdjRibIn
{
    private readonly Dictionary<RoutePrefix, int> _routes = [];
    private readonly Dictionary<byte[], int> _attributeIds = new(ByteArrayComparer.Instance);
    private readonly List<byte[]> _attributeSets = [];
    private readonly Lock _lock = new();

    public int Count
    {
        get
        {
            lock (_lock)
                return _routes.Count;
        }
    }

    /// <summary>Applies one parsed UPDATE; returns the prefix count afterwards.</summary>
    public int Apply(UpdateMessage update)
    {
        lock (_lock)
        {
            foreach (var p in update.Withdrawn)
                _routes.Remove(p);
            if (update.Announced.Count > 0)
            {
                var id = Intern(update);
                foreach (var p in update.Announced)
                    _routes[p] = id;
            }
            return _routes.Count;
        }
    }

    public void Clear()
    {
        lock (_lock)
        {
            _routes.Clear();
            _attributeIds.Clear();
            _attributeSets.Clear();
        }
    }

    public List<RoutePrefix> Prefixes()
    {
        lock (_lock)
            return [.. _routes.Keys];
    }

    private int Intern(UpdateMessage update)
    {
        // Identity of a path: next hop, origin, AS_PATH and communities are what tell routes apart here.
        Span<byte> key = stackalloc byte[512];
        var n = 0;
        void Put(Span<byte> k, ref int n, ReadOnlySpan<byte> part)
        {
            var take = Math.Min(part.Length, k.Length - n - 2);
            if (take <= 0)
                return;
            k[n++] = (byte)(take >> 8);
            k[n++] = (byte)take;
            part[..take].CopyTo(k[n..]);
            n += take;
        }
        Span<byte> scalars = stackalloc byte[10];
        scalars[0] = (byte)(update.Origin ?? Origin.Incomplete);
        MemoryMarshal.Write(scalars[1..], update.NextHop ?? 0);
        MemoryMarshal.Write(scalars[5..], update.MultiExitDisc ?? 0);
        Put(key, ref n, scalars[..9]);
        Put(key, ref n, update.MpNextHopBytes);
        Put(key, ref n, update.AsPathBytes);
        Put(key, ref n, update.CommunityBytes);
        Put(key, ref n, update.LargeCommunityBytes);
        Put(key, ref n, update.ExtendedCommunityBytes);

        var lookup = _attributeIds.GetAlternateLookup<ReadOnlySpan<byte>>();
        if (lookup.TryGetValue(key[..n], out var id))
            return id;
        var copy = key[..n].ToArray();
        id = _attributeSets.Count;
        _attributeSets.Add(copy);
        _attributeIds[copy] = id;
        return id;
    }

    private sealed class ByteArrayComparer : IEqualityComparer<byte[]>, IAlternateEqualityComparer<ReadOnlySpan<byte>, byte[]>
    {
        public static readonly ByteArrayComparer Instance = new();
        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);
        public int GetHashCode(byte[] obj) => GetHashCode((ReadOnlySpan<byte>)obj);
        public bool Equals(ReadOnlySpan<byte> alternate, byte[] other) => alternate.SequenceEqual(other);
        public int GetHashCode(ReadOnlySpan<byte> alternate)
        {
            var h = new HashCode();
            h.AddBytes(alternate);
            return h.ToHashCode();
        }
        public byte[] Create(ReadOnlySpan<byte> alternate) => alternate.ToArray();
    }
}
