using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ShadowNet.Hooks.Udp;

/// <summary>A peer's socket address as the kernel writes it (sockaddr_in or sockaddr_in6), kept by value.</summary>
[InlineArray(Capacity)]
internal struct SocketAddressBytes
{
    public const int Capacity = 28;
    private byte _first;
}

/// <summary>One reply waiting to be sent, by value: the reply octets and where they go.</summary>
internal struct OutgoingReply
{
    public ReplyBytes Reply;
    public SocketAddressBytes To;
    public int ToLength;
}

[InlineArray(HookDatagram.ReplyLength)]
internal struct ReplyBytes
{
    private byte _first;
}

/// <summary>
/// Batched datagram I/O on one bound UDP socket. On Linux a batch is one system call each way
/// (<c>recvmmsg</c>, <c>sendmmsg</c>): on a virtual machine a system call and the wake-up it causes cost
/// tens of microseconds, which at tens of thousands of events per second was most of the CPU. Elsewhere
/// it falls back to one call per datagram. Receive and send sides each belong to one thread.
/// </summary>
internal sealed unsafe partial class DatagramBatch : IDisposable
{
    private const int MsgWaitForOne = 0x10000;
    private const int ErrorAgain = 11;
    private const int ErrorInterrupted = 4;
    private const int ErrorIo = 5;
    private const int ErrorInvalid = 22;
    private const int ErrorNotSupported = 95;
    private const int SolUdp = 17;
    private const int UdpSegment = 103;
    private const int ControlLength = 16 + sizeof(ushort); // CMSG_LEN(2) on 64-bit Linux
    private const int ControlSpace = 24; // CMSG_SPACE(2)

    private readonly Socket _socket;
    private readonly int _fd;
    private readonly bool _native;
    private readonly int _batch;
    private readonly int _maxDatagram;

    // Receive side: one block of native memory for headers, vectors, names and buffers.
    private readonly MMsgHdr* _receiveHeaders;
    private readonly IoVec* _receiveVectors;
    private readonly byte* _receiveNames;
    private readonly byte* _receiveBuffers;

    // Send side.
    private readonly MMsgHdr* _sendHeaders;
    private readonly IoVec* _sendVectors;
    private readonly byte* _sendNames;
    private readonly byte* _sendBuffers;
    private readonly byte* _sendControls;
    private bool _segmentation = true;
    // Replies regrouped by destination (see GroupedByDestination): grown to the largest flush seen.
    private long[] _groupKeys = [];
    private OutgoingReply[] _grouped = [];

    // Fallback (not Linux).
    private readonly byte[][] _managedBuffers;
    private readonly SocketAddress[] _managedSenders;
    private readonly int[] _managedLengths;
    private int _disposed;

    /// <param name="native">Tests only: false forces the one-call-per-datagram path.</param>
    public DatagramBatch(Socket socket, int batch, int maxDatagram, bool? native = null)
    {
        _native = native ?? OperatingSystem.IsLinux();
        _socket = socket;
        _batch = batch;
        _maxDatagram = maxDatagram;
        _managedBuffers = [];
        _managedSenders = [];
        _managedLengths = [];
        if (!_native)
        {
            _managedBuffers = [.. Enumerable.Range(0, batch).Select(_ => new byte[maxDatagram])];
            _managedSenders = [.. Enumerable.Range(0, batch).Select(_ => new SocketAddress(socket.AddressFamily))];
            _managedLengths = new int[batch];
            return;
        }

        _fd = (int)socket.Handle;
        _receiveHeaders = Allocate<MMsgHdr>(batch);
        _receiveVectors = Allocate<IoVec>(batch);
        _receiveNames = (byte*)NativeMemory.AllocZeroed((nuint)(batch * SocketAddressBytes.Capacity));
        _receiveBuffers = (byte*)NativeMemory.AllocZeroed((nuint)(batch * maxDatagram));
        _sendHeaders = Allocate<MMsgHdr>(batch);
        _sendVectors = Allocate<IoVec>(batch);
        _sendNames = (byte*)NativeMemory.AllocZeroed((nuint)(batch * SocketAddressBytes.Capacity));
        _sendBuffers = (byte*)NativeMemory.AllocZeroed((nuint)(batch * HookDatagram.ReplyLength));
        _sendControls = (byte*)NativeMemory.AllocZeroed((nuint)(batch * ControlSpace));
        for (var i = 0; i < batch; i++)
        {
            _receiveVectors[i] = new IoVec { Base = _receiveBuffers + (i * maxDatagram), Length = (nuint)maxDatagram };
            _receiveHeaders[i].Header.Iov = &_receiveVectors[i];
            _receiveHeaders[i].Header.IovLength = 1;
            _receiveHeaders[i].Header.Name = _receiveNames + (i * SocketAddressBytes.Capacity);
            _sendVectors[i] = new IoVec { Base = _sendBuffers + (i * HookDatagram.ReplyLength), Length = HookDatagram.ReplyLength };
            _sendHeaders[i].Header.Iov = &_sendVectors[i];
            _sendHeaders[i].Header.IovLength = 1;
            _sendHeaders[i].Header.Name = _sendNames + (i * SocketAddressBytes.Capacity);

            // cmsghdr { size_t len; int level; int type; } + the segment size: UDP_SEGMENT, every reply's length.
            var control = _sendControls + (i * ControlSpace);
            *(nuint*)control = ControlLength;
            *(int*)(control + 8) = SolUdp;
            *(int*)(control + 12) = UdpSegment;
            *(ushort*)(control + 16) = HookDatagram.ReplyLength;
        }
    }

    /// <summary>
    /// Waits for at least one datagram (up to the socket's receive timeout) and takes up to a batch.
    /// Returns how many (0 after a timeout); throws <see cref="ObjectDisposedException"/> once closed.
    /// </summary>
    public int Receive()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (!_native)
        {
            return ReceiveManaged();
        }

        for (var i = 0; i < _batch; i++)
        {
            _receiveHeaders[i].Header.NameLength = SocketAddressBytes.Capacity;
            _receiveHeaders[i].Header.Flags = 0;
        }

        var count = RecvMmsg(_fd, _receiveHeaders, (uint)_batch, MsgWaitForOne, null);
        if (count >= 0)
        {
            return count;
        }

        var error = Marshal.GetLastPInvokeError();
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return error is ErrorAgain or ErrorInterrupted ? 0 : throw new SocketException(error);
    }

    /// <summary>Datagram <paramref name="i"/> of the last receive (cut at the buffer size: make it one more than any valid datagram).</summary>
    public ReadOnlySpan<byte> Datagram(int i) => _native
        ? new ReadOnlySpan<byte>(_receiveBuffers + (i * _maxDatagram), (int)Math.Min(_receiveHeaders[i].Length, (uint)_maxDatagram))
        : _managedBuffers[i].AsSpan(0, _managedLengths[i]);

    public ReadOnlySpan<byte> Sender(int i) => _native
        ? new ReadOnlySpan<byte>(_receiveNames + (i * SocketAddressBytes.Capacity), (int)Math.Min(_receiveHeaders[i].Header.NameLength, SocketAddressBytes.Capacity))
        : _managedSenders[i].Buffer.Span[..Math.Min(_managedSenders[i].Size, SocketAddressBytes.Capacity)];

    /// <summary>False once the kernel refused a segmented send (replies then leave one datagram each).</summary>
    internal bool SegmentsRuns => _native && _segmentation;

    /// <summary>Sends the replies, a batch per system call; a reply the kernel refuses is dropped (the client retries).</summary>
    public void Send(ReadOnlySpan<OutgoingReply> replies)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        if (!_native)
        {
            SendManaged(replies);
            return;
        }

        if (_segmentation)
        {
            replies = GroupedByDestination(replies);
        }

        while (replies.Length > 0)
        {
            var count = Math.Min(replies.Length, _batch);
            for (var i = 0; i < count; i++)
            {
                ((ReadOnlySpan<byte>)replies[i].Reply).CopyTo(new Span<byte>(_sendBuffers + (i * HookDatagram.ReplyLength), HookDatagram.ReplyLength));
            }

            SendCopied(replies[..count]);
            replies = replies[count..];
        }
    }

    /// <summary>Messages handed to the kernel so far (a segmented run counts once): for tests.</summary>
    internal long MessagesSent { get; private set; }

    /// <summary>
    /// The replies with each destination's next to each other, in their order per destination (the
    /// order its requests came in; across destinations order means nothing). A fleet's interleaved
    /// requests make interleaved replies, and only adjacent replies to one sender can leave as one
    /// segmented message. The keys are a hash of the destination and the position: a collision only puts
    /// two destinations' replies side by side, which the run check in <see cref="SendCopied"/> still tells apart.
    /// </summary>
    private ReadOnlySpan<OutgoingReply> GroupedByDestination(ReadOnlySpan<OutgoingReply> replies)
    {
        if (replies.Length < 3)
        {
            return replies;
        }

        if (_groupKeys.Length < replies.Length)
        {
            var size = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)replies.Length);
            (_groupKeys, _grouped) = (new long[size], new OutgoingReply[size]);
        }

        var keys = _groupKeys.AsSpan(0, replies.Length);
        var firstHash = HashOf(in replies[0]);
        var mixed = false;
        for (var i = 0; i < replies.Length; i++)
        {
            var hash = i == 0 ? firstHash : HashOf(in replies[i]);
            mixed |= hash != firstHash;
            keys[i] = ((long)hash << 32) | (uint)i; // the hash groups, the position keeps each group's order
        }

        if (!mixed)
        {
            return replies; // one sender (or one hash): already one run
        }

        keys.Sort();
        for (var i = 0; i < keys.Length; i++)
        {
            _grouped[i] = replies[(int)(uint)keys[i]];
        }

        return _grouped.AsSpan(0, replies.Length);
    }

    private static int HashOf(in OutgoingReply reply)
    {
        var hash = new HashCode();
        hash.AddBytes(((ReadOnlySpan<byte>)reply.To)[..reply.ToLength]);
        return hash.ToHashCode();
    }

    /// <summary>
    /// Sends replies already copied to the send buffers, in order. A run of replies to one sender (a
    /// host that sent a burst) leaves as one UDP GSO message: the kernel builds, routes and queues it
    /// once and cuts it into datagrams at the end, instead of once per reply.
    /// </summary>
    private void SendCopied(ReadOnlySpan<OutgoingReply> replies)
    {
        var messages = 0;
        Span<int> ends = stackalloc int[replies.Length]; // the first reply after each message
        for (var first = 0; first < replies.Length; messages++)
        {
            var to = ((ReadOnlySpan<byte>)replies[first].To)[..replies[first].ToLength];
            var end = first + 1;
            while (_segmentation && end < replies.Length && ((ReadOnlySpan<byte>)replies[end].To)[..replies[end].ToLength].SequenceEqual(to))
            {
                end++;
            }

            ref var header = ref _sendHeaders[messages].Header;
            to.CopyTo(new Span<byte>(header.Name, SocketAddressBytes.Capacity));
            header.NameLength = (uint)to.Length;
            _sendVectors[messages] = new IoVec { Base = _sendBuffers + (first * HookDatagram.ReplyLength), Length = (nuint)((end - first) * HookDatagram.ReplyLength) };
            header.Control = end - first > 1 ? _sendControls + (messages * ControlSpace) : null;
            header.ControlLength = end - first > 1 ? ControlSpace : 0u;
            ends[messages] = end;
            first = end;
        }

        MessagesSent += messages;

        for (var sent = 0; sent < messages;)
        {
            var result = SendMmsg(_fd, _sendHeaders + sent, (uint)(messages - sent), 0);
            if (result > 0)
            {
                sent += result;
                continue;
            }

            var error = Marshal.GetLastPInvokeError();
            if (error == ErrorInterrupted)
            {
                continue;
            }

            if (_sendHeaders[sent].Header.Control != null && error is ErrorInvalid or ErrorIo or ErrorNotSupported)
            {
                // The socket or route cannot segment (no checksums, say): one datagram per reply from now
                // on. Other errors (an unreachable host, a full buffer) are that message's alone.
                _segmentation = false;
                var from = sent == 0 ? 0 : ends[sent - 1];
                SendCopiedFrom(replies, from);
                return;
            }

            sent++; // skip the one the kernel refused (an unreachable sender, say); the client retries
        }
    }

    private void SendCopiedFrom(ReadOnlySpan<OutgoingReply> replies, int from)
    {
        // The buffers are laid out by reply index; move the rest to the front and send them plainly.
        var rest = replies.Length - from;
        Buffer.MemoryCopy(_sendBuffers + (from * HookDatagram.ReplyLength), _sendBuffers, rest * HookDatagram.ReplyLength, rest * HookDatagram.ReplyLength);
        SendCopied(replies[from..]);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0 || !_native)
        {
            return;
        }

        // Called once both threads have stopped using the memory.
        NativeMemory.Free(_receiveHeaders);
        NativeMemory.Free(_receiveVectors);
        NativeMemory.Free(_receiveNames);
        NativeMemory.Free(_receiveBuffers);
        NativeMemory.Free(_sendHeaders);
        NativeMemory.Free(_sendVectors);
        NativeMemory.Free(_sendNames);
        NativeMemory.Free(_sendBuffers);
        NativeMemory.Free(_sendControls);
    }

    private int ReceiveManaged()
    {
        try
        {
            _managedLengths[0] = _socket.ReceiveFrom(_managedBuffers[0], SocketFlags.None, _managedSenders[0]);
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock or SocketError.ConnectionReset)
        {
            return 0;
        }

        var count = 1;
        while (count < _batch && _socket.Available > 0)
        {
            _managedLengths[count] = _socket.ReceiveFrom(_managedBuffers[count], SocketFlags.None, _managedSenders[count]);
            count++;
        }

        return count;
    }

    private void SendManaged(ReadOnlySpan<OutgoingReply> replies)
    {
        var to = new SocketAddress(_socket.AddressFamily);
        foreach (ref readonly var reply in replies)
        {
            ((ReadOnlySpan<byte>)reply.To)[..reply.ToLength].CopyTo(to.Buffer.Span);
            try
            {
                _socket.SendTo(reply.Reply, SocketFlags.None, to);
            }
            catch (SocketException)
            {
                // The client retries.
            }
        }
    }

    private static T* Allocate<T>(int count)
        where T : unmanaged => (T*)NativeMemory.AllocZeroed((nuint)count, (nuint)sizeof(T));

    [LibraryImport("libc", EntryPoint = "recvmmsg", SetLastError = true)]
    private static partial int RecvMmsg(int fd, MMsgHdr* messages, uint count, int flags, void* timeout);

    [LibraryImport("libc", EntryPoint = "sendmmsg", SetLastError = true)]
    internal static partial int SendMmsg(int fd, MMsgHdr* messages, uint count, int flags);

    [StructLayout(LayoutKind.Sequential)]
    internal struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct MsgHdr
    {
        public void* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct MMsgHdr
    {
        public MsgHdr Header;
        public uint Length;
    }
}
