using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Time.Testing;
using ShadowNet.Bgp.Sessions;
using ShadowNet.Bgp.Tests.Support;
using ShadowNet.Bgp.Wire;
using static ShadowNet.Bgp.Tests.Wire.MessageBuilder;

namespace ShadowNet.Bgp.Tests.Sessions;

/// <summary>
/// FSM behaviour that a real router cannot be made to trigger on demand (a silent peer, a peer that
/// floods prefixes, a wrong AS), and when and from where the speaker writes, driven by a scripted peer
/// on loopback and a fake clock. The interop tests with BIRD and GoBGP cover the well-behaved paths.
/// </summary>
public class SessionStateMachineTests
{
    private sealed class ScriptedPeer : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private Socket? _socket;
        private byte[] _buffer = [];

        public ScriptedPeer() => _listener.Start();
        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public async Task AcceptAsync() => _socket = await _listener.AcceptSocketAsync().WaitAsync(TimeSpan.FromSeconds(10));
        public Task SendAsync(byte[] message) => _socket!.SendAsync(message);

        public async Task<(BgpMessageType Type, byte[] Body)> ReadAsync()
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            while (true)
            {
                var buffer = new ReadOnlySequence<byte>(_buffer);
                if (BgpFraming.TryReadMessage(ref buffer, 65535, out var type, out var body))
                {
                    var result = (type, body.ToArray());
                    _buffer = buffer.ToArray();
                    return result;
                }
                var chunk = new byte[65536];
                var n = await _socket!.ReceiveAsync(chunk, timeout.Token);
                if (n == 0)
                    throw new IOException("closed");
                _buffer = [.. _buffer, .. chunk.AsSpan(0, n)];
            }
        }

        public async Task<NotificationMessage> ReadUntilNotificationAsync()
        {
            while (true)
            {
                var (type, body) = await ReadAsync();
                if (type == BgpMessageType.Notification)
                    return NotificationMessage.Parse(new ReadOnlySequence<byte>(body));
            }
        }

        /// <summary>
        /// OPEN from AS <paramref name="asn"/>, then KEEPALIVE, as a peer in OpenSent would. Without
        /// <paramref name="keepalive"/> only the OPEN: the speaker may already have closed after refusing it.
        /// </summary>
        public async Task HandshakeAsync(ushort asn = 65002, ushort hold = 3, bool keepalive = true)
        {
            await AcceptAsync();
            Assert.Equal(BgpMessageType.Open, (await ReadAsync()).Type);
            await SendAsync(Open(myAs: asn, hold: hold, id: 0x7F000002, optional: [2, 6, 65, 4, 0, 0, (byte)(asn >> 8), (byte)asn]));
            if (keepalive)
            {
                await SendAsync(Message(4));
            }
        }

        public async ValueTask DisposeAsync()
        {
            _socket?.Dispose();
            _listener.Stop();
            await Task.CompletedTask;
        }
    }

    private static (BgpSpeaker, BgpPeer) Speaker(int port, TimeProvider time, int? maxPrefixes = null)
    {
        var speaker = new BgpSpeaker(new BgpSpeakerOptions { LocalAs = 65003, RouterId = IPAddress.Parse("127.0.0.3") }, time);
        var peer = speaker.AddPeer(new BgpPeerOptions
        {
            Address = IPAddress.Loopback,
            Port = port,
            RemoteAs = 65002,
            HoldTimeSeconds = 90,
            MaxPrefixes = maxPrefixes,
            // Also the connect timeout. At 1 s, a loaded machine (the whole suite starting) could time out a
            // connect the kernel had already completed: the scripted peer accepted it, read "closed", and on
            // the fake clock the retry never came (1 run in 40). Each test here takes one connection.
            ConnectRetry = TimeSpan.FromSeconds(10),
        });
        return (speaker, peer);
    }

    [Fact]
    public async Task RoutesChangedWhileSendsAreHeldAreWrittenByTheReleasingThreadAndNotBefore()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow); // no keepalive wakes the writer meanwhile
        await using var scripted = new ScriptedPeer();
        var (speaker, peer) = Speaker(scripted.Port, time);
        await using var _ = speaker;
        speaker.Start();
        await scripted.HandshakeAsync();
        Assert.Equal(BgpMessageType.Keepalive, (await scripted.ReadAsync()).Type);
        await InteropRoutes.WaitEstablishedAsync(peer, TimeSpan.FromSeconds(10));
        Assert.Equal(BgpMessageType.Update, (await scripted.ReadAsync()).Type); // End-of-RIB: the writer is idle now

        var sent = peer.UpdatesSent;
        Exception? failure = null;
        var held = new Thread(() =>
        {
            try
            {
                // Held sends belong to the thread: nothing awaited between the hold and the release.
                BgpSpeaker.HoldSends();
                speaker.Announce(RoutePrefix.IPv4(0x0A000001, 32), new RouteAttributes { NextHop = IPAddress.Parse("192.0.2.1") });
                Thread.Sleep(300);
                Assert.Equal(sent, peer.UpdatesSent); // not written while held, however long
                BgpSpeaker.ReleaseSends();
                Assert.Equal(sent + 1, peer.UpdatesSent); // written before the release returned: by this thread
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        held.Start();
        held.Join();
        Assert.Null(failure);

        var (type, body) = await scripted.ReadAsync();
        Assert.Equal(BgpMessageType.Update, type);
        Assert.Equal([32, 10, 0, 0, 1], body[^5..]); // the /32's NLRI
    }

    [Fact]
    public async Task SilentPeerGetsKeepalivesThenHoldTimerExpiredNotification()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var scripted = new ScriptedPeer();
        var (speaker, peer) = Speaker(scripted.Port, time);
        await using var _ = speaker;
        speaker.Start();
        await scripted.HandshakeAsync(hold: 3);
        Assert.Equal(BgpMessageType.Keepalive, (await scripted.ReadAsync()).Type);
        await InteropRoutes.WaitEstablishedAsync(peer, TimeSpan.FromSeconds(10));
        Assert.Equal(3, peer.Session!.HoldTimeSeconds);
        Assert.Equal(BgpMessageType.Update, (await scripted.ReadAsync()).Type); // End-of-RIB IPv4

        // Negotiated hold 3 s: a keepalive every second, expiry after 3 s of silence from the peer.
        time.Advance(TimeSpan.FromSeconds(1.1));
        var next = await scripted.ReadAsync();
        while (next.Type == BgpMessageType.Update)
            next = await scripted.ReadAsync();
        Assert.Equal(BgpMessageType.Keepalive, next.Type);
        for (var i = 0; i < 3; i++)
            time.Advance(TimeSpan.FromSeconds(1.1));
        var notification = await scripted.ReadUntilNotificationAsync();
        Assert.Equal(NotificationCode.HoldTimerExpired, notification.Code);
    }

    [Fact]
    public async Task PeerExceedingMaxPrefixesIsClosedWithCeaseMaximumPrefixes()
    {
        await using var scripted = new ScriptedPeer();
        var (speaker, peer) = Speaker(scripted.Port, TimeProvider.System, maxPrefixes: 5);
        await using var _ = speaker;
        speaker.Start();
        await scripted.HandshakeAsync(hold: 90);
        await InteropRoutes.WaitEstablishedAsync(peer, TimeSpan.FromSeconds(10));
        byte[] nlri = [.. Enumerable.Range(1, 6).SelectMany(i => new byte[] { 32, 10, 0, 0, (byte)i })];
        await scripted.SendAsync(Update([], [.. OriginIgp, .. Attr(0x40, 2, 2, 1, 0, 0, 0xFD, 0xEA), .. NextHop], nlri));
        var notification = await scripted.ReadUntilNotificationAsync();
        Assert.Equal(NotificationCode.Cease, notification.Code);
        Assert.Equal(NotificationSubcode.MaximumPrefixesReached, notification.Subcode);
        Assert.Equal(new byte[] { 0, 1, 1, 0, 0, 0, 5 }, notification.Data);
    }

    [Fact]
    public async Task PeerWithAnotherAsIsRefusedWithBadPeerAs()
    {
        await using var scripted = new ScriptedPeer();
        var (speaker, _) = Speaker(scripted.Port, TimeProvider.System);
        await using var __ = speaker;
        speaker.Start();
        await scripted.HandshakeAsync(asn: 65009, keepalive: false);
        var notification = await scripted.ReadUntilNotificationAsync();
        Assert.Equal(NotificationCode.OpenMessageError, notification.Code);
        Assert.Equal(NotificationSubcode.BadPeerAs, notification.Subcode);
    }

    [Fact]
    public async Task MalformedUpdateResetsTheSessionButTreatAsWithdrawKeepsIt()
    {
        await using var scripted = new ScriptedPeer();
        var (speaker, peer) = Speaker(scripted.Port, TimeProvider.System);
        await using var _ = speaker;
        speaker.Start();
        await scripted.HandshakeAsync(hold: 90);
        await InteropRoutes.WaitEstablishedAsync(peer, TimeSpan.FromSeconds(10));
        var asPath = Attr(0x40, 2, 2, 1, 0, 0, 0xFD, 0xEA);
        await scripted.SendAsync(Update([], [.. OriginIgp, .. asPath, .. NextHop], Nlri10001));
        await scripted.SendAsync(Update([], [.. Attr(0x40, 1, 9), .. asPath, .. NextHop], [32, 10, 0, 0, 2]));
        await Eventually.WaitAsync(() => Task.FromResult(peer.UpdatesReceived), n => n >= 2, TimeSpan.FromSeconds(5));
        Assert.Equal(BgpSessionState.Established, peer.State);
        Assert.Equal([RoutePrefix.Parse("10.0.0.1/32")], peer.ReceivedRoutes.Prefixes());

        await scripted.SendAsync(Update([], [.. OriginIgp, .. asPath, .. NextHop], [33, 10, 0, 0, 3, 0]));
        var notification = await scripted.ReadUntilNotificationAsync();
        Assert.Equal(NotificationCode.UpdateMessageError, notification.Code);
        Assert.Equal(NotificationSubcode.InvalidNetworkField, notification.Subcode);
    }
}
