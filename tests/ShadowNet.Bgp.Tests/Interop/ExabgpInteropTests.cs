using System.Net;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Bgp.Tests.Support;
using ShadowNet.Bgp.Wire;
using static ShadowNet.Bgp.Tests.Support.InteropRoutes;

namespace ShadowNet.Bgp.Tests.Interop;

/// <summary>
/// A real ExaBGP sending us bad routes: RFC 7606 error handling (treat-as-withdraw and attribute
/// discard keep the session up) and the maximum-prefix limit (RFC 4486 Cease/1).
/// </summary>
public class ExabgpInteropTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static string Neighbor(int ourPort, string routes) => $$"""
        neighbor {{OurAddress}} {
          router-id 127.0.0.5;
          local-address 127.0.0.5;
          local-as 65005;
          peer-as {{OurAs}};
          connect {{ourPort}};
          hold-time 30;
          family { ipv4 unicast; }
          static {
        {{routes}}
          }
        }
        """;

    private static (BgpSpeaker Speaker, BgpPeer Peer) Listening(int ourPort, int? maxPrefixes = null)
    {
        var speaker = Speaker(listenPort: ourPort);
        var peer = Peer("127.0.0.5", 179, 65005, passive: true);
        peer.MaxPrefixes = maxPrefixes;
        return (speaker, speaker.AddPeer(peer));
    }

    [Fact]
    public async Task MalformedAttributesFromExabgpAreHandledPerRfc7606AndTheSessionStaysUp()
    {
        var ourPort = TestPorts.Next();
        var (speaker, peer) = Listening(ourPort);
        await using var _ = speaker;
        speaker.Start();
        // 10.50.1.0/24: COMMUNITIES of 5 octets (treat-as-withdraw, RFC 7606 section 7.8);
        // 10.50.2.0/24: AGGREGATOR of 5 octets (attribute discard, section 7.7): the route stays, the attribute goes.
        await using var exabgp = new ExabgpPeer(Neighbor(ourPort, """
                route 10.50.0.0/24 next-hop 127.0.0.5;
                route 10.50.1.0/24 next-hop 127.0.0.5 attribute [ 0x08 0xc0 0x0102030405 ];
                route 10.50.2.0/24 next-hop 127.0.0.5 attribute [ 0x07 0xc0 0x0000010203 ];
                route 10.50.3.0/24 next-hop 127.0.0.5 community 65005:1;
            """));
        exabgp.Start();
        await WaitEstablishedAsync(peer, Patience);

        var received = await Eventually.WaitAsync(() => Task.FromResult(peer.ReceivedRoutes.Prefixes()), p => p.Count >= 3, Patience);
        Assert.Equal(["10.50.0.0/24", "10.50.2.0/24", "10.50.3.0/24"], received.Select(p => p.ToString()).Order());
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.Equal(BgpSessionState.Established, peer.State);
        Assert.Equal(1, peer.EstablishedCount);
        Assert.Null(peer.LastNotificationSent);
        Assert.Equal((1, 1), (peer.UpdatesTreatedAsWithdraw, peer.AttributesDiscarded));
    }

    [Fact]
    public async Task ExabgpSendingMoreThanMaxPrefixesIsClosedWithCeaseMaximumPrefixesAndKnowsWhy()
    {
        var ourPort = TestPorts.Next();
        var (speaker, peer) = Listening(ourPort, maxPrefixes: 10);
        await using var _ = speaker;
        speaker.Start();
        await using var exabgp = new ExabgpPeer(Neighbor(ourPort, string.Join('\n', Enumerable.Range(0, 12).Select(i => $"        route 10.60.{i}.0/24 next-hop 127.0.0.5;"))));
        exabgp.Start();

        var sent = await Eventually.WaitAsync(() => Task.FromResult(peer.LastNotificationSent), n => n is not null, Patience);
        Assert.Equal((NotificationCode.Cease, NotificationSubcode.MaximumPrefixesReached), (sent!.Value.Code, sent.Value.Subcode));
        var log = await Eventually.WaitAsync(() => Task.FromResult(exabgp.Log), l => l.Contains("Maximum Number of Prefixes Reached", StringComparison.Ordinal), Patience);
        Assert.Contains("notification received (6,1)", log, StringComparison.Ordinal);
    }
}
