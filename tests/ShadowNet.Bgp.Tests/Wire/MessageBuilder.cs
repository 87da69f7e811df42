using System.Buffers.Binary;

namespace ShadowNet.Bgp.Tests.Wire;

/// <summary>Builds raw BGP messages byte by byte, so tests can state exactly what is on the wire.</summary>
internal static class MessageBuilder
{
    public static byte[] Message(byte type, params byte[] body)
    {
        var m = new byte[19 + body.Length];
        m.AsSpan(0, 16).Fill(0xFF);
        BinaryPrimitives.WriteUInt16BigEndian(m.AsSpan(16), (ushort)m.Length);
        m[18] = type;
        body.CopyTo(m, 19);
        return m;
    }

    public static byte[] Update(byte[] withdrawn, byte[] attributes, byte[] nlri)
    {
        var body = new List<byte>();
        body.Add((byte)(withdrawn.Length >> 8));
        body.Add((byte)withdrawn.Length);
        body.AddRange(withdrawn);
        body.Add((byte)(attributes.Length >> 8));
        body.Add((byte)attributes.Length);
        body.AddRange(attributes);
        body.AddRange(nlri);
        return Message(2, [.. body]);
    }

    public static byte[] UpdateBody(byte[] message) => message[19..];

    public static byte[] Attr(byte flags, byte type, params byte[] value) => [flags, type, (byte)value.Length, .. value];

    public static readonly byte[] OriginIgp = Attr(0x40, 1, 0);
    public static readonly byte[] AsPath65001 = Attr(0x40, 2, 2, 1, 0, 0, 0xFD, 0xE9);
    public static readonly byte[] NextHop = Attr(0x40, 3, 192, 0, 2, 1);
    public static byte[] Mandatory => [.. OriginIgp, .. AsPath65001, .. NextHop];
    public static readonly byte[] Nlri10001 = [32, 10, 0, 0, 1];

    public static byte[] Open(byte version = 4, ushort myAs = 65001, ushort hold = 90, uint id = 0x0A000001, byte[]? optional = null)
    {
        optional ??= [2, 6, 65, 4, 0, 0, 0xFD, 0xE9];
        var body = new byte[10 + optional.Length];
        body[0] = version;
        BinaryPrimitives.WriteUInt16BigEndian(body.AsSpan(1), myAs);
        BinaryPrimitives.WriteUInt16BigEndian(body.AsSpan(3), hold);
        BinaryPrimitives.WriteUInt32BigEndian(body.AsSpan(5), id);
        body[9] = (byte)optional.Length;
        optional.CopyTo(body, 10);
        return Message(1, body);
    }
}
