using System.Diagnostics.CodeAnalysis;

namespace ShadowNet.Bgp.Wire;

/// <summary>NOTIFICATION error codes (RFC 4271 section 4.5, RFC 7313).</summary>
public enum NotificationCode : byte
{
    MessageHeaderError = 1,
    OpenMessageError = 2,
    UpdateMessageError = 3,
    HoldTimerExpired = 4,
    FiniteStateMachineError = 5,
    Cease = 6,
    RouteRefreshMessageError = 7,
}

/// <summary>Subcodes, grouped by error code. Values are the wire values.</summary>
public static class NotificationSubcode
{
    // Message Header Error (RFC 4271 6.1)
    public const byte ConnectionNotSynchronized = 1;
    public const byte BadMessageLength = 2;
    public const byte BadMessageType = 3;

    // OPEN Message Error (RFC 4271 6.2, RFC 5492)
    public const byte Unspecific = 0;
    public const byte UnsupportedVersionNumber = 1;
    public const byte BadPeerAs = 2;
    public const byte BadBgpIdentifier = 3;
    public const byte UnsupportedOptionalParameter = 4;
    public const byte UnacceptableHoldTime = 6;
    public const byte UnsupportedCapability = 7;

    // UPDATE Message Error (RFC 4271 6.3)
    public const byte MalformedAttributeList = 1;
    public const byte UnrecognizedWellKnownAttribute = 2;
    public const byte MissingWellKnownAttribute = 3;
    public const byte AttributeFlagsError = 4;
    public const byte AttributeLengthError = 5;
    public const byte InvalidOriginAttribute = 6;
    public const byte InvalidNextHopAttribute = 8;
    public const byte OptionalAttributeError = 9;
    public const byte InvalidNetworkField = 10;
    public const byte MalformedAsPath = 11;

    // Cease (RFC 4486, RFC 8203)
    public const byte MaximumPrefixesReached = 1;
    public const byte AdministrativeShutdown = 2;
    public const byte PeerDeconfigured = 3;
    public const byte AdministrativeReset = 4;
    public const byte ConnectionRejected = 5;
    public const byte OtherConfigurationChange = 6;
    public const byte ConnectionCollisionResolution = 7;
    public const byte OutOfResources = 8;

    // FSM Error (RFC 6608)
    public const byte UnexpectedMessageInOpenSent = 1;
    public const byte UnexpectedMessageInOpenConfirm = 2;
    public const byte UnexpectedMessageInEstablished = 3;

    // ROUTE-REFRESH Message Error (RFC 7313)
    public const byte InvalidMessageLength = 1;
}

/// <summary>
/// A protocol error that closes the session: the NOTIFICATION to send carries <see cref="Code"/>,
/// <see cref="Subcode"/> and <see cref="Data"/>.
/// </summary>
public sealed class BgpProtocolException : Exception
{
    public BgpProtocolException(NotificationCode code, byte subcode, byte[] data, string message)
        : base(message)
    {
        Code = code;
        Subcode = subcode;
        Data = data;
    }

    public BgpProtocolException()
        : this(NotificationCode.Cease, 0, [], "BGP protocol error")
    {
    }

    public BgpProtocolException(string message)
        : this(NotificationCode.Cease, 0, [], message)
    {
    }

    public BgpProtocolException(string message, Exception innerException)
        : base(message, innerException)
    {
        Code = NotificationCode.Cease;
        Data = [];
    }

    public NotificationCode Code { get; }
    public byte Subcode { get; }
    public new byte[] Data { get; }
}

/// <summary>Throw helpers keep the hot parsing methods small (no inlined string formatting).</summary>
internal static class BgpThrow
{
    [DoesNotReturn]
    public static void Protocol(NotificationCode code, byte subcode, ReadOnlySpan<byte> data, string message)
        => throw new BgpProtocolException(code, subcode, data.ToArray(), message);

    [DoesNotReturn]
    public static T Protocol<T>(NotificationCode code, byte subcode, ReadOnlySpan<byte> data, string message)
        => throw new BgpProtocolException(code, subcode, data.ToArray(), message);

    [DoesNotReturn]
    public static void BadLength(int length, string message)
    {
        Span<byte> data = stackalloc byte[2];
        data[0] = (byte)(length >> 8);
        data[1] = (byte)length;
        throw new BgpProtocolException(NotificationCode.MessageHeaderError, NotificationSubcode.BadMessageLength, data.ToArray(), message);
    }
}
