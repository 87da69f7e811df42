using System.Diagnostics;
using System.Text.Json;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Bgp.Tests.Support;
using static ShadowNet.Bgp.Tests.Support.InteropRoutes;

namespace ShadowNet.Bgp.Tests.Interop;

/// <summary>Our speaker against a real gobgpd on loopback, read back with the gobgp client.</summary>
public class GobgpInteropTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    internal static string Neighbor(bool passive, int remotePort = 0, bool gracefulRestart = false) => $$"""
        [[neighbors]]
          [neighbors.config]
            neighbor-address = "{{OurAddress}}"
            peer-as = {{OurAs}}
          [neighbors.timers.config]
            connect-retry = 1
            hold-time = 30
          [neighbors.transport.config]
            passive-mode = {{(passive ? "true" : "false")}}
            local-address = "127.0.0.4"
            {{(remotePort != 0 ? $"remote-port = {remotePort}" : "")}}
          [neighbors.ebgp-multihop.config]
            enabled = true
            multihop-ttl = 5
          {{(gracefulRestart ? "[neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 30" : "")}}
          [[neighbors.afi-safis]]
            [neighbors.afi-safis.config]
              afi-safi-name = "ipv4-unicast"
            {{(gracefulRestart ? "[neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true" : "")}}
          [[neighbors.afi-safis]]
            [neighbors.afi-safis.config]
              afi-safi-name = "ipv6-unicast"
            {{(gracefulRestart ? "[neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true" : "")}}
        """;

    private static string Attrs(JsonElement attrs) => attrs.GetRawText();

    [Fact]
    public async Task ActiveSessionDeliversHostRoutesWithNextHopAndCommunitiesExactly()
    {
        var port = TestPorts.Next();
        await using var gobgp = new GobgpPeer(65004, "127.0.0.4", port, Neighbor(passive: true));
        await gobgp.StartAsync();
        await using var speaker = Speaker();
        var v4 = V4(10_000);
        var v6 = V6(1_000);
        speaker.Announce(v4, V4Attributes);
        speaker.Announce(v6, V6Attributes);
        var peer = speaker.AddPeer(Peer("127.0.0.4", port, 65004));
        speaker.Start();
        await WaitEstablishedAsync(peer, Patience);

        Assert.Equal(10_000, await Eventually.WaitAsync(() => gobgp.RouteCountAsync("ipv4"), n => n == 10_000, Patience, TimeSpan.FromMilliseconds(500)));
        Assert.Equal(1_000, await Eventually.WaitAsync(() => gobgp.RouteCountAsync("ipv6"), n => n == 1_000, Patience, TimeSpan.FromMilliseconds(500)));

        var routes4 = await gobgp.RoutesAsync("ipv4");
        Assert.Equal(v4.Select(p => p.ToString()).Order(), routes4.Keys.Order());
        Assert.All(routes4.Values, a =>
        {
            var text = Attrs(a);
            Assert.Contains("\"nexthop\":\"192.0.2.10\"", text, StringComparison.Ordinal);
            Assert.Contains($"\"communities\":[{Community}]", text, StringComparison.Ordinal);
            Assert.Contains("{\"ASN\":65003,\"LocalData1\":1,\"LocalData2\":0}", text, StringComparison.Ordinal);
            Assert.Contains("\"asns\":[65003]", text, StringComparison.Ordinal);
        });
        var routes6 = await gobgp.RoutesAsync("ipv6");
        Assert.Equal(v6.Select(p => p.ToString()).Order(), routes6.Keys.Order());
        Assert.All(routes6.Values, a => Assert.Contains("\"nexthop\":\"2001:db8::1\"", Attrs(a), StringComparison.Ordinal));

        foreach (var p in v4[..5_000])
            speaker.Withdraw(p);
        foreach (var p in v6[..500])
            speaker.Withdraw(p);
        Assert.Equal(5_000, await Eventually.WaitAsync(() => gobgp.RouteCountAsync("ipv4"), n => n == 5_000, Patience, TimeSpan.FromMilliseconds(500)));
        Assert.Equal(500, await Eventually.WaitAsync(() => gobgp.RouteCountAsync("ipv6"), n => n == 500, Patience, TimeSpan.FromMilliseconds(500)));
        routes4 = await gobgp.RoutesAsync("ipv4");
        Assert.Equal(v4[5_000..].Select(p => p.ToString()).Order(), routes4.Keys.Order());
    }

    [Fact]
    public async Task PassiveSessionComesUpWhenGobgpConnects()
    {
        var ourPort = TestPorts.Next();
        // port = -1: gobgpd does not listen; it only connects to us.
        await using var gobgp = new GobgpPeer(65004, "127.0.0.4", -1, Neighbor(passive: false, remotePort: ourPort));
        await using var speaker = Speaker(listenPort: ourPort);
        speaker.Announce(V4(100), V4Attributes);
        var peer = speaker.AddPeer(Peer("127.0.0.4", 179, 65004, passive: true));
        speaker.Start();
        await gobgp.StartAsync();
        await WaitEstablishedAsync(peer, Patience);
        Assert.Equal(100, await Eventually.WaitAsync(() => gobgp.RouteCountAsync("ipv4"), n => n == 100, Patience));
    }

    [Fact]
    public async Task GobgpRestartBringsTheSessionBackAndEveryRouteIsSentAgain()
    {
        var port = TestPorts.Next();
        await using var gobgp = new GobgpPeer(65004, "127.0.0.4", port, Neighbor(passive: true));
        await gobgp.StartAsync();
        await using var speaker = Speaker();
        speaker.Announce(V4(1_000), V4Attributes);
        var peer = speaker.AddPeer(Peer("127.0.0.4", port, 65004));
        speaker.Start();
        await WaitEstablishedAsync(peer, Patience);
        Assert.Equal(1_000, await Eventually.WaitAsync(() => gobgp.RouteCountAsync("ipv4"), n => n == 1_000, Patience));

        await gobgp.KillAsync();
        await Eventually.WaitAsync(() => Task.FromResult(peer.State), s => s != BgpSessionState.Established, Patience);
        await gobgp.StartAsync();
        await Eventually.WaitAsync(() => Task.FromResult(peer.EstablishedCount), n => n >= 2, Patience);
        Assert.Equal(2, peer.EstablishedCount);
        Assert.Equal(1_000, await Eventually.WaitAsync(() => gobgp.RouteCountAsync("ipv4"), n => n == 1_000, Patience));
    }

    [Fact]
    public async Task ShutdownWithoutGracefulRestartMakesGobgpDropTheRoutesAndLogTheReason()
    {
        var port = TestPorts.Next();
        await using var gobgp = new GobgpPeer(65004, "127.0.0.4", port, Neighbor(passive: true));
        await gobgp.StartAsync();
        var speaker = Speaker(gracefulRestart: 0);
        speaker.Announce(V4(1_000), V4Attributes);
        var peer = speaker.AddPeer(Peer("127.0.0.4", port, 65004));
        speaker.Start();
        await WaitEstablishedAsync(peer, Patience);
        Assert.Equal(1_000, await Eventually.WaitAsync(() => gobgp.RouteCountAsync("ipv4"), n => n == 1_000, Patience));

        await speaker.StopAsync("maintenance window 42");
        await speaker.DisposeAsync();
        Assert.Equal(0, await Eventually.WaitAsync(() => gobgp.RouteCountAsync("ipv4"), n => n == 0, TimeSpan.FromSeconds(10)));
        Assert.Contains("maintenance window 42", await Eventually.WaitAsync(() => Task.FromResult(gobgp.Log), l => l.Contains("maintenance window 42", StringComparison.Ordinal), TimeSpan.FromSeconds(5)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task KilledSpeakerWithGracefulRestartKeepsRoutesForTheRestartTimeThenGobgpDropsThem()
    {
        var port = TestPorts.Next();
        await using var gobgp = new GobgpPeer(65004, "127.0.0.4", port, Neighbor(passive: true, gracefulRestart: true));
        await gobgp.StartAsync();
        using var cli = StartCli($"bgp announce --peer 127.0.0.4 --peer-port {port} --peer-as 65004 --local-as {OurAs} --router-id {OurAddress} --local-address {OurAddress} --next-hop 192.0.2.10 --graceful-restart 6 --connect-retry 1 --generate 10.9.0.0 --generate-count 500 --quiet");
        try
        {
            Assert.Equal(500, await Eventually.WaitAsync(() => gobgp.RouteCountAsync("ipv4"), n => n == 500, Patience));
        }
        finally
        {
            cli.Kill();
            await cli.WaitForExitAsync();
        }
        var killed = Stopwatch.StartNew();
        await Eventually.WaitAsync(() => gobgp.IsEstablishedAsync(OurAddress), up => !up, TimeSpan.FromSeconds(10));
        Assert.Equal(500, await gobgp.RouteCountAsync("ipv4"));
        Assert.True(killed.Elapsed < TimeSpan.FromSeconds(5), "the stale-route check must run inside the 6 s restart time");
        Assert.Equal(0, await Eventually.WaitAsync(() => gobgp.RouteCountAsync("ipv4"), n => n == 0, TimeSpan.FromSeconds(20)));
        Assert.True(killed.Elapsed >= TimeSpan.FromSeconds(5), $"routes dropped after {killed.Elapsed}, before the restart time");
    }
}
