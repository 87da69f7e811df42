using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;

namespace ShadowNet.Hooks.Udp;

public sealed record HookServerOptions
{
    public required IPEndPoint Listen { get; init; }

    /// <summary>HMAC keys by key id (at least 16 octets each).</summary>
    public required IReadOnlyDictionary<ushort, byte[]> Keys { get; init; }

    /// <summary>Datagrams taken from the socket in one go (one system call on Linux).</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>
    /// Socket receive buffer: holds a burst while the server is busy (a full buffer drops datagrams and
    /// clients retry). Forced past net.core.rmem_max when the process may (CAP_NET_ADMIN).
    /// </summary>
    public int ReceiveBufferBytes { get; init; } = 8 << 20;

    /// <summary>
    /// The handler's owner calls <see cref="HookServer.Flush"/> once a batch of completions is done (the
    /// daemon: after each group commit), so replies leave on that thread with no hand-off; a background
    /// flush every 5 ms sends anything else. False: a sender thread is woken for each batch of replies.
    /// </summary>
    public bool FlushedByCaller { get; init; }

    /// <summary>
    /// A received batch of at most this many datagrams, with nothing more waiting in the socket, may be
    /// finished on the receiving thread (<see cref="IHookHandler.BatchEnded"/> is told so: the daemon then
    /// applies it and writes its routes there, with no other thread woken on the route's way). A larger
    /// batch, or more waiting, is load: the work is handed on and receiving goes on beside it. 0: never.
    /// </summary>
    public int InlineBatchLimit { get; init; } = 16;

    /// <summary>
    /// Above this many datagrams a second (over the last 10 ms) no batch is finished on the receiving
    /// thread: at full load the pipeline of receiver, applier and writers carries more than one thread
    /// doing all of it (bench/RESULTS.md, stop 20). 0: never finish there.
    /// </summary>
    public int InlineRateLimit { get; init; } = 30_000;

    /// <summary>
    /// Nice value of the receiving thread (Linux, setpriority; below 0 needs CAP_SYS_NICE). A create's route
    /// leaves from that thread, so its scheduling is what the route waits for when the CPUs are busy. 0
    /// leaves the thread as it is.
    /// </summary>
    public int ReceiverNice { get; init; }
}

/// <summary>
/// The UDP fast path: receives create/delete datagrams in batches, authenticates them, drops
/// malformed, unauthenticated and replayed ones (counted by reason, never answered), hands new ones to
/// the <see cref="IHookHandler"/> without waiting for each, and answers each when its handler completes.
/// A retry of a request already answered gets the same reply again and runs nothing.
/// </summary>
/// <remarks>
/// Two threads of its own: the receiver takes datagrams a batch per system call and hands them on; the
/// sender collects replies from whichever thread completes them (the allocator's writer, usually a
/// whole group at once) and sends them a batch per system call. Nothing per event is allocated but the
/// two id strings the allocator keys on.
/// </remarks>
public sealed class HookServer : IAsyncDisposable
{
    public const string MeterName = "ShadowNet.Hooks";
    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> Rejected = Meter.CreateCounter<long>("shadownet.hook.datagrams.rejected", "{datagram}", "Hook datagrams dropped, by reason");
    private static readonly KeyValuePair<string, object?>[] TransportTags = [new("transport", "udp"), new("transport", "grpc")];
    private static readonly Counter<long> Repeated = Meter.CreateCounter<long>("shadownet.hook.datagrams.repeated", "{datagram}", "Client retries answered from the reply cache");
    private static readonly Counter<long> Batches = Meter.CreateCounter<long>("shadownet.hook.batches", "{batch}", "Received datagram batches, by the thread that finished their work");
    private static readonly KeyValuePair<string, object?>[] FinishedTags = [new("finished", "handed_on"), new("finished", "receiver")];

    private static readonly KeyValuePair<string, object?>[] KindTags = [new("kind", "create"), new("kind", "delete")];
    private static readonly KeyValuePair<string, object?>[] StatusTags =
        [.. Enum.GetValues<HookStatus>().Select(s => new KeyValuePair<string, object?>("status", SnakeCase(s.ToString())))];

    // Events answered, by transport, kind and status: counted with one increment each and read when the
    // exporter collects. A Counter's Add looked its tag set up on every event (2% of the daemon's CPU in
    // the closed loop, bench/RESULTS.md stop 24).
    private static readonly long[] s_answered = new long[TransportTags.Length * KindTags.Length * StatusTags.Length];
    private static readonly ObservableCounter<long> Handled = Meter.CreateObservableCounter("shadownet.hook.events", ObserveAnswered, "{event}",
        "Hook events answered, by kind, status and transport");

    /// <summary>Counts an event answered over gRPC in the same metric as the UDP path's (transport "grpc").</summary>
    public static void CountGrpcEvent(HookKind kind, HookStatus status) => CountAnswered(1, kind, status);

    /// <param name="transport">Its index in <see cref="TransportTags"/>.</param>
    private static void CountAnswered(int transport, HookKind kind, HookStatus status) =>
        Interlocked.Increment(ref s_answered[(((transport * KindTags.Length) + (kind == HookKind.Create ? 0 : 1)) * StatusTags.Length) + (int)status]);

    private static IEnumerable<Measurement<long>> ObserveAnswered()
    {
        for (var i = 0; i < s_answered.Length; i++)
        {
            var count = Volatile.Read(ref s_answered[i]);
            if (count > 0)
            {
                var (transportAndKind, status) = Math.DivRem(i, StatusTags.Length);
                var (transport, kind) = Math.DivRem(transportAndKind, KindTags.Length);
                yield return new Measurement<long>(count, KindTags[kind], StatusTags[status], TransportTags[transport]);
            }
        }
    }

    private readonly HookServerOptions _options;
    private readonly IHookHandler _handler;
    private readonly Socket _socket;
    private readonly DatagramBatch _io;
    private readonly Lock _outboxLock = new();
    private readonly Lock _sendLock = new();
    private readonly SemaphoreSlim _outboxReady = new(0);
    // Taken on the receiving thread, given back on the committer's: a queue (a ConcurrentBag would steal
    // from the other thread's list under a lock on every take).
    private readonly System.Collections.Concurrent.ConcurrentQueue<PendingReply> _pendingPool = new();
    private List<OutgoingReply> _outbox = new(1024);
    private List<OutgoingReply> _sending = new(1024);
    private bool _senderWaiting;
    private volatile bool _stopping;
    private Thread? _receiver;
    private Thread? _sender;
    private readonly Dictionary<ushort, ReplayWindow> _windows = [];
    private readonly NameCache _applicationNames = new(4096);
    private readonly Func<ushort, byte[]?> _keyOf; // one delegate, not one per datagram
    private volatile IReadOnlyDictionary<ushort, byte[]> _keys;
    private readonly Lock _windowsLock = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly long[] _rejections = new long[Enum.GetValues<DatagramRejection>().Length];
    private readonly long[] _batches = new long[2]; // handed on, finished on the receiving thread

    public HookServer(HookServerOptions options, IHookHandler handler)
    {
        _keys = Checked(options.Keys);
        _options = options;
        _handler = handler;
        _keyOf = KeyOf;
        _socket = new Socket(options.Listen.AddressFamily, SocketType.Dgram, ProtocolType.Udp) { ReceiveTimeout = 200 };
        SetReceiveBuffer(_socket, options.ReceiveBufferBytes);
        _socket.Bind(options.Listen);
        // One octet more than the largest request, so that an oversized datagram is seen as such.
        _io = new DatagramBatch(_socket, options.BatchSize, HookDatagram.MaxRequestLength + 1);
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_socket.LocalEndPoint!;

    /// <summary>The key ids in use (after <see cref="ReplaceKeys"/>, the new ones).</summary>
    public IReadOnlyCollection<ushort> KeyIds => [.. _keys.Keys];

    /// <summary>
    /// Takes a new set of keys while serving (a key rotation): datagrams under a key id no longer in the
    /// set are dropped as unknown_key from the next one on; requests already accepted are answered under
    /// the key they came with. A key id keeps its replay window, so a new secret under an old id must go on
    /// with higher sequence numbers: rotate to a new id.
    /// </summary>
    public void ReplaceKeys(IReadOnlyDictionary<ushort, byte[]> keys) => _keys = Checked(keys);

    private static Dictionary<ushort, byte[]> Checked(IReadOnlyDictionary<ushort, byte[]> keys)
    {
        foreach (var (id, key) in keys)
        {
            if (key.Length < 16)
            {
                throw new ArgumentException($"hook key {id} is {key.Length} octets; at least 16 are needed");
            }
        }

        return keys.ToDictionary(k => k.Key, k => k.Value.ToArray());
    }

    /// <summary>Datagrams dropped for a reason since start (the metric, readable without a listener).</summary>
    public long RejectedCount(DatagramRejection reason) => Interlocked.Read(ref _rejections[(int)reason]);

    /// <summary>Received batches whose work the receiving thread finished itself, or handed on (the metric, readable without a listener).</summary>
    public long BatchCount(bool finishedHere) => Interlocked.Read(ref _batches[finishedHere ? 1 : 0]);

    /// <summary>Why the receiving thread runs without the <see cref="HookServerOptions.ReceiverNice"/> asked for (after <see cref="Start"/>); null when it has it.</summary>
    public string? ReceiverNiceProblem { get; private set; }

    public void Start()
    {
        using var prioritySet = new ManualResetEventSlim();
        _receiver = new Thread(() =>
        {
            if (_options.ReceiverNice != 0)
            {
                ReceiverNiceProblem = ThreadNice.TrySet(_options.ReceiverNice);
            }

            prioritySet.Set();
            ReceiveLoop();
        }) { IsBackground = true, Name = "shadownet-hooks-in" };
        _sender = new Thread(SendLoop) { IsBackground = true, Name = "shadownet-hooks-out" };
        _receiver.Start();
        _sender.Start();
        prioritySet.Wait();
    }

    public async ValueTask DisposeAsync()
    {
        _stopping = true;
        await _stop.CancelAsync();
        _outboxReady.Release();

        // The receiver wakes within the socket's receive timeout; then the memory can go.
        await Task.Run(() =>
        {
            _receiver?.Join();
            _sender?.Join();
        });
        _socket.Dispose();
        lock (_sendLock)
        {
            _io.Dispose(); // not while a caller's Flush is sending from its buffers
        }

        _stop.Dispose();
    }

    /// <summary>SO_RCVBUFFORCE where allowed (root, CAP_NET_ADMIN), else SO_RCVBUF capped by net.core.rmem_max.</summary>
    internal static void SetReceiveBuffer(Socket socket, int bytes)
    {
        try
        {
            socket.SetRawSocketOption(1, 33, BitConverter.GetBytes(bytes)); // SOL_SOCKET, SO_RCVBUFFORCE
        }
        catch (SocketException)
        {
            socket.ReceiveBufferSize = bytes;
        }
    }

    private void ReceiveLoop()
    {
        var rateWindow = Stopwatch.Frequency / 100;
        var windowStart = Stopwatch.GetTimestamp();
        var windowCount = 0L;
        var busy = false;
        while (!_stopping)
        {
            int count;
            try
            {
                count = _io.Receive();
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                continue; // ICMP port unreachable from an earlier reply and the like: not the server's problem
            }

            if (count == 0)
            {
                continue; // the receive timeout, so that a stop is seen
            }

            windowCount += count;
            var now = Stopwatch.GetTimestamp();
            if (now - windowStart >= rateWindow)
            {
                busy = windowCount * Stopwatch.Frequency > (long)_options.InlineRateLimit * (now - windowStart);
                (windowStart, windowCount) = (now, 0);
            }

            _handler.BatchStarting();
            try
            {
                for (var i = 0; i < count; i++)
                {
                    Process(_io.Datagram(i), _io.Sender(i));
                }
            }
            finally
            {
                // Also after a failure: the batch's operations are queued.
                var finishHere = !busy && _options.InlineRateLimit > 0 && count <= _options.InlineBatchLimit && NothingWaiting();
                Interlocked.Increment(ref _batches[finishHere ? 1 : 0]);
                Batches.Add(1, FinishedTags[finishHere ? 1 : 0]);
                _handler.BatchEnded(finishHere);
            }

            if (_options.FlushedByCaller)
            {
                Flush(); // replies completed synchronously (retries answered from the cache)
            }
        }
    }

    private bool NothingWaiting()
    {
        try
        {
            return _socket.Available == 0;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>Sends the replies gathered so far, on the calling thread (one system call per batch).</summary>
    public void Flush()
    {
        lock (_sendLock)
        {
            lock (_outboxLock)
            {
                if (_outbox.Count == 0)
                {
                    return;
                }

                (_outbox, _sending) = (_sending, _outbox);
            }

            _io.Send(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_sending));
            _sending.Clear();
        }
    }

    private void SendLoop()
    {
        while (!_stopping)
        {
            if (_options.FlushedByCaller)
            {
                // A sweep every 5 ms, in a wait that does not spin: SemaphoreSlim's spinning before each
                // timed wait cost some 12,000 sched_yield calls a second on an idle thread.
                _stop.Token.WaitHandle.WaitOne(5);
            }
            else
            {
                bool idle;
                lock (_outboxLock)
                {
                    idle = _outbox.Count == 0;
                    _senderWaiting = idle;
                }

                if (idle)
                {
                    _outboxReady.Wait();
                }
            }

            Flush();
        }
    }

    private void Process(ReadOnlySpan<byte> datagram, ReadOnlySpan<byte> sender)
    {
        if (!HookDatagram.TryParseRequest(datagram, _keyOf, out var request, out var rejection))
        {
            Reject(rejection);
            return;
        }

        var window = WindowOf(request.KeyId);
        lock (window)
        {
            switch (window.Check(request.Sequence))
            {
                case SequenceCheck.TooOld:
                    Reject(DatagramRejection.Replayed);
                    return;
                case SequenceCheck.Repeat:
                    // Answered already: the same reply again. Still running: the client will retry.
                    if (window.TryGetReply(request.Sequence, out var cached))
                    {
                        Repeated.Add(1);
                        SendReply(cached, sender);
                    }

                    return;
            }

            window.Begin(request.Sequence);
        }

        // The instance's name goes on as characters (a new name on every create: a string each would be
        // garbage per event); applications are few, so theirs are looked up as strings.
        Span<char> instance = stackalloc char[HookDatagram.MaxIdLength];
        instance = instance[..Encoding.UTF8.GetChars(request.Instance, instance)];
        var application = _applicationNames.Get(request.Application);
        // The reply is signed with the key the request came under, even if the keys are replaced meanwhile.
        var pending = RentPending(request.Kind, request.Sequence, request.KeyId, request.Key, request.Family, sender);
        ValueTask<HookOutcome> outcome;
        try
        {
            outcome = request.Kind == HookKind.Create
                ? _handler.CreateAsync(instance, application, request.Family, request.Host, _stop.Token)
                : _handler.DeleteAsync(instance, application, request.Family, _stop.Token);
        }
        catch (Exception)
        {
            outcome = ValueTask.FromResult(new HookOutcome(HookStatus.Unavailable, null));
        }

        pending.When(outcome);
    }

    private byte[]? KeyOf(ushort keyId) => _keys.TryGetValue(keyId, out var key) ? key : null;

    private ReplayWindow WindowOf(ushort keyId)
    {
        lock (_windowsLock)
        {
            if (!_windows.TryGetValue(keyId, out var window))
            {
                _windows[keyId] = window = new ReplayWindow();
            }

            return window;
        }
    }

    private void Reject(DatagramRejection reason)
    {
        Interlocked.Increment(ref _rejections[(int)reason]);
        Rejected.Add(1, new KeyValuePair<string, object?>("reason", ReasonLabel(reason)));
    }

    private void SendReply(ReadOnlySpan<byte> reply, ReadOnlySpan<byte> to)
    {
        var outgoing = new OutgoingReply { ToLength = to.Length };
        reply.CopyTo(outgoing.Reply);
        to.CopyTo(outgoing.To);
        bool wake;
        lock (_outboxLock)
        {
            _outbox.Add(outgoing);
            wake = _senderWaiting;
            _senderWaiting = false;
        }

        if (wake)
        {
            _outboxReady.Release();
        }
    }

    private PendingReply RentPending(HookKind kind, ulong sequence, ushort keyId, byte[] key, Addressing.IpFamily family, ReadOnlySpan<byte> sender)
    {
        if (!_pendingPool.TryDequeue(out var pending))
        {
            pending = new PendingReply(this);
        }

        pending.Reset(kind, sequence, keyId, key, family, sender);
        return pending;
    }

    /// <summary>NotFound -> not_found: label values in Prometheus' usual style.</summary>
    private static string SnakeCase(string name) =>
        string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "_" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));

    private static string ReasonLabel(DatagramRejection reason) => reason switch
    {
        DatagramRejection.TooShort => "too_short",
        DatagramRejection.Oversized => "oversized",
        DatagramRejection.BadMagic => "bad_magic",
        DatagramRejection.UnsupportedVersion => "unsupported_version",
        DatagramRejection.UnknownKind => "unknown_kind",
        DatagramRejection.BadLength => "bad_length",
        DatagramRejection.BadField => "bad_field",
        DatagramRejection.UnknownKey => "unknown_key",
        DatagramRejection.BadMac => "bad_mac",
        DatagramRejection.Replayed => "replayed",
        _ => "other",
    };

    /// <summary>Answers one request when its handler completes, and keeps the answer for retries. Pooled.</summary>
    private sealed class PendingReply(HookServer server)
    {
        private HookKind _kind;
        private ulong _sequence;
        private ushort _keyId;
        private byte[] _key = [];
        private Addressing.IpFamily _family;
        private SocketAddressBytes _sender;
        private int _senderLength;
        private ValueTaskAwaiter<HookOutcome> _awaiter;
        private Action? _onCompleted;

        public void Reset(HookKind kind, ulong sequence, ushort keyId, byte[] key, Addressing.IpFamily family, ReadOnlySpan<byte> sender)
        {
            (_kind, _sequence, _keyId, _key, _family, _senderLength) = (kind, sequence, keyId, key, family, sender.Length);
            sender.CopyTo(_sender);
        }

        public void When(ValueTask<HookOutcome> outcome)
        {
            if (outcome.IsCompletedSuccessfully)
            {
                Answer(outcome.Result);
                return;
            }

            _awaiter = outcome.GetAwaiter();
            _awaiter.UnsafeOnCompleted(_onCompleted ??= Completed);
        }

        private void Completed()
        {
            HookOutcome result;
            try
            {
                result = _awaiter.GetResult();
            }
            catch (Exception)
            {
                result = new HookOutcome(HookStatus.Unavailable, null);
            }

            _awaiter = default;
            Answer(result);
        }

        private void Answer(HookOutcome outcome)
        {
            Span<byte> reply = stackalloc byte[HookDatagram.ReplyLength];
            HookDatagram.WriteReply(reply, _kind, _sequence, _keyId, _key, outcome.Status, _family, outcome.Address);
            var window = server.WindowOf(_keyId);
            lock (window)
            {
                // Unavailable is not kept: a retry after the controller recovers should run again.
                if (outcome.Status == HookStatus.Unavailable)
                {
                    window.Forget(_sequence);
                }
                else
                {
                    window.Complete(_sequence, reply);
                }
            }

            CountAnswered(0, _kind, outcome.Status);
            server.SendReply(reply, ((ReadOnlySpan<byte>)_sender)[.._senderLength]);
            server._pendingPool.Enqueue(this);
        }
    }
}
