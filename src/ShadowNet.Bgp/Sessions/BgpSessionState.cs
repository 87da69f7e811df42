namespace ShadowNet.Bgp.Sessions;

/// <summary>The states of RFC 4271 section 8.2.2.</summary>
public enum BgpSessionState
{
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

/// <summary>What the session negotiated from both OPENs (RFC 4271 section 4.2, RFC 5492).</summary>
public sealed record NegotiatedSession(
    uint PeerAs,
    uint PeerRouterId,
    ushort HoldTimeSeconds,
    bool FourOctetAs,
    IReadOnlyList<Wire.AddressFamily> Families,
    bool RouteRefresh,
    bool EnhancedRouteRefresh,
    bool ExtendedMessage,
    bool ExtendedNextHopIPv4,
    Wire.GracefulRestartCapability? PeerGracefulRestart)
{
    public int MaxMessageLength => ExtendedMessage ? Wire.BgpConstants.ExtendedMaxMessageLength : Wire.BgpConstants.MaxMessageLength;
}
