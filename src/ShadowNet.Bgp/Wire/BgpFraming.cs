using System.Buffers;
using System.Buffers.Binary;

namespace ShadowNet.Bgp.Wire;

/// <summary>
/// Splits a byte stream into BGP messages (RFC 4271 section 4.1):
/// <code>
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                           Marker (16 octets of 0xFF)          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |          Length               |      Type     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// </code>
/// </summary>
public static class BgpFraming
{
    /// <summary>
    /// Takes one whole message off the front of <paramref name="buffer"/>. Returns false when more bytes
    /// are needed (the buffer is left as it was). Throws <see cref="BgpProtocolException"/> with the
    /// Message Header Error the RFC requires for a bad marker, length or type.
    /// </summary>
    /// <param name="maxLength">4096, or 65535 once both sides advertised the extended message capability.</param>
    public static bool TryReadMessage(ref ReadOnlySequence<byte> buffer, int maxLength, out BgpMessageType type, out ReadOnlySequence<byte> body)
    {
        type = default;
        body = default;
        if (buffer.Length < BgpConstants.HeaderLength)
            return false;

        int length;
        if (buffer.FirstSpan.Length >= BgpConstants.HeaderLength)
        {
            length = ValidateHeader(buffer.FirstSpan[..BgpConstants.HeaderLength], maxLength, out type);
        }
        else
        {
            // Slow path: the header spans segments; copy its 19 octets to the stack.
            Span<byte> copy = stackalloc byte[BgpConstants.HeaderLength];
            buffer.Slice(0, BgpConstants.HeaderLength).CopyTo(copy);
            length = ValidateHeader(copy, maxLength, out type);
        }
        if (buffer.Length < length)
            return false;
        body = buffer.Slice(BgpConstants.HeaderLength, length - BgpConstants.HeaderLength);
        buffer = buffer.Slice(length);
        return true;
    }

    /// <summary>Checks a 19-octet header and returns the message length (RFC 4271 section 6.1).</summary>
    public static int ValidateHeader(ReadOnlySpan<byte> header, int maxLength, out BgpMessageType type)
    {
        if (header[..BgpConstants.MarkerLength].ContainsAnyExcept((byte)0xFF))
            BgpThrow.Protocol(NotificationCode.MessageHeaderError, NotificationSubcode.ConnectionNotSynchronized, [], "marker is not all ones");

        int length = BinaryPrimitives.ReadUInt16BigEndian(header[16..]);
        var rawType = header[18];
        if (length < BgpConstants.HeaderLength || length > maxLength)
            BgpThrow.BadLength(length, $"message length {length} outside 19..{maxLength}");

        type = (BgpMessageType)rawType;
        var ok = type switch
        {
            BgpMessageType.Open => length >= BgpConstants.MinOpenLength && length <= BgpConstants.MaxMessageLength,
            BgpMessageType.Update => length >= BgpConstants.MinUpdateLength,
            BgpMessageType.Notification => length >= BgpConstants.MinNotificationLength,
            BgpMessageType.Keepalive => length == BgpConstants.HeaderLength,
            // RFC 7313 section 5: a bad ROUTE-REFRESH length has its own error code, raised by the parser.
            BgpMessageType.RouteRefresh => true,
            _ => BgpThrow.Protocol<bool>(NotificationCode.MessageHeaderError, NotificationSubcode.BadMessageType, [rawType], $"unknown message type {rawType}"),
        };
        if (!ok)
            BgpThrow.BadLength(length, $"length {length} is not valid for a {type} message");
        return length;
    }

    /// <summary>Writes the marker, length and type in front of a body of <paramref name="bodyLength"/> octets.</summary>
    public static void WriteHeader(Span<byte> destination, int messageLength, BgpMessageType type)
    {
        destination[..BgpConstants.MarkerLength].Fill(0xFF);
        BinaryPrimitives.WriteUInt16BigEndian(destination[16..], (ushort)messageLength);
        destination[18] = (byte)type;
    }

    public static void WriteKeepalive(IBufferWriter<byte> writer)
    {
        var span = writer.GetSpan(BgpConstants.HeaderLength);
        WriteHeader(span, BgpConstants.HeaderLength, BgpMessageType.Keepalive);
        writer.Advance(BgpConstants.HeaderLength);
    }
}
