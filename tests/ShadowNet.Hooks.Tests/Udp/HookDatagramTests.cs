using System.Text;
using ShadowNet.Addressing;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Hooks.Tests.Udp;

public class HookDatagramTests
{
    private static readonly byte[] Key = Encoding.ASCII.GetBytes("0123456789abcdef0123456789abcdef");
    private static readonly Func<ushort, byte[]?> Keys = id => id == 7 ? Key : null;

    private static byte[] Request(HookKind kind = HookKind.Create, ulong sequence = 42, IpFamily family = IpFamily.IPv4, Address? host = null,
        string instance = "vm-1", string application = "web", ushort keyId = 7, byte[]? key = null)
    {
        var buffer = new byte[HookDatagram.MaxRequestLength];
        var length = HookDatagram.WriteRequest(buffer, kind, sequence, keyId, key ?? Key, family, host, Encoding.UTF8.GetBytes(instance), Encoding.UTF8.GetBytes(application));
        return buffer[..length];
    }

    [Fact]
    public void CreateWithIPv4HostRoundTrips()
    {
        var datagram = Request(host: Address.Parse("192.0.2.10"), instance: "vm-éé-1");
        Assert.True(HookDatagram.TryParseRequest(datagram, Keys, out var request, out _));
        Assert.Equal(HookKind.Create, request.Kind);
        Assert.Equal(42UL, request.Sequence);
        Assert.Equal((ushort)7, request.KeyId);
        Assert.Equal(IpFamily.IPv4, request.Family);
        Assert.Equal(Address.Parse("192.0.2.10"), request.Host);
        Assert.Equal("vm-éé-1", Encoding.UTF8.GetString(request.Instance));
        Assert.Equal("web", Encoding.UTF8.GetString(request.Application));
    }

    [Fact]
    public void DeleteWithoutHostRoundTripsForIPv6()
    {
        var datagram = Request(HookKind.Delete, ulong.MaxValue - 1, IpFamily.IPv6, instance: new string('i', 128), application: new string('a', 128));
        Assert.Equal(HookDatagram.MaxRequestLength, datagram.Length);
        Assert.True(HookDatagram.TryParseRequest(datagram, Keys, out var request, out _));
        Assert.Equal((HookKind.Delete, ulong.MaxValue - 1, IpFamily.IPv6, (Address?)null), (request.Kind, request.Sequence, request.Family, request.Host));
        Assert.Equal(128, request.Instance.Length);
    }

    [Fact]
    public void ReplyRoundTripsAndIsAuthenticated()
    {
        var buffer = new byte[HookDatagram.ReplyLength];
        HookDatagram.WriteReply(buffer, HookKind.Create, 9, 7, Key, HookStatus.Hit, IpFamily.IPv6, Address.Parse("2001:db8::5"));
        Assert.True(HookDatagram.TryParseReply(buffer, Key, out var reply, out _));
        Assert.Equal(new HookReply(HookKind.Create, 9, 7, HookStatus.Hit, IpFamily.IPv6, Address.Parse("2001:db8::5")), reply);
        buffer[20] ^= 1;
        Assert.False(HookDatagram.TryParseReply(buffer, Key, out _, out var rejection));
        Assert.Equal(DatagramRejection.BadMac, rejection);
    }

    [Fact]
    public void EachOfManyKeysInTurnSignsWithItselfOnly()
    {
        // More keys than the per-thread HMAC cache holds, used in turn, twice over: each datagram must
        // carry its own key's MAC (a cached HMAC reused under the wrong key would pass or fail wrongly).
        var keys = Enumerable.Range(0, 6).Select(i => Encoding.ASCII.GetBytes($"key-{i}-0123456789abcdef")).ToArray();
        for (var round = 0; round < 2; round++)
        {
            for (var i = 0; i < keys.Length; i++)
            {
                var datagram = Request(keyId: (ushort)i, key: keys[i]);
                Assert.True(HookDatagram.TryParseRequest(datagram, id => keys[id], out _, out _), $"key {i}, round {round}");
                Assert.False(HookDatagram.TryParseRequest(datagram, id => keys[(id + 1) % keys.Length], out _, out var rejection));
                Assert.Equal(DatagramRejection.BadMac, rejection);
            }
        }
    }

    public static TheoryData<string, byte[], DatagramRejection> Malformed()
    {
        var good = Request();
        byte[] With(int index, byte value)
        {
            var copy = (byte[])good.Clone();
            copy[index] = value;
            return copy;
        }

        return new TheoryData<string, byte[], DatagramRejection>
        {
            { "empty", [], DatagramRejection.TooShort },
            { "three octets", [(byte)'S', (byte)'N', 1], DatagramRejection.TooShort },
            { "header only", good[..HookDatagram.HeaderLength], DatagramRejection.TooShort },
            { "oversized", new byte[HookDatagram.MaxRequestLength + 1], DatagramRejection.Oversized },
            { "bad magic", With(0, (byte)'X'), DatagramRejection.BadMagic },
            { "version 2", With(2, 2), DatagramRejection.UnsupportedVersion },
            { "kind 3", With(3, 3), DatagramRejection.UnknownKind },
            { "reply kind sent to the server", With(3, 0x81), DatagramRejection.UnknownKind },
            { "instance length 0", With(HookDatagram.HeaderLength, 0), DatagramRejection.BadLength },
            { "instance length past the end", With(HookDatagram.HeaderLength, 200), DatagramRejection.BadLength },
            { "truncated by one", good[..^1], DatagramRejection.BadLength },
            { "one extra octet", [.. good, 0], DatagramRejection.BadLength },
            { "unknown key id", Request(keyId: 8), DatagramRejection.UnknownKey },
            { "wrong key", Request(key: Encoding.ASCII.GetBytes("another key, 16 octets or more")), DatagramRejection.BadMac },
            { "flipped sequence bit", With(11, (byte)(good[11] ^ 1)), DatagramRejection.BadMac },
            { "flipped application octet", With(good.Length - 17, (byte)'X'), DatagramRejection.BadMac },
        };
    }

    [Theory]
    [MemberData(nameof(Malformed))]
    public void MalformedDatagramIsRejectedWithItsReason(string name, byte[] datagram, DatagramRejection expected)
    {
        Assert.False(HookDatagram.TryParseRequest(datagram, Keys, out _, out var rejection), name);
        Assert.Equal(expected, rejection);
    }

    [Fact]
    public void SignedButInvalidFieldsAreBadField()
    {
        // A key holder can still send nonsense: a family of 5, or a host flag with an empty address slot cleared.
        var buffer = Request(family: (IpFamily)5);
        Assert.False(HookDatagram.TryParseRequest(buffer, Keys, out _, out var rejection));
        Assert.Equal(DatagramRejection.BadField, rejection);
    }

    [Fact]
    public void NoSingleOctetChangeIsAccepted()
    {
        var good = Request(host: Address.Parse("2001:db8::10"), family: IpFamily.IPv6);
        for (var i = 0; i < good.Length; i++)
        {
            for (var bit = 0; bit < 8; bit++)
            {
                var copy = (byte[])good.Clone();
                copy[i] ^= (byte)(1 << bit);
                Assert.False(HookDatagram.TryParseRequest(copy, Keys, out _, out _), $"octet {i} bit {bit} flipped was accepted");
            }
        }
    }
}
