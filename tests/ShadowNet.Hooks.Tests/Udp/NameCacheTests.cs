using System.Text;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Hooks.Tests.Udp;

public class NameCacheTests
{
    [Fact]
    public void TheSameNameIsTheSameStringAndNewNamesPastTheBoundAreDecodedButNotKept()
    {
        var cache = new NameCache(2);
        var web = cache.Get("web"u8);
        Assert.Same(web, cache.Get("web"u8));
        Assert.Equal("db", cache.Get("db"u8));
        var third = cache.Get("cache-ü"u8);
        Assert.Equal("cache-ü", third);
        Assert.NotSame(third, cache.Get("cache-ü"u8));
        Assert.Equal(2, cache.Count);
        Assert.Equal(Encoding.UTF8.GetString([0x61, 0xff]), cache.Get([0x61, 0xff])); // invalid UTF-8 as GetString reads it
    }
}
