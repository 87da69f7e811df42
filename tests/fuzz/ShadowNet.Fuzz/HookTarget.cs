using System.Security.Cryptography;
using System.Text;
using ShadowNet.Addressing;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Fuzz;

/// <summary>
/// The UDP hook's datagram parsers. Each input is parsed as it came, then again with a valid MAC put
/// over it (the fuzzer cannot forge HMAC-SHA-256; re-signing lets it reach the fields behind the
/// check). A rejection is the parser's answer; any exception is a bug.
/// </summary>
public static class HookTarget
{
    public static readonly byte[] Key = Convert.FromHexString("00112233445566778899aabbccddeeff");
    private static readonly Func<ushort, byte[]?> Keys = id => id == 1 ? Key : null;

    public static void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length > 2 * HookDatagram.MaxRequestLength)
        {
            input = input[..(2 * HookDatagram.MaxRequestLength)];
        }

        Parse(input);
        if (input.Length >= HookDatagram.MacLength)
        {
            Span<byte> signed = stackalloc byte[input.Length];
            input.CopyTo(signed);
            Span<byte> mac = stackalloc byte[32];
            HMACSHA256.HashData(Key, signed[..^HookDatagram.MacLength], mac);
            mac[..HookDatagram.MacLength].CopyTo(signed[^HookDatagram.MacLength..]);
            Parse(signed);
        }
    }

    private static void Parse(ReadOnlySpan<byte> datagram)
    {
        if (HookDatagram.TryParseRequest(datagram, Keys, out var request, out _))
        {
            // Touch what the server reads.
            _ = (request.Kind, request.Sequence, request.Family, request.Host, request.Instance.Length, request.Application.Length);
        }

        if (HookDatagram.TryParseReply(datagram, Key, out var reply, out _))
        {
            _ = (reply.Status, reply.Address);
        }
    }

    /// <summary>Valid datagrams (signed with <see cref="Key"/>): where the fuzzer starts.</summary>
    public static IEnumerable<(string Name, byte[] Bytes)> Seeds()
    {
        var buffer = new byte[HookDatagram.MaxRequestLength];
        var length = HookDatagram.WriteRequest(buffer, HookKind.Create, 1, 1, HookTarget.Key, IpFamily.IPv4, Address.Parse("192.0.2.7"), "vm-1"u8, "web"u8);
        yield return ("create-v4", buffer[..length]);
        length = HookDatagram.WriteRequest(buffer, HookKind.Create, 2, 1, HookTarget.Key, IpFamily.IPv6, Address.Parse("2001:db8::7"), Encoding.UTF8.GetBytes("vm-ünïcode"), "web"u8);
        yield return ("create-v6", buffer[..length]);
        length = HookDatagram.WriteRequest(buffer, HookKind.Delete, 3, 1, HookTarget.Key, IpFamily.IPv4, null, "vm-1"u8, "web"u8);
        yield return ("delete", buffer[..length]);
        length = HookDatagram.WriteReply(buffer, HookKind.Create, 1, 1, HookTarget.Key, HookStatus.Hit, IpFamily.IPv4, Address.Parse("10.1.0.1"));
        yield return ("reply", buffer[..length]);
    }
}
