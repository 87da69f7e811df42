using System.Diagnostics;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Bgp.Wire;
using ShadowNet.Bgp.Tests.Support;
using static ShadowNet.Bgp.Tests.Support.InteropRoutes;

namespace ShadowNet.Bgp.Tests.Interop;

/// <summary>Our speaker against a real BIRD 2 on loopback, each test with its own ports and files.</summary>
public class BirdInteropTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static BirdPeer PassiveBird(int birdPort) => new($$"""
          local 127.0.0.2 port {{birdPort}} as 65002;
          neighbor {{OurAddress}} as {{OurAs}};
          multihop; strict bind on; passive on;
          hold time 30;
          ipv4 { import all; export none; };
          ipv6 { import all; export none; };
        """);

    [Fact]
    public async Task ActiveSessionDeliversHostRoutesWithNextHopAndCommunitiesExactly()
    {
        var birdPort = TestPorts.Next();
        await using var bird = PassiveBird(birdPort);
        await bird.StartAsync();
        await using var speaker = Speaker();
        var v4 = V4(10_000);
        var v6 = V6(1_000);
        speaker.Announce(v4, V4Attributes);
        speaker.Announce(v6, V6Attributes);
        var peer = speaker.AddPeer(Peer("127.0.0.2", birdPort, 65002));
        speaker.Start();
        await WaitEstablishedAsync(peer, Patience);

        Assert.Equal(10_000, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 10_000, Patience));
        Assert.Equal(1_000, await Eventually.WaitAsync(() => bird.RouteCountAsync("master6"), n => n == 1_000, Patience));

        var routes4 = await bird.RoutesAsync("master4");
        Assert.Equal(v4.Select(p => p.ToString()).Order(), routes4.Keys.Order());
        Assert.All(routes4.Values, r =>
        {
            Assert.Equal("192.0.2.10", r.NextHop);
            Assert.Equal("(65003,7)", r.Communities);
            Assert.Equal("(65003, 1, 0)", r.LargeCommunities);
            Assert.Equal("65003", r.AsPath);
        });
        var routes6 = await bird.RoutesAsync("master6");
        Assert.Equal(v6.Select(p => p.ToString()).Order(), routes6.Keys.Order());
        Assert.All(routes6.Values, r => Assert.StartsWith("2001:db8::1", r.NextHop, StringComparison.Ordinal));

        foreach (var p in v4[..5_000])
            speaker.Withdraw(p);
        foreach (var p in v6[..500])
            speaker.Withdraw(p);
        Assert.Equal(5_000, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 5_000, Patience));
        Assert.Equal(500, await Eventually.WaitAsync(() => bird.RouteCountAsync("master6"), n => n == 500, Patience));
        routes4 = await bird.RoutesAsync("master4");
        Assert.Equal(v4[5_000..].Select(p => p.ToString()).Order(), routes4.Keys.Order());
    }

    [Fact]
    public async Task PassiveSessionComesUpWhenBirdConnectsAndCarriesRoutes()
    {
        var ourPort = TestPorts.Next();
        await using var bird = new BirdPeer($$"""
              local 127.0.0.2 port {{TestPorts.Next()}} as 65002;
              neighbor {{OurAddress}} port {{ourPort}} as {{OurAs}};
              multihop; connect delay time 1; connect retry time 1;
              ipv4 { import all; export none; };
              ipv6 { import all; export none; };
            """);
        await using var speaker = Speaker(listenPort: ourPort);
        speaker.Announce(V4(100), V4Attributes);
        var peer = speaker.AddPeer(Peer("127.0.0.2", 179, 65002, passive: true));
        speaker.Start();
        await bird.StartAsync();
        await WaitEstablishedAsync(peer, Patience);
        Assert.Equal(100, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 100, Patience));
    }

    /// <summary>BIRD connecting to our listener on <paramref name="ourPort"/>, retrying every second after an error.</summary>
    private static BirdPeer ConnectingBird(int ourPort) => new($$"""
          local 127.0.0.2 port {{TestPorts.Next()}} as 65002;
          neighbor {{OurAddress}} port {{ourPort}} as {{OurAs}};
          multihop; connect delay time 1; connect retry time 1; error wait time 1, 2;
          ipv4 { import all; export none; };
        """);

    [Fact]
    public async Task RemovedPeerIsToldPeerDeconfiguredItsReconnectsAreRefusedAndAddingItBackRestoresTheSession()
    {
        var ourPort = TestPorts.Next();
        await using var bird = ConnectingBird(ourPort);
        await using var speaker = Speaker(listenPort: ourPort);
        speaker.Announce(V4(100), V4Attributes);
        var peer = speaker.AddPeer(Peer("127.0.0.2", 179, 65002, passive: true));
        speaker.Start();
        await bird.StartAsync();
        await WaitEstablishedAsync(peer, Patience);
        Assert.Equal(100, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 100, Patience));

        await speaker.RemovePeerAsync(peer, new NotificationMessage(NotificationCode.Cease, NotificationSubcode.PeerDeconfigured, []));
        Assert.Empty(speaker.Peers);
        Assert.Equal(BgpSessionState.Idle, peer.State);
        Assert.Equal(0, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 0, Patience));
        Assert.Contains("Received: Peer de-configured", bird.Log, StringComparison.Ordinal);
        // BIRD keeps connecting; the listener answers RFC 4486's Connection Rejected now.
        await Eventually.WaitAsync(() => Task.FromResult(bird.Log), l => l.Contains("Received: Connection rejected", StringComparison.Ordinal), Patience);
        Assert.Equal(1, peer.EstablishedCount);

        var again = speaker.AddPeer(Peer("127.0.0.2", 179, 65002, passive: true));
        await WaitEstablishedAsync(again, Patience);
        Assert.Equal(100, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 100, Patience));
    }

    [Fact]
    public async Task APeerHeldDownAnswersBirdsConnectionsWithItsShutdownMessageAndNeverComesUp()
    {
        var ourPort = TestPorts.Next();
        await using var bird = ConnectingBird(ourPort);
        await using var speaker = Speaker(listenPort: ourPort);
        speaker.Announce(V4(100), V4Attributes);
        var options = Peer("127.0.0.2", 179, 65002, passive: true);
        options.ShutdownMessage = "rack 12 maintenance";
        var peer = speaker.AddPeer(options);
        speaker.Start();
        await bird.StartAsync();

        await Eventually.WaitAsync(() => Task.FromResult(bird.Log), l => l.Split("Received: Administrative shutdown: \"rack 12 maintenance\"").Length > 2, Patience);
        Assert.Equal((BgpSessionState.Idle, 0L, 0), (peer.State, peer.EstablishedCount, await bird.RouteCountAsync("master4")));
        Assert.DoesNotContain("Established", await bird.BirdcAsync("show protocols sn"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task BothSidesActiveAndListeningConvergeOnOneStableSession()
    {
        // RFC 4271 section 6.8: both ends active and listening. Whether the two TCP connections
        // actually cross depends on timing; either way exactly one session must stay up.
        var birdPort = TestPorts.Next();
        var ourPort = TestPorts.Next();
        await using var bird = new BirdPeer($$"""
              local 127.0.0.2 port {{birdPort}} as 65002;
              neighbor {{OurAddress}} port {{ourPort}} as {{OurAs}};
              multihop; strict bind on; connect delay time 1; connect retry time 1;
              ipv4 { import all; export none; };
            """);
        await bird.StartAsync();
        await using var speaker = Speaker(listenPort: ourPort);
        speaker.Announce(V4(100), V4Attributes);
        var peer = speaker.AddPeer(Peer("127.0.0.2", birdPort, 65002));
        speaker.Start();
        await WaitEstablishedAsync(peer, Patience);
        Assert.Equal(100, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 100, Patience));
        await Task.Delay(TimeSpan.FromSeconds(4));
        Assert.True(peer.State == BgpSessionState.Established,
            $"session left Established: state {peer.State}, established {peer.EstablishedCount} times, last error: {peer.LastError}");
        Assert.True(await bird.IsEstablishedAsync());
        Assert.Equal(100, await bird.RouteCountAsync("master4"));
    }

    [Fact]
    public async Task BirdRestartBringsTheSessionBackAndEveryRouteIsSentAgain()
    {
        var birdPort = TestPorts.Next();
        await using var bird = PassiveBird(birdPort);
        await bird.StartAsync();
        await using var speaker = Speaker();
        speaker.Announce(V4(1_000), V4Attributes);
        var peer = speaker.AddPeer(Peer("127.0.0.2", birdPort, 65002));
        speaker.Start();
        await WaitEstablishedAsync(peer, Patience);
        Assert.Equal(1_000, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 1_000, Patience));

        await bird.KillAsync();
        await Eventually.WaitAsync(() => Task.FromResult(peer.State), s => s != BgpSessionState.Established, Patience);
        await bird.StartAsync();
        await Eventually.WaitAsync(() => Task.FromResult(peer.EstablishedCount), n => n >= 2, Patience);
        Assert.Equal(2, peer.EstablishedCount);
        Assert.Equal(1_000, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 1_000, Patience));
    }

    [Fact]
    public async Task ShutdownWithoutGracefulRestartMakesBirdDropTheRoutesAndLogTheReason()
    {
        var birdPort = TestPorts.Next();
        await using var bird = PassiveBird(birdPort);
        await bird.StartAsync();
        var speaker = Speaker(gracefulRestart: 0);
        speaker.Announce(V4(1_000), V4Attributes);
        var peer = speaker.AddPeer(Peer("127.0.0.2", birdPort, 65002));
        speaker.Start();
        await WaitEstablishedAsync(peer, Patience);
        Assert.Equal(1_000, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 1_000, Patience));

        await speaker.StopAsync("maintenance window 42");
        await speaker.DisposeAsync();
        Assert.Equal(0, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 0, TimeSpan.FromSeconds(10)));
        var protocol = await bird.BirdcAsync("show protocols all sn");
        Assert.Contains("Administrative shutdown", protocol, StringComparison.Ordinal);
        Assert.Contains("maintenance window 42", protocol + bird.Log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task KilledSpeakerWithGracefulRestartKeepsRoutesForTheRestartTimeThenBirdDropsThem()
    {
        var birdPort = TestPorts.Next();
        await using var bird = PassiveBird(birdPort);
        await bird.StartAsync();
        using var cli = StartCli($"bgp announce --peer 127.0.0.2 --peer-port {birdPort} --peer-as 65002 --local-as {OurAs} --router-id {OurAddress} --local-address {OurAddress} --next-hop 192.0.2.10 --graceful-restart 6 --connect-retry 1 --generate 10.9.0.0 --generate-count 500 --quiet");
        try
        {
            Assert.Equal(500, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 500, Patience));
        }
        finally
        {
            cli.Kill(); // SIGKILL: no NOTIFICATION, the TCP connection just goes away
            await cli.WaitForExitAsync();
        }
        var killed = Stopwatch.StartNew();
        await Eventually.WaitAsync(() => bird.IsEstablishedAsync(), up => !up, TimeSpan.FromSeconds(10));
        // Within the restart time BIRD keeps forwarding on the stale routes...
        Assert.Equal(500, await bird.RouteCountAsync("master4"));
        Assert.True(killed.Elapsed < TimeSpan.FromSeconds(5), "the stale-route check must run inside the 6 s restart time");
        // ...and drops them when the restart time passes without us coming back.
        Assert.Equal(0, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), n => n == 0, TimeSpan.FromSeconds(20)));
        Assert.True(killed.Elapsed >= TimeSpan.FromSeconds(5), $"routes dropped after {killed.Elapsed}, before the restart time");
    }
}

/// <summary>A peer that stops reading must not slow the others or make the speaker's memory grow.</summary>
public class SlowPeerTests
{
    [Fact]
    public async Task PeerThatStopsReadingDoesNotStallBirdAndItsBacklogStaysBounded()
    {
        var birdPort = TestPorts.Next();
        await using var bird = new BirdPeer($$"""
              local 127.0.0.2 port {{birdPort}} as 65002;
              neighbor {{OurAddress}} as {{OurAs}};
              multihop; strict bind on; passive on;
              ipv4 { import all; export none; };
            """);
        await bird.StartAsync();

        // The stalled peer: completes the handshake, then never reads again (small receive window).
        using var stalledListener = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        stalledListener.ReceiveBufferSize = 4096;
        stalledListener.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Parse("127.0.0.6"), 0));
        stalledListener.Listen();
        var stalledPort = ((System.Net.IPEndPoint)stalledListener.LocalEndPoint!).Port;

        await using var speaker = Speaker();
        const int n = 1_000_000;
        var routes = V4(n);
        speaker.Announce(routes, V4Attributes);
        var healthy = speaker.AddPeer(Peer("127.0.0.2", birdPort, 65002));
        var stalled = speaker.AddPeer(Peer("127.0.0.6", stalledPort, 65006));
        speaker.Start();

        using var stalledSocket = await stalledListener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        var buffer = new byte[4096];
        await stalledSocket.ReceiveAsync(buffer); // our OPEN
        await stalledSocket.SendAsync(Wire.MessageBuilder.Open(myAs: 65006, hold: 0, id: 0x7F000006, optional: [2, 6, 65, 4, 0, 0, 0xFD, 0xEE]));
        await stalledSocket.SendAsync(Wire.MessageBuilder.Message(4));
        await WaitEstablishedAsync(stalled, TimeSpan.FromSeconds(10));

        Assert.Equal(n, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), c => c == n, TimeSpan.FromSeconds(60)));
        Assert.True(stalled.PrefixesSent < n, $"the stalled peer cannot have taken all {n} routes ({stalled.PrefixesSent})");

        // Churn on the same prefixes coalesces into the backlog instead of queueing messages.
        for (var round = 0; round < 20; round++)
        {
            foreach (var p in routes[..10_000])
                speaker.Withdraw(p);
            speaker.Announce(routes.AsSpan(0, 10_000), V4Attributes);
        }
        Assert.True(stalled.PendingPrefixes <= n, $"backlog {stalled.PendingPrefixes} exceeds the table size");
        Assert.Equal(BgpSessionState.Established, healthy.State);
        // The churn's last state is "all announced"; BIRD may still be applying the tail of it.
        Assert.Equal(n, await Eventually.WaitAsync(() => bird.RouteCountAsync("master4"), c => c == n, TimeSpan.FromSeconds(30)));
    }
}
