using System.Buffers;
using System.Net;
using ShadowNet.Bgp.Wire;
using static ShadowNet.Bgp.Tests.Wire.MessageBuilder;

namespace ShadowNet.Bgp.Tests.Wire;

public class CodecRoundTripTests
{
    private static readonly ExportContext Ebgp4 = new(65003, true, true, IPAddress.Parse("127.0.0.3"), null, true);

    private static RoutePrefix[] HostRoutesV4(int n) => Enumerable.Range(0, n).Select(i => RoutePrefix.IPv4(0x0A000000u + (uint)i, 32)).ToArray();
    private static RoutePrefix[] HostRoutesV6(int n) => Enumerable.Range(0, n).Select(i => RoutePrefix.IPv6(RoutePrefix.ToUInt128(IPAddress.Parse("2001:db8::")) + (UInt128)i, 128)).ToArray();

    private static List<byte[]> EncodeAll(RouteAttributes attributes, RoutePrefix[] prefixes, ExportContext context, int max = BgpConstants.MaxMessageLength)
    {
        var family = prefixes[0].Family;
        var encoded = UpdateEncoder.Encode(attributes, family, context);
        var messages = new List<byte[]>();
        var rest = prefixes.AsSpan();
        while (!rest.IsEmpty)
        {
            var w = new ArrayBufferWriter<byte>();
            var n = UpdateEncoder.WriteAnnounce(w, encoded, rest, max);
            Assert.True(n > 0);
            Assert.True(w.WrittenCount <= max);
            messages.Add(w.WrittenSpan.ToArray());
            rest = rest[n..];
        }
        return messages;
    }

    [Fact]
    public void IPv4HostRoutesWithCommunitiesRoundTripThroughTheParser()
    {
        var attributes = new RouteAttributes
        {
            NextHop = IPAddress.Parse("192.0.2.7"),
            Communities = [(65003u << 16) | 7],
            LargeCommunities = [new LargeCommunity(65003, 1, 0)],
            MultiExitDisc = 5,
        };
        var prefixes = HostRoutesV4(2000);
        var messages = EncodeAll(attributes, prefixes, Ebgp4);
        Assert.True(messages.Count >= 2, "2000 /32s do not fit one 4096-octet UPDATE");

        var parsed = new List<RoutePrefix>();
        var update = new UpdateMessage();
        foreach (var m in messages)
        {
            update.Parse(new ReadOnlySequence<byte>(m, 19, m.Length - 19), UpdateParseContext.FourOctetIbgp);
            Assert.Equal(UpdateAction.Accept, update.Action);
            Assert.Equal(0xC0000207u, update.NextHop);
            Assert.Equal(5u, update.MultiExitDisc);
            Assert.Equal(new byte[] { 0xFD, 0xEB, 0, 7 }, update.CommunityBytes.ToArray());
            Assert.Equal(12, update.LargeCommunityBytes.Length);
            Assert.Equal(new byte[] { 2, 1, 0, 0, 0xFD, 0xEB }, update.AsPathBytes.ToArray());
            parsed.AddRange(update.Announced);
        }
        Assert.Equal(prefixes, parsed);
    }

    [Fact]
    public void IPv6HostRoutesTravelInMpReachWithTheirNextHop()
    {
        var attributes = new RouteAttributes { NextHop = IPAddress.Parse("2001:db8::1") };
        var prefixes = HostRoutesV6(500);
        var update = new UpdateMessage();
        var parsed = new List<RoutePrefix>();
        foreach (var m in EncodeAll(attributes, prefixes, Ebgp4))
        {
            update.Parse(m.AsSpan(19), UpdateParseContext.FourOctetIbgp);
            Assert.Equal(UpdateAction.Accept, update.Action);
            Assert.Equal(AddressFamily.IPv6Unicast, update.MpReachFamily);
            Assert.Equal(IPAddress.Parse("2001:db8::1"), new IPAddress(update.MpNextHopBytes));
            parsed.AddRange(update.Announced);
        }
        Assert.Equal(prefixes, parsed);
    }

    [Fact]
    public void ExtendedMessageFitsMorePrefixesPerUpdate()
    {
        var prefixes = HostRoutesV4(20000);
        var normal = EncodeAll(RouteAttributes.Default, prefixes, Ebgp4);
        var extended = EncodeAll(RouteAttributes.Default, prefixes, Ebgp4, BgpConstants.ExtendedMaxMessageLength);
        Assert.True(extended.Count * 10 < normal.Count, $"{extended.Count} extended vs {normal.Count} normal UPDATEs");
    }

    [Fact]
    public void IPv4RouteWithIPv6NextHopUsesRfc8950MpReach()
    {
        var attributes = new RouteAttributes { NextHop = IPAddress.Parse("2001:db8::9") };
        var m = EncodeAll(attributes, HostRoutesV4(3), Ebgp4).Single();
        var update = new UpdateMessage();
        update.Parse(m.AsSpan(19), UpdateParseContext.FourOctetIbgp);
        Assert.Equal(AddressFamily.IPv4Unicast, update.MpReachFamily);
        Assert.Null(update.NextHop);
        Assert.Equal(3, update.Announced.Count);
        Assert.Equal(UpdateAction.Accept, update.Action);
    }

    [Fact]
    public void TwoOctetPeerGetsAsTransAndAs4Path()
    {
        var context = Ebgp4 with { LocalAs = 4200000001, FourOctetAs = false };
        var m = EncodeAll(RouteAttributes.Default, HostRoutesV4(1), context).Single();
        var update = new UpdateMessage();
        update.Parse(m.AsSpan(19), new UpdateParseContext(false, false, 0));
        Assert.Equal(new byte[] { 2, 1, 0x5B, 0xA0 }, update.AsPathBytes.ToArray());
        Assert.Equal(new byte[] { 2, 1, 0xFA, 0x56, 0xEA, 0x01 }, update.As4PathBytes.ToArray());
    }

    [Fact]
    public void WithdrawsAndEndOfRibParseBack()
    {
        var update = new UpdateMessage();
        foreach (var prefixes in new[] { HostRoutesV4(1500), HostRoutesV6(300) })
        {
            var got = new List<RoutePrefix>();
            var rest = prefixes.AsSpan();
            while (!rest.IsEmpty)
            {
                var w = new ArrayBufferWriter<byte>();
                rest = rest[UpdateEncoder.WriteWithdraw(w, rest, 4096)..];
                update.Parse(w.WrittenSpan[19..], UpdateParseContext.FourOctetIbgp);
                Assert.Empty(update.Announced);
                got.AddRange(update.Withdrawn);
            }
            Assert.Equal(prefixes, got);
        }
        foreach (var family in new[] { AddressFamily.IPv4Unicast, AddressFamily.IPv6Unicast })
        {
            var w = new ArrayBufferWriter<byte>();
            UpdateEncoder.WriteEndOfRib(w, family);
            update.Parse(w.WrittenSpan[19..], UpdateParseContext.FourOctetIbgp);
            Assert.True(update.IsEndOfRib);
            Assert.Equal(family, update.EndOfRibFamily);
        }
    }

    [Fact]
    public void OpenWithEveryCapabilityRoundTrips()
    {
        var caps = new BgpCapabilities { FourOctetAs = 4200000001, RouteRefresh = true, EnhancedRouteRefresh = true, ExtendedMessage = true };
        caps.Multiprotocol.AddRange([AddressFamily.IPv4Unicast, AddressFamily.IPv6Unicast]);
        caps.ExtendedNextHop.Add(new ExtendedNextHop(AddressFamily.IPv4Unicast, Afi.IPv6));
        caps.GracefulRestart = new GracefulRestartCapability(true, 120, [(AddressFamily.IPv4Unicast, true)]);
        var open = new OpenMessage { MyAs = BgpConstants.AsTrans, HoldTime = 90, BgpIdentifier = 0x7F000003, Capabilities = caps };
        var w = new ArrayBufferWriter<byte>();
        open.WriteTo(w);
        var parsed = OpenMessage.Parse(w.WrittenSpan[19..]);
        Assert.Equal(4200000001u, parsed.AutonomousSystem);
        Assert.Equal(90, parsed.HoldTime);
        Assert.Equal(caps.Multiprotocol, parsed.Capabilities.Multiprotocol);
        Assert.True(parsed.Capabilities.EnhancedRouteRefresh && parsed.Capabilities.ExtendedMessage && parsed.Capabilities.RouteRefresh);
        Assert.Equal(caps.ExtendedNextHop, parsed.Capabilities.ExtendedNextHop);
        Assert.Equal(120, parsed.Capabilities.GracefulRestart!.RestartTimeSeconds);
        Assert.True(parsed.Capabilities.GracefulRestart.RestartState);
    }

    [Fact]
    public void ShutdownCommunicationIsUtf8AndCutOnACharacterBoundary()
    {
        var n = NotificationMessage.Shutdown(new string('é', 200));
        Assert.Equal(NotificationCode.Cease, n.Code);
        Assert.Equal(NotificationSubcode.AdministrativeShutdown, n.Subcode);
        Assert.True(n.Data[0] <= 255);
        Assert.Equal(new string('é', 127), n.ShutdownCommunication);
        var w = new ArrayBufferWriter<byte>();
        n.WriteTo(w);
        var parsed = NotificationMessage.Parse(new ReadOnlySequence<byte>(w.WrittenMemory[19..]));
        Assert.Equal(n.ShutdownCommunication, parsed.ShutdownCommunication);
    }

    [Fact]
    public void FramingFindsEveryMessageAtEverySplitPoint()
    {
        var stream = new List<byte>();
        stream.AddRange(Message(4));
        stream.AddRange(Update([], Mandatory, Nlri10001));
        stream.AddRange(Open());
        stream.AddRange(Message(4));
        var bytes = stream.ToArray();
        for (var split = 0; split <= bytes.Length; split++)
        {
            foreach (var sequence in new[] { Segments.Split(bytes, split), Segments.OneBytePerSegment(bytes) })
            {
                var buffer = sequence;
                var types = new List<BgpMessageType>();
                var update = new UpdateMessage();
                while (BgpFraming.TryReadMessage(ref buffer, 4096, out var type, out var body))
                {
                    types.Add(type);
                    if (type == BgpMessageType.Update)
                    {
                        update.Parse(body, UpdateParseContext.FourOctetIbgp);
                        Assert.Equal(RoutePrefix.Parse("10.0.0.1/32"), Assert.Single(update.Announced));
                    }
                }
                Assert.Equal([BgpMessageType.Keepalive, BgpMessageType.Update, BgpMessageType.Open, BgpMessageType.Keepalive], types);
                Assert.Equal(0, buffer.Length);
            }
        }
    }

    [Fact]
    public void PartialMessageNeedsMoreBytesAndConsumesNothing()
    {
        var m = Update([], Mandatory, Nlri10001);
        for (var n = 0; n < m.Length; n++)
        {
            var buffer = new ReadOnlySequence<byte>(m, 0, n);
            Assert.False(BgpFraming.TryReadMessage(ref buffer, 4096, out _, out _));
            Assert.Equal(n, buffer.Length);
        }
    }

    [Theory]
    [InlineData("10.1.2.3/32", "10.1.2.3/32")]
    [InlineData("10.1.2.3", "10.1.2.3/32")]
    [InlineData("10.1.2.3/8", "10.0.0.0/8")]
    [InlineData("2001:db8::1", "2001:db8::1/128")]
    [InlineData("2001:db8::1/32", "2001:db8::/32")]
    public void PrefixesParseAndNormalise(string text, string expected) => Assert.Equal(expected, RoutePrefix.Parse(text).ToString());

    [Theory]
    [InlineData("10.1.2.3/33")]
    [InlineData("2001:db8::/129")]
    [InlineData("nonsense")]
    [InlineData("10.0.0.0/-1")]
    public void InvalidPrefixesAreRejected(string text) => Assert.False(RoutePrefix.TryParse(text, out _));
}

internal sealed class Segment : ReadOnlySequenceSegment<byte>
{
    public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
    {
        Memory = memory;
        RunningIndex = runningIndex;
    }

    public Segment Append(ReadOnlyMemory<byte> memory)
    {
        var next = new Segment(memory, RunningIndex + Memory.Length);
        Next = next;
        return next;
    }
}

internal static class Segments
{
    public static ReadOnlySequence<byte> Split(byte[] bytes, int at)
    {
        var first = new Segment(bytes.AsMemory(0, at), 0);
        var last = first.Append(bytes.AsMemory(at));
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    public static ReadOnlySequence<byte> OneBytePerSegment(byte[] bytes)
    {
        if (bytes.Length == 0)
            return ReadOnlySequence<byte>.Empty;
        var first = new Segment(bytes.AsMemory(0, 1), 0);
        var last = first;
        for (var i = 1; i < bytes.Length; i++)
            last = last.Append(bytes.AsMemory(i, 1));
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }
}
