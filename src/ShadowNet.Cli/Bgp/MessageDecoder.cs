using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Cli.Bgp;

/// <summary>Settings the decoder cannot infer from a captured message: what the session negotiated.</summary>
public sealed record DecodeOptions(bool FourOctetAs = true, bool ExtendedMessage = false, uint? EbgpPeerAs = null);

/// <summary>
/// Turns one hex-encoded BGP message into one JSON object, with the same codec the speaker runs, so
/// that the reaction printed for a malformed message is the reaction the speaker would have.
/// </summary>
public static class MessageDecoder
{
    public static string DecodeLine(string line, DecodeOptions options)
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            try
            {
                var bytes = ParseHex(line);
                // Without the marker, the line starts at the length field: put the marker back.
                if (bytes.Length >= 3 && !(bytes.Length >= 16 && bytes.AsSpan(0, 16).IndexOfAnyExcept((byte)0xFF) < 0))
                    bytes = [.. Enumerable.Repeat((byte)0xFF, 16), .. bytes];
                Decode(bytes, options, json);
            }
            catch (FormatException e)
            {
                json.WriteString("error", e.Message);
            }
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static byte[] ParseHex(string line)
    {
        var clean = new StringBuilder(line.Length);
        foreach (var c in line)
        {
            if (char.IsAsciiHexDigit(c))
                clean.Append(c);
            else if (!char.IsWhiteSpace(c) && c != ':' && c != '-')
                throw new FormatException($"'{c}' is not a hex digit");
        }
        if (clean.Length % 2 != 0)
            throw new FormatException("odd number of hex digits");
        return Convert.FromHexString(clean.ToString());
    }

    private static void Decode(byte[] bytes, DecodeOptions options, Utf8JsonWriter json)
    {
        var buffer = new ReadOnlySequence<byte>(bytes);
        var max = options.ExtendedMessage ? BgpConstants.ExtendedMaxMessageLength : BgpConstants.MaxMessageLength;
        try
        {
            if (!BgpFraming.TryReadMessage(ref buffer, max, out var type, out var body))
            {
                json.WriteString("error", $"truncated: {bytes.Length} octets, the header says more");
                return;
            }
            json.WriteString("type", type.ToString().ToUpperInvariant());
            switch (type)
            {
                case BgpMessageType.Open:
                    WriteOpen(OpenMessage.Parse(body), json);
                    break;
                case BgpMessageType.Update:
                    var update = new UpdateMessage();
                    var context = new UpdateParseContext(options.FourOctetAs, options.EbgpPeerAs is not null, options.EbgpPeerAs ?? 0);
                    update.Parse(body, context);
                    WriteUpdate(update, json);
                    break;
                case BgpMessageType.Notification:
                    var n = NotificationMessage.Parse(body);
                    json.WriteNumber("code", (byte)n.Code);
                    json.WriteString("code_name", n.Code.ToString());
                    json.WriteNumber("subcode", n.Subcode);
                    json.WriteString("data", Convert.ToHexString(n.Data));
                    if (n.ShutdownCommunication is { } s)
                        json.WriteString("shutdown_communication", s);
                    break;
                case BgpMessageType.RouteRefresh:
                    var r = RouteRefreshMessage.Parse(body);
                    json.WriteString("family", r.Family.ToString());
                    json.WriteString("subtype", r.Subtype switch { 0 => "request", 1 => "borr", 2 => "eorr", _ => r.Subtype.ToString(CultureInfo.InvariantCulture) });
                    break;
            }
            if (buffer.Length > 0)
                json.WriteNumber("trailing_octets", buffer.Length);
        }
        catch (BgpProtocolException e)
        {
            json.WriteString("action", "session-reset");
            json.WriteStartObject("notification");
            json.WriteNumber("code", (byte)e.Code);
            json.WriteString("code_name", e.Code.ToString());
            json.WriteNumber("subcode", e.Subcode);
            json.WriteString("data", Convert.ToHexString(e.Data));
            json.WriteString("reason", e.Message);
            json.WriteEndObject();
        }
    }

    private static void WriteOpen(OpenMessage open, Utf8JsonWriter json)
    {
        json.WriteNumber("version", open.Version);
        json.WriteNumber("my_as", open.MyAs);
        json.WriteNumber("as", open.AutonomousSystem);
        json.WriteNumber("hold_time", open.HoldTime);
        json.WriteString("bgp_id", new IPAddress(BinaryPrimitives.ReverseEndianness(open.BgpIdentifier)).ToString());
        var c = open.Capabilities;
        json.WriteStartObject("capabilities");
        json.WriteStartArray("multiprotocol");
        foreach (var f in c.Multiprotocol)
            json.WriteStringValue(f.ToString());
        json.WriteEndArray();
        if (c.FourOctetAs is { } as4)
            json.WriteNumber("four_octet_as", as4);
        json.WriteBoolean("route_refresh", c.RouteRefresh);
        json.WriteBoolean("enhanced_route_refresh", c.EnhancedRouteRefresh);
        json.WriteBoolean("extended_message", c.ExtendedMessage);
        if (c.ExtendedNextHop.Count > 0)
        {
            json.WriteStartArray("extended_next_hop");
            foreach (var e in c.ExtendedNextHop)
                json.WriteStringValue($"{e.Nlri} via {e.NextHopAfi}");
            json.WriteEndArray();
        }
        if (c.GracefulRestart is { } gr)
        {
            json.WriteStartObject("graceful_restart");
            json.WriteBoolean("restart_state", gr.RestartState);
            json.WriteNumber("restart_time", gr.RestartTimeSeconds);
            json.WriteStartArray("families");
            foreach (var (f, fwd) in gr.Families)
                json.WriteStringValue(fwd ? $"{f} (forwarding preserved)" : f.ToString());
            json.WriteEndArray();
            json.WriteEndObject();
        }
        foreach (var (code, value) in c.Unknown)
            json.WriteString($"capability_{code}", Convert.ToHexString(value));
        json.WriteEndObject();
    }

    private static void WriteUpdate(UpdateMessage u, Utf8JsonWriter json)
    {
        json.WriteString("action", u.Action switch
        {
            UpdateAction.Accept => "accept",
            UpdateAction.AttributeDiscard => "attribute-discard",
            _ => "treat-as-withdraw",
        });
        if (u.Action != UpdateAction.Accept)
        {
            json.WriteStartObject("error");
            json.WriteNumber("code", (byte)NotificationCode.UpdateMessageError);
            json.WriteNumber("subcode", u.ErrorSubcode);
            json.WriteString("reason", u.ErrorReason);
            if (u.Discarded.Count > 0)
            {
                json.WriteStartArray("discarded");
                foreach (var d in u.Discarded)
                    json.WriteStringValue(d.ToString());
                json.WriteEndArray();
            }
            json.WriteEndObject();
        }
        if (u.IsEndOfRib)
            json.WriteString("end_of_rib", u.EndOfRibFamily.ToString());
        WritePrefixes("withdrawn", u.Withdrawn, json);
        WritePrefixes("announced", u.Announced, json);

        json.WriteStartObject("attributes");
        if (u.Origin is { } o)
            json.WriteString("origin", o.ToString().ToLowerInvariant());
        if (u.HasAsPath)
            WriteAsPath("as_path", u.AsPathBytes, u.AsnSize, json);
        if (!u.As4PathBytes.IsEmpty)
            WriteAsPath("as4_path", u.As4PathBytes, 4, json);
        if (u.NextHop is { } nh)
            json.WriteString("next_hop", new IPAddress(BinaryPrimitives.ReverseEndianness(nh)).ToString());
        if (u.MpNextHopLength > 0)
        {
            var b = u.MpNextHopBytes;
            json.WriteString("mp_next_hop", b.Length == 4 ? new IPAddress(b).ToString() : new IPAddress(b[..16]).ToString());
            if (b.Length == 32)
                json.WriteString("mp_next_hop_link_local", new IPAddress(b[16..]).ToString());
        }
        if (u.MultiExitDisc is { } med)
            json.WriteNumber("med", med);
        if (u.LocalPref is { } lp)
            json.WriteNumber("local_pref", lp);
        if (u.AtomicAggregate)
            json.WriteBoolean("atomic_aggregate", true);
        if (u.Aggregator is { } agg)
            json.WriteString("aggregator", $"{agg.As} {new IPAddress(BinaryPrimitives.ReverseEndianness(agg.Address))}");
        if (!u.CommunityBytes.IsEmpty)
        {
            json.WriteStartArray("communities");
            for (var i = 0; i < u.CommunityBytes.Length; i += 4)
                json.WriteStringValue($"{BinaryPrimitives.ReadUInt16BigEndian(u.CommunityBytes[i..])}:{BinaryPrimitives.ReadUInt16BigEndian(u.CommunityBytes[(i + 2)..])}");
            json.WriteEndArray();
        }
        if (!u.ExtendedCommunityBytes.IsEmpty)
        {
            json.WriteStartArray("extended_communities");
            for (var i = 0; i < u.ExtendedCommunityBytes.Length; i += 8)
                json.WriteStringValue(Convert.ToHexString(u.ExtendedCommunityBytes.Slice(i, 8)));
            json.WriteEndArray();
        }
        if (!u.LargeCommunityBytes.IsEmpty)
        {
            json.WriteStartArray("large_communities");
            var l = u.LargeCommunityBytes;
            for (var i = 0; i < l.Length; i += 12)
                json.WriteStringValue($"{BinaryPrimitives.ReadUInt32BigEndian(l[i..])}:{BinaryPrimitives.ReadUInt32BigEndian(l[(i + 4)..])}:{BinaryPrimitives.ReadUInt32BigEndian(l[(i + 8)..])}");
            json.WriteEndArray();
        }
        if (u.UnknownCount > 0)
        {
            json.WriteStartArray("unknown");
            for (var i = 0; i < u.UnknownCount; i++)
            {
                var (flags, type, value) = u.GetUnknown(i);
                json.WriteStartObject();
                json.WriteNumber("type", type);
                json.WriteNumber("flags", (byte)flags);
                json.WriteString("value", Convert.ToHexString(value.Span));
                json.WriteEndObject();
            }
            json.WriteEndArray();
        }
        json.WriteEndObject();
    }

    private static void WriteAsPath(string name, ReadOnlySpan<byte> path, int asnSize, Utf8JsonWriter json)
    {
        json.WriteStartArray(name);
        var i = 0;
        while (i + 2 <= path.Length)
        {
            var type = path[i];
            var count = path[i + 1];
            json.WriteStartObject();
            json.WriteString("type", type switch { 1 => "set", 2 => "sequence", 3 => "confed_sequence", 4 => "confed_set", _ => type.ToString(CultureInfo.InvariantCulture) });
            json.WriteStartArray("asns");
            for (var k = 0; k < count && i + 2 + (k + 1) * asnSize <= path.Length; k++)
            {
                var at = path[(i + 2 + k * asnSize)..];
                json.WriteNumberValue(asnSize == 4 ? BinaryPrimitives.ReadUInt32BigEndian(at) : BinaryPrimitives.ReadUInt16BigEndian(at));
            }
            json.WriteEndArray();
            json.WriteEndObject();
            i += 2 + count * asnSize;
        }
        json.WriteEndArray();
    }

    private static void WritePrefixes(string name, List<RoutePrefix> prefixes, Utf8JsonWriter json)
    {
        json.WriteStartObject(name);
        foreach (var group in prefixes.GroupBy(p => p.Family))
        {
            json.WriteStartArray(group.Key.ToString());
            foreach (var p in group)
                json.WriteStringValue(p.ToString());
            json.WriteEndArray();
        }
        json.WriteEndObject();
    }
}
