using System.Net;
using System.Net.Sockets;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Hooks.Tests.Udp;

public class DatagramBatchTests
{
    /// <summary>A reply to <paramref name="client"/>'s address, every octet <paramref name="mark"/>.</summary>
    private static OutgoingReply ReplyTo(Socket client, byte mark)
    {
        var to = client.LocalEndPoint!.Serialize();
        var reply = new OutgoingReply { ToLength = to.Size };
        for (var b = 0; b < to.Size; b++)
        {
            reply.To[b] = to[b];
        }

        ((Span<byte>)reply.Reply).Fill(mark);
        return reply;
    }

    /// <summary>Client sockets bound on <paramref name="loopback"/>, with a receive timeout.</summary>
    private static Socket[] BoundClients(int count, IPAddress loopback) => [.. Enumerable.Range(0, count).Select(_ =>
    {
        var client = new Socket(loopback.AddressFamily, SocketType.Dgram, ProtocolType.Udp) { ReceiveTimeout = 2_000 };
        client.Bind(new IPEndPoint(loopback, 0));
        return client;
    })];

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, false)]
    [InlineData(true, true)] // segmented sends over IPv6 (::1)
    public void RepliesToSeveralSendersArriveEachAtItsOwnInOrderWhateverTheRuns(bool native, bool ipv6)
    {
        if (native && !OperatingSystem.IsLinux())
        {
            return;
        }

        var loopback = ipv6 ? IPAddress.IPv6Loopback : IPAddress.Loopback;
        using var server = new Socket(loopback.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        server.Bind(new IPEndPoint(loopback, 0));
        var clients = BoundClients(2, loopback);
        try
        {
            using var io = new DatagramBatch(server, 8, 100, native);

            // Runs of 3, 2, 1, 5 and 1 to alternating clients (20 replies: more than one batch of 8).
            int[] runs = [3, 2, 1, 5, 1, 4, 4];
            var replies = new List<OutgoingReply>();
            var expected = new[] { new List<byte>(), new List<byte>() };
            for (var r = 0; r < runs.Length; r++)
            {
                for (var k = 0; k < runs[r]; k++)
                {
                    expected[r % 2].Add((byte)replies.Count);
                    replies.Add(ReplyTo(clients[r % 2], (byte)replies.Count));
                }
            }

            io.Send(replies.ToArray());
            var buffer = new byte[HookDatagram.ReplyLength * 2];
            for (var c = 0; c < 2; c++)
            {
                foreach (var mark in expected[c])
                {
                    Assert.Equal(HookDatagram.ReplyLength, clients[c].Receive(buffer));
                    Assert.All(buffer[..HookDatagram.ReplyLength], b => Assert.Equal(mark, b));
                }
            }

            Assert.Equal(native, io.SegmentsRuns); // runs of 2 to 5 left segmented, none refused
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
        }
    }

    [Fact]
    public void InterleavedRepliesToAFleetLeaveAsOneSegmentedMessagePerSenderAndInOrderForEach()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        using var server = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var clients = BoundClients(4, IPAddress.Loopback);
        try
        {
            using var io = new DatagramBatch(server, 64, 100);

            // 48 replies to four senders in turn, as a fleet's interleaved requests are answered.
            var replies = Enumerable.Range(0, 48).Select(i => ReplyTo(clients[i % 4], (byte)i)).ToArray();

            io.Send(replies);

            Assert.Equal(4, io.MessagesSent); // one per sender; 48 if sent in the order given
            var buffer = new byte[HookDatagram.ReplyLength * 2];
            for (var c = 0; c < 4; c++)
            {
                for (var i = c; i < replies.Length; i += 4)
                {
                    Assert.Equal(HookDatagram.ReplyLength, clients[c].Receive(buffer));
                    Assert.Equal((byte)i, buffer[0]);
                }

                Assert.Equal(0, clients[c].Available);
            }
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
        }
    }

    [Fact]
    public void AFlushLargerThanSixteenBitsOfRepliesIsStillGroupedBySender()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        using var server = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var clients = BoundClients(2, IPAddress.Loopback);
        try
        {
            using var io = new DatagramBatch(server, 64, 100);

            // A group of 65,536 operations after a stalled commit, plus one: replies to two senders in turn.
            const int Replies = 65_537;
            var replies = Enumerable.Range(0, Replies).Select(i => ReplyTo(clients[i % 2], (byte)i)).ToArray();

            io.Send(replies);

            // One segmented message per 64-reply call, and one more if the senders change over inside a
            // call (which sender goes first is the hash's choice); 65,537 if sent in the order given. The
            // clients' buffers drop most of them: not the point.
            const int Calls = (Replies + 63) / 64;
            Assert.InRange(io.MessagesSent, Calls, Calls + 1);
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }
        }
    }

    [Fact]
    public void WhenTheKernelRefusesSegmentedSendsEveryReplyStillArrivesOnItsOwn()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        using var server = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        server.SetRawSocketOption(1, 11, BitConverter.GetBytes(1)); // SO_NO_CHECK: Linux refuses UDP GSO without checksums (EINVAL)
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp) { ReceiveTimeout = 2_000 };
        client.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        using var other = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp) { ReceiveTimeout = 2_000 };
        other.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        using var io = new DatagramBatch(server, 16, 100);

        // The first reply alone to another client, so that the refused segmented send is not the
        // batch's first message: what was sent before it must not be sent again.
        var replies = Enumerable.Range(0, 40).Select(i => ReplyTo(i == 0 ? other : client, (byte)i)).ToArray();

        io.Send(replies);
        var buffer = new byte[HookDatagram.ReplyLength * 2];
        Assert.Equal(HookDatagram.ReplyLength, other.Receive(buffer));
        Assert.Equal(0, buffer[0]);
        for (var i = 1; i < replies.Length; i++)
        {
            Assert.Equal(HookDatagram.ReplyLength, client.Receive(buffer));
            Assert.Equal((byte)i, buffer[0]);
        }

        Assert.Equal(0, other.Available);
        Assert.Equal(0, client.Available);
        Assert.False(io.SegmentsRuns);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BatchesCarryEveryDatagramWithItsSenderBothWays(bool native)
    {
        if (native && !OperatingSystem.IsLinux())
        {
            return; // recvmmsg/sendmmsg are Linux's
        }

        using var server = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp) { ReceiveTimeout = 2_000 };
        HookServer.SetReceiveBuffer(server, 1 << 20);
        server.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp) { ReceiveTimeout = 2_000 };
        client.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        using var io = new DatagramBatch(server, 16, 400, native);

        // 100 datagrams of different lengths, one of them longer than the buffer.
        for (var i = 0; i < 100; i++)
        {
            var datagram = Enumerable.Repeat((byte)i, i == 42 ? 1_000 : 10 + i).ToArray();
            client.SendTo(datagram, server.LocalEndPoint!);
        }

        var received = new List<byte[]>();
        var replies = new List<OutgoingReply>();
        while (received.Count < 100)
        {
            var count = io.Receive();
            Assert.True(count > 0, $"nothing after {received.Count} datagrams");
            for (var i = 0; i < count; i++)
            {
                received.Add(io.Datagram(i).ToArray());
                var sender = io.Sender(i);
                var reply = new OutgoingReply { ToLength = sender.Length };
                sender.CopyTo(reply.To);
                ((Span<byte>)reply.Reply).Fill(io.Datagram(i)[0]);
                replies.Add(reply);
            }
        }

        Assert.Equal(Enumerable.Range(0, 100).Select(i => i == 42 ? 400 : 10 + i), received.Select(d => d.Length));
        Assert.All(received.Select((d, i) => (d, i)), x => Assert.All(x.d, b => Assert.Equal((byte)x.i, b)));

        // All to one client: on Linux runs of up to 16 leave as segmented (GSO) sends, one datagram each on arrival.
        io.Send(replies.ToArray());
        var buffer = new byte[HookDatagram.ReplyLength * 2];
        for (var i = 0; i < 100; i++)
        {
            Assert.Equal(HookDatagram.ReplyLength, client.Receive(buffer));
            Assert.Equal((byte)i, buffer[0]);
        }

        Assert.Equal(native, io.SegmentsRuns);
    }
}
