using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace ShadowNet.Bgp.Wire;

/// <summary>What the attribute encoding depends on, per session (RFC 4271 section 5.1, RFC 6793).</summary>
public readonly record struct ExportContext(
    uint LocalAs,
    bool IsEbgp,
    bool FourOctetAs,
    IPAddress? LocalAddressV4,
    IPAddress? LocalAddressV6,
    bool ExtendedNextHopIPv4);

/// <summary>
/// A set of attributes encoded once for one session and one family, ready to be stamped into as many
/// UPDATEs as its prefixes need. <see cref="Attributes"/> holds every attribute but MP_REACH_NLRI; for
/// MP families <see cref="MpReachHeader"/> holds AFI, SAFI, next hop length, next hop and the reserved octet.
/// </summary>
public sealed class EncodedAttributes
{
    public EncodedAttributes(byte[] attributes, byte[]? mpReachHeader)
    {
        Attributes = attributes;
        MpReachHeader = mpReachHeader;
    }

    public byte[] Attributes { get; }
    public byte[]? MpReachHeader { get; }
    public bool UsesMpReach => MpReachHeader is not null;
}

/// <summary>Encodes UPDATE messages into an <see cref="IBufferWriter{T}"/> without allocating per message.</summary>
public static class UpdateEncoder
{
    private const int MpAttributeHeader = 4; // flags, type, 2-octet extended length

    /// <summary>Encodes <paramref name="attributes"/> for prefixes of <paramref name="family"/> on a session described by <paramref name="context"/>.</summary>
    public static EncodedAttributes Encode(RouteAttributes attributes, AddressFamily family, in ExportContext context)
    {
        var w = new ArrayBufferWriter<byte>(128);
        WriteAttribute(w, AttributeFlags.Transitive, PathAttributeType.Origin, [(byte)attributes.Origin]);
        WriteAsPath(w, attributes, context);

        var nextHop = attributes.NextHop;
        byte[]? mpHeader = null;
        if (family == AddressFamily.IPv4Unicast)
        {
            nextHop ??= context.LocalAddressV4 ?? context.LocalAddressV6;
            if (nextHop is null)
                throw new InvalidOperationException("no IPv4 next hop: the route has none and the session has no local IPv4 address");
            if (nextHop.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
            {
                Span<byte> nh = stackalloc byte[4];
                nextHop.TryWriteBytes(nh, out _);
                WriteAttribute(w, AttributeFlags.Transitive, PathAttributeType.NextHop, nh);
            }
            else
            {
                // RFC 8950: IPv4 NLRI with an IPv6 next hop travel in MP_REACH_NLRI.
                if (!context.ExtendedNextHopIPv4)
                    throw new InvalidOperationException($"IPv6 next hop {nextHop} for an IPv4 route needs the extended next hop capability (RFC 8950) on the session");
                mpHeader = MpHeader(Afi.IPv4, nextHop);
            }
        }
        else
        {
            nextHop ??= context.LocalAddressV6;
            if (nextHop is null && context.LocalAddressV4 is { } v4)
                nextHop = v4.MapToIPv6();
            if (nextHop is null)
                throw new InvalidOperationException("no IPv6 next hop: the route has none and the session has no local address");
            if (nextHop.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
                nextHop = nextHop.MapToIPv6();
            mpHeader = MpHeader(Afi.IPv6, nextHop);
        }

        Span<byte> four = stackalloc byte[8];
        if (attributes.MultiExitDisc is { } med)
        {
            BinaryPrimitives.WriteUInt32BigEndian(four, med);
            WriteAttribute(w, AttributeFlags.Optional, PathAttributeType.MultiExitDisc, four[..4]);
        }
        if (!context.IsEbgp)
        {
            BinaryPrimitives.WriteUInt32BigEndian(four, attributes.LocalPref ?? 100);
            WriteAttribute(w, AttributeFlags.Transitive, PathAttributeType.LocalPref, four[..4]);
        }
        if (attributes.AtomicAggregate)
            WriteAttribute(w, AttributeFlags.Transitive, PathAttributeType.AtomicAggregate, []);
        if (attributes.Aggregator is { } agg)
        {
            var as4 = agg.As;
            var needsAs4 = !context.FourOctetAs && as4 > ushort.MaxValue;
            var len = context.FourOctetAs ? 8 : 6;
            if (context.FourOctetAs)
                BinaryPrimitives.WriteUInt32BigEndian(four, as4);
            else
                BinaryPrimitives.WriteUInt16BigEndian(four, needsAs4 ? BgpConstants.AsTrans : (ushort)as4);
            agg.Address.TryWriteBytes(four[(len - 4)..], out _);
            WriteAttribute(w, AttributeFlags.Optional | AttributeFlags.Transitive, PathAttributeType.Aggregator, four[..len]);
            if (needsAs4)
            {
                BinaryPrimitives.WriteUInt32BigEndian(four, as4);
                agg.Address.TryWriteBytes(four[4..], out _);
                WriteAttribute(w, AttributeFlags.Optional | AttributeFlags.Transitive, PathAttributeType.As4Aggregator, four);
            }
        }
        if (attributes.Communities.Count > 0)
        {
            var buf = new byte[attributes.Communities.Count * 4];
            for (var i = 0; i < attributes.Communities.Count; i++)
                BinaryPrimitives.WriteUInt32BigEndian(buf.AsSpan(i * 4), attributes.Communities[i]);
            WriteAttribute(w, AttributeFlags.Optional | AttributeFlags.Transitive, PathAttributeType.Communities, buf);
        }
        if (attributes.ExtendedCommunities.Count > 0)
        {
            var buf = new byte[attributes.ExtendedCommunities.Count * 8];
            for (var i = 0; i < attributes.ExtendedCommunities.Count; i++)
                BinaryPrimitives.WriteUInt64BigEndian(buf.AsSpan(i * 8), attributes.ExtendedCommunities[i]);
            WriteAttribute(w, AttributeFlags.Optional | AttributeFlags.Transitive, PathAttributeType.ExtendedCommunities, buf);
        }
        if (attributes.LargeCommunities.Count > 0)
        {
            var buf = new byte[attributes.LargeCommunities.Count * 12];
            for (var i = 0; i < attributes.LargeCommunities.Count; i++)
            {
                var c = attributes.LargeCommunities[i];
                BinaryPrimitives.WriteUInt32BigEndian(buf.AsSpan(i * 12), c.GlobalAdministrator);
                BinaryPrimitives.WriteUInt32BigEndian(buf.AsSpan(i * 12 + 4), c.LocalData1);
                BinaryPrimitives.WriteUInt32BigEndian(buf.AsSpan(i * 12 + 8), c.LocalData2);
            }
            WriteAttribute(w, AttributeFlags.Optional | AttributeFlags.Transitive, PathAttributeType.LargeCommunities, buf);
        }
        foreach (var raw in attributes.Unknown)
        {
            // Only optional transitive attributes are passed on, with Partial set because we did not interpret them.
            if ((raw.Flags & (AttributeFlags.Optional | AttributeFlags.Transitive)) == (AttributeFlags.Optional | AttributeFlags.Transitive))
                WriteAttribute(w, raw.Flags | AttributeFlags.Partial, (PathAttributeType)raw.Type, raw.Value);
        }
        return new EncodedAttributes(w.WrittenSpan.ToArray(), mpHeader);
    }

    private static byte[] MpHeader(Afi afi, IPAddress nextHop)
    {
        // AFI (2) | SAFI (1) | Next hop length (1) | Next hop | Reserved (1)  (RFC 4760 section 3)
        var header = new byte[4 + 16 + 1];
        BinaryPrimitives.WriteUInt16BigEndian(header, (ushort)afi);
        header[2] = (byte)Safi.Unicast;
        header[3] = 16;
        nextHop.TryWriteBytes(header.AsSpan(4, 16), out _);
        return header;
    }

    private static void WriteAsPath(ArrayBufferWriter<byte> w, RouteAttributes attributes, in ExportContext context)
    {
        var segments = new List<AsPathSegment>(attributes.AsPath.Count + 1);
        if (context.IsEbgp)
        {
            // RFC 4271 section 5.1.2: prepend our AS to the leading AS_SEQUENCE, or add one.
            if (attributes.AsPath.Count > 0 && !attributes.AsPath[0].IsSet && attributes.AsPath[0].Asns.Count < 255)
            {
                segments.Add(new AsPathSegment(false, [context.LocalAs, .. attributes.AsPath[0].Asns]));
                segments.AddRange(attributes.AsPath.Skip(1));
            }
            else
            {
                segments.Add(new AsPathSegment(false, [context.LocalAs]));
                segments.AddRange(attributes.AsPath);
            }
        }
        else
        {
            segments.AddRange(attributes.AsPath);
        }

        var asnSize = context.FourOctetAs ? 4 : 2;
        var needsAs4Path = false;
        var body = new ArrayBufferWriter<byte>(64);
        foreach (var s in segments)
            needsAs4Path |= WriteSegment(body, s, asnSize);
        WriteAttribute(w, AttributeFlags.Transitive, PathAttributeType.AsPath, body.WrittenSpan);
        if (needsAs4Path && !context.FourOctetAs)
        {
            // RFC 6793 section 4.2.2: a NEW speaker sends the true path in AS4_PATH to an OLD one.
            var as4 = new ArrayBufferWriter<byte>(64);
            foreach (var s in segments)
                WriteSegment(as4, s, 4);
            WriteAttribute(w, AttributeFlags.Optional | AttributeFlags.Transitive, PathAttributeType.As4Path, as4.WrittenSpan);
        }
    }

    private static bool WriteSegment(ArrayBufferWriter<byte> w, AsPathSegment s, int asnSize)
    {
        var span = w.GetSpan(2 + s.Asns.Count * asnSize);
        span[0] = (byte)(s.IsSet ? 1 : 2);
        span[1] = (byte)s.Asns.Count;
        var any4 = false;
        for (var i = 0; i < s.Asns.Count; i++)
        {
            var asn = s.Asns[i];
            if (asnSize == 4)
            {
                BinaryPrimitives.WriteUInt32BigEndian(span[(2 + i * 4)..], asn);
            }
            else
            {
                any4 |= asn > ushort.MaxValue;
                BinaryPrimitives.WriteUInt16BigEndian(span[(2 + i * 2)..], asn > ushort.MaxValue ? BgpConstants.AsTrans : (ushort)asn);
            }
        }
        w.Advance(2 + s.Asns.Count * asnSize);
        return any4;
    }

    private static void WriteAttribute(IBufferWriter<byte> w, AttributeFlags flags, PathAttributeType type, ReadOnlySpan<byte> value)
    {
        var extended = value.Length > 255;
        var headerLength = extended ? 4 : 3;
        var span = w.GetSpan(headerLength + value.Length);
        span[0] = (byte)(extended ? flags | AttributeFlags.ExtendedLength : flags & ~AttributeFlags.ExtendedLength);
        span[1] = (byte)type;
        if (extended)
            BinaryPrimitives.WriteUInt16BigEndian(span[2..], (ushort)value.Length);
        else
            span[2] = (byte)value.Length;
        value.CopyTo(span[headerLength..]);
        w.Advance(headerLength + value.Length);
    }

    /// <summary>
    /// Writes one UPDATE announcing as many of <paramref name="prefixes"/> as fit in <paramref name="maxMessageLength"/>
    /// and returns how many it took. The prefixes must all be of the family <paramref name="attributes"/> was encoded for.
    /// </summary>
    public static int WriteAnnounce(IBufferWriter<byte> writer, EncodedAttributes attributes, ReadOnlySpan<RoutePrefix> prefixes, int maxMessageLength)
    {
        // Header | Withdrawn length (2) = 0 | Total path attribute length (2) | [MP_REACH_NLRI] attributes | NLRI
        var fixedLength = BgpConstants.HeaderLength + 4 + attributes.Attributes.Length;
        if (attributes.MpReachHeader is { } mp)
            fixedLength += MpAttributeHeader + mp.Length;
        var count = CountFitting(prefixes, maxMessageLength - fixedLength, out var nlriLength);
        if (count == 0)
            return 0;

        var total = fixedLength + nlriLength;
        var span = writer.GetSpan(total);
        BgpFraming.WriteHeader(span, total, BgpMessageType.Update);
        var b = span[BgpConstants.HeaderLength..total];
        b[0] = 0;
        b[1] = 0;
        var o = 4;
        if (attributes.MpReachHeader is { } header)
        {
            // MP_REACH_NLRI first (RFC 7606 section 5.1), NLRI inside it.
            b[o] = (byte)(AttributeFlags.Optional | AttributeFlags.ExtendedLength);
            b[o + 1] = (byte)PathAttributeType.MpReachNlri;
            BinaryPrimitives.WriteUInt16BigEndian(b[(o + 2)..], (ushort)(header.Length + nlriLength));
            header.CopyTo(b[(o + 4)..]);
            o += 4 + header.Length;
            o += WritePrefixes(b[o..], prefixes[..count]);
            attributes.Attributes.CopyTo(b[o..]);
            o += attributes.Attributes.Length;
            BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)(o - 4));
        }
        else
        {
            attributes.Attributes.CopyTo(b[o..]);
            o += attributes.Attributes.Length;
            BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)(o - 4));
            o += WritePrefixes(b[o..], prefixes[..count]);
        }
        writer.Advance(total);
        return count;
    }

    /// <summary>Writes one UPDATE withdrawing as many of <paramref name="prefixes"/> (all of one family) as fit; returns how many.</summary>
    public static int WriteWithdraw(IBufferWriter<byte> writer, ReadOnlySpan<RoutePrefix> prefixes, int maxMessageLength)
    {
        if (prefixes.IsEmpty)
            return 0;
        var ipv6 = prefixes[0].IsIPv6;
        var fixedLength = BgpConstants.HeaderLength + 4 + (ipv6 ? MpAttributeHeader + 3 : 0);
        var count = CountFitting(prefixes, maxMessageLength - fixedLength, out var nlriLength);
        var total = fixedLength + nlriLength;
        var span = writer.GetSpan(total);
        BgpFraming.WriteHeader(span, total, BgpMessageType.Update);
        var b = span[BgpConstants.HeaderLength..total];
        if (!ipv6)
        {
            BinaryPrimitives.WriteUInt16BigEndian(b, (ushort)nlriLength);
            WritePrefixes(b[2..], prefixes[..count]);
            b[2 + nlriLength] = 0;
            b[3 + nlriLength] = 0;
        }
        else
        {
            b[0] = 0;
            b[1] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)(MpAttributeHeader + 3 + nlriLength));
            b[4] = (byte)(AttributeFlags.Optional | AttributeFlags.ExtendedLength);
            b[5] = (byte)PathAttributeType.MpUnreachNlri;
            BinaryPrimitives.WriteUInt16BigEndian(b[6..], (ushort)(3 + nlriLength));
            BinaryPrimitives.WriteUInt16BigEndian(b[8..], (ushort)Afi.IPv6);
            b[10] = (byte)Safi.Unicast;
            WritePrefixes(b[11..], prefixes[..count]);
        }
        writer.Advance(total);
        return count;
    }

    /// <summary>End-of-RIB marker (RFC 4724 section 2): an empty UPDATE for IPv4 unicast, an empty MP_UNREACH_NLRI otherwise.</summary>
    public static void WriteEndOfRib(IBufferWriter<byte> writer, AddressFamily family)
    {
        if (family == AddressFamily.IPv4Unicast)
        {
            var span = writer.GetSpan(BgpConstants.MinUpdateLength);
            BgpFraming.WriteHeader(span, BgpConstants.MinUpdateLength, BgpMessageType.Update);
            span.Slice(19, 4).Clear();
            writer.Advance(BgpConstants.MinUpdateLength);
            return;
        }
        const int total = BgpConstants.MinUpdateLength + 3 + 3;
        var s = writer.GetSpan(total);
        BgpFraming.WriteHeader(s, total, BgpMessageType.Update);
        s[19] = 0;
        s[20] = 0;
        s[21] = 0;
        s[22] = 6;
        s[23] = (byte)AttributeFlags.Optional;
        s[24] = (byte)PathAttributeType.MpUnreachNlri;
        s[25] = 3;
        BinaryPrimitives.WriteUInt16BigEndian(s[26..], (ushort)family.Afi);
        s[28] = (byte)family.Safi;
        writer.Advance(total);
    }

    /// <summary>How many leading prefixes fit in <paramref name="budget"/> octets of NLRI, and the octets they take.</summary>
    private static int CountFitting(ReadOnlySpan<RoutePrefix> prefixes, int budget, out int nlriLength)
    {
        var count = 0;
        nlriLength = 0;
        while (count < prefixes.Length)
        {
            var l = prefixes[count].NlriLength;
            if (nlriLength + l > budget)
                break;
            nlriLength += l;
            count++;
        }
        return count;
    }

    private static int WritePrefixes(Span<byte> destination, ReadOnlySpan<RoutePrefix> prefixes)
    {
        var o = 0;
        foreach (ref readonly var p in prefixes)
            o += Nlri.Write(destination[o..], p);
        return o;
    }
}
