using System.Security.Cryptography;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Hooks.Tests.Udp;

public class KeyedHmacSha256Tests
{
    // RFC 4231 section 4: test cases 1, 2, 3, 4, 6 and 7 (5 is truncated output), HMAC-SHA-256.
    public static TheoryData<string, string, string, bool> Rfc4231 => new()
    {
        { "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", Convert.ToHexString("Hi There"u8), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", false },
        { Convert.ToHexString("Jefe"u8), Convert.ToHexString("what do ya want for nothing?"u8), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", false },
        { new string('a', 40), new string('d', 100), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", false },
        { "0102030405060708090a0b0c0d0e0f10111213141516171819", string.Concat(Enumerable.Repeat("cd", 50)), "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", false },
        { new string('a', 262), Convert.ToHexString("Test Using Larger Than Block-Size Key - Hash Key First"u8), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", false },
        { new string('a', 262), Convert.ToHexString("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."u8), "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2", false },
        { "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b", Convert.ToHexString("Hi There"u8), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", true },
        { new string('a', 262), Convert.ToHexString("Test Using Larger Than Block-Size Key - Hash Key First"u8), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", true },
    };

    [Theory]
    [MemberData(nameof(Rfc4231))]
    public void MatchesTheRfc4231TestVectorsOnBothPaths(string keyHex, string dataHex, string expectedHex, bool fallback)
    {
        using var hmac = new KeyedHmacSha256(Convert.FromHexString(keyHex), forceFallback: fallback);
        var mac = new byte[KeyedHmacSha256.MacSize];
        hmac.Compute(Convert.FromHexString(dataHex), mac);
        Assert.Equal(expectedHex, Convert.ToHexStringLower(mac));
        hmac.Compute(Convert.FromHexString(dataHex), mac); // the keyed state is reused, not consumed
        Assert.Equal(expectedHex, Convert.ToHexStringLower(mac));
    }

    [Fact]
    public void AgreesWithDotNetsHmacForEveryKeyAndMessageLengthAroundTheBlockSize()
    {
        var random = new Random(2104);
        var mac = new byte[KeyedHmacSha256.MacSize];
        foreach (var keyLength in new[] { 16, 32, 63, 64, 65, 200 })
        {
            var key = new byte[keyLength];
            random.NextBytes(key);
            using var hmac = new KeyedHmacSha256(key);
            for (var length = 0; length <= 130; length++)
            {
                var data = new byte[length];
                random.NextBytes(data);
                hmac.Compute(data, mac);
                Assert.Equal(HMACSHA256.HashData(key, data), mac);
            }
        }
    }

    [Fact]
    public void OnLinuxTheMacIsComputedWithLibcryptosSha256()
    {
        // The daemon's platform: a binding that failed there would fall back silently and cost 5x.
        using var hmac = new KeyedHmacSha256(new byte[32]);
        Assert.Equal(OperatingSystem.IsLinux(), hmac.UsesOpenSslSha256);
    }
}
