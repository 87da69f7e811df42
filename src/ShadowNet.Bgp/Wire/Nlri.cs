using System.Buffers.Binary;

namespace ShadowNet.Bgp.Wire;

/// <summary>
/// The NLRI prefix encoding (RFC 4271 section 4.3, RFC 4760 section 5):
/// <code>
/// +---------------------------+
/// |   Length (1 octet, bits)  |
/// +---------------------------+
/// |   Prefix (ceil(Length/8)) |
/// +---------------------------+
/// </code>
/// </summary>
internal static class Nlri
{
    /// <summary>Writes one prefix; the caller has checked that <paramref name="destination"/> holds <see cref="RoutePrefix.NlriLength"/> octets.</summary>
    public static int Write(Span<byte> destination, in RoutePrefix prefix)
    {
        var length = prefix.Length;
        var octets = (length + 7) >> 3;
        destination[0] = (byte)length;
        if (!prefix.IsIPv6)
        {
            if (octets == 4)
            {
                BinaryPrimitives.WriteUInt32BigEndian(destination.Slice(1, 4), prefix.IPv4Bits);
                return 5;
            }
            Span<byte> v4 = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(v4, prefix.IPv4Bits);
            v4[..octets].CopyTo(destination[1..]);
            return 1 + octets;
        }
        if (octets == 16)
        {
            BinaryPrimitives.WriteUInt128BigEndian(destination.Slice(1, 16), prefix.Bits);
            return 17;
        }
        Span<byte> v6 = stackalloc byte[16];
        BinaryPrimitives.WriteUInt128BigEndian(v6, prefix.Bits);
        v6[..octets].CopyTo(destination[1..]);
        return 1 + octets;
    }

    /// <summary>
    /// Reads every prefix of an NLRI field into <paramref name="into"/>. Returns false when a length
    /// exceeds the family's maximum or a prefix runs past the field (RFC 7606 section 5.3: the NLRI
    /// cannot be parsed, so the session is reset with UPDATE error / Invalid Network Field).
    /// </summary>
    public static bool TryReadAll(ReadOnlySpan<byte> field, bool ipv6, List<RoutePrefix> into)
    {
        var max = ipv6 ? 128 : 32;
        Span<byte> tmp = stackalloc byte[16];
        var i = 0;
        while (i < field.Length)
        {
            int length = field[i];
            if (length > max)
                return false;
            var octets = (length + 7) >> 3;
            if (i + 1 + octets > field.Length)
                return false;
            var bytes = field.Slice(i + 1, octets);
            if (!ipv6)
            {
                uint v;
                if (octets == 4)
                {
                    v = BinaryPrimitives.ReadUInt32BigEndian(bytes);
                }
                else
                {
                    tmp.Clear();
                    bytes.CopyTo(tmp);
                    v = BinaryPrimitives.ReadUInt32BigEndian(tmp);
                }
                into.Add(RoutePrefix.IPv4(v, length));
            }
            else
            {
                UInt128 v;
                if (octets == 16)
                {
                    v = BinaryPrimitives.ReadUInt128BigEndian(bytes);
                }
                else
                {
                    tmp.Clear();
                    bytes.CopyTo(tmp);
                    v = BinaryPrimitives.ReadUInt128BigEndian(tmp);
                }
                into.Add(RoutePrefix.IPv6(v, length));
            }
            i += 1 + octets;
        }
        return true;
    }
}
