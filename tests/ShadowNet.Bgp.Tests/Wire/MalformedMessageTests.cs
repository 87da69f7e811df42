using System.Buffers;
using ShadowNet.Bgp.Wire;
using static ShadowNet.Bgp.Tests.Wire.MessageBuilder;

namespace ShadowNet.Bgp.Tests.Wire;

/// <summary>
/// The table of malformed messages and the exact reaction RFC 4271 section 6, RFC 7606, RFC 6793,
/// RFC 7313 and RFC 4760 require of a receiver: a NOTIFICATION (code/subcode/data) that resets the
/// session, or treat-as-withdraw, or attribute-discard.
/// </summary>
public class MalformedMessageTests
{
    public sealed record Reaction(string Kind, byte Code, byte Subcode, string? Data = null)
    {
        public static Reaction Reset(NotificationCode code, byte subcode, string? data = null) => new("session-reset", (byte)code, subcode, data);
        public static Reaction Withdraw(byte subcode) => new("treat-as-withdraw", 3, subcode);
        public static Reaction Discard(byte subcode) => new("attribute-discard", 3, subcode);
        public static readonly Reaction Accept = new("accept", 0, 0);
    }

    private static readonly UpdateParseContext Ibgp = UpdateParseContext.FourOctetIbgp;
    private static readonly UpdateParseContext EbgpFrom65001 = new(true, true, 65001);

    private static byte[] WithLength(byte[] m, int length)
    {
        var copy = (byte[])m.Clone();
        copy[16] = (byte)(length >> 8);
        copy[17] = (byte)length;
        return copy;
    }

    private static byte[] OpenCaps(params byte[] caps) => [2, (byte)caps.Length, .. caps];

    public static TheoryData<string, byte[], UpdateParseContext, Reaction> Cases() => new()
    {
        // Message header (RFC 4271 section 6.1)
        { "marker not all ones", [.. Message(4)[..5], 0xFE, .. Message(4)[6..]], Ibgp, Reaction.Reset(NotificationCode.MessageHeaderError, 1) },
        { "length below 19", WithLength(Message(4), 18), Ibgp, Reaction.Reset(NotificationCode.MessageHeaderError, 2, "0012") },
        { "length above 4096", WithLength(Message(4), 4097), Ibgp, Reaction.Reset(NotificationCode.MessageHeaderError, 2, "1001") },
        { "unknown message type", Message(9), Ibgp, Reaction.Reset(NotificationCode.MessageHeaderError, 3, "09") },
        { "KEEPALIVE with a body", Message(4, 0), Ibgp, Reaction.Reset(NotificationCode.MessageHeaderError, 2, "0014") },
        { "OPEN shorter than 29", Message(1, new byte[9]), Ibgp, Reaction.Reset(NotificationCode.MessageHeaderError, 2, "001C") },
        { "UPDATE shorter than 23", Message(2, 0, 0, 0), Ibgp, Reaction.Reset(NotificationCode.MessageHeaderError, 2, "0016") },
        { "NOTIFICATION shorter than 21", Message(3, 6), Ibgp, Reaction.Reset(NotificationCode.MessageHeaderError, 2, "0014") },
        // ROUTE-REFRESH (RFC 7313 section 5): data is the whole message
        { "ROUTE-REFRESH with 5 octets", Message(5, 0, 1, 0, 1, 0), Ibgp, Reaction.Reset(NotificationCode.RouteRefreshMessageError, 1, Convert.ToHexString(Message(5, 0, 1, 0, 1, 0))) },

        // OPEN (RFC 4271 section 6.2, RFC 5492, RFC 6793, RFC 7607)
        { "OPEN version 3", Open(version: 3), Ibgp, Reaction.Reset(NotificationCode.OpenMessageError, 1, "0004") },
        { "OPEN hold time 1", Open(hold: 1), Ibgp, Reaction.Reset(NotificationCode.OpenMessageError, 6) },
        { "OPEN hold time 2", Open(hold: 2), Ibgp, Reaction.Reset(NotificationCode.OpenMessageError, 6) },
        { "OPEN BGP identifier 0", Open(id: 0), Ibgp, Reaction.Reset(NotificationCode.OpenMessageError, 3, "00000000") },
        { "OPEN unsupported optional parameter", Open(optional: [1, 2, 0, 0]), Ibgp, Reaction.Reset(NotificationCode.OpenMessageError, 4) },
        { "OPEN optional parameter runs past the end", Open(optional: [2, 9, 65, 4, 0, 0]), Ibgp, Reaction.Reset(NotificationCode.OpenMessageError, 0) },
        { "OPEN capability runs past its parameter", Open(optional: OpenCaps(65, 6, 0, 0, 0xFD, 0xE9)), Ibgp, Reaction.Reset(NotificationCode.OpenMessageError, 0) },
        { "OPEN multiprotocol capability of 3 octets", Open(optional: OpenCaps(1, 3, 0, 1, 0)), Ibgp, Reaction.Reset(NotificationCode.OpenMessageError, 0) },
        { "OPEN 4-octet AS 0", Open(optional: OpenCaps(65, 4, 0, 0, 0, 0)), Ibgp, Reaction.Reset(NotificationCode.OpenMessageError, 2, "FDE9") },
        { "OPEN My AS disagrees with 4-octet AS", Open(myAs: 65002), Ibgp, Reaction.Reset(NotificationCode.OpenMessageError, 2, "FDEA") },

        // UPDATE: errors that make the message unparseable reset the session (RFC 7606 sections 4, 5.3)
        { "withdrawn routes length past the end", Message(2, 0, 50, 0, 0), Ibgp, Reaction.Reset(NotificationCode.UpdateMessageError, 1) },
        { "total attribute length past the end", Message(2, 0, 0, 0, 60, 0x40, 1, 1, 0), Ibgp, Reaction.Reset(NotificationCode.UpdateMessageError, 1) },
        { "attribute length past the attribute field", Update([], [0x40, 1, 9, 0], []), Ibgp, Reaction.Reset(NotificationCode.UpdateMessageError, 1) },
        { "NLRI prefix length 33", Update([], Mandatory, [33, 10, 0, 0, 1, 0]), Ibgp, Reaction.Reset(NotificationCode.UpdateMessageError, 10) },
        { "NLRI prefix truncated", Update([], Mandatory, [32, 10, 0]), Ibgp, Reaction.Reset(NotificationCode.UpdateMessageError, 10) },
        { "withdrawn prefix length 40", Update([40, 10, 0, 0, 1, 0], [], []), Ibgp, Reaction.Reset(NotificationCode.UpdateMessageError, 10) },
        { "unrecognized well-known attribute", Update([], [.. Mandatory, 0x40, 99, 1, 7], Nlri10001), Ibgp, Reaction.Reset(NotificationCode.UpdateMessageError, 2, "40630107") },
        { "MP_REACH_NLRI twice", Update([], [.. Attr(0x80, 14, [0, 2, 1, 16, .. new byte[16], 0]), .. Attr(0x80, 14, [0, 2, 1, 16, .. new byte[16], 0])], []), Ibgp, Reaction.Reset(NotificationCode.UpdateMessageError, 1) },
        { "MP_REACH_NLRI with a bad prefix", Update([], [.. OriginIgp, .. AsPath65001, .. Attr(0x80, 14, [0, 2, 1, 16, .. new byte[16], 0, 200, 1])], []), Ibgp, Reaction.Reset(NotificationCode.UpdateMessageError, 9) },
        { "MP_UNREACH_NLRI shorter than 3", Update([], Attr(0x80, 15, 0, 2), []), Ibgp, Reaction.Reset(NotificationCode.UpdateMessageError, 9) },
        { "MP_REACH_NLRI flagged transitive", Update([], Attr(0xC0, 14, [0, 2, 1, 16, .. new byte[16], 0]), []), Ibgp, Reaction.Reset(NotificationCode.UpdateMessageError, 4) },

        // UPDATE: treat-as-withdraw (RFC 7606 sections 3 and 7)
        { "ORIGIN missing", Update([], [.. AsPath65001, .. NextHop], Nlri10001), Ibgp, Reaction.Withdraw(3) },
        { "AS_PATH missing", Update([], [.. OriginIgp, .. NextHop], Nlri10001), Ibgp, Reaction.Withdraw(3) },
        { "NEXT_HOP missing", Update([], [.. OriginIgp, .. AsPath65001], Nlri10001), Ibgp, Reaction.Withdraw(3) },
        { "ORIGIN value 3", Update([], [.. Attr(0x40, 1, 3), .. AsPath65001, .. NextHop], Nlri10001), Ibgp, Reaction.Withdraw(6) },
        { "ORIGIN of 2 octets", Update([], [.. Attr(0x40, 1, 0, 0), .. AsPath65001, .. NextHop], Nlri10001), Ibgp, Reaction.Withdraw(5) },
        { "ORIGIN flagged optional", Update([], [.. Attr(0xC0, 1, 0), .. AsPath65001, .. NextHop], Nlri10001), Ibgp, Reaction.Withdraw(4) },
        { "AS_PATH segment type 5", Update([], [.. OriginIgp, .. Attr(0x40, 2, 5, 1, 0, 0, 0xFD, 0xE9), .. NextHop], Nlri10001), Ibgp, Reaction.Withdraw(11) },
        { "AS_PATH segment of zero ASNs", Update([], [.. OriginIgp, .. Attr(0x40, 2, 2, 0), .. NextHop], Nlri10001), Ibgp, Reaction.Withdraw(11) },
        { "AS_PATH segment past the attribute", Update([], [.. OriginIgp, .. Attr(0x40, 2, 2, 2, 0, 0, 0xFD, 0xE9), .. NextHop], Nlri10001), Ibgp, Reaction.Withdraw(11) },
        { "AS_PATH of an external peer starting elsewhere", Update([], [.. OriginIgp, .. Attr(0x40, 2, 2, 1, 0, 0, 0xFD, 0xEA), .. NextHop], Nlri10001), EbgpFrom65001, Reaction.Withdraw(11) },
        { "NEXT_HOP of 5 octets", Update([], [.. OriginIgp, .. AsPath65001, .. Attr(0x40, 3, 192, 0, 2, 1, 0)], Nlri10001), Ibgp, Reaction.Withdraw(5) },
        { "NEXT_HOP 0.0.0.0", Update([], [.. OriginIgp, .. AsPath65001, .. Attr(0x40, 3, 0, 0, 0, 0)], Nlri10001), Ibgp, Reaction.Withdraw(8) },
        { "NEXT_HOP multicast", Update([], [.. OriginIgp, .. AsPath65001, .. Attr(0x40, 3, 224, 0, 0, 1)], Nlri10001), Ibgp, Reaction.Withdraw(8) },
        { "MULTI_EXIT_DISC of 3 octets", Update([], [.. Mandatory, .. Attr(0x80, 4, 0, 0, 1)], Nlri10001), Ibgp, Reaction.Withdraw(5) },
        { "COMMUNITIES of 5 octets", Update([], [.. Mandatory, .. Attr(0xC0, 8, 0, 0, 0, 1, 2)], Nlri10001), Ibgp, Reaction.Withdraw(9) },
        { "LARGE_COMMUNITY of 13 octets", Update([], [.. Mandatory, .. Attr(0xC0, 32, new byte[13])], Nlri10001), Ibgp, Reaction.Withdraw(9) },
        { "MP_REACH_NLRI IPv6 next hop of 4 octets", Update([], [.. OriginIgp, .. AsPath65001, .. Attr(0x80, 14, [0, 2, 1, 4, 1, 2, 3, 4, 0, 128, .. new byte[16]])], []), Ibgp, Reaction.Withdraw(9) },

        // UPDATE: attribute-discard (RFC 7606 sections 3(g), 7.5, 7.6, 7.7; RFC 6793 section 6)
        { "ATOMIC_AGGREGATE with a value", Update([], [.. Mandatory, .. Attr(0x40, 6, 1)], Nlri10001), Ibgp, Reaction.Discard(5) },
        { "AGGREGATOR of 5 octets", Update([], [.. Mandatory, .. Attr(0xC0, 7, 0, 0, 1, 2, 3)], Nlri10001), Ibgp, Reaction.Discard(5) },
        // Found by tests/fuzz/run: a 2-octet-AS AGGREGATOR (6 octets) from a 4-octet speaker threw reading past its end.
        { "AGGREGATOR of 6 octets from a 4-octet speaker", Update([], [.. Mandatory, .. Attr(0xC0, 7, 0xFD, 0xE9, 192, 0, 2, 1)], Nlri10001), Ibgp, Reaction.Discard(5) },
        { "ORIGIN twice", Update([], [.. Mandatory, .. OriginIgp], Nlri10001), Ibgp, Reaction.Discard(1) },
        { "LOCAL_PREF from an external peer", Update([], [.. Mandatory, .. Attr(0x40, 5, 0, 0, 0, 100)], Nlri10001), EbgpFrom65001, Reaction.Discard(1) },
        { "AS4_PATH from a 4-octet speaker", Update([], [.. Mandatory, .. Attr(0xC0, 17, 2, 1, 0, 0, 0xFD, 0xE9)], Nlri10001), Ibgp, Reaction.Discard(1) },

        // Well formed, for contrast
        { "unknown optional transitive attribute is kept", Update([], [.. Mandatory, .. Attr(0xC0, 250, 1, 2, 3)], Nlri10001), Ibgp, Reaction.Accept },
        { "unknown optional non-transitive attribute is ignored", Update([], [.. Mandatory, .. Attr(0x80, 251, 1)], Nlri10001), Ibgp, Reaction.Accept },
        { "AGGREGATOR of 8 octets from a 4-octet speaker", Update([], [.. Mandatory, .. Attr(0xC0, 7, 0, 0, 0xFD, 0xE9, 192, 0, 2, 1)], Nlri10001), Ibgp, Reaction.Accept },
    };

    /// <summary>Runs a message through the same framing and parsers the session uses.</summary>
    internal static Reaction React(byte[] message, UpdateParseContext context)
    {
        var buffer = new ReadOnlySequence<byte>(message);
        try
        {
            if (!BgpFraming.TryReadMessage(ref buffer, BgpConstants.MaxMessageLength, out var type, out var body))
                return new Reaction("need-more", 0, 0);
            switch (type)
            {
                case BgpMessageType.Open:
                    OpenMessage.Parse(body);
                    break;
                case BgpMessageType.Update:
                    var u = new UpdateMessage();
                    u.Parse(body, context);
                    return u.Action switch
                    {
                        UpdateAction.Accept => Reaction.Accept,
                        UpdateAction.TreatAsWithdraw => Reaction.Withdraw(u.ErrorSubcode),
                        _ => Reaction.Discard(u.ErrorSubcode),
                    };
                case BgpMessageType.RouteRefresh:
                    RouteRefreshMessage.Parse(body);
                    break;
            }
            return Reaction.Accept;
        }
        catch (BgpProtocolException e)
        {
            return Reaction.Reset(e.Code, e.Subcode, Convert.ToHexString(e.Data));
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MalformedMessageGetsTheReactionTheRfcRequires(string name, byte[] message, UpdateParseContext context, Reaction expected)
    {
        var actual = React(message, context);
        Assert.True(expected.Kind == actual.Kind && expected.Code == actual.Code && expected.Subcode == actual.Subcode, $"{name}: expected {expected}, got {actual}");
        if (expected.Data is not null)
            Assert.Equal(expected.Data, actual.Data);
    }

    [Fact]
    public void TheTableHasAtLeastThirtyMalformedCases() => Assert.True(Cases().Count(c => ((Reaction)c[3]).Kind != "accept") >= 30);

    [Fact]
    public void TreatAsWithdrawTurnsAnnouncementsIntoWithdrawals()
    {
        var u = new UpdateMessage();
        u.Parse(UpdateBody(Update([], [.. Attr(0x40, 1, 9), .. AsPath65001, .. NextHop], Nlri10001)), Ibgp);
        Assert.Equal(UpdateAction.TreatAsWithdraw, u.Action);
        Assert.Empty(u.Announced);
        Assert.Equal(RoutePrefix.Parse("10.0.0.1/32"), Assert.Single(u.Withdrawn));
    }

    [Fact]
    public void AttributeDiscardKeepsTheRoute()
    {
        var u = new UpdateMessage();
        u.Parse(UpdateBody(Update([], [.. Mandatory, .. Attr(0x40, 6, 1)], Nlri10001)), Ibgp);
        Assert.Equal(UpdateAction.AttributeDiscard, u.Action);
        Assert.Equal([PathAttributeType.AtomicAggregate], u.Discarded);
        Assert.Single(u.Announced);
        Assert.False(u.AtomicAggregate);
    }
}
