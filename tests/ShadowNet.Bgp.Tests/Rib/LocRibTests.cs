using System.Net;
using ShadowNet.Bgp.Rib;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Bgp.Tests.Rib;

public class LocRibTests
{
    private static readonly RouteAttributes Route = new() { NextHop = IPAddress.Parse("192.0.2.1") };

    private static void AnnounceAndWithdraw(LocRib rib, int routes)
    {
        for (var i = 0; i < routes; i++)
        {
            rib.Announce(RoutePrefix.IPv4(0x0A400000u + (uint)i, 32), Route);
        }

        for (var i = 0; i < routes; i += 2)
        {
            Assert.True(rib.Withdraw(RoutePrefix.IPv4(0x0A400000u + (uint)i, 32)));
        }
    }

    [Fact]
    public void ASpeakerSizedForItsRoutesNeverGrowsItsLocRibBelowThatCount()
    {
        var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3"), ExpectedRoutes = 100_000 });
        var capacity = speaker.LocRib.Capacity;
        Assert.True(capacity >= 100_000, $"sized for {capacity}");

        AnnounceAndWithdraw(speaker.LocRib, 100_000);

        Assert.Equal(capacity, speaker.LocRib.Capacity);
        Assert.Equal(50_000, speaker.LocRib.Count);
    }
}
