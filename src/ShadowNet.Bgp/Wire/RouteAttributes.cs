using System.Net;

namespace ShadowNet.Bgp.Wire;

/// <summary>One AS_PATH segment (RFC 4271 section 4.3): an ordered AS_SEQUENCE or an unordered AS_SET.</summary>
public sealed record AsPathSegment(bool IsSet, IReadOnlyList<uint> Asns)
{
    public bool Equals(AsPathSegment? other) => other is not null && IsSet == other.IsSet && Asns.SequenceEqual(other.Asns);
    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(IsSet);
        foreach (var a in Asns)
            h.Add(a);
        return h.ToHashCode();
    }
}

/// <summary>A large community (RFC 8092): global administrator, two local data parts.</summary>
public readonly record struct LargeCommunity(uint GlobalAdministrator, uint LocalData1, uint LocalData2)
{
    public override string ToString() => $"{GlobalAdministrator}:{LocalData1}:{LocalData2}";

    public static bool TryParse(string text, out LargeCommunity value)
    {
        value = default;
        var parts = text.Split(':');
        if (parts.Length != 3 || !uint.TryParse(parts[0], out var a) || !uint.TryParse(parts[1], out var b) || !uint.TryParse(parts[2], out var c))
            return false;
        value = new LargeCommunity(a, b, c);
        return true;
    }
}

/// <summary>A path attribute this speaker does not interpret, kept to be passed on (with the Partial bit, RFC 4271 section 5).</summary>
public sealed record RawAttribute(AttributeFlags Flags, byte Type, byte[] Value)
{
    public bool Equals(RawAttribute? other) => other is not null && Flags == other.Flags && Type == other.Type && Value.AsSpan().SequenceEqual(other.Value);
    public override int GetHashCode() => HashCode.Combine(Flags, Type, Value.Length);
}

/// <summary>
/// The attributes of routes this speaker originates. Immutable and compared by value, so that the
/// Adj-RIB-Out can pack every prefix that shares one set into the same UPDATE.
/// </summary>
public sealed class RouteAttributes : IEquatable<RouteAttributes>
{
    private int _hash;

    public Origin Origin { get; init; } = Origin.Igp;
    /// <summary>The path as originated; the local AS is prepended on eBGP sessions.</summary>
    public IReadOnlyList<AsPathSegment> AsPath { get; init; } = [];
    /// <summary>Null: the session's local address (next-hop-self).</summary>
    public IPAddress? NextHop { get; init; }
    public uint? MultiExitDisc { get; init; }
    /// <summary>Sent on iBGP sessions only (RFC 4271 section 5.1.5); 100 when unset.</summary>
    public uint? LocalPref { get; init; }
    public bool AtomicAggregate { get; init; }
    public (uint As, IPAddress Address)? Aggregator { get; init; }
    public IReadOnlyList<uint> Communities { get; init; } = [];
    public IReadOnlyList<ulong> ExtendedCommunities { get; init; } = [];
    public IReadOnlyList<LargeCommunity> LargeCommunities { get; init; } = [];
    public IReadOnlyList<RawAttribute> Unknown { get; init; } = [];

    public static RouteAttributes Default { get; } = new();

    public bool Equals(RouteAttributes? other)
    {
        if (ReferenceEquals(this, other))
            return true;
        return other is not null
            && Origin == other.Origin
            && Equals(NextHop, other.NextHop)
            && MultiExitDisc == other.MultiExitDisc
            && LocalPref == other.LocalPref
            && AtomicAggregate == other.AtomicAggregate
            && Nullable.Equals(Aggregator, other.Aggregator)
            && AsPath.SequenceEqual(other.AsPath)
            && Communities.SequenceEqual(other.Communities)
            && ExtendedCommunities.SequenceEqual(other.ExtendedCommunities)
            && LargeCommunities.SequenceEqual(other.LargeCommunities)
            && Unknown.SequenceEqual(other.Unknown);
    }

    public override bool Equals(object? obj) => Equals(obj as RouteAttributes);

    public override int GetHashCode()
    {
        if (_hash != 0)
            return _hash;
        var h = new HashCode();
        h.Add(Origin);
        h.Add(NextHop);
        h.Add(MultiExitDisc);
        h.Add(LocalPref);
        h.Add(AtomicAggregate);
        foreach (var s in AsPath)
            h.Add(s);
        foreach (var c in Communities)
            h.Add(c);
        foreach (var c in ExtendedCommunities)
            h.Add(c);
        foreach (var c in LargeCommunities)
            h.Add(c);
        var v = h.ToHashCode();
        _hash = v == 0 ? 1 : v;
        return _hash;
    }
}
