namespace ShadowNet.Bgp.Wire;

/// <summary>Message types (RFC 4271 section 4.1, RFC 2918).</summary>
public enum BgpMessageType : byte
{
    Open = 1,
    Update = 2,
    Notification = 3,
    Keepalive = 4,
    RouteRefresh = 5,
}

/// <summary>Path attribute type codes (IANA "BGP Path Attributes").</summary>
public enum PathAttributeType : byte
{
    Origin = 1,
    AsPath = 2,
    NextHop = 3,
    MultiExitDisc = 4,
    LocalPref = 5,
    AtomicAggregate = 6,
    Aggregator = 7,
    Communities = 8,
    MpReachNlri = 14,
    MpUnreachNlri = 15,
    ExtendedCommunities = 16,
    As4Path = 17,
    As4Aggregator = 18,
    LargeCommunities = 32,
}

/// <summary>Attribute flag bits (RFC 4271 section 4.3).</summary>
[Flags]
public enum AttributeFlags : byte
{
    None = 0,
    ExtendedLength = 0x10,
    Partial = 0x20,
    Transitive = 0x40,
    Optional = 0x80,
}

/// <summary>ORIGIN values (RFC 4271 section 5.1.1).</summary>
public enum Origin : byte
{
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// <summary>Capability codes (IANA "Capability Codes").</summary>
public enum CapabilityCode : byte
{
    Multiprotocol = 1,
    RouteRefresh = 2,
    ExtendedNextHop = 5,
    ExtendedMessage = 6,
    GracefulRestart = 64,
    FourOctetAs = 65,
    EnhancedRouteRefresh = 70,
}

public static class BgpConstants
{
    public const int HeaderLength = 19;
    public const int MarkerLength = 16;
    public const int MaxMessageLength = 4096;
    /// <summary>RFC 8654: the limit for every message but OPEN and KEEPALIVE once both sides advertise it.</summary>
    public const int ExtendedMaxMessageLength = 65535;
    public const int MinOpenLength = 29;
    public const int MinUpdateLength = 23;
    public const int MinNotificationLength = 21;
    public const int RouteRefreshLength = 23;
    public const byte Version = 4;
    /// <summary>RFC 6793: stands in for a 4-octet AS number in 2-octet fields.</summary>
    public const ushort AsTrans = 23456;
    public const ushort DefaultPort = 179;
}
