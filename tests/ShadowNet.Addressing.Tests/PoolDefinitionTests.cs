using System.Net;
using ShadowNet.Addressing.Allocation;
using ShadowNet.Addressing.Pools;

namespace ShadowNet.Addressing.Tests;

public class PoolDefinitionTests
{
    [Fact]
    public void UsableRangesLeaveOutNetworkBroadcastAndExclusions()
    {
        var pool = new PoolDefinition("p", PoolKind.Shadow, [IPNetwork.Parse("10.0.0.0/24")],
            [AddressRange.Parse("10.0.0.1"), AddressRange.Parse("10.0.0.100-10.0.0.109")]);
        var ranges = pool.UsableRanges().Select(r => r.ToString()).ToArray();
        Assert.Equal(["10.0.0.2-10.0.0.99", "10.0.0.110-10.0.0.254"], ranges);
    }

    [Fact]
    public void IPv6RangesLeaveOutOnlyTheSubnetRouterAnycastAddress()
    {
        var pool = new PoolDefinition("p6", PoolKind.Dynamic, [IPNetwork.Parse("2001:db8::/126")]);
        Assert.Equal(["2001:db8::1-2001:db8::3"], pool.UsableRanges().Select(r => r.ToString()));
    }

    [Theory]
    [InlineData("", "10.0.0.0/24", "pool name is empty")]
    [InlineData("mixed", "10.0.0.0/24,2001:db8::/64", "pool 'mixed': prefixes mix IPv4 and IPv6")]
    [InlineData("overlap", "10.0.0.0/16,10.0.5.0/24", "pool 'overlap': prefixes 10.0.0.0/16 and 10.0.5.0/24 overlap")]
    public void InvalidDefinitionsNameThePoolAndTheFault(string name, string prefixes, string message)
    {
        var pool = new PoolDefinition(name, PoolKind.Shadow, [.. prefixes.Split(',').Select(IPNetwork.Parse)]);
        var error = Assert.Throws<PoolConfigurationException>(pool.Validate);
        Assert.StartsWith(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void PoolsOfTheAllocatorMayNotOverlapEachOther()
    {
        var error = Assert.Throws<PoolConfigurationException>(() => new AddressAllocator(
        [
            new PoolDefinition("a", PoolKind.Shadow, [IPNetwork.Parse("10.0.0.0/16")]),
            new PoolDefinition("b", PoolKind.Dynamic, [IPNetwork.Parse("10.0.128.0/17")]),
        ]));
        Assert.Equal("pool 'b': prefix 10.0.128.0/17 overlaps 10.0.0.0/16 of pool 'a'", error.Message);
    }
}
