using System.Diagnostics;
using System.Net;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Bgp.Tests.Support;

/// <summary>Routes and helpers shared by the interop tests.</summary>
internal static class InteropRoutes
{
    public const uint OurAs = 65003;
    public const string OurAddress = "127.0.0.3";
    public static readonly IPAddress NextHopV4 = IPAddress.Parse("192.0.2.10");
    public static readonly IPAddress NextHopV6 = IPAddress.Parse("2001:db8::1");
    public const uint Community = (65003u << 16) | 7;
    public static readonly LargeCommunity Large = new(65003, 1, 0);

    public static RoutePrefix[] V4(int n, uint start = 0x0A000000) => Enumerable.Range(0, n).Select(i => RoutePrefix.IPv4(start + (uint)i, 32)).ToArray();
    public static RoutePrefix[] V6(int n) => Enumerable.Range(0, n).Select(i => RoutePrefix.IPv6(RoutePrefix.ToUInt128(IPAddress.Parse("2001:db8:100::")) + (UInt128)i, 128)).ToArray();

    public static readonly RouteAttributes V4Attributes = new() { NextHop = NextHopV4, Communities = [Community], LargeCommunities = [Large] };
    public static readonly RouteAttributes V6Attributes = new() { NextHop = NextHopV6, Communities = [Community], LargeCommunities = [Large] };

    public static BgpSpeaker Speaker(ushort gracefulRestart = 120, int listenPort = 0)
    {
        var options = new BgpSpeakerOptions { LocalAs = OurAs, RouterId = IPAddress.Parse(OurAddress), GracefulRestartSeconds = gracefulRestart };
        if (listenPort != 0)
            options.Listen.Add(new IPEndPoint(IPAddress.Parse(OurAddress), listenPort));
        return new BgpSpeaker(options);
    }

    public static BgpPeerOptions Peer(string address, int port, uint remoteAs, bool passive = false) => new()
    {
        Address = IPAddress.Parse(address),
        Port = port,
        RemoteAs = remoteAs,
        LocalAddress = IPAddress.Parse(OurAddress),
        Passive = passive,
        ConnectRetry = TimeSpan.FromSeconds(1),
        ConnectRetryMax = TimeSpan.FromSeconds(2),
        HoldTimeSeconds = 30,
    };

    public static async Task WaitEstablishedAsync(BgpPeer peer, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await peer.WaitForStateAsync(BgpSessionState.Established, cts.Token);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"session with {peer.Options.DisplayName} not established within {timeout}: state {peer.State}, last error {peer.LastError}");
        }
    }

    /// <summary>Starts <c>shadownet bgp announce</c> as a child process (for tests that kill it with SIGKILL).</summary>
    public static Process StartCli(string arguments)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "shadownet.dll");
        var p = Process.Start(new ProcessStartInfo("dotnet", $"{dll} {arguments}")
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        }) ?? throw new InvalidOperationException("shadownet did not start");
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }
}
