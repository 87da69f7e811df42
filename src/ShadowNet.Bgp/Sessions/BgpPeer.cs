using System.Buffers;
using System.Net;
using System.Net.Sockets;
using AddressFamily = ShadowNet.Bgp.Wire.AddressFamily;
using Microsoft.Extensions.Logging;
using ShadowNet.Bgp.Rib;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Bgp.Sessions;

/// <summary>
/// One neighbor: its finite state machine (RFC 4271 section 8), its connections (at most two while a
/// collision is being resolved, section 6.8), its Adj-RIB-Out writer and its Adj-RIB-In.
/// </summary>
public sealed partial class BgpPeer
{
    private const int OpenHoldSeconds = 240; // RFC 4271 section 8.2.2: "a large value" while waiting for OPEN
    private readonly BgpSpeaker _speaker;
    private readonly ILogger _logger;
    private readonly List<BgpConnection> _connections = [];
    private readonly Lock _lock = new();
    private readonly SemaphoreSlim _connectionEnded = new(0);
    private volatile BgpSessionState _state = BgpSessionState.Idle;
    private long _updatesSent, _updatesReceived, _prefixesSent, _established, _treatedAsWithdraw, _attributesDiscarded;
    // Its state machine and the connections accepted for it run until the speaker stops or the peer is
    // removed (a configuration reload), whichever comes first.
    private readonly CancellationTokenSource _lifetime;
    private readonly HashSet<Task> _accepted = [];
    private Task? _running;
    private long _stateSince; // UTC ticks, so that any thread reads it whole

    internal BgpPeer(BgpSpeaker speaker, BgpPeerOptions options, ILogger logger, CancellationToken speakerStopping)
    {
        _speaker = speaker;
        Options = options;
        _logger = logger;
        _lifetime = CancellationTokenSource.CreateLinkedTokenSource(speakerStopping);
        _stateSince = speaker.TimeProvider.GetUtcNow().UtcTicks;
    }

    public BgpPeerOptions Options { get; }
    public BgpSessionState State => _state;
    /// <summary>When the session entered <see cref="State"/> (for Established: up since).</summary>
    public DateTimeOffset StateSince => new(Interlocked.Read(ref _stateSince), TimeSpan.Zero);
    public NegotiatedSession? Session { get; private set; }
    public AdjRibIn ReceivedRoutes { get; } = new();
    public long UpdatesSent => Interlocked.Read(ref _updatesSent);
    public long UpdatesReceived => Interlocked.Read(ref _updatesReceived);
    public long PrefixesSent => Interlocked.Read(ref _prefixesSent);
    /// <summary>RFC 7606: UPDATEs whose prefixes were taken as withdrawn because an attribute was malformed.</summary>
    public long UpdatesTreatedAsWithdraw => Interlocked.Read(ref _treatedAsWithdraw);
    /// <summary>RFC 7606: malformed attributes dropped from otherwise usable UPDATEs.</summary>
    public long AttributesDiscarded => Interlocked.Read(ref _attributesDiscarded);
    /// <summary>How many times the session reached Established.</summary>
    public long EstablishedCount => Interlocked.Read(ref _established);
    public NotificationMessage? LastNotificationSent { get; private set; }
    public NotificationMessage? LastNotificationReceived { get; private set; }
    public string? LastError { get; private set; }
    /// <summary>Prefixes changed but not yet written to this peer: its backlog, bounded by the Loc-RIB size.</summary>
    public int PendingPrefixes => _adjRibOut?.PendingCount ?? 0;
    private volatile AdjRibOut? _adjRibOut;

    public event Action<BgpPeer, BgpSessionState>? StateChanged;

    /// <summary>
    /// Raised on the session's reader for every UPDATE, after Adj-RIB-In took it. The message object is
    /// reused for the next UPDATE: copy what you keep, and return quickly (the session waits).
    /// </summary>
    public event Action<BgpPeer, UpdateMessage>? UpdateReceived;

    /// <summary>Completes when the peer reaches <paramref name="state"/>.</summary>
    public async Task WaitForStateAsync(BgpSessionState state, CancellationToken cancellationToken)
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void Handler(BgpPeer _, BgpSessionState s)
        {
            if (s == state)
                tcs.TrySetResult();
        }
        StateChanged += Handler;
        try
        {
            if (_state == state)
                return;
            await tcs.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            StateChanged -= Handler;
        }
    }

    private void UpdateState()
    {
        BgpSessionState next;
        lock (_lock)
        {
            next = _connections.Count == 0
                ? (Options.Passive ? BgpSessionState.Active : _state is BgpSessionState.Connect ? BgpSessionState.Connect : BgpSessionState.Active)
                : _connections.Max(c => c.State);
        }
        SetState(next);
    }

    private void SetState(BgpSessionState next)
    {
        var previous = _state;
        if (previous == next)
            return;
        _state = next;
        Interlocked.Exchange(ref _stateSince, _speaker.TimeProvider.GetUtcNow().UtcTicks);
        Log.StateChanged(_logger, Options.DisplayName, previous, next);
        StateChanged?.Invoke(this, next);
    }

    /// <summary>The connect-retry loop of an active peer (RFC 4271 section 8.2.2, ConnectRetryTimer), with exponential backoff and jitter.</summary>
    internal async Task RunAsync(CancellationToken ct)
    {
        SetState(BgpSessionState.Active);
        var delay = Options.ConnectRetry;
        while (!ct.IsCancellationRequested)
        {
            bool idle;
            lock (_lock)
                idle = _connections.Count == 0;
            if (idle && !Options.Passive)
            {
                SetState(BgpSessionState.Connect);
                var socket = await TryConnectAsync(ct).ConfigureAwait(false);
                if (socket is not null)
                {
                    var before = EstablishedCount;
                    await HandleConnectionAsync(socket, outgoing: true, ct).ConfigureAwait(false);
                    if (EstablishedCount != before)
                        delay = Options.ConnectRetry;
                    // This loop saw that connection end itself; leave no stale wake-up for the wait below.
                    while (_connectionEnded.Wait(0, CancellationToken.None))
                    {
                    }
                }
                else
                {
                    SetState(BgpSessionState.Active);
                }
            }
            else
            {
                try
                {
                    await _connectionEnded.WaitAsync(ct).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
                delay = Options.ConnectRetry;
                if (Options.Passive)
                    continue;
            }

            var jitter = 0.75 + Random.Shared.NextDouble() * 0.25; // RFC 4271 section 10: jitter the timer
            try
            {
                await Task.Delay(delay * jitter, _speaker.TimeProvider, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, Options.ConnectRetryMax.Ticks));
        }
    }

    private async Task<Socket?> TryConnectAsync(CancellationToken ct)
    {
        var socket = new Socket(Options.Address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (Options.LocalAddress is { } local)
                socket.Bind(new IPEndPoint(local, 0));
            if (Options.Password is { } password)
                TcpSecurity.SetMd5Key(socket, Options.Address, password);
            if (Options.TtlSecurityHops is { } hops)
                TcpSecurity.SetTtlSecurity(socket, hops);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(Options.ConnectRetry < TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : Options.ConnectRetry);
            await socket.ConnectAsync(new IPEndPoint(Options.Address, Options.Port), timeout.Token).ConfigureAwait(false);
            return socket;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            LastError = $"connect to {Options.Address}:{Options.Port}: {e.Message}";
            socket.Dispose();
            return null;
        }
    }

    /// <summary>Starts the state machine (connecting, for an active peer); a peer held down stays Idle.</summary>
    internal void Start()
    {
        if (Options.ShutdownMessage is null)
            _running = Task.Run(() => RunAsync(_lifetime.Token));
    }

    /// <summary>Takes a connection the listener accepted from this peer's address.</summary>
    internal void Accept(Socket socket)
    {
        var task = Options.ShutdownMessage is { } message
            ? BgpSpeaker.RefuseAsync(socket, NotificationMessage.Shutdown(message)) // held down: told why, and closed
            : Task.Run(() => HandleConnectionAsync(socket, outgoing: false, _lifetime.Token), CancellationToken.None);
        lock (_accepted)
            _accepted.Add(task);
        // Each removes itself when it ends, so a flapping peer leaks nothing.
        _ = task.ContinueWith(t =>
        {
            lock (_accepted)
                _accepted.Remove(t);
        }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>The state machine and the accepted connections still running.</summary>
    internal Task[] Running()
    {
        lock (_accepted)
            return _running is null ? [.. _accepted] : [_running, .. _accepted];
    }

    /// <summary>
    /// Ends the peer for good (it was removed from the configuration): each connection closes with
    /// <paramref name="notification"/>, and the state machine stops; waits at most <paramref name="patience"/>.
    /// </summary>
    internal async Task StopAsync(NotificationMessage notification, TimeSpan patience)
    {
        CloseAll(notification);
        await _lifetime.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(Running()).WaitAsync(patience).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
        }
        SetState(BgpSessionState.Idle);
    }

    /// <summary>Closes every connection with the given NOTIFICATION (for example an RFC 8203 shutdown).</summary>
    internal void CloseAll(NotificationMessage notification)
    {
        lock (_lock)
        {
            foreach (var c in _connections)
                Fail(c, notification);
        }
    }

    private static void Fail(BgpConnection connection, NotificationMessage notification)
    {
        connection.PendingNotification ??= notification;
        try
        {
            connection.Closing.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private async Task HandleConnectionAsync(Socket socket, bool outgoing, CancellationToken ct)
    {
        var connection = new BgpConnection(socket, outgoing);
        lock (_lock)
            _connections.Add(connection);
        UpdateState();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, connection.Closing.Token);
        var token = linked.Token;
        var wasEstablished = false;
        AdjRibOut? adjRibOut = null;
        WriterState? writerState = null;
        Task? writer = null;
        NotificationMessage? toSend = null;
        try
        {
            var session = await HandshakeAsync(connection, token).ConfigureAwait(false);
            lock (_lock)
            {
                // RFC 4271 section 6.8: a connection that completes after another is Established is the loser.
                if (_connections.Any(c => c != connection && c.State == BgpSessionState.Established))
                    throw new BgpProtocolException(NotificationCode.Cease, NotificationSubcode.ConnectionCollisionResolution, [], "a session is already established");
                connection.State = BgpSessionState.Established;
                Session = session;
            }
            wasEstablished = true;
            ReceivedRoutes.Clear();
            Interlocked.Increment(ref _established);
            UpdateState();

            adjRibOut = new AdjRibOut();
            _adjRibOut = adjRibOut;
            var state = new WriterState(connection, adjRibOut, session, _speaker.ExportContextFor(this, connection.LocalEndPoint.Address, session));
            writerState = state; // for the teardown below
            // Timers first: their PeriodicTimer must exist before the writer's first message
            // (End-of-RIB) can let anyone observe the session and move the clock.
            var timers = TimersAsync(connection, state, session, token);
            adjRibOut.SendNow = () => TrySendNow(state, token);
            _speaker.LocRib.Subscribe(adjRibOut);
            writer = Task.Run(() => WriterLoopAsync(state, token), CancellationToken.None);
            await ReaderLoopAsync(connection, state, session, token).ConfigureAwait(false);
            await timers.ConfigureAwait(false);
        }
        catch (BgpProtocolException e)
        {
            toSend = NotificationMessage.From(e);
            LastError = e.Message;
            Log.ProtocolError(_logger, Options.DisplayName, e.Code, e.Subcode, e.Message);
        }
        catch (NotificationReceivedException e)
        {
            LastNotificationReceived = e.Notification;
            LastError = $"peer sent NOTIFICATION {e.Notification}";
            Log.NotificationReceived(_logger, Options.DisplayName, e.Notification.ToString());
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
            LastError = e.Message;
            Log.ConnectionLost(_logger, Options.DisplayName, e.Message);
        }
        finally
        {
            await connection.Closing.CancelAsync().ConfigureAwait(false);
            if (writer is not null)
            {
                try
                {
                    await writer.ConfigureAwait(false);
                }
                catch (Exception)
                {
                    // Cancellation, a broken socket, or a writer failure it already recorded in LastError:
                    // the teardown below must run whatever it was.
                }
            }
            if (writerState is not null)
            {
                // A route sent by another thread may still be flushing (cancelled with the session).
                await writerState.Gate.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            }
            toSend ??= connection.PendingNotification;
            if (toSend is { } n)
                await SendNotificationAsync(connection, n).ConfigureAwait(false);
            if (adjRibOut is not null)
            {
                _speaker.LocRib.Unsubscribe(adjRibOut);
                _adjRibOut = null;
            }
            lock (_lock)
            {
                _connections.Remove(connection);
                if (wasEstablished)
                    Session = null;
            }
            if (wasEstablished)
                ReceivedRoutes.Clear();
            await connection.DisposeAsync().ConfigureAwait(false);
            UpdateState();
            _connectionEnded.Release();
        }
    }

    private async Task SendNotificationAsync(BgpConnection connection, NotificationMessage notification)
    {
        LastNotificationSent = notification;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            notification.WriteTo(connection.Output);
            await connection.Output.FlushAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException or InvalidOperationException)
        {
        }
    }

    private async Task<NegotiatedSession> HandshakeAsync(BgpConnection connection, CancellationToken ct)
    {
        var ours = _speaker.BuildOpen(this);
        await connection.SendAsync(ours.WriteTo, ct).ConfigureAwait(false);
        connection.State = BgpSessionState.OpenSent;
        UpdateState();

        using var openTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        openTimeout.CancelAfter(TimeSpan.FromSeconds(OpenHoldSeconds));
        var first = await connection.ReadOneAsync(BgpConstants.MaxMessageLength, openTimeout.Token).ConfigureAwait(false)
            ?? throw new IOException("connection closed before OPEN");
        if (first.Type == BgpMessageType.Notification)
            throw new NotificationReceivedException(NotificationMessage.Parse(new ReadOnlySequence<byte>(first.Body)));
        if (first.Type != BgpMessageType.Open)
            throw new BgpProtocolException(NotificationCode.FiniteStateMachineError, NotificationSubcode.UnexpectedMessageInOpenSent, [(byte)first.Type], $"expected OPEN, got {first.Type}");

        var open = OpenMessage.Parse(first.Body);
        var session = Negotiate(ours, open);
        connection.PeerOpen = open;
        ResolveCollision(connection, open);
        if (connection.LostCollision)
            throw new BgpProtocolException(NotificationCode.Cease, NotificationSubcode.ConnectionCollisionResolution, [], "connection collision: the other connection wins");

        await connection.SendAsync(BgpFraming.WriteKeepalive, ct).ConfigureAwait(false);
        connection.State = BgpSessionState.OpenConfirm;
        UpdateState();

        using var confirmTimeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        if (session.HoldTimeSeconds > 0)
            confirmTimeout.CancelAfter(TimeSpan.FromSeconds(session.HoldTimeSeconds));
        var second = await connection.ReadOneAsync(BgpConstants.MaxMessageLength, confirmTimeout.Token).ConfigureAwait(false)
            ?? throw new IOException("connection closed in OpenConfirm");
        if (second.Type == BgpMessageType.Notification)
            throw new NotificationReceivedException(NotificationMessage.Parse(new ReadOnlySequence<byte>(second.Body)));
        if (second.Type != BgpMessageType.Keepalive)
            throw new BgpProtocolException(NotificationCode.FiniteStateMachineError, NotificationSubcode.UnexpectedMessageInOpenConfirm, [(byte)second.Type], $"expected KEEPALIVE, got {second.Type}");
        if (connection.LostCollision)
            throw new BgpProtocolException(NotificationCode.Cease, NotificationSubcode.ConnectionCollisionResolution, [], "connection collision: the other connection wins");
        return session;
    }

    /// <summary>
    /// RFC 4271 section 6.8: when both sides connected, keep the connection opened by the speaker with
    /// the higher BGP Identifier and close the other with Cease / Connection Collision Resolution.
    /// </summary>
    private void ResolveCollision(BgpConnection connection, OpenMessage open)
    {
        lock (_lock)
        {
            foreach (var other in _connections)
            {
                if (other == connection || other.PeerOpen is null || other.State != BgpSessionState.OpenConfirm)
                    continue;
                var localId = RoutePrefix.ToUInt32(_speaker.Options.RouterId);
                var keepOutgoing = localId > open.BgpIdentifier;
                var loser = (connection.Outgoing == keepOutgoing) ? other : connection;
                loser.LostCollision = true;
                if (loser != connection)
                    Fail(loser, new NotificationMessage(NotificationCode.Cease, NotificationSubcode.ConnectionCollisionResolution, []));
            }
        }
    }

    private NegotiatedSession Negotiate(OpenMessage ours, OpenMessage theirs)
    {
        if (Options.RemoteAs != 0 && theirs.AutonomousSystem != Options.RemoteAs)
        {
            Span<byte> data = [(byte)(theirs.MyAs >> 8), (byte)theirs.MyAs];
            BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.BadPeerAs, data, $"peer AS {theirs.AutonomousSystem} is not the configured {Options.RemoteAs}");
        }
        var isIbgp = theirs.AutonomousSystem == _speaker.Options.LocalAs;
        if (isIbgp && theirs.BgpIdentifier == ours.BgpIdentifier)
            BgpThrow.Protocol(NotificationCode.OpenMessageError, NotificationSubcode.BadBgpIdentifier, [], "internal peer has our BGP identifier");

        // RFC 4760 section 8: a peer without multiprotocol capabilities speaks IPv4 unicast only.
        var theirFamilies = theirs.Capabilities.Multiprotocol.Count > 0 ? theirs.Capabilities.Multiprotocol : [AddressFamily.IPv4Unicast];
        var families = Options.Families.Where(theirFamilies.Contains).ToList();
        var hold = Math.Min(ours.HoldTime, theirs.HoldTime);
        return new NegotiatedSession(
            theirs.AutonomousSystem,
            theirs.BgpIdentifier,
            (ushort)hold,
            theirs.Capabilities.FourOctetAs is not null,
            families,
            theirs.Capabilities.RouteRefresh,
            theirs.Capabilities.EnhancedRouteRefresh && ours.Capabilities.EnhancedRouteRefresh,
            theirs.Capabilities.ExtendedMessage && ours.Capabilities.ExtendedMessage,
            theirs.Capabilities.ExtendedNextHop.Contains(new ExtendedNextHop(AddressFamily.IPv4Unicast, Afi.IPv6)),
            theirs.Capabilities.GracefulRestart);
    }

    private sealed class WriterState(BgpConnection connection, AdjRibOut adjRibOut, NegotiatedSession session, ExportContext export)
    {
        public BgpConnection Connection { get; } = connection;
        public AdjRibOut AdjRibOut { get; } = adjRibOut;
        public NegotiatedSession Session { get; } = session;
        public ExportContext Export { get; } = export;
        public long LastReceived;
        public long LastSent;
        public volatile bool KeepaliveDue;
        public volatile bool RefreshRequested;
        public volatile bool EndOfRibSent;
        /// <summary>Held by whoever writes to the connection: the writer loop or a thread sending now.</summary>
        public readonly SemaphoreSlim Gate = new(1, 1);
        public readonly Dictionary<(RouteAttributes, bool), EncodedAttributes> Encoded = [];
        // The writer's working space, reused by every send.
        public readonly RoutePrefix[] Prefixes = new RoutePrefix[LookupChunk];
        public readonly RouteAttributes?[] Attributes = new RouteAttributes?[LookupChunk];
        public readonly Dictionary<(RouteAttributes, bool), List<RoutePrefix>> Groups = [];
        public readonly List<RoutePrefix> WithdrawV4 = [];
        public readonly List<RoutePrefix> WithdrawV6 = [];
    }

    private async Task ReaderLoopAsync(BgpConnection connection, WriterState state, NegotiatedSession session, CancellationToken ct)
    {
        var update = new UpdateMessage();
        var context = new UpdateParseContext(session.FourOctetAs, session.PeerAs != _speaker.Options.LocalAs, session.PeerAs);
        var input = connection.Input;
        while (true)
        {
            var result = await input.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            try
            {
                while (BgpFraming.TryReadMessage(ref buffer, session.MaxMessageLength, out var type, out var body))
                {
                    Volatile.Write(ref state.LastReceived, _speaker.TimeProvider.GetTimestamp());
                    switch (type)
                    {
                        case BgpMessageType.Update:
                            Interlocked.Increment(ref _updatesReceived);
                            update.Parse(body, context);
                            if (update.Action != UpdateAction.Accept)
                            {
                                Log.UpdateError(_logger, Options.DisplayName, update.Action, update.ErrorSubcode, update.ErrorReason);
                                if (update.Action == UpdateAction.TreatAsWithdraw)
                                    Interlocked.Increment(ref _treatedAsWithdraw);
                                Interlocked.Add(ref _attributesDiscarded, update.Discarded.Count);
                            }
                            var count = ReceivedRoutes.Apply(update);
                            UpdateReceived?.Invoke(this, update);
                            if (Options.MaxPrefixes is { } max && count > max)
                                throw MaxPrefixExceeded(update, max);
                            break;
                        case BgpMessageType.Keepalive:
                            break;
                        case BgpMessageType.RouteRefresh:
                            var refresh = RouteRefreshMessage.Parse(body);
                            if (refresh.Subtype == RouteRefreshMessage.Request && session.Families.Contains(refresh.Family))
                            {
                                state.RefreshRequested = true;
                                state.AdjRibOut.Wake();
                            }
                            break;
                        case BgpMessageType.Notification:
                            throw new NotificationReceivedException(NotificationMessage.Parse(body));
                        default:
                            throw new BgpProtocolException(NotificationCode.FiniteStateMachineError, NotificationSubcode.UnexpectedMessageInEstablished, [(byte)type], $"unexpected {type} in Established");
                    }
                }
                if (result.IsCompleted)
                    throw new IOException("peer closed the connection");
            }
            finally
            {
                input.AdvanceTo(buffer.Start, buffer.End);
            }
        }
    }

    private static BgpProtocolException MaxPrefixExceeded(UpdateMessage update, int max)
    {
        // RFC 4486 section 4: AFI (2), SAFI (1), upper bound (4).
        var family = update.Announced.Count > 0 ? update.Announced[^1].Family : AddressFamily.IPv4Unicast;
        var data = new byte[7];
        data[0] = (byte)((ushort)family.Afi >> 8);
        data[1] = (byte)family.Afi;
        data[2] = (byte)family.Safi;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(3), (uint)max);
        return new BgpProtocolException(NotificationCode.Cease, NotificationSubcode.MaximumPrefixesReached, data, $"peer sent more than {max} prefixes");
    }

    /// <summary>Hold timer and keepalive timer (RFC 4271 section 10), driven by the speaker's <see cref="TimeProvider"/>.</summary>
    private async Task TimersAsync(BgpConnection connection, WriterState state, NegotiatedSession session, CancellationToken ct)
    {
        if (session.HoldTimeSeconds == 0)
            return;
        var hold = TimeSpan.FromSeconds(session.HoldTimeSeconds);
        var keepalive = hold / 3;
        var tick = keepalive < TimeSpan.FromSeconds(1) ? keepalive : TimeSpan.FromSeconds(1);
        var time = _speaker.TimeProvider;
        // Both clocks start here, before the writer and the reader run: a tick must never see a reader
        // that has not started yet as a peer silent since forever (a race the fake-clock test caught).
        state.LastSent = time.GetTimestamp();
        Volatile.Write(ref state.LastReceived, state.LastSent);
        using var timer = new PeriodicTimer(tick, time);
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                if (time.GetElapsedTime(Volatile.Read(ref state.LastReceived)) >= hold)
                {
                    Fail(connection, new NotificationMessage(NotificationCode.HoldTimerExpired, 0, []));
                    return;
                }
                if (time.GetElapsedTime(Volatile.Read(ref state.LastSent)) >= keepalive)
                {
                    state.KeepaliveDue = true;
                    state.AdjRibOut.Wake();
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}

/// <summary>The peer closed the session with a NOTIFICATION.</summary>
internal sealed class NotificationReceivedException(NotificationMessage notification) : Exception(notification.ToString())
{
    public NotificationMessage Notification { get; } = notification;
}
