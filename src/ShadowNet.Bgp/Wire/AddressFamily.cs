namespace ShadowNet.Bgp.Wire;

/// <summary>Address Family Identifier (IANA).</summary>
public enum Afi : ushort
{
    IPv4 = 1,
    IPv6 = 2,
}

/// <summary>Subsequent Address Family Identifier (RFC 4760).</summary>
public enum Safi : byte
{
    Unicast = 1,
}

/// <summary>An (AFI, SAFI) pair: the unit that multiprotocol capabilities and End-of-RIB speak of.</summary>
public readonly record struct AddressFamily(Afi Afi, Safi Safi)
{
    public static readonly AddressFamily IPv4Unicast = new(Afi.IPv4, Safi.Unicast);
    public static readonly AddressFamily IPv6Unicast = new(Afi.IPv6, Safi.Unicast);

    public override string ToString() => $"{(Afi == Afi.IPv4 ? "ipv4" : Afi == Afi.IPv6 ? "ipv6" : ((ushort)Afi).ToString())}-{(Safi == Safi.Unicast ? "unicast" : ((byte)Safi).ToString())}";

    public static bool TryParse(string text, out AddressFamily family)
    {
        family = text.ToLowerInvariant() switch
        {
            "ipv4" or "ipv4-unicast" => IPv4Unicast,
            "ipv6" or "ipv6-unicast" => IPv6Unicast,
            _ => default,
        };
        return family != default;
    }
}
