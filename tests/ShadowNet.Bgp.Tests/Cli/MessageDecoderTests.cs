using System.Buffers;
using System.Net;
using System.Text.Json;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Bgp.Wire;
using ShadowNet.Cli.Bgp;
using static ShadowNet.Bgp.Tests.Wire.MessageBuilder;

namespace ShadowNet.Bgp.Tests.Cli;

public class MessageDecoderTests
{
    private static JsonElement Decode(byte[] message, DecodeOptions? options = null) =>
        JsonDocument.Parse(MessageDecoder.DecodeLine(Convert.ToHexString(message), options ?? new DecodeOptions())).RootElement;

    [Fact]
    public void UpdateIsPrintedWithItsAttributesAndPrefixesPerFamily()
    {
        var json = Decode(Update([], [.. Mandatory, .. Attr(0xC0, 8, 0xFD, 0xEB, 0, 7)], Nlri10001));
        Assert.Equal("UPDATE", json.GetProperty("type").GetString());
        Assert.Equal("accept", json.GetProperty("action").GetString());
        Assert.Equal("10.0.0.1/32", json.GetProperty("announced").GetProperty("ipv4-unicast")[0].GetString());
        var attributes = json.GetProperty("attributes");
        Assert.Equal("192.0.2.1", attributes.GetProperty("next_hop").GetString());
        Assert.Equal("65003:7", attributes.GetProperty("communities")[0].GetString());
        Assert.Equal(65001, attributes.GetProperty("as_path")[0].GetProperty("asns")[0].GetInt32());
    }

    [Fact]
    public void MessageWithoutMarkerDecodesTheSame()
    {
        var full = Update([], Mandatory, Nlri10001);
        Assert.Equal(Decode(full).GetRawText(), Decode(full[16..]).GetRawText());
    }

    [Fact]
    public void MalformedUpdatePrintsTheNotificationTheSpeakerWouldSend()
    {
        var json = Decode(Update([], [.. Mandatory, 0x40, 99, 1, 7], Nlri10001));
        Assert.Equal("session-reset", json.GetProperty("action").GetString());
        Assert.Equal(3, json.GetProperty("notification").GetProperty("code").GetInt32());
        Assert.Equal(2, json.GetProperty("notification").GetProperty("subcode").GetInt32());
    }

    [Fact]
    public void TreatAsWithdrawIsPrintedWithItsReason()
    {
        var json = Decode(Update([], [.. Attr(0x40, 1, 7), .. AsPath65001, .. NextHop], Nlri10001));
        Assert.Equal("treat-as-withdraw", json.GetProperty("action").GetString());
        Assert.Equal(6, json.GetProperty("error").GetProperty("subcode").GetInt32());
        Assert.Equal("10.0.0.1/32", json.GetProperty("withdrawn").GetProperty("ipv4-unicast")[0].GetString());
    }

    [Fact]
    public void OpenOfOurOwnSpeakerShowsItsCapabilities()
    {
        var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 4200000001, RouterId = IPAddress.Parse("127.0.0.3") });
        var peer = speaker.AddPeer(new BgpPeerOptions { RemoteAs = 65002 });
        var w = new ArrayBufferWriter<byte>();
        speaker.BuildOpen(peer).WriteTo(w);
        var json = Decode(w.WrittenSpan.ToArray());
        Assert.Equal("OPEN", json.GetProperty("type").GetString());
        Assert.Equal(23456, json.GetProperty("my_as").GetInt32());
        Assert.Equal(4200000001, json.GetProperty("as").GetInt64());
        var caps = json.GetProperty("capabilities");
        Assert.Equal(["ipv4-unicast", "ipv6-unicast"], caps.GetProperty("multiprotocol").EnumerateArray().Select(e => e.GetString()));
        Assert.True(caps.GetProperty("extended_message").GetBoolean());
        Assert.Equal(120, caps.GetProperty("graceful_restart").GetProperty("restart_time").GetInt32());
    }

    [Fact]
    public void NotHexIsAnErrorNotACrash()
    {
        var json = JsonDocument.Parse(MessageDecoder.DecodeLine("zz", new DecodeOptions())).RootElement;
        Assert.Contains("hex", json.GetProperty("error").GetString(), StringComparison.Ordinal);
    }
}
