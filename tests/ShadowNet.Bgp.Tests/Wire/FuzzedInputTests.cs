using System.Buffers;
using System.Diagnostics;
using ShadowNet.Bgp.Wire;
using static ShadowNet.Bgp.Tests.Wire.MessageBuilder;

namespace ShadowNet.Bgp.Tests.Wire;

/// <summary>
/// Mutates valid messages at random for a bounded time and feeds them to the parsers: every outcome
/// must be a parse, a "need more bytes", or a <see cref="BgpProtocolException"/>; never another
/// exception (which would include an out-of-bounds read) and never a hang.
/// </summary>
public class FuzzedInputTests
{
    private static IEnumerable<byte[]> Seeds()
    {
        yield return Update([], [.. Mandatory, .. Attr(0xC0, 8, 0xFD, 0xEB, 0, 1), .. Attr(0xC0, 32, new byte[12])], [32, 10, 0, 0, 1, 24, 10, 1, 2]);
        yield return Update([32, 10, 0, 0, 1], [], []);
        yield return Update([], [.. OriginIgp, .. AsPath65001, .. Attr(0x80, 14, [0, 2, 1, 16, .. new byte[16], 0, 128, .. new byte[16]])], []);
        yield return Update([], Attr(0x80, 15, [0, 2, 1, 64, .. new byte[8]]), []);
        yield return Open();
        yield return Message(5, 0, 1, 0, 1);
        yield return Message(3, 6, 2, 3, (byte)'b', (byte)'y', (byte)'e');
        var w = new ArrayBufferWriter<byte>();
        UpdateEncoder.WriteAnnounce(w, UpdateEncoder.Encode(new RouteAttributes { NextHop = System.Net.IPAddress.Parse("2001:db8::1") }, AddressFamily.IPv6Unicast, new(65003, true, false, null, null, false)),
            Enumerable.Range(0, 50).Select(i => RoutePrefix.IPv6((UInt128)i << 64, 64)).ToArray(), 4096);
        yield return w.WrittenSpan.ToArray();
    }

    [Fact]
    public void RandomlyMutatedMessagesNeverEscapeAsUnexpectedExceptions()
    {
        var seeds = Seeds().ToArray();
        var random = new Random(20261125);
        var update = new UpdateMessage();
        var budget = Stopwatch.StartNew();
        var iterations = 0;
        var outcomes = new Dictionary<string, int>();
        while (budget.Elapsed < TimeSpan.FromSeconds(5) && iterations < 2_000_000)
        {
            iterations++;
            var m = (byte[])seeds[random.Next(seeds.Length)].Clone();
            var mutations = 1 + random.Next(4);
            for (var k = 0; k < mutations; k++)
            {
                switch (random.Next(4))
                {
                    case 0: m[random.Next(m.Length)] = (byte)random.Next(256); break;
                    case 1: m[random.Next(16, m.Length)] ^= (byte)(1 << random.Next(8)); break;
                    case 2: m = m[..random.Next(19, m.Length + 1)]; break;
                    default: m = [.. m, .. Enumerable.Range(0, random.Next(1, 8)).Select(_ => (byte)random.Next(256))]; break;
                }
            }
            var context = new UpdateParseContext(random.Next(2) == 0, random.Next(2) == 0, 65001);
            string outcome;
            try
            {
                var buffer = new ReadOnlySequence<byte>(m);
                if (!BgpFraming.TryReadMessage(ref buffer, 4096, out var type, out var body))
                {
                    outcome = "need-more";
                }
                else
                {
                    switch (type)
                    {
                        case BgpMessageType.Update: update.Parse(body, context); break;
                        case BgpMessageType.Open: OpenMessage.Parse(body); break;
                        case BgpMessageType.RouteRefresh: RouteRefreshMessage.Parse(body); break;
                        case BgpMessageType.Notification: _ = NotificationMessage.Parse(body).ShutdownCommunication; break;
                    }
                    outcome = type.ToString();
                }
            }
            catch (BgpProtocolException e)
            {
                outcome = $"{e.Code}";
            }
            catch (Exception e)
            {
                Assert.Fail($"iteration {iterations}: {e.GetType().Name} for {Convert.ToHexString(m)}: {e}");
                return;
            }
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
        }
        Assert.True(iterations > 1000, $"only {iterations} iterations ran");
        Assert.True(outcomes.Count > 3, string.Join(", ", outcomes));
    }
}
