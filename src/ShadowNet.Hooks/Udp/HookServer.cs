using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace ShadowNet.Hooks.Udp;

public sealed record HookServerOptions
{
    public required IPEndPoint Listen { get; init; }

    /// <summary>HMAC keys by key id (at least 16 octets each).</summary>
    public required IReadOnlyDictionary<ushort, byte[]> Keys { get; init; }

    /// <summary>Datagrams taken from the socket in one go before any is answered.</summary>
    public int BatchSize { get; init; } = 64;
}

/// <summary>
/// The UDP fast path: receives create/delete datagrams in batches, authenticates them, drops
/// malformed, unauthenticated and replayed ones (counted by reason, never answered), hands new ones to
/// the <see cref="IHookHandler"/> without waiting for each, and answers each when its handler completes.
/// A retry of a request already answered gets the same reply again and runs nothing.
/// </summary>
public sealed class HookServer : IAsyncDisposable
{
    public const string MeterName = "ShadowNet.Hooks";
    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> Rejected = Meter.CreateCounter<long>("shadownet.hook.datagrams.rejected", "{datagram}", "Hook datagrams dropped, by reason");
    private static readonly Counter<long> Handled = Meter.CreateCounter<long>("shadownet.hook.events", "{event}", "Hook events answered, by kind and status");
    private static readonly Counter<long> Repeated = Meter.CreateCounter<long>("shadownet.hook.datagrams.repeated", "{datagram}", "Client retries answered from the reply cache");

    private readonly HookServerOptions _options;
    private readonly IHookHandler _handler;
    private readonly Socket _socket;
    private readonly Dictionary<ushort, ReplayWindow> _windows = [];
    private readonly Lock _windowsLock = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly long[] _rejections = new long[Enum.GetValues<DatagramRejection>().Length];
    private Task? _loop;

    public HookServer(HookServerOptions options, IHookHandler handler)
    {
        foreach (var (id, key) in options.Keys)
        {
            if (key.Length < 16)
            {
                throw new ArgumentException($"hook key {id} is {key.Length} octets; at least 16 are needed");
            }
        }

        _options = options;
        _handler = handler;
        _socket = new Socket(options.Listen.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        _socket.Bind(options.Listen);
    }

    public IPEndPoint LocalEndPoint => (IPEndPoint)_socket.LocalEndPoint!;

    /// <summary>Datagrams dropped for a reason since start (the metric, readable without a listener).</summary>
    public long RejectedCount(DatagramRejection reason) => Interlocked.Read(ref _rejections[(int)reason]);

    public void Start() => _loop = Task.Run(ReceiveLoopAsync);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _socket.Dispose();
        if (_loop is not null)
        {
            try
            {
                await _loop;
            }
            catch (OperationCanceledException)
            {
            }
        }

        _stop.Dispose();
    }

    private async Task ReceiveLoopAsync()
    {
        var buffers = new byte[_options.BatchSize][];
        var senders = new SocketAddress[_options.BatchSize];
        var lengths = new int[_options.BatchSize];
        for (var i = 0; i < buffers.Length; i++)
        {
            // One octet more than the largest request, so that an oversized datagram is seen as such.
            buffers[i] = new byte[HookDatagram.MaxRequestLength + 1];
            senders[i] = new SocketAddress(_socket.AddressFamily);
        }

        while (!_stop.IsCancellationRequested)
        {
            int count;
            try
            {
                // Wait for one datagram, then take whatever else is queued without waiting: a batch.
                lengths[0] = await _socket.ReceiveFromAsync(buffers[0], SocketFlags.None, senders[0], _stop.Token);
                count = 1;
                while (count < buffers.Length && _socket.Available > 0)
                {
                    lengths[count] = _socket.ReceiveFrom(buffers[count], SocketFlags.None, senders[count]);
                    count++;
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (SocketException)
            {
                // ICMP port unreachable from an earlier reply and the like: not the server's problem.
                continue;
            }

            for (var i = 0; i < count; i++)
            {
                Process(buffers[i].AsSpan(0, lengths[i]), senders[i]);
            }
        }
    }

    private void Process(ReadOnlySpan<byte> datagram, SocketAddress sender)
    {
        if (!HookDatagram.TryParseRequest(datagram, KeyOf, out var request, out var rejection))
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

        // The ids become strings here: the allocator's indexes are keyed by them.
        var instance = Encoding.UTF8.GetString(request.Instance);
        var application = Encoding.UTF8.GetString(request.Application);
        var pending = new PendingReply(this, request.Kind, request.Sequence, request.KeyId, request.Family, sender);
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

    private byte[]? KeyOf(ushort keyId) => _options.Keys.TryGetValue(keyId, out var key) ? key : null;

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

    private void SendReply(ReadOnlySpan<byte> reply, SocketAddress to)
    {
        try
        {
            _socket.SendTo(reply, SocketFlags.None, to);
        }
        catch (SocketException)
        {
            // The client retries; nothing to do.
        }
        catch (ObjectDisposedException)
        {
        }
    }

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

    /// <summary>Answers one request when its handler completes, and keeps the answer for retries.</summary>
    private sealed class PendingReply(HookServer server, HookKind kind, ulong sequence, ushort keyId, Addressing.IpFamily family, SocketAddress sender)
    {
        // The receive loop reuses its SocketAddress buffers: keep a copy for the reply.
        private readonly SocketAddress _sender = Copy(sender);

        public void When(ValueTask<HookOutcome> outcome)
        {
            if (outcome.IsCompletedSuccessfully)
            {
                Answer(outcome.Result);
                return;
            }

            _ = AwaitAsync(outcome);
        }

        private async Task AwaitAsync(ValueTask<HookOutcome> outcome)
        {
            HookOutcome result;
            try
            {
                result = await outcome;
            }
            catch (Exception)
            {
                result = new HookOutcome(HookStatus.Unavailable, null);
            }

            Answer(result);
        }

        private void Answer(HookOutcome outcome)
        {
            Span<byte> reply = stackalloc byte[HookDatagram.ReplyLength];
            HookDatagram.WriteReply(reply, kind, sequence, keyId, server.KeyOf(keyId)!, outcome.Status, family, outcome.Address);
            var window = server.WindowOf(keyId);
            lock (window)
            {
                // Unavailable is not kept: a retry after the controller recovers should run again.
                if (outcome.Status == HookStatus.Unavailable)
                {
                    window.Forget(sequence);
                }
                else
                {
                    window.Complete(sequence, reply);
                }
            }

            Handled.Add(1, new KeyValuePair<string, object?>("kind", kind == HookKind.Create ? "create" : "delete"),
                new KeyValuePair<string, object?>("status", outcome.Status.ToString().ToLowerInvariant()));
            server.SendReply(reply, _sender);
        }

        private static SocketAddress Copy(SocketAddress address)
        {
            var copy = new SocketAddress(address.Family, address.Size);
            address.Buffer.Span.CopyTo(copy.Buffer.Span);
            return copy;
        }
    }
}
