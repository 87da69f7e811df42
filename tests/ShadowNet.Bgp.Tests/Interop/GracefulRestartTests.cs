using System.Diagnostics;
using ShadowNet.Bgp.Tests.Support;
using static ShadowNet.Bgp.Tests.Support.InteropRoutes;

namespace ShadowNet.Bgp.Tests.Interop;

/// <summary>
/// RFC 4724 with real helpers: our speaker (the CLI, killed with SIGKILL) restarts with fewer routes. The
/// router must keep forwarding on everything while we are away and through the new session's initial
/// table, and drop exactly the routes we no longer announce when our End-of-RIB arrives.
/// </summary>
public class GracefulRestartTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task BirdKeepsForwardingThroughOurRestartAndEndOfRibRemovesOnlyTheStaleRoutes()
    {
        var birdPort = TestPorts.Next();
        await using var bird = new BirdPeer($$"""
              local 127.0.0.2 port {{birdPort}} as 65002;
              neighbor {{OurAddress}} as {{OurAs}};
              multihop; strict bind on; passive on; hold time 30;
              graceful restart on;
              ipv4 { import all; export none; };
            """);
        await bird.StartAsync();
        var announce = $"bgp announce --peer 127.0.0.2 --peer-port {birdPort} --peer-as 65002 --local-as {OurAs} --router-id {OurAddress} --local-address {OurAddress} "
            + "--next-hop 192.0.2.10 --graceful-restart 30 --connect-retry 1 --generate 10.9.0.0 --quiet";

        var watch = await RestartAsync(
            announce,
            () => bird.RouteCountAsync("master4"),
            () => bird.IsEstablishedAsync());

        Assert.True(watch.Fewest >= 400, $"BIRD held only {watch.Fewest} routes at one point of the restart");
        Assert.True(watch.DroppedAfterReconnect, "the stale routes went before our new session came up");
        var routes = await bird.RoutesAsync("master4");
        Assert.Equal(V4(400, 0x0A090000).Select(p => p.ToString()).Order(), routes.Keys.Order());
    }

    [Fact]
    public async Task GobgpKeepsForwardingThroughOurRestartAndEndOfRibRemovesOnlyTheStaleRoutes()
    {
        var port = TestPorts.Next();
        await using var gobgp = new GobgpPeer(65004, "127.0.0.4", port, GobgpInteropTests.Neighbor(passive: true, gracefulRestart: true));
        await gobgp.StartAsync();
        var announce = $"bgp announce --peer 127.0.0.4 --peer-port {port} --peer-as 65004 --local-as {OurAs} --router-id {OurAddress} --local-address {OurAddress} "
            + "--next-hop 192.0.2.10 --graceful-restart 30 --connect-retry 1 --generate 10.9.0.0 --quiet";

        var watch = await RestartAsync(
            announce,
            () => gobgp.RouteCountAsync("ipv4"),
            () => gobgp.IsEstablishedAsync(OurAddress));

        Assert.True(watch.Fewest >= 400, $"gobgpd held only {watch.Fewest} routes at one point of the restart");
        Assert.True(watch.DroppedAfterReconnect, "the stale routes went before our new session came up");
        var routes = await gobgp.RoutesAsync("ipv4");
        Assert.Equal(V4(400, 0x0A090000).Select(p => p.ToString()).Order(), routes.Keys.Order());
    }

    /// <summary>
    /// Announces 500 routes, SIGKILLs the speaker, starts it again with the first 400 and the R bit,
    /// watching the router's table every 50 ms until it holds 400.
    /// </summary>
    private static async Task<(int Fewest, bool DroppedAfterReconnect)> RestartAsync(string announce, Func<Task<int>> count, Func<Task<bool>> established)
    {
        using (var first = StartCli($"{announce} --generate-count 500"))
        {
            try
            {
                Assert.Equal(500, await Eventually.WaitAsync(count, n => n == 500, Patience));
            }
            finally
            {
                first.Kill(); // SIGKILL: no NOTIFICATION; the router keeps our routes as stale
                await first.WaitForExitAsync();
            }
        }

        await Eventually.WaitAsync(established, up => !up, TimeSpan.FromSeconds(20));
        using var second = StartCli($"{announce} --generate-count 400 --restarting");
        try
        {
            var fewest = int.MaxValue;
            var reconnected = false;
            var droppedAfterReconnect = true;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < Patience)
            {
                // Read the session state after the count: a drop counted while the session is still down
                // afterwards came before the reconnect. (Read first, the session could come up and its
                // End-of-RIB clear the stale routes between the two reads: a false failure, seen once.)
                var routes = await count();
                var up = await established();
                reconnected |= up;
                fewest = Math.Min(fewest, routes);
                if (routes < 500 && !reconnected)
                {
                    droppedAfterReconnect = false;
                }

                if (routes == 400)
                {
                    return (fewest, droppedAfterReconnect);
                }

                await Task.Delay(50);
            }

            Assert.Fail($"the router never settled on the 400 routes we still announce (fewest seen {fewest})");
            return default;
        }
        finally
        {
            second.Kill();
            await second.WaitForExitAsync();
        }
    }
}
