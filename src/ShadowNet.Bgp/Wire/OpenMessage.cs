using System.Buffers;
using System.Buffers.Binary;

namespace ShadowNet.Bgp.Wire;

/// <summary>Graceful restart capability content (RFC 4724 section 3).</summary>
public sealed record GracefulRestartCapability(bool RestartState, ushort RestartTimeSeconds, IReadOnlyList<(AddressFamily Family, bool ForwardingPreserved)> Families);

/// <summary>Extended next hop encoding (RFC 8950): NLRI of one family with next hops of another.</summary>
public readonly record struct ExtendedNextHop(AddressFamily Nlri, Afi NextHopAfi);

/// <summary>The capabilities one side advertised in its OPEN (RFC 5492).</summary>
public sealed class BgpCapabilities
{
    public List<AddressFamily> Multiprotocol { get; } = [];
    public uint? FourOctetAs { get; set; }
    public bool RouteRefresh { get; set; }
    public bool EnhancedRouteRefresh { get; set; }
    public bool ExtendedMessage { get; set; }
    public GracefulRestartCapability? GracefulRestart { get; set; }
    public List<ExtendedNextHop> ExtendedNextHop { get; } = [];
    /// <summary>Capabilities we do not know, kept for display (code, value).</summary>
    public List<(byte Code, byte[] Value)> Unknown { get; } = [];
}

/// <summary>
/// OPEN message (RFC 4271 section 4.2):
/// <code>
/// +-----------------+-------------------+-----------------+-----------------------+----------------+-------------------+
/// | Version (1)     | My AS (2)         | Hold Time (2)   | BGP Identifier (4)    | Opt Parm Len(1)| Optional Params   |
/// +-----------------+-------------------+-----------------+-----------------------+----------------+-------------------+
/// </code>
/// Each optional parameter is (type 1, length 1, value); type 2 holds capabilities (code 1, length 1, value).
/// </summary>
public sealed class OpenMessage
{
    public byte Version { get; init; } = BgpConstants.Version;
    /// <summary>The 2-octet "My Autonomous System" field (AS_TRANS when the real AS needs 4 octets).</summary>
    public ushort MyAs { get; init; }
    public ushort HoldTime { get; init; }
    public uint BgpIdentifier { get; init; }
    public BgpCapabilities Capabilities { get; init; } = new();

    /// <summary>The sender's AS: the 4-octet capability when present (RFC 6793), else the 2-octet field.</summary>
    public uint AutonomousSystem => Capabilities.FourOctetAs ?? MyAs;

    public static OpenMessage Parse(ReadOnlySequence<byte> body)
    {
        Span<byte> scratch = stackalloc byte[BgpConstants.MaxMessageLength];
        var length = (int)body.Length;
        body.CopyTo(scratch);
        return Parse(scratch[..length]);
    }

    /// <summary>Parses and validates the OPEN body (everything after the header), per RFC 4271 section 6.2.</summary>
    public static OpenMessage Parse(ReadOnlySpan<byte> body)
    {
        if (body.Length < 10)
            BgpThrow.BadLength(body.Length + BgpConstants.HeaderLength, "OPEN shorter than 29 octets");
        var version = body[0];
        if (version != BgpConstants.Version)
            BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.UnsupportedVersionNumber, [0, BgpConstants.Version], $"unsupported BGP version {version}");

        var myAs = BinaryPrimitives.ReadUInt16BigEndian(body[1..]);
        var hold = BinaryPrimitives.ReadUInt16BigEndian(body[3..]);
        var id = BinaryPrimitives.ReadUInt32BigEndian(body[5..]);
        int optLength = body[9];
        if (hold is 1 or 2)
            BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.UnacceptableHoldTime, [], $"hold time {hold} s is not allowed (must be 0 or at least 3)");
        if (id == 0)
            BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.BadBgpIdentifier, body.Slice(5, 4), "BGP identifier 0.0.0.0");
        if (10 + optLength != body.Length)
            BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.Unspecific, [], $"optional parameters length {optLength} does not match the message ({body.Length - 10} octets follow)");

        var caps = new BgpCapabilities();
        var p = body.Slice(10, optLength);
        while (!p.IsEmpty)
        {
            if (p.Length < 2 || p[1] + 2 > p.Length)
                BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.Unspecific, [], "optional parameter runs past the end of the OPEN");
            var paramType = p[0];
            var value = p.Slice(2, p[1]);
            if (paramType != 2)
                BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.UnsupportedOptionalParameter, [], $"unsupported optional parameter type {paramType}");
            ParseCapabilities(value, caps);
            p = p[(2 + p[1])..];
        }

        if (caps.FourOctetAs is { } as4 && as4 <= ushort.MaxValue && myAs != as4 && myAs != BgpConstants.AsTrans)
            BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.BadPeerAs, body.Slice(1, 2), $"My AS {myAs} disagrees with the 4-octet AS capability {as4}");
        if (caps.FourOctetAs is 0 || (caps.FourOctetAs is null && myAs == 0))
            BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.BadPeerAs, body.Slice(1, 2), "AS 0 is reserved (RFC 7607)");

        return new OpenMessage { Version = version, MyAs = myAs, HoldTime = hold, BgpIdentifier = id, Capabilities = caps };
    }

    private static void ParseCapabilities(ReadOnlySpan<byte> value, BgpCapabilities caps)
    {
        while (!value.IsEmpty)
        {
            if (value.Length < 2 || value[1] + 2 > value.Length)
                BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.Unspecific, [], "capability runs past its optional parameter");
            var code = (CapabilityCode)value[0];
            var v = value.Slice(2, value[1]);
            switch (code)
            {
                case CapabilityCode.Multiprotocol:
                    RequireLength(v, 4, code);
                    caps.Multiprotocol.Add(new AddressFamily((Afi)BinaryPrimitives.ReadUInt16BigEndian(v), (Safi)v[3]));
                    break;
                case CapabilityCode.RouteRefresh:
                    RequireLength(v, 0, code);
                    caps.RouteRefresh = true;
                    break;
                case CapabilityCode.EnhancedRouteRefresh:
                    RequireLength(v, 0, code);
                    caps.EnhancedRouteRefresh = true;
                    break;
                case CapabilityCode.ExtendedMessage:
                    RequireLength(v, 0, code);
                    caps.ExtendedMessage = true;
                    break;
                case CapabilityCode.FourOctetAs:
                    RequireLength(v, 4, code);
                    caps.FourOctetAs = BinaryPrimitives.ReadUInt32BigEndian(v);
                    break;
                case CapabilityCode.ExtendedNextHop:
                    if (v.Length % 6 != 0)
                        BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.Unspecific, [], "extended next hop capability length is not a multiple of 6");
                    for (var i = 0; i < v.Length; i += 6)
                    {
                        var afi = (Afi)BinaryPrimitives.ReadUInt16BigEndian(v[i..]);
                        var safi = (Safi)BinaryPrimitives.ReadUInt16BigEndian(v[(i + 2)..]);
                        var nhAfi = (Afi)BinaryPrimitives.ReadUInt16BigEndian(v[(i + 4)..]);
                        caps.ExtendedNextHop.Add(new ExtendedNextHop(new AddressFamily(afi, safi), nhAfi));
                    }
                    break;
                case CapabilityCode.GracefulRestart:
                    if (v.Length < 2 || (v.Length - 2) % 4 != 0)
                        BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.Unspecific, [], "graceful restart capability has a bad length");
                    var flagsAndTime = BinaryPrimitives.ReadUInt16BigEndian(v);
                    var families = new List<(AddressFamily, bool)>();
                    for (var i = 2; i < v.Length; i += 4)
                        families.Add((new AddressFamily((Afi)BinaryPrimitives.ReadUInt16BigEndian(v[i..]), (Safi)v[i + 2]), (v[i + 3] & 0x80) != 0));
                    caps.GracefulRestart = new GracefulRestartCapability((flagsAndTime & 0x8000) != 0, (ushort)(flagsAndTime & 0x0FFF), families);
                    break;
                default:
                    caps.Unknown.Add(((byte)code, v.ToArray()));
                    break;
            }
            value = value[(2 + value[1])..];
        }
    }

    private static void RequireLength(ReadOnlySpan<byte> v, int expected, CapabilityCode code)
    {
        if (v.Length != expected)
            BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.Unspecific, [], $"capability {code} has length {v.Length}, expected {expected}");
    }

    /// <summary>Encodes the whole OPEN message, header included. Each capability goes in its own optional parameter entry for the widest interoperability.</summary>
    public void WriteTo(IBufferWriter<byte> writer)
    {
        Span<byte> caps = stackalloc byte[255];
        var n = 0;
        void Cap(Span<byte> buf, ref int n, CapabilityCode code, ReadOnlySpan<byte> value)
        {
            buf[n++] = 2;
            buf[n++] = (byte)(value.Length + 2);
            buf[n++] = (byte)code;
            buf[n++] = (byte)value.Length;
            value.CopyTo(buf[n..]);
            n += value.Length;
        }

        Span<byte> v = stackalloc byte[64];
        foreach (var f in Capabilities.Multiprotocol)
        {
            BinaryPrimitives.WriteUInt16BigEndian(v, (ushort)f.Afi);
            v[2] = 0;
            v[3] = (byte)f.Safi;
            Cap(caps, ref n, CapabilityCode.Multiprotocol, v[..4]);
        }
        if (Capabilities.RouteRefresh)
            Cap(caps, ref n, CapabilityCode.RouteRefresh, []);
        if (Capabilities.EnhancedRouteRefresh)
            Cap(caps, ref n, CapabilityCode.EnhancedRouteRefresh, []);
        if (Capabilities.ExtendedMessage)
            Cap(caps, ref n, CapabilityCode.ExtendedMessage, []);
        if (Capabilities.FourOctetAs is { } as4)
        {
            BinaryPrimitives.WriteUInt32BigEndian(v, as4);
            Cap(caps, ref n, CapabilityCode.FourOctetAs, v[..4]);
        }
        if (Capabilities.ExtendedNextHop.Count > 0)
        {
            var k = 0;
            foreach (var e in Capabilities.ExtendedNextHop)
            {
                BinaryPrimitives.WriteUInt16BigEndian(v[k..], (ushort)e.Nlri.Afi);
                BinaryPrimitives.WriteUInt16BigEndian(v[(k + 2)..], (ushort)e.Nlri.Safi);
                BinaryPrimitives.WriteUInt16BigEndian(v[(k + 4)..], (ushort)e.NextHopAfi);
                k += 6;
            }
            Cap(caps, ref n, CapabilityCode.ExtendedNextHop, v[..k]);
        }
        if (Capabilities.GracefulRestart is { } gr)
        {
            BinaryPrimitives.WriteUInt16BigEndian(v, (ushort)((gr.RestartState ? 0x8000 : 0) | (gr.RestartTimeSeconds & 0x0FFF)));
            var k = 2;
            foreach (var (family, fwd) in gr.Families)
            {
                BinaryPrimitives.WriteUInt16BigEndian(v[k..], (ushort)family.Afi);
                v[k + 2] = (byte)family.Safi;
                v[k + 3] = (byte)(fwd ? 0x80 : 0);
                k += 4;
            }
            Cap(caps, ref n, CapabilityCode.GracefulRestart, v[..k]);
        }

        var total = BgpConstants.HeaderLength + 10 + n;
        var span = writer.GetSpan(total);
        BgpFraming.WriteHeader(span, total, BgpMessageType.Open);
        var b = span[BgpConstants.HeaderLength..];
        b[0] = Version;
        BinaryPrimitives.WriteUInt16BigEndian(b[1..], MyAs);
        BinaryPrimitives.WriteUInt16BigEndian(b[3..], HoldTime);
        BinaryPrimitives.WriteUInt32BigEndian(b[5..], BgpIdentifier);
        b[9] = (byte)n;
        caps[..n].CopyTo(b[10..]);
        writer.Advance(total);
    }
}
