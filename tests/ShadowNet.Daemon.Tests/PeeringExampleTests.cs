using System.Net;
using System.Text.Json.Nodes;
using ShadowNet.Addressing;
using ShadowNet.Hooks.Udp;
using static ShadowNet.Daemon.Tests.Shadownetd;

namespace ShadowNet.Daemon.Tests;

/// <summary>
/// The peering examples of docs/peering, run as written (only the listening port changed) in real
/// BIRD 2, FRR bgpd and gobgpd, against shadownetd with `community` staging: staged routes reach the
/// router and stay out of its forwarding table until their create; the create puts the route in with
/// the hypervisor as next hop; the delete takes it out.
/// </summary>
[Collection("shadownetd")]
public class PeeringExampleTests
{
    private const string Shadownetd = "127.0.0.3";

    /// <summary>What the router holds from shadownetd but does not use, and what it uses (prefix to next hop).</summary>
    private sealed record Router(Func<Task<IReadOnlyCollection<string>>> Staged, Func<Task<Dictionary<string, string>>> Used);

    [Fact]
    public async Task BirdExampleKeepsStagedRoutesFilteredUntilTheirCreate()
    {
        var port = TestPorts.Next();
        var config = (await File.ReadAllTextAsync(Repository.File("docs", "peering", "bird.conf")))
            .Replace("local 127.0.0.2 as 65002;", $"local 127.0.0.2 port {port} as 65002;", StringComparison.Ordinal);
        await using var bird = BirdPeer.WithConfig(config);
        await bird.StartAsync();
        await StagingScenarioAsync("127.0.0.2", 65002, port, new Router(
            async () => (await bird.RoutesAsync("master4", filtered: true)).Keys,
            async () => (await bird.RoutesAsync("master4")).ToDictionary(r => r.Key, r => r.Value.NextHop)));
    }

    [Fact]
    public async Task FrrExampleDeniesStagedRoutesUntilTheirCreate()
    {
        var port = TestPorts.Next();
        await using var frr = new FrrPeer(await File.ReadAllTextAsync(Repository.File("docs", "peering", "frr.conf")), "127.0.0.4", port);
        await frr.StartAsync();
        await StagingScenarioAsync("127.0.0.4", 65004, port, new Router(
            async () =>
            {
                var used = await frr.BestRoutesAsync();
                return [.. (await frr.ReceivedRoutesAsync(Shadownetd)).Where(p => !used.ContainsKey(p))];
            },
            frr.BestRoutesAsync));
    }

    [Fact]
    public async Task GobgpExampleRejectsStagedRoutesUntilTheirCreate()
    {
        var port = TestPorts.Next();
        var config = (await File.ReadAllTextAsync(Repository.File("docs", "peering", "gobgpd.toml")))
            .Replace("port = 179", $"port = {port}", StringComparison.Ordinal);
        await using var gobgp = new GobgpPeer(config);
        await gobgp.StartAsync();
        await StagingScenarioAsync("127.0.0.5", 65005, port, new Router(
            async () =>
            {
                var used = await gobgp.RoutesAsync("ipv4");
                return [.. (await gobgp.AdjInAsync(Shadownetd, "ipv4")).Where(p => !used.ContainsKey(p))];
            },
            async () => (await gobgp.RoutesAsync("ipv4")).ToDictionary(r => r.Key, r => NextHop(r.Value))));
    }

    private static string NextHop(System.Text.Json.JsonElement attributes)
    {
        foreach (var attribute in attributes.EnumerateArray())
        {
            if (attribute.TryGetProperty("nexthop", out var nextHop))
            {
                return nextHop.GetString() ?? "";
            }
        }

        return "";
    }

    private static async Task StagingScenarioAsync(string routerAddress, int routerAs, int routerPort, Router router)
    {
        using var folder = new TempDirectory("daemon-peering");
        var udpPort = FreeUdpPort();
        var config = Config(folder.File("state.db"), routerPort, udpPort);
        var peer = config["bgp"]!["peers"]![0]!;
        (peer["address"], peer["remoteAs"]) = (routerAddress, routerAs);
        config["pools"]![0]!["staging"] = "community";
        config["routes"]!["shadowCommunity"] = "65003:1:0";
        config["warm"] = new JsonArray(new JsonObject { ["application"] = "web", ["count"] = 2 });
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());

        using var daemon = Start(file);
        try
        {
            // Both reservations arrive with the shadow community: held by the router, not used.
            var staged = await Eventually.WaitAsync(router.Staged, r => r.Count == 2, Patience);
            Assert.Equal(2, staged.Count);
            Assert.All(staged, p => Assert.StartsWith("10.1.0.", p, StringComparison.Ordinal));
            Assert.Empty(await router.Used());

            using var client = new HookClient(new IPEndPoint(IPAddress.Loopback, udpPort), 1, Convert.FromHexString(KeyHex), 1_000) { MaxAttempts = 12 };
            var web = await client.CreateAsync("web-1", "web", IpFamily.IPv4, Address.Parse("192.0.2.21"));
            Assert.Equal(HookStatus.Hit, web.Status);
            Assert.Contains($"{web.Address}/32", staged);

            // Activation re-sends the route without the community: used, next hop the hypervisor.
            var used = await Eventually.WaitAsync(router.Used, r => r.Count == 1, Patience);
            Assert.Equal(new Dictionary<string, string> { [$"{web.Address}/32"] = "192.0.2.21" }, used);
            // The warm pool stages a replacement, held but not used.
            staged = await Eventually.WaitAsync(router.Staged, r => r.Count == 2 && !r.Contains($"{web.Address}/32"), Patience);
            Assert.DoesNotContain($"{web.Address}/32", staged);

            Assert.Equal(HookStatus.Deleted, (await client.DeleteAsync("web-1", "web", IpFamily.IPv4)).Status);
            Assert.Empty(await Eventually.WaitAsync(router.Used, r => r.Count == 0, Patience));
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }
    }
}
