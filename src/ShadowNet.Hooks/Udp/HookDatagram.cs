using System.Buffers.Binary;
using System.Security.Cryptography;
using ShadowNet.Addressing;

namespace ShadowNet.Hooks.Udp;

public enum HookKind : byte
{
    Create = 1,
    Delete = 2,
}

/// <summary>What a reply tells the hypervisor. Values are on the wire; never renumber.</summary>
public enum HookStatus : byte
{
    /// <summary>Created with a pre-allocated address (its route was staged).</summary>
    Hit = 0,

    /// <summary>Created with an address from a dynamic pool (nobody predicted this instance).</summary>
    Miss = 1,

    /// <summary>Deleted: route withdrawn, address released.</summary>
    Deleted = 2,

    /// <summary>Delete of an instance that has no address.</summary>
    NotFound = 3,

    /// <summary>No address left in any pool the application may use.</summary>
    Exhausted = 4,

    /// <summary>The instance id belongs to another application.</summary>
    Conflict = 5,

    /// <summary>The request was well formed but cannot be served (no pool of that family, empty ids).</summary>
    Invalid = 6,

    /// <summary>The controller cannot serve now (state store failing, shutting down); retry later.</summary>
    Unavailable = 7,
}

/// <summary>Why a datagram was dropped without a reply; also the label of the drop counter.</summary>
public enum DatagramRejection : byte
{
    TooShort,
    Oversized,
    BadMagic,
    UnsupportedVersion,
    UnknownKind,
    BadLength,
    BadField,
    UnknownKey,
    BadMac,
    Replayed,
}

/// <summary>A parsed create or delete. The ids are UTF-8 slices of the datagram: copy before keeping.</summary>
public readonly ref struct HookRequest
{
    public HookKind Kind { get; init; }

    public ulong Sequence { get; init; }

    public ushort KeyId { get; init; }

    /// <summary>The key the request was authenticated with: its reply is signed with the same.</summary>
    public byte[] Key { get; init; }

    public IpFamily Family { get; init; }

    /// <summary>The hypervisor's address, the next hop of the instance's route; null to use the configured default.</summary>
    public Address? Host { get; init; }

    public ReadOnlySpan<byte> Instance { get; init; }

    public ReadOnlySpan<byte> Application { get; init; }
}

/// <summary>
/// The UDP fast path's datagrams, version 1. Integers are big-endian; every datagram ends in an
/// HMAC-SHA-256 over all the octets before it, truncated to 16 octets (RFC 2104 section 5 allows
/// truncation to half the hash length or more).
/// </summary>
/// <remarks>
/// <code>
/// Request (create or delete), 52 to 306 octets:
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |    'S' 0x53   |    'N' 0x4E   |  version = 1  | kind (1 or 2) |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                  sequence number (64 bits)                    |
/// |                                                               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |            key id             |   flags (b0: host present)    |
/// |  family (4/6) |
/// +-+-+-+-+-+-+-+-+
/// | host address (16 octets; IPv4 in the last 4, as ::ffff:a.b.c.d)  |
/// +-+-+-+-+-+-+-+-+
/// | instance len  |  instance id, 1..128 octets of UTF-8 ...
/// +-+-+-+-+-+-+-+-+
/// | app len       |  application id, 1..128 octets of UTF-8 ...
/// +-+-+-+-+-+-+-+-+
/// |                 HMAC-SHA-256, first 16 octets                 |
///
/// Reply (acknowledgement), 48 octets:
/// | 'S' | 'N' | version = 1 | 0x80 + kind | sequence (8) | key id (2) | status (1) |
/// | family (1) | address (16; zero when none) | HMAC-SHA-256, first 16 octets |
/// </code>
/// The sequence number is the client's, per key id, increasing; a retry sends the same datagram again.
/// </remarks>
public static class HookDatagram
{
    public const byte Version = 1;
    public const int MacLength = 16;
    public const int MaxIdLength = 128;
    public const int HeaderLength = 32;
    public const int MinRequestLength = HeaderLength + 1 + 1 + 1 + 1 + MacLength;
    public const int MaxRequestLength = HeaderLength + 1 + MaxIdLength + 1 + MaxIdLength + MacLength;
    public const int ReplyLength = 4 + 8 + 2 + 1 + 1 + 16 + MacLength;
    private const byte ReplyBit = 0x80;
    private const byte FlagHost = 0x01;

    /// <summary>Writes a request; returns its length. Ids must be 1..128 octets of UTF-8.</summary>
    public static int WriteRequest(Span<byte> destination, HookKind kind, ulong sequence, ushort keyId, ReadOnlySpan<byte> key,
        IpFamily family, Address? host, ReadOnlySpan<byte> instance, ReadOnlySpan<byte> application)
    {
        if (instance.Length is 0 or > MaxIdLength || application.Length is 0 or > MaxIdLength)
        {
            throw new ArgumentException("instance and application ids must be 1 to 128 octets");
        }

        var length = HeaderLength + 1 + instance.Length + 1 + application.Length + MacLength;
        var d = destination[..length];
        d[0] = (byte)'S';
        d[1] = (byte)'N';
        d[2] = Version;
        d[3] = (byte)kind;
        BinaryPrimitives.WriteUInt64BigEndian(d[4..], sequence);
        BinaryPrimitives.WriteUInt16BigEndian(d[12..], keyId);
        d[14] = host is null ? (byte)0 : FlagHost;
        d[15] = (byte)family;
        WriteAddress(d.Slice(16, 16), host);
        var at = HeaderLength;
        d[at++] = (byte)instance.Length;
        instance.CopyTo(d[at..]);
        at += instance.Length;
        d[at++] = (byte)application.Length;
        application.CopyTo(d[at..]);
        at += application.Length;
        Sign(key, d[..at], d.Slice(at, MacLength));
        return length;
    }

    /// <summary>
    /// Parses and authenticates a request. The key is looked up by the datagram's key id. Replay is the
    /// caller's business (<see cref="ReplayWindow"/>): the sequence number is only read here.
    /// </summary>
    public static bool TryParseRequest(ReadOnlySpan<byte> datagram, Func<ushort, byte[]?> keys, out HookRequest request, out DatagramRejection rejection)
    {
        request = default;
        if (!TryCheckHeader(datagram, MinRequestLength, MaxRequestLength, out rejection))
        {
            return false;
        }

        var kind = datagram[3];
        if (kind is not ((byte)HookKind.Create or (byte)HookKind.Delete))
        {
            rejection = DatagramRejection.UnknownKind;
            return false;
        }

        var at = HeaderLength;
        int instanceLength = datagram[at];
        if (instanceLength is 0 or > MaxIdLength || at + 1 + instanceLength >= datagram.Length)
        {
            rejection = DatagramRejection.BadLength;
            return false;
        }

        var instance = datagram.Slice(at + 1, instanceLength);
        at += 1 + instanceLength;
        int applicationLength = datagram[at];
        if (applicationLength is 0 or > MaxIdLength || at + 1 + applicationLength + MacLength != datagram.Length)
        {
            rejection = DatagramRejection.BadLength;
            return false;
        }

        var application = datagram.Slice(at + 1, applicationLength);
        at += 1 + applicationLength;
        var keyId = BinaryPrimitives.ReadUInt16BigEndian(datagram[12..]);
        if (!Authenticate(datagram, at, keyId, keys, out var key, out rejection))
        {
            return false;
        }

        // Fields are checked only once the sender is known to hold the key.
        var flags = datagram[14];
        var family = datagram[15];
        if ((flags & ~FlagHost) != 0 || family is not ((byte)IpFamily.IPv4 or (byte)IpFamily.IPv6)
            || !TryReadAddress(datagram.Slice(16, 16), (flags & FlagHost) != 0, out var host))
        {
            rejection = DatagramRejection.BadField;
            return false;
        }

        request = new HookRequest
        {
            Kind = (HookKind)kind,
            Sequence = BinaryPrimitives.ReadUInt64BigEndian(datagram[4..]),
            KeyId = keyId,
            Key = key,
            Family = (IpFamily)family,
            Host = host,
            Instance = instance,
            Application = application,
        };
        return true;
    }

    /// <summary>Writes the 48-octet acknowledgement of a request.</summary>
    public static int WriteReply(Span<byte> destination, HookKind kind, ulong sequence, ushort keyId, ReadOnlySpan<byte> key,
        HookStatus status, IpFamily family, Address? address)
    {
        var d = destination[..ReplyLength];
        d[0] = (byte)'S';
        d[1] = (byte)'N';
        d[2] = Version;
        d[3] = (byte)(ReplyBit | (byte)kind);
        BinaryPrimitives.WriteUInt64BigEndian(d[4..], sequence);
        BinaryPrimitives.WriteUInt16BigEndian(d[12..], keyId);
        d[14] = (byte)status;
        d[15] = (byte)family;
        WriteAddress(d.Slice(16, 16), address);
        Sign(key, d[..32], d.Slice(32, MacLength));
        return ReplyLength;
    }

    /// <summary>Parses and authenticates a reply (the client side).</summary>
    public static bool TryParseReply(ReadOnlySpan<byte> datagram, ReadOnlySpan<byte> key, out HookReply reply, out DatagramRejection rejection)
    {
        reply = default;
        if (!TryCheckHeader(datagram, ReplyLength, ReplyLength, out rejection))
        {
            return false;
        }

        if ((datagram[3] & ReplyBit) == 0 || (datagram[3] & ~ReplyBit) is not ((byte)HookKind.Create or (byte)HookKind.Delete))
        {
            rejection = DatagramRejection.UnknownKind;
            return false;
        }

        Span<byte> mac = stackalloc byte[MacLength];
        Sign(key, datagram[..32], mac);
        if (!CryptographicOperations.FixedTimeEquals(mac, datagram.Slice(32, MacLength)))
        {
            rejection = DatagramRejection.BadMac;
            return false;
        }

        var family = (IpFamily)datagram[15];
        var address = datagram.Slice(16, 16);
        var none = address.IndexOfAnyExcept((byte)0) < 0;
        TryReadAddress(address, !none, out var parsed);
        reply = new HookReply((HookKind)(datagram[3] & ~ReplyBit), BinaryPrimitives.ReadUInt64BigEndian(datagram[4..]),
            BinaryPrimitives.ReadUInt16BigEndian(datagram[12..]), (HookStatus)datagram[14], family, parsed);
        return true;
    }

    private static bool TryCheckHeader(ReadOnlySpan<byte> datagram, int min, int max, out DatagramRejection rejection)
    {
        if (datagram.Length > max)
        {
            rejection = DatagramRejection.Oversized;
            return false;
        }

        if (datagram.Length < 4)
        {
            rejection = DatagramRejection.TooShort;
            return false;
        }

        if (datagram[0] != (byte)'S' || datagram[1] != (byte)'N')
        {
            rejection = DatagramRejection.BadMagic;
            return false;
        }

        if (datagram[2] != Version)
        {
            rejection = DatagramRejection.UnsupportedVersion;
            return false;
        }

        if (datagram.Length < min)
        {
            rejection = DatagramRejection.TooShort;
            return false;
        }

        rejection = default;
        return true;
    }

    private static bool Authenticate(ReadOnlySpan<byte> datagram, int macAt, ushort keyId, Func<ushort, byte[]?> keys, out byte[] key,
        out DatagramRejection rejection)
    {
        if (keys(keyId) is not { } found)
        {
            (key, rejection) = ([], DatagramRejection.UnknownKey);
            return false;
        }

        key = found;
        Span<byte> mac = stackalloc byte[MacLength];
        Sign(key, datagram[..macAt], mac);
        if (!CryptographicOperations.FixedTimeEquals(mac, datagram.Slice(macAt, MacLength)))
        {
            rejection = DatagramRejection.BadMac;
            return false;
        }

        rejection = default;
        return true;
    }

    private static void Sign(ReadOnlySpan<byte> key, ReadOnlySpan<byte> data, Span<byte> mac)
    {
        Span<byte> full = stackalloc byte[KeyedHmacSha256.MacSize];
        KeyedHmac(key).Compute(data, full);
        full[..MacLength].CopyTo(mac);
    }

    // A keyed HMAC per thread and key: the key's pads are hashed once, not for every datagram (the
    // one-shot HashData sets up, keys and frees an OpenSSL context per call).
    [ThreadStatic]
    private static (byte[] Key, KeyedHmacSha256 Hmac)[]? t_hmacs;

    private static KeyedHmacSha256 KeyedHmac(ReadOnlySpan<byte> key)
    {
        var cache = t_hmacs ??= new (byte[], KeyedHmacSha256)[4];
        for (var i = 0; i < cache.Length; i++)
        {
            if (cache[i].Key is { } cached && key.SequenceEqual(cached))
            {
                return cache[i].Hmac;
            }
        }

        // A key not seen on this thread: take a free slot, or replace the last one.
        var slot = Array.FindIndex(cache, c => c.Key is null);
        slot = slot < 0 ? cache.Length - 1 : slot;
        cache[slot].Hmac?.Dispose();
        cache[slot] = (key.ToArray(), new KeyedHmacSha256(key));
        return cache[slot].Hmac;
    }

    private static void WriteAddress(Span<byte> destination, Address? address)
    {
        destination.Clear();
        if (address is not { } a)
        {
            return;
        }

        if (a.IsIPv6)
        {
            BinaryPrimitives.WriteUInt128BigEndian(destination, a.Value);
        }
        else
        {
            destination[10] = 0xFF;
            destination[11] = 0xFF;
            BinaryPrimitives.WriteUInt32BigEndian(destination[12..], (uint)a.Value);
        }
    }

    private static bool TryReadAddress(ReadOnlySpan<byte> source, bool present, out Address? address)
    {
        address = null;
        if (!present)
        {
            return source.IndexOfAnyExcept((byte)0) < 0;
        }

        var value = BinaryPrimitives.ReadUInt128BigEndian(source);
        address = (value >> 32) == 0xFFFF ? Address.IPv4((uint)value) : Address.IPv6(value);
        return true;
    }
}

/// <summary>A parsed acknowledgement.</summary>
public readonly record struct HookReply(HookKind Kind, ulong Sequence, ushort KeyId, HookStatus Status, IpFamily Family, Address? Address);
