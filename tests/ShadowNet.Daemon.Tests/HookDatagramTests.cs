using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using ShadowNet.Addressing;
using ShadowNet.Hooks.Udp;
using static ShadowNet.Daemon.Tests.Shadownetd;

namespace ShadowNet.Daemon.Tests;

/// <summary>Hostile datagrams sent to the real shadownetd: each dropped and counted by reason, the daemon still serving.</summary>
[Collection("shadownetd")]
public partial class HookDatagramTests
{
    [Fact]
    public async Task MalformedUnauthenticatedReplayedAndOversizedDatagramsAreCountedAndTheDaemonKeepsServing()
    {
        using var folder = new TempDirectory("daemon-datagrams");
        var udpPort = FreeUdpPort();
        var metricsPort = TestPorts.Next();
        var config = Config(folder.File("state.db"), TestPorts.Next(), udpPort);
        config["metrics"] = new JsonObject { ["listen"] = $"127.0.0.1:{metricsPort}" };
        var file = folder.File("shadownetd.json");
        await File.WriteAllTextAsync(file, config.ToJsonString());
        var server = new IPEndPoint(IPAddress.Loopback, udpPort);
        var key = Convert.FromHexString(KeyHex);

        using var daemon = Start(file);
        try
        {
            using var client = new HookClient(server, 1, key, 1_000) { MaxAttempts = 12 };
            Assert.Equal(HookStatus.Miss, (await client.CreateAsync("vm-1", "web", IpFamily.IPv4, null)).Status);

            using var socket = new UdpClient(AddressFamily.InterNetwork);
            socket.Connect(server);
            await socket.SendAsync(new byte[3]);                                           // too_short
            await socket.SendAsync(Encoding.ASCII.GetBytes(new string('x', 60)));            // bad_magic
            await socket.SendAsync(new byte[2_000]);                                        // oversized
            await socket.SendAsync(Request(900, 1, Convert.FromHexString("ffeeddccbbaa99887766554433221100ffee"), "vm-2")); // bad_mac
            await socket.SendAsync(Request(901, 9, key, "vm-3"));                           // unknown_key
            await socket.SendAsync(Request(900, 1, key, "vm-4"));                           // replayed: 100 behind 1000

            using var http = new HttpClient();
            var expected = new Dictionary<string, double> { ["too_short"] = 1, ["bad_magic"] = 1, ["oversized"] = 1, ["bad_mac"] = 1, ["unknown_key"] = 1, ["replayed"] = 1 };
            var rejected = await Eventually.WaitAsync(async () => Rejections(await http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics")),
                r => expected.All(e => r.GetValueOrDefault(e.Key) == e.Value), Patience);
            Assert.Equal(expected, rejected);

            // None of them did anything, and the next genuine create is served.
            Assert.Equal((HookStatus.Miss, Address.Parse("10.9.0.3")), ((await client.CreateAsync("vm-5", "web", IpFamily.IPv4, null)).Status,
                (await client.CreateAsync("vm-5", "web", IpFamily.IPv4, null)).Address));
            Assert.Equal(HookStatus.NotFound, (await client.DeleteAsync("vm-4", "web", IpFamily.IPv4)).Status);
        }
        finally
        {
            daemon.Kill();
            await daemon.WaitForExitAsync();
        }
    }

    private static byte[] Request(ulong sequence, ushort keyId, byte[] key, string instance)
    {
        var buffer = new byte[HookDatagram.MaxRequestLength];
        var length = HookDatagram.WriteRequest(buffer, HookKind.Create, sequence, keyId, key, IpFamily.IPv4, null,
            Encoding.UTF8.GetBytes(instance), "web"u8);
        return buffer[..length];
    }

    private static Dictionary<string, double> Rejections(string exposition) =>
        RejectedLine().Matches(exposition).ToDictionary(m => m.Groups[1].Value, m => double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));

    [GeneratedRegex(@"^shadownet_hook_datagrams_rejected_total\{[^}]*reason=""(\w+)""[^}]*\} (\S+)", RegexOptions.Multiline)]
    private static partial Regex RejectedLine();
}
