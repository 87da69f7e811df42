using System.Buffers;
using System.Net;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Fuzz;

/// <summary>
/// The BGP parsers as a peer's bytes reach them: framing, then each message by its type (UPDATE in the
/// contexts a session can have). A <see cref="BgpProtocolException"/> is the parser's answer (a
/// NOTIFICATION); any other exception is a bug.
/// </summary>
public static class BgpTarget
{
    private static readonly UpdateParseContext[] Contexts =
    [
        new() { FourOctetAs = true, IsEbgp = true, PeerAs = 65002 },
        new() { FourOctetAs = false, IsEbgp = true, PeerAs = 65002 },
        new() { FourOctetAs = true, IsEbgp = false, PeerAs = 65003 },
    ];

    [ThreadStatic]
    private static UpdateMessage? _update;

    public static void Run(ReadOnlySpan<byte> input)
    {
        var update = _update ??= new UpdateMessage();
        foreach (var maxLength in (ReadOnlySpan<int>)[BgpConstants.MaxMessageLength, BgpConstants.ExtendedMaxMessageLength])
        {
            var buffer = new ReadOnlySequence<byte>(input.ToArray());
            try
            {
                while (BgpFraming.TryReadMessage(ref buffer, maxLength, out var type, out var body))
                {
                    Parse(type, body, update);
                }
            }
            catch (BgpProtocolException)
            {
                // A framing error: the session would send this NOTIFICATION and close.
            }
        }
    }

    private static void Parse(BgpMessageType type, ReadOnlySequence<byte> body, UpdateMessage update)
    {
        try
        {
            switch (type)
            {
                case BgpMessageType.Open:
                    OpenMessage.Parse(body);
                    break;
                case BgpMessageType.Update:
                    foreach (var context in Contexts)
                    {
                        update.Parse(body, context);
                    }

                    break;
                case BgpMessageType.Notification:
                    _ = NotificationMessage.Parse(body).ToString();
                    break;
                case BgpMessageType.RouteRefresh:
                    RouteRefreshMessage.Parse(body);
                    break;
            }
        }
        catch (BgpProtocolException)
        {
            // The parser's NOTIFICATION: expected for bad input.
        }
    }

    /// <summary>Valid messages written with our own encoders, and a session's worth of them in one input: where the fuzzer starts.</summary>
    public static IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        var messages = Messages().ToList();
        return [.. messages, ("session", [.. messages.SelectMany(m => m.Bytes)])];
    }

    private static IEnumerable<(string Name, byte[] Bytes)> Messages()
    {
        var capabilities = new BgpCapabilities { FourOctetAs = 4_200_000_000, RouteRefresh = true, EnhancedRouteRefresh = true, ExtendedMessage = true };
        capabilities.Multiprotocol.AddRange([AddressFamily.IPv4Unicast, AddressFamily.IPv6Unicast]);
        capabilities.ExtendedNextHop.Add(new ExtendedNextHop(AddressFamily.IPv4Unicast, Afi.IPv6));
        capabilities.GracefulRestart = new GracefulRestartCapability(true, 120, [(AddressFamily.IPv4Unicast, true)]);
        yield return ("open", Written(new OpenMessage { MyAs = BgpConstants.AsTrans, HoldTime = 90, BgpIdentifier = 0x7F000003, Capabilities = capabilities }.WriteTo));

        var context = new ExportContext(65003, IsEbgp: true, FourOctetAs: true, IPAddress.Parse("127.0.0.3"), IPAddress.Parse("2001:db8::3"), ExtendedNextHopIPv4: false);
        var attributes = new RouteAttributes
        {
            NextHop = IPAddress.Parse("192.0.2.10"),
            MultiExitDisc = 10,
            Communities = [(65003u << 16) | 7],
            LargeCommunities = [new LargeCommunity(65003, 1, 0)],
        };
        RoutePrefix[] v4 = [RoutePrefix.IPv4(0x0A010001, 32), RoutePrefix.IPv4(0x0A010002, 32), RoutePrefix.IPv4(0x0A020000, 16)];
        RoutePrefix[] v6 = [RoutePrefix.Parse("2001:db8:1::1/128"), RoutePrefix.Parse("2001:db8:2::/48")];
        var v4Encoded = UpdateEncoder.Encode(attributes, AddressFamily.IPv4Unicast, context);
        var v6Attributes = new RouteAttributes { NextHop = IPAddress.Parse("2001:db8::10"), Communities = attributes.Communities, LargeCommunities = attributes.LargeCommunities };
        var v6Encoded = UpdateEncoder.Encode(v6Attributes, AddressFamily.IPv6Unicast, context);
        yield return ("update-v4", Written(w => UpdateEncoder.WriteAnnounce(w, v4Encoded, v4, BgpConstants.MaxMessageLength)));
        yield return ("update-v6", Written(w => UpdateEncoder.WriteAnnounce(w, v6Encoded, v6, BgpConstants.MaxMessageLength)));
        yield return ("withdraw-v4", Written(w => UpdateEncoder.WriteWithdraw(w, v4, BgpConstants.MaxMessageLength)));
        yield return ("withdraw-v6", Written(w => UpdateEncoder.WriteWithdraw(w, v6, BgpConstants.MaxMessageLength)));
        yield return ("end-of-rib", Written(w => UpdateEncoder.WriteEndOfRib(w, AddressFamily.IPv6Unicast)));
        yield return ("keepalive", Written(BgpFraming.WriteKeepalive));
        yield return ("notification", Written(NotificationMessage.Shutdown("maintenance window").WriteTo));
        yield return ("route-refresh", Written(new RouteRefreshMessage(AddressFamily.IPv4Unicast, RouteRefreshMessage.Request).WriteTo));

    }

    private static byte[] Written(Action<IBufferWriter<byte>> write)
    {
        var writer = new ArrayBufferWriter<byte>();
        write(writer);
        return writer.WrittenSpan.ToArray();
    }

    private static byte[] Written(Func<IBufferWriter<byte>, int> write) => Written(w => { write(w); });
}
