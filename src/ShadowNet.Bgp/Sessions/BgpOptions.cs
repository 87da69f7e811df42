using System.Net;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Bgp.Sessions;

/// <summary>The speaker's identity and listeners.</summary>
public sealed class BgpSpeakerOptions
{
    public uint LocalAs { get; set; }
    public IPAddress RouterId { get; set; } = IPAddress.Parse("127.0.0.1");
    /// <summary>Endpoints to accept passive connections on; empty for none.</summary>
    public List<IPEndPoint> Listen { get; } = [];
    /// <summary>RFC 4724 restart time we advertise; 0 disables graceful restart.</summary>
    public ushort GracefulRestartSeconds { get; set; } = 120;
    /// <summary>Set after a restart so the peer knows to keep our routes until End-of-RIB (the R bit).</summary>
    public bool Restarting { get; set; }
    /// <summary>Largest UPDATE per peer writer batch before a flush, in octets.</summary>
    public int FlushThreshold { get; set; } = 64 * 1024;
    /// <summary>Originated routes to size the Loc-RIB for at start (0: it grows as routes come).</summary>
    public int ExpectedRoutes { get; set; }
}

/// <summary>One configured neighbor.</summary>
public sealed class BgpPeerOptions
{
    public string Name { get; set; } = "";
    public IPAddress Address { get; set; } = IPAddress.Loopback;
    public int Port { get; set; } = BgpConstants.DefaultPort;
    /// <summary>Source address for outgoing connections, and the next hop when a route names none.</summary>
    public IPAddress? LocalAddress { get; set; }
    public uint RemoteAs { get; set; }
    /// <summary>Wait for the peer to connect instead of connecting.</summary>
    public bool Passive { get; set; }
    public ushort HoldTimeSeconds { get; set; } = 90;
    public TimeSpan ConnectRetry { get; set; } = TimeSpan.FromSeconds(5);
    public TimeSpan ConnectRetryMax { get; set; } = TimeSpan.FromSeconds(60);
    public List<AddressFamily> Families { get; } = [AddressFamily.IPv4Unicast, AddressFamily.IPv6Unicast];
    /// <summary>RFC 4486: close the session when the peer sends more prefixes than this; null for no limit.</summary>
    public int? MaxPrefixes { get; set; }
    /// <summary>Next hop for IPv6 routes without one, when the session runs over IPv4.</summary>
    public IPAddress? NextHopV6 { get; set; }
    public bool ExtendedMessage { get; set; } = true;
    /// <summary>RFC 2385 TCP MD5 signature key (both directions; the listener holds it for this address); null for none.</summary>
    public string? Password { get; set; }
    /// <summary>RFC 5082 GTSM: send with TTL 255 and accept only segments that crossed at most this many routers (1: directly connected); null for off.</summary>
    public int? TtlSecurityHops { get; set; }

    /// <summary>
    /// Set: the session is held down (administratively shut down, as for maintenance) and the peer is told
    /// this text (RFC 8203 / 9003, Cease/Administrative Shutdown) when it closes or tries to connect.
    /// </summary>
    public string? ShutdownMessage { get; set; }

    public string DisplayName => string.IsNullOrEmpty(Name) ? $"{Address}:{Port}" : Name;

    /// <summary>
    /// Whether a session configured with <paramref name="other"/> is the same as one with these options:
    /// everything but the name, which only labels it.
    /// </summary>
    public bool SameSessionAs(BgpPeerOptions other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return Address.Equals(other.Address) && Port == other.Port && Equals(LocalAddress, other.LocalAddress)
            && RemoteAs == other.RemoteAs && Passive == other.Passive && HoldTimeSeconds == other.HoldTimeSeconds
            && ConnectRetry == other.ConnectRetry && ConnectRetryMax == other.ConnectRetryMax
            && Families.SequenceEqual(other.Families) && MaxPrefixes == other.MaxPrefixes && Equals(NextHopV6, other.NextHopV6)
            && ExtendedMessage == other.ExtendedMessage && Password == other.Password && TtlSecurityHops == other.TtlSecurityHops
            && ShutdownMessage == other.ShutdownMessage;
    }
}
