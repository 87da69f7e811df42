using ShadowNet.Bgp.Sessions;
using ShadowNet.Bgp.Tests.Support;
using static ShadowNet.Bgp.Tests.Support.InteropRoutes;

namespace ShadowNet.Bgp.Tests.Interop;

/// <summary>TCP MD5 signatures (RFC 2385) and GTSM (RFC 5082) against a real BIRD 2 configured with them.</summary>
public class SessionSecurityTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>Long enough for several connect attempts (retry every 1 to 2 s) to have failed.</summary>
    private static readonly TimeSpan Refused = TimeSpan.FromSeconds(6);

    [Fact]
    public async Task Md5SessionComesUpWithTheRightKeyAndNeverWithAWrongKeyOrNone()
    {
        var birdPort = TestPorts.Next();
        await using var bird = new BirdPeer($$"""
              local 127.0.0.2 port {{birdPort}} as 65002;
              neighbor {{OurAddress}} as {{OurAs}};
              multihop; strict bind on; passive on;
              password "sn-md5-key";
              ipv4 { import all; export none; };
            """);
        await bird.StartAsync();

        await using (var wrong = Speaker())
        await using (var none = Speaker())
        {
            var wrongPeer = wrong.AddPeer(With(Peer("127.0.0.2", birdPort, 65002), password: "not-the-key"));
            var nonePeer = none.AddPeer(Peer("127.0.0.2", birdPort, 65002));
            wrong.Start();
            none.Start();
            await Task.Delay(Refused);
            Assert.NotEqual(BgpSessionState.Established, wrongPeer.State);
            Assert.NotEqual(BgpSessionState.Established, nonePeer.State);
            Assert.Equal(0, wrongPeer.EstablishedCount + nonePeer.EstablishedCount);
            Assert.False(await bird.IsEstablishedAsync());
        }

        await using var speaker = Speaker();
        speaker.Announce(V4(100), V4Attributes);
        var peer = speaker.AddPeer(With(Peer("127.0.0.2", birdPort, 65002), password: "sn-md5-key"));
        speaker.Start();
        await WaitEstablishedAsync(peer, Patience);
        Assert.Equal(100, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 100, Patience));
    }

    [Fact]
    public async Task ListenerHoldsThePeersMd5KeySoBirdConnectingWithItComesUpAndWithAnotherDoesNot()
    {
        var ourPort = TestPorts.Next();
        string Bird(string password) => $$"""
              local 127.0.0.2 port {{TestPorts.Next()}} as 65002;
              neighbor {{OurAddress}} port {{ourPort}} as {{OurAs}};
              multihop; connect delay time 1; connect retry time 1;
              password "{{password}}";
              ipv4 { import all; export none; };
            """;
        await using var speaker = Speaker(listenPort: ourPort);
        speaker.Announce(V4(10), V4Attributes);
        var peer = speaker.AddPeer(With(Peer("127.0.0.2", 179, 65002, passive: true), password: "sn-md5-key"));
        speaker.Start();

        await using (var impostor = new BirdPeer(Bird("guessed")))
        {
            await impostor.StartAsync();
            await Task.Delay(Refused);
            Assert.Equal(0, peer.EstablishedCount);
            Assert.False(await impostor.IsEstablishedAsync());
        }

        await using var bird = new BirdPeer(Bird("sn-md5-key"));
        await bird.StartAsync();
        await WaitEstablishedAsync(peer, Patience);
        Assert.Equal(10, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 10, Patience));
    }

    [Fact]
    public async Task TtlSecuritySessionWithBirdListeningComesUpOnlyWhenWeSendWithTtl255()
    {
        var birdPort = TestPorts.Next();
        // With multihop 2, BIRD's GTSM accepts TTL 256 - 2 = 254 and above; a Linux socket sends 64 by default.
        // Short hold and error wait times: once our packets are dropped (even the FIN), BIRD waits out its
        // hold timer, then its error wait, before it takes a connection again.
        await using var bird = new BirdPeer($$"""
              local 127.0.0.2 port {{birdPort}} as 65002;
              neighbor {{OurAddress}} as {{OurAs}};
              multihop 2; ttl security on; strict bind on; passive on;
              hold time 6; startup hold time 6; error wait time 1, 2;
              ipv4 { import all; export none; };
            """);
        await bird.StartAsync();

        await using (var plain = Speaker())
        {
            plain.Announce(V4(10), V4Attributes);
            plain.AddPeer(Peer("127.0.0.2", birdPort, 65002));
            plain.Start();
            await Task.Delay(Refused);
            // BIRD sets the minimum TTL on a connection after accepting it, so our first OPEN can slip in
            // before that and we may see BIRD's OPEN; everything after it is dropped: BIRD never comes up.
            Assert.False(await bird.IsEstablishedAsync());
            Assert.Equal(0, await bird.RouteCountAsync("master4"));
        }

        await using var speaker = Speaker();
        speaker.Announce(V4(10), V4Attributes);
        var peer = speaker.AddPeer(With(Peer("127.0.0.2", birdPort, 65002), ttlSecurityHops: 1));
        speaker.Start();
        await WaitEstablishedAsync(peer, Patience);
        Assert.Equal(10, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 10, Patience));
    }

    [Fact]
    public async Task TtlSecurityWithBirdConnectingNeedsOurListenerToAnswerWithTtl255()
    {
        var ourPort = TestPorts.Next();
        await using var bird = new BirdPeer($$"""
              local 127.0.0.2 port {{TestPorts.Next()}} as 65002;
              neighbor {{OurAddress}} port {{ourPort}} as {{OurAs}};
              multihop 2; ttl security on; connect delay time 1; connect retry time 1;
              hold time 6; startup hold time 6; error wait time 1, 2;
              ipv4 { import all; export none; };
            """);
        await bird.StartAsync();

        // BIRD sets its minimum TTL just after starting to connect, so on loopback our SYN-ACK and even our OPEN
        // (TTL 64) can slip in first and we may see BIRD's OPEN and KEEPALIVE; but BIRD sends its OPEN after
        // the minimum is set, so our KEEPALIVE answering it is always dropped: BIRD never comes up.
        await using (var plain = Speaker(listenPort: ourPort))
        {
            plain.Announce(V4(10), V4Attributes);
            plain.AddPeer(Peer("127.0.0.2", 179, 65002, passive: true));
            plain.Start();
            await Task.Delay(Refused);
            Assert.False(await bird.IsEstablishedAsync());
            Assert.Equal(0, await bird.RouteCountAsync("master4"));
        }

        await using var speaker = Speaker(listenPort: ourPort);
        speaker.Announce(V4(10), V4Attributes);
        var peer = speaker.AddPeer(With(Peer("127.0.0.2", 179, 65002, passive: true), ttlSecurityHops: 1));
        speaker.Start();
        await WaitEstablishedAsync(peer, Patience);
        Assert.Equal(10, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 10, Patience));
    }

    private static BgpPeerOptions With(BgpPeerOptions options, string? password = null, int? ttlSecurityHops = null)
    {
        options.Password = password;
        options.TtlSecurityHops = ttlSecurityHops;
        return options;
    }
}
