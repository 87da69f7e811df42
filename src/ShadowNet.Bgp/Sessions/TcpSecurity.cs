using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace ShadowNet.Bgp.Sessions;

/// <summary>
/// Session protection in the kernel (Linux): TCP MD5 signatures (RFC 2385, the TCP_MD5SIG socket
/// option: segments without the right signature never reach us) and the generalized TTL security
/// mechanism (GTSM, RFC 5082: send with TTL 255, drop what arrives with a TTL that shows it came from
/// further away than the peer can be).
/// </summary>
public static class TcpSecurity
{
    /// <summary>RFC 2385 keys are at most 80 octets (TCP_MD5SIG_MAXKEYLEN).</summary>
    public const int MaxKeyOctets = 80;

    private const int IpProtoIp = 0, IpProtoTcp = 6, IpProtoIpv6 = 41;
    private const int TcpMd5Sig = 14, IpTtl = 2, IpMinTtl = 21, Ipv6UnicastHops = 16, Ipv6MinHopCount = 73;
    private static readonly ushort AfInetValue = 2, AfInet6Value = 10;

    /// <summary>Null when <paramref name="password"/> can be a key; else why not.</summary>
    public static string? CheckPassword(string password) => Encoding.UTF8.GetByteCount(password) switch
    {
        0 => "is empty",
        > MaxKeyOctets => $"is longer than {MaxKeyOctets} octets of UTF-8 (RFC 2385's limit in Linux)",
        _ => null,
    };

    /// <summary>
    /// Signs and checks every segment to and from <paramref name="peer"/> on <paramref name="socket"/>
    /// (a connecting socket, or a listener: connections it accepts from that address inherit the key).
    /// </summary>
    public static void SetMd5Key(Socket socket, IPAddress peer, string password)
    {
        if (CheckPassword(password) is { } problem)
            throw new ArgumentException($"TCP MD5 password {problem}", nameof(password));
        SetMd5Option(socket, peer, password);
    }

    /// <summary>Stops signing for <paramref name="peer"/> on a listener (a key of length 0 deletes it).</summary>
    public static void RemoveMd5Key(Socket socket, IPAddress peer) => SetMd5Option(socket, peer, "");

    private static void SetMd5Option(Socket socket, IPAddress peer, string password)
    {
        RequireLinux("TCP MD5 signatures");
        if (socket.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 && peer.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
            peer = peer.MapToIPv6(); // a dual-stack socket sees IPv4 peers as ::ffff:a.b.c.d

        // struct tcp_md5sig: sockaddr_storage (128), flags, prefixlen, keylen (u16), ifindex (u32), key[80].
        Span<byte> option = stackalloc byte[128 + 1 + 1 + 2 + 4 + MaxKeyOctets];
        option.Clear();
        WriteSockAddr(option[..128], peer);
        var keyLength = Encoding.UTF8.GetBytes(password, option[136..]);
        var length = (ushort)keyLength;
        MemoryMarshal.Write(option[130..], in length); // the kernel's structs are in host byte order
        socket.SetRawSocketOption(IpProtoTcp, TcpMd5Sig, option);
    }

    /// <summary>
    /// GTSM on a connected or connecting socket: send with TTL (hop limit) 255, accept only segments
    /// that crossed at most <paramref name="hops"/> routers (1: directly connected, TTL 255 on arrival).
    /// </summary>
    public static void SetTtlSecurity(Socket socket, int hops)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(hops, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(hops, 254);
        SendWithMaximumTtl(socket);
        var minimum = 256 - hops;
        if (socket.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6)
        {
            SetInt(socket, IpProtoIpv6, Ipv6MinHopCount, minimum);
            if (!socket.DualMode)
                return;
        }

        SetInt(socket, IpProtoIp, IpMinTtl, minimum);
    }

    /// <summary>TTL (hop limit) 255 on everything sent: a listener's SYN-ACKs must pass a GTSM peer's check too.</summary>
    public static void SendWithMaximumTtl(Socket socket)
    {
        RequireLinux("TTL security (GTSM)");
        if (socket.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6)
        {
            SetInt(socket, IpProtoIpv6, Ipv6UnicastHops, 255);
            if (!socket.DualMode)
                return;
        }

        SetInt(socket, IpProtoIp, IpTtl, 255);
    }

    private static void SetInt(Socket socket, int level, int name, int value)
    {
        Span<byte> buffer = stackalloc byte[4];
        MemoryMarshal.Write(buffer, in value);
        socket.SetRawSocketOption(level, name, buffer);
    }

    private static void WriteSockAddr(Span<byte> destination, IPAddress address)
    {
        if (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
        {
            // sockaddr_in: family (host order), port (0), address.
            MemoryMarshal.Write(destination, in AfInetValue);
            address.TryWriteBytes(destination[4..8], out _);
        }
        else
        {
            // sockaddr_in6: family, port, flow info, address, scope id.
            MemoryMarshal.Write(destination, in AfInet6Value);
            address.TryWriteBytes(destination[8..24], out _);
            var scope = (uint)address.ScopeId;
            MemoryMarshal.Write(destination[24..], in scope);
        }
    }

    private static void RequireLinux(string what)
    {
        if (!OperatingSystem.IsLinux())
            throw new PlatformNotSupportedException($"{what} need Linux socket options");
    }
}
