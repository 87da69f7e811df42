using System.Buffers;
using System.Buffers.Binary;

namespace ShadowNet.Bgp.Wire;

/// <summary>What the receiver does with an UPDATE after checking it (RFC 7606 section 2).</summary>
public enum UpdateAction : byte
{
    /// <summary>Well formed: apply it.</summary>
    Accept,
    /// <summary>Some attributes were malformed in a way that only needs them dropped; the rest applies.</summary>
    AttributeDiscard,
    /// <summary>The attributes are unusable: every prefix it announces is treated as withdrawn.</summary>
    TreatAsWithdraw,
}

/// <summary>Per-session facts the UPDATE checks depend on.</summary>
public readonly record struct UpdateParseContext(bool FourOctetAs, bool IsEbgp, uint PeerAs)
{
    public static UpdateParseContext FourOctetIbgp { get; } = new(true, false, 0);
}

/// <summary>
/// A parsed UPDATE (RFC 4271 section 4.3, RFC 4760), reused message after message so that parsing
/// allocates nothing in steady state. The body is copied into an owned buffer (which also joins a
/// message that spans pipe segments); attribute values are kept as ranges into it and read on demand.
/// <code>
/// +-----------------------------------------------------+
/// |   Withdrawn Routes Length (2 octets)                |
/// |   Withdrawn Routes (variable)                       |
/// |   Total Path Attribute Length (2 octets)            |
/// |   Path Attributes (variable)                        |
/// |   Network Layer Reachability Information (variable) |
/// +-----------------------------------------------------+
/// </code>
/// Errors that RFC 7606 resolves with a session reset throw <see cref="BgpProtocolException"/>;
/// treat-as-withdraw and attribute-discard are reported through <see cref="Action"/>.
/// </summary>
public sealed class UpdateMessage
{
    private readonly byte[] _body = new byte[BgpConstants.ExtendedMaxMessageLength];
    private readonly ulong[] _seen = new ulong[4];
    private readonly List<(byte Flags, byte Type, int Offset, int Length)> _unknown = new(4);
    private readonly List<PathAttributeType> _discarded = new(4);
    private int _attributeCount;

    public List<RoutePrefix> Withdrawn { get; } = new(1024);
    public List<RoutePrefix> Announced { get; } = new(1024);

    public UpdateAction Action { get; private set; }
    /// <summary>For treat-as-withdraw and attribute-discard: the NOTIFICATION code and subcode RFC 4271 would have sent, and why.</summary>
    public byte ErrorSubcode { get; private set; }
    public string? ErrorReason { get; private set; }
    public IReadOnlyList<PathAttributeType> Discarded => _discarded;

    public bool IsEndOfRib { get; private set; }
    public AddressFamily EndOfRibFamily { get; private set; }

    public Origin? Origin { get; private set; }
    public uint? NextHop { get; private set; }
    /// <summary>MP_REACH_NLRI next hop: length 4, 16 or 32 octets; <see cref="MpNextHopBytes"/> holds it.</summary>
    public int MpNextHopLength { get; private set; }
    public AddressFamily? MpReachFamily { get; private set; }
    public AddressFamily? MpUnreachFamily { get; private set; }
    public uint? MultiExitDisc { get; private set; }
    public uint? LocalPref { get; private set; }
    public bool AtomicAggregate { get; private set; }
    public (uint As, uint Address)? Aggregator { get; private set; }

    private (int Offset, int Length) _asPath, _as4Path, _communities, _extCommunities, _largeCommunities, _mpNextHop;

    public ReadOnlySpan<byte> AsPathBytes => Slice(_asPath);
    public ReadOnlySpan<byte> As4PathBytes => Slice(_as4Path);
    public ReadOnlySpan<byte> CommunityBytes => Slice(_communities);
    public ReadOnlySpan<byte> ExtendedCommunityBytes => Slice(_extCommunities);
    public ReadOnlySpan<byte> LargeCommunityBytes => Slice(_largeCommunities);
    public ReadOnlySpan<byte> MpNextHopBytes => Slice(_mpNextHop);
    public bool HasAsPath => _asPath.Length > 0 || IsSeen((byte)PathAttributeType.AsPath);
    public int UnknownCount => _unknown.Count;
    public int AsnSize { get; private set; } = 4;

    public (AttributeFlags Flags, byte Type, ReadOnlyMemory<byte> Value) GetUnknown(int index)
    {
        var u = _unknown[index];
        return ((AttributeFlags)u.Flags, u.Type, _body.AsMemory(u.Offset, u.Length));
    }

    private ReadOnlySpan<byte> Slice((int Offset, int Length) r) => _body.AsSpan(r.Offset, r.Length);

    public void Parse(ReadOnlySequence<byte> body, in UpdateParseContext context)
    {
        var length = (int)body.Length;
        body.CopyTo(_body);
        Parse(length, context);
    }

    public void Parse(ReadOnlySpan<byte> body, in UpdateParseContext context)
    {
        body.CopyTo(_body);
        Parse(body.Length, context);
    }

    private void Reset(int length)
    {
        _attributeCount = 0;
        Withdrawn.Clear();
        Announced.Clear();
        _unknown.Clear();
        _discarded.Clear();
        Array.Clear(_seen);
        Action = UpdateAction.Accept;
        ErrorSubcode = 0;
        ErrorReason = null;
        IsEndOfRib = false;
        EndOfRibFamily = default;
        Origin = null;
        NextHop = null;
        MpNextHopLength = 0;
        MpReachFamily = null;
        MpUnreachFamily = null;
        MultiExitDisc = null;
        LocalPref = null;
        AtomicAggregate = false;
        Aggregator = null;
        _asPath = _as4Path = _communities = _extCommunities = _largeCommunities = _mpNextHop = default;
    }

    private void Parse(int length, in UpdateParseContext context)
    {
        Reset(length);
        var b = _body.AsSpan(0, length);
        AsnSize = context.FourOctetAs ? 4 : 2;
        if (b.Length < 4)
            BgpThrow.BadLength(length + BgpConstants.HeaderLength, "UPDATE shorter than 23 octets");

        int withdrawnLength = BinaryPrimitives.ReadUInt16BigEndian(b);
        if (2 + withdrawnLength + 2 > b.Length)
            BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.MalformedAttributeList, [], "withdrawn routes length runs past the message");
        int attributesLength = BinaryPrimitives.ReadUInt16BigEndian(b[(2 + withdrawnLength)..]);
        var attributesStart = 4 + withdrawnLength;
        if (attributesStart + attributesLength > b.Length)
            BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.MalformedAttributeList, [], "total path attribute length runs past the message");

        if (!Nlri.TryReadAll(b.Slice(2, withdrawnLength), false, Withdrawn))
            BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.InvalidNetworkField, [], "malformed prefix in withdrawn routes");
        var nlri = b[(attributesStart + attributesLength)..];
        if (!Nlri.TryReadAll(nlri, false, Announced))
            BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.InvalidNetworkField, [], "malformed prefix in NLRI");

        if (attributesLength == 0 && withdrawnLength == 0 && nlri.IsEmpty)
        {
            IsEndOfRib = true;
            EndOfRibFamily = AddressFamily.IPv4Unicast;
            return;
        }

        var classicNlriCount = Announced.Count;
        ParseAttributes(attributesStart, attributesLength, context);

        if (MpUnreachFamily is { } unreach && _attributeCount == 1 && Withdrawn.Count == 0 && Announced.Count == 0 && withdrawnLength == 0 && nlri.IsEmpty)
        {
            IsEndOfRib = true;
            EndOfRibFamily = unreach;
            return;
        }

        // RFC 7606 section 3(d): missing well-known mandatory attributes where there is NLRI.
        if (Announced.Count > 0 && Action != UpdateAction.TreatAsWithdraw)
        {
            if (Origin is null)
                TreatAsWithdraw(NotificationSubcode.MissingWellKnownAttribute, "ORIGIN is missing");
            else if (!IsSeen((byte)PathAttributeType.AsPath))
                TreatAsWithdraw(NotificationSubcode.MissingWellKnownAttribute, "AS_PATH is missing");
            else if (classicNlriCount > 0 && NextHop is null)
                TreatAsWithdraw(NotificationSubcode.MissingWellKnownAttribute, "NEXT_HOP is missing");
        }

        if (Action == UpdateAction.TreatAsWithdraw)
        {
            Withdrawn.AddRange(Announced);
            Announced.Clear();
        }
    }

    private void ParseAttributes(int start, int length, in UpdateParseContext context)
    {
        var a = _body.AsSpan(start, length);
        var i = 0;
        while (i < a.Length)
        {
            if (a.Length - i < 3)
                BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.MalformedAttributeList, [], "attribute header runs past the attribute field");
            var flags = (AttributeFlags)a[i];
            var type = a[i + 1];
            int valueLength;
            int headerLength;
            if ((flags & AttributeFlags.ExtendedLength) != 0)
            {
                if (a.Length - i < 4)
                    BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.MalformedAttributeList, [], "attribute header runs past the attribute field");
                valueLength = BinaryPrimitives.ReadUInt16BigEndian(a[(i + 2)..]);
                headerLength = 4;
            }
            else
            {
                valueLength = a[i + 2];
                headerLength = 3;
            }
            if (i + headerLength + valueLength > a.Length)
                BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.MalformedAttributeList, [], "attribute length runs past the attribute field");

            var valueOffset = start + i + headerLength;
            var attribute = a.Slice(i, headerLength + valueLength);
            i += headerLength + valueLength;

            if (IsSeen(type))
            {
                // RFC 7606 section 3(g): MP_REACH/MP_UNREACH twice resets; any other repeat is discarded.
                if (type is (byte)PathAttributeType.MpReachNlri or (byte)PathAttributeType.MpUnreachNlri)
                    BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.MalformedAttributeList, [], "MP_REACH_NLRI or MP_UNREACH_NLRI appears twice");
                Discard((PathAttributeType)type, NotificationSubcode.MalformedAttributeList, "attribute repeated: later copies discarded");
                continue;
            }
            MarkSeen(type);
            _attributeCount++;
            ParseAttribute(flags, type, valueOffset, valueLength, attribute, context);
        }
    }

    private void ParseAttribute(AttributeFlags flags, byte type, int offset, int length, ReadOnlySpan<byte> attribute, in UpdateParseContext context)
    {
        var v = _body.AsSpan(offset, length);
        var ot = flags & (AttributeFlags.Optional | AttributeFlags.Transitive);
        switch ((PathAttributeType)type)
        {
            case PathAttributeType.Origin:
                if (ot != AttributeFlags.Transitive) { TreatAsWithdraw(NotificationSubcode.AttributeFlagsError, "ORIGIN flags"); return; }
                if (length != 1) { TreatAsWithdraw(NotificationSubcode.AttributeLengthError, "ORIGIN length is not 1"); return; }
                if (v[0] > 2) { TreatAsWithdraw(NotificationSubcode.InvalidOriginAttribute, "ORIGIN value above 2"); return; }
                Origin = (Origin)v[0];
                return;

            case PathAttributeType.AsPath:
                if (ot != AttributeFlags.Transitive) { TreatAsWithdraw(NotificationSubcode.AttributeFlagsError, "AS_PATH flags"); return; }
                if (!IsValidAsPath(v, AsnSize)) { TreatAsWithdraw(NotificationSubcode.MalformedAsPath, "malformed AS_PATH segment"); return; }
                if (context.IsEbgp && !FirstAsIs(v, AsnSize, context.PeerAs))
                {
                    TreatAsWithdraw(NotificationSubcode.MalformedAsPath, "AS_PATH from an external peer does not start with its AS");
                    return;
                }
                _asPath = (offset, length);
                return;

            case PathAttributeType.NextHop:
                if (ot != AttributeFlags.Transitive) { TreatAsWithdraw(NotificationSubcode.AttributeFlagsError, "NEXT_HOP flags"); return; }
                if (length != 4) { TreatAsWithdraw(NotificationSubcode.AttributeLengthError, "NEXT_HOP length is not 4"); return; }
                var nh = BinaryPrimitives.ReadUInt32BigEndian(v);
                // RFC 4271 section 6.3: not a valid host address (0/8, 127/8 is allowed on loopback labs, multicast and class E are not).
                if ((nh >> 24) == 0 || nh >= 0xE0000000u) { TreatAsWithdraw(NotificationSubcode.InvalidNextHopAttribute, "NEXT_HOP is not a unicast host address"); return; }
                NextHop = nh;
                return;

            case PathAttributeType.MultiExitDisc:
                if (ot != AttributeFlags.Optional) { TreatAsWithdraw(NotificationSubcode.AttributeFlagsError, "MULTI_EXIT_DISC flags"); return; }
                if (length != 4) { TreatAsWithdraw(NotificationSubcode.AttributeLengthError, "MULTI_EXIT_DISC length is not 4"); return; }
                MultiExitDisc = BinaryPrimitives.ReadUInt32BigEndian(v);
                return;

            case PathAttributeType.LocalPref:
                // RFC 7606 section 7.5: from an external peer it is discarded whatever it holds.
                if (context.IsEbgp) { Discard(PathAttributeType.LocalPref, NotificationSubcode.MalformedAttributeList, "LOCAL_PREF from an external peer"); return; }
                if (ot != AttributeFlags.Transitive) { TreatAsWithdraw(NotificationSubcode.AttributeFlagsError, "LOCAL_PREF flags"); return; }
                if (length != 4) { TreatAsWithdraw(NotificationSubcode.AttributeLengthError, "LOCAL_PREF length is not 4"); return; }
                LocalPref = BinaryPrimitives.ReadUInt32BigEndian(v);
                return;

            case PathAttributeType.AtomicAggregate:
                if (ot != AttributeFlags.Transitive || length != 0) { Discard(PathAttributeType.AtomicAggregate, ot != AttributeFlags.Transitive ? NotificationSubcode.AttributeFlagsError : NotificationSubcode.AttributeLengthError, "malformed ATOMIC_AGGREGATE"); return; }
                AtomicAggregate = true;
                return;

            case PathAttributeType.Aggregator:
                // The aggregating AS (2 or 4 octets, as negotiated) and its IPv4 address: 6 or 8 octets.
                if (ot != (AttributeFlags.Optional | AttributeFlags.Transitive) || length != AsnSize + 4)
                {
                    Discard(PathAttributeType.Aggregator, ot != (AttributeFlags.Optional | AttributeFlags.Transitive) ? NotificationSubcode.AttributeFlagsError : NotificationSubcode.AttributeLengthError, "malformed AGGREGATOR");
                    return;
                }
                Aggregator = AsnSize == 4
                    ? (BinaryPrimitives.ReadUInt32BigEndian(v), BinaryPrimitives.ReadUInt32BigEndian(v[4..]))
                    : (BinaryPrimitives.ReadUInt16BigEndian(v), BinaryPrimitives.ReadUInt32BigEndian(v[2..]));
                return;

            case PathAttributeType.Communities:
                if (ot != (AttributeFlags.Optional | AttributeFlags.Transitive)) { TreatAsWithdraw(NotificationSubcode.AttributeFlagsError, "COMMUNITIES flags"); return; }
                if (length == 0 || length % 4 != 0) { TreatAsWithdraw(NotificationSubcode.OptionalAttributeError, "COMMUNITIES length is not a non-zero multiple of 4"); return; }
                _communities = (offset, length);
                return;

            case PathAttributeType.ExtendedCommunities:
                if (ot != (AttributeFlags.Optional | AttributeFlags.Transitive)) { TreatAsWithdraw(NotificationSubcode.AttributeFlagsError, "EXTENDED_COMMUNITIES flags"); return; }
                if (length % 8 != 0) { TreatAsWithdraw(NotificationSubcode.OptionalAttributeError, "EXTENDED_COMMUNITIES length is not a multiple of 8"); return; }
                _extCommunities = (offset, length);
                return;

            case PathAttributeType.LargeCommunities:
                if (ot != (AttributeFlags.Optional | AttributeFlags.Transitive)) { TreatAsWithdraw(NotificationSubcode.AttributeFlagsError, "LARGE_COMMUNITY flags"); return; }
                if (length == 0 || length % 12 != 0) { TreatAsWithdraw(NotificationSubcode.OptionalAttributeError, "LARGE_COMMUNITY length is not a non-zero multiple of 12"); return; }
                _largeCommunities = (offset, length);
                return;

            case PathAttributeType.As4Path:
                // RFC 6793 section 6: ignored from a NEW speaker, discarded when malformed.
                if (AsnSize == 4) { Discard(PathAttributeType.As4Path, NotificationSubcode.MalformedAttributeList, "AS4_PATH from a 4-octet AS speaker is ignored"); return; }
                if (ot != (AttributeFlags.Optional | AttributeFlags.Transitive) || !IsValidAsPath(v, 4)) { Discard(PathAttributeType.As4Path, NotificationSubcode.MalformedAsPath, "malformed AS4_PATH"); return; }
                _as4Path = (offset, length);
                return;

            case PathAttributeType.As4Aggregator:
                if (AsnSize == 4 || ot != (AttributeFlags.Optional | AttributeFlags.Transitive) || length != 8)
                    Discard(PathAttributeType.As4Aggregator, NotificationSubcode.OptionalAttributeError, "AS4_AGGREGATOR ignored or malformed");
                return;

            case PathAttributeType.MpReachNlri:
                ParseMpReach(ot, v, offset);
                return;

            case PathAttributeType.MpUnreachNlri:
                ParseMpUnreach(ot, v);
                return;

            default:
                if ((flags & AttributeFlags.Optional) == 0)
                    BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.UnrecognizedWellKnownAttribute, attribute, $"unrecognized well-known attribute type {type}");
                // Optional non-transitive attributes we do not know are quietly ignored (RFC 4271 section 5).
                if ((flags & AttributeFlags.Transitive) != 0)
                    _unknown.Add(((byte)flags, type, offset, length));
                return;
        }
    }

    /// <summary>
    /// MP_REACH_NLRI (RFC 4760 section 3): AFI (2) | SAFI (1) | NH length (1) | NH | Reserved (1) | NLRI.
    /// Its NLRI cannot be located when it is malformed, so errors reset the session (RFC 7606 section 7.11).
    /// </summary>
    private void ParseMpReach(AttributeFlags ot, ReadOnlySpan<byte> v, int offset)
    {
        if (ot != AttributeFlags.Optional)
            BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.AttributeFlagsError, [], "MP_REACH_NLRI flags");
        if (v.Length < 5 || 5 + v[3] > v.Length)
            BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.OptionalAttributeError, [], "MP_REACH_NLRI too short for its next hop");
        var afi = (Afi)BinaryPrimitives.ReadUInt16BigEndian(v);
        var safi = (Safi)v[2];
        var nhLength = v[3];
        var family = new AddressFamily(afi, safi);
        MpReachFamily = family;
        if (safi != Safi.Unicast || afi is not (Afi.IPv4 or Afi.IPv6))
            return; // a family we did not negotiate: ignored (RFC 4760 section 6)
        var nlri = v[(5 + nhLength)..];
        if (!Nlri.TryReadAll(nlri, afi == Afi.IPv6, Announced))
            BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.OptionalAttributeError, [], "malformed prefix in MP_REACH_NLRI");
        var validNh = afi == Afi.IPv6 ? nhLength is 16 or 32 : nhLength is 4 or 16 or 32;
        if (!validNh)
        {
            TreatAsWithdraw(NotificationSubcode.OptionalAttributeError, "MP_REACH_NLRI next hop length does not fit the family");
            return;
        }
        _mpNextHop = (offset + 4, nhLength);
        MpNextHopLength = nhLength;
    }

    private void ParseMpUnreach(AttributeFlags ot, ReadOnlySpan<byte> v)
    {
        if (ot != AttributeFlags.Optional)
            BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.AttributeFlagsError, [], "MP_UNREACH_NLRI flags");
        if (v.Length < 3)
            BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.OptionalAttributeError, [], "MP_UNREACH_NLRI shorter than 3 octets");
        var afi = (Afi)BinaryPrimitives.ReadUInt16BigEndian(v);
        var safi = (Safi)v[2];
        MpUnreachFamily = new AddressFamily(afi, safi);
        if (safi != Safi.Unicast || afi is not (Afi.IPv4 or Afi.IPv6))
            return;
        if (!Nlri.TryReadAll(v[3..], afi == Afi.IPv6, Withdrawn))
            BgpThrow.Protocol(NotificationCode.UpdateMessageError, NotificationSubcode.OptionalAttributeError, [], "malformed prefix in MP_UNREACH_NLRI");
    }

    /// <summary>RFC 7606 section 7.2: segment type 1-4, count at least 1, and the segments fill the attribute exactly.</summary>
    internal static bool IsValidAsPath(ReadOnlySpan<byte> v, int asnSize)
    {
        var i = 0;
        while (i < v.Length)
        {
            if (v.Length - i < 2)
                return false;
            var segmentType = v[i];
            var count = v[i + 1];
            if (segmentType is < 1 or > 4 || count == 0)
                return false;
            i += 2 + count * asnSize;
        }
        return i == v.Length;
    }

    private static bool FirstAsIs(ReadOnlySpan<byte> v, int asnSize, uint peerAs)
    {
        if (v.Length < 2 + asnSize || v[0] != 2)
            return false;
        var first = asnSize == 4 ? BinaryPrimitives.ReadUInt32BigEndian(v[2..]) : BinaryPrimitives.ReadUInt16BigEndian(v[2..]);
        return first == peerAs || (asnSize == 2 && first == BgpConstants.AsTrans && peerAs > ushort.MaxValue);
    }

    private void TreatAsWithdraw(byte subcode, string reason)
    {
        if (Action == UpdateAction.TreatAsWithdraw)
            return;
        Action = UpdateAction.TreatAsWithdraw;
        ErrorSubcode = subcode;
        ErrorReason = reason;
    }

    private void Discard(PathAttributeType type, byte subcode, string reason)
    {
        _discarded.Add(type);
        if (Action == UpdateAction.Accept)
        {
            Action = UpdateAction.AttributeDiscard;
            ErrorSubcode = subcode;
            ErrorReason = reason;
        }
    }

    private bool IsSeen(byte type) => (_seen[type >> 6] & (1UL << (type & 63))) != 0;
    private void MarkSeen(byte type) => _seen[type >> 6] |= 1UL << (type & 63);
}
