using System.Buffers;
using System.Text;

namespace ShadowNet.Bgp.Wire;

/// <summary>
/// NOTIFICATION message (RFC 4271 section 4.5): error code (1), subcode (1), data. For Cease
/// Administrative Shutdown/Reset the data is a length-prefixed UTF-8 message (RFC 8203, RFC 9003).
/// </summary>
public readonly record struct NotificationMessage(NotificationCode Code, byte Subcode, byte[] Data)
{
    public static NotificationMessage Parse(ReadOnlySequence<byte> body)
    {
        var bytes = body.ToArray();
        return new NotificationMessage((NotificationCode)bytes[0], bytes[1], bytes[2..]);
    }

    /// <summary>Builds an RFC 8203 shutdown communication (at most 255 octets of UTF-8, cut on a character boundary).</summary>
    public static NotificationMessage Shutdown(string? reason, byte subcode = NotificationSubcode.AdministrativeShutdown)
    {
        if (string.IsNullOrEmpty(reason))
            return new NotificationMessage(NotificationCode.Cease, subcode, []);
        var utf8 = Encoding.UTF8.GetBytes(reason);
        var length = Math.Min(utf8.Length, 255);
        while (length < utf8.Length && length > 0 && (utf8[length] & 0xC0) == 0x80)
            length--;
        var data = new byte[1 + length];
        data[0] = (byte)length;
        utf8.AsSpan(0, length).CopyTo(data.AsSpan(1));
        return new NotificationMessage(NotificationCode.Cease, subcode, data);
    }

    /// <summary>The RFC 8203 shutdown communication, when this is an administrative shutdown or reset that carries one.</summary>
    public string? ShutdownCommunication
    {
        get
        {
            if (Code != NotificationCode.Cease || Subcode is not (NotificationSubcode.AdministrativeShutdown or NotificationSubcode.AdministrativeReset))
                return null;
            if (Data.Length == 0 || Data[0] + 1 > Data.Length)
                return null;
            try
            {
                return new UTF8Encoding(false, true).GetString(Data, 1, Data[0]);
            }
            catch (DecoderFallbackException)
            {
                return null;
            }
        }
    }

    public void WriteTo(IBufferWriter<byte> writer)
    {
        var data = Data ?? [];
        var total = Math.Min(BgpConstants.MaxMessageLength, BgpConstants.HeaderLength + 2 + data.Length);
        var span = writer.GetSpan(total);
        BgpFraming.WriteHeader(span, total, BgpMessageType.Notification);
        span[19] = (byte)Code;
        span[20] = Subcode;
        data.AsSpan(0, total - 21).CopyTo(span[21..]);
        writer.Advance(total);
    }

    public static NotificationMessage From(BgpProtocolException e) => new(e.Code, e.Subcode, e.Data);

    public override string ToString()
    {
        var text = $"{Code} subcode {Subcode}";
        return ShutdownCommunication is { } s ? $"{text}: \"{s}\"" : text;
    }
}

/// <summary>
/// ROUTE-REFRESH (RFC 2918, RFC 7313): AFI (2), message subtype (1: 0 request, 1 BoRR, 2 EoRR), SAFI (1).
/// </summary>
public readonly record struct RouteRefreshMessage(AddressFamily Family, byte Subtype)
{
    public const byte Request = 0;
    public const byte BeginningOfRouteRefresh = 1;
    public const byte EndOfRouteRefresh = 2;

    public static RouteRefreshMessage Parse(ReadOnlySequence<byte> body)
    {
        if (body.Length != 4)
        {
            // RFC 7313 section 5: the data is the complete message, header included.
            var whole = new byte[BgpConstants.HeaderLength + body.Length];
            BgpFraming.WriteHeader(whole, whole.Length, BgpMessageType.RouteRefresh);
            body.CopyTo(whole.AsSpan(BgpConstants.HeaderLength));
            throw new BgpProtocolException(NotificationCode.RouteRefreshMessageError, NotificationSubcode.InvalidMessageLength, whole, $"ROUTE-REFRESH length {whole.Length} is not 23");
        }
        Span<byte> b = stackalloc byte[4];
        body.CopyTo(b);
        return new RouteRefreshMessage(new AddressFamily((Afi)((b[0] << 8) | b[1]), (Safi)b[3]), b[2]);
    }

    public void WriteTo(IBufferWriter<byte> writer)
    {
        var span = writer.GetSpan(BgpConstants.RouteRefreshLength);
        BgpFraming.WriteHeader(span, BgpConstants.RouteRefreshLength, BgpMessageType.RouteRefresh);
        span[19] = (byte)((ushort)Family.Afi >> 8);
        span[20] = (byte)Family.Afi;
        span[21] = Subtype;
        span[22] = (byte)Family.Safi;
        writer.Advance(BgpConstants.RouteRefreshLength);
    }
}
