using System.Net;
using ShadowNet.Addressing;
using ShadowNet.Addressing.Pools;

namespace ShadowNet.Controller.Tests.Support;

internal static class TestPools
{
    public static PoolDefinition[] Small(TimeSpan reuseDelay = default) =>
    [
        new("shadow-v4", PoolKind.Shadow, [IPNetwork.Parse("10.1.0.0/20")], [AddressRange.Parse("10.1.0.1")], ReuseDelay: reuseDelay),
        new("dynamic-v4", PoolKind.Dynamic, [IPNetwork.Parse("10.9.0.0/22")], ReuseDelay: reuseDelay),
        new("shadow-v6", PoolKind.Shadow, [IPNetwork.Parse("2001:db8:1::/64")], ReuseDelay: reuseDelay),
        new("dynamic-v6", PoolKind.Dynamic, [IPNetwork.Parse("2001:db8:9::/64")], ReuseDelay: reuseDelay),
    ];
}
