using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Sockets;

namespace ShadowNet.Addressing;

public enum IpFamily : byte
{
    IPv4 = 4,
    IPv6 = 6,
}

/// <summary>
/// One IPv4 or IPv6 address as an integer (IPv4 in the low 32 bits) and its family. The allocator's
/// hot paths work on these values; <see cref="IPAddress"/> appears only at the edges (config, text).
/// </summary>
public readonly record struct Address(UInt128 Value, IpFamily Family) : IComparable<Address>
{
    public bool IsIPv6 => Family == IpFamily.IPv6;

    public static Address IPv4(uint value) => new(value, IpFamily.IPv4);

    public static Address IPv6(UInt128 value) => new(value, IpFamily.IPv6);

    public static Address From(IPAddress address)
    {
        Span<byte> bytes = stackalloc byte[16];
        if (!address.TryWriteBytes(bytes, out var written))
        {
            throw new ArgumentException($"'{address}' is not an IPv4 or IPv6 address.", nameof(address));
        }

        if (written == 4)
        {
            return IPv4(System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(bytes));
        }

        if (address.IsIPv4MappedToIPv6)
        {
            return From(address.MapToIPv4());
        }

        return IPv6(System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(bytes));
    }

    public static bool TryParse([NotNullWhen(true)] string? text, out Address address)
    {
        address = default;
        if (text is null || !IPAddress.TryParse(text, out var ip) || (ip.AddressFamily == AddressFamily.InterNetworkV6 && ip.ScopeId != 0))
        {
            return false;
        }

        address = From(ip);
        return true;
    }

    public static Address Parse(string text) =>
        TryParse(text, out var address) ? address : throw new FormatException($"'{text}' is not an IPv4 or IPv6 address.");

    public IPAddress ToIPAddress()
    {
        Span<byte> bytes = stackalloc byte[16];
        if (IsIPv6)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt128BigEndian(bytes, Value);
            return new IPAddress(bytes);
        }

        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes, (uint)Value);
        return new IPAddress(bytes[..4]);
    }

    public int CompareTo(Address other) => Family != other.Family ? Family.CompareTo(other.Family) : Value.CompareTo(other.Value);

    public override string ToString() => ToIPAddress().ToString();

    public static bool operator <(Address left, Address right) => left.CompareTo(right) < 0;

    public static bool operator <=(Address left, Address right) => left.CompareTo(right) <= 0;

    public static bool operator >(Address left, Address right) => left.CompareTo(right) > 0;

    public static bool operator >=(Address left, Address right) => left.CompareTo(right) >= 0;
}

/// <summary>An inclusive range of addresses of one family.</summary>
public readonly record struct AddressRange(Address First, Address Last)
{
    public IpFamily Family => First.Family;

    /// <summary>Number of addresses; a full IPv6 space (2^128) saturates at <see cref="UInt128.MaxValue"/>.</summary>
    public UInt128 Count => Last.Value - First.Value == UInt128.MaxValue ? UInt128.MaxValue : Last.Value - First.Value + 1;

    public bool Contains(Address address) =>
        address.Family == First.Family && address.Value >= First.Value && address.Value <= Last.Value;

    public static AddressRange Of(IPNetwork network)
    {
        var first = Address.From(network.BaseAddress);
        var bits = first.IsIPv6 ? 128 : 32;
        var hostBits = bits - network.PrefixLength;
        var span = hostBits == 128 ? UInt128.MaxValue : (UInt128.One << hostBits) - 1;
        return new AddressRange(first, new Address(first.Value + span, first.Family));
    }

    /// <summary>Parses "a.b.c.d", "a.b.c.d-e.f.g.h" or a CIDR prefix.</summary>
    public static bool TryParse(string? text, out AddressRange range)
    {
        range = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        text = text.Trim();
        var dash = text.IndexOf('-', StringComparison.Ordinal);
        if (dash > 0)
        {
            if (!Address.TryParse(text[..dash].Trim(), out var first) || !Address.TryParse(text[(dash + 1)..].Trim(), out var last)
                || first.Family != last.Family || first.Value > last.Value)
            {
                return false;
            }

            range = new AddressRange(first, last);
            return true;
        }

        if (text.Contains('/', StringComparison.Ordinal))
        {
            if (!IPNetwork.TryParse(text, out var network))
            {
                return false;
            }

            range = Of(network);
            return true;
        }

        if (!Address.TryParse(text, out var single))
        {
            return false;
        }

        range = new AddressRange(single, single);
        return true;
    }

    public static AddressRange Parse(string text) =>
        TryParse(text, out var range) ? range : throw new FormatException($"'{text}' is not an address, a range 'first-last' or a prefix.");

    public override string ToString() => First == Last ? First.ToString() : $"{First}-{Last}";
}
