using System.Net;
using System.Net.Sockets;
using AddressFamily = ShadowNet.Bgp.Wire.AddressFamily;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ShadowNet.Bgp.Rib;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Bgp.Sessions;

/// <summary>
/// The BGP speaker: the originated routes (<see cref="LocRib"/>), the configured peers, and the
/// listeners that accept passive connections. Routes announced here go to every established peer.
/// </summary>
public sealed partial class BgpSpeaker : IAsyncDisposable
{
    // Copy on write: readers (the accept loop, metrics, the API) take the array as it is; the writers
    // (adding and removing peers) hold _peersLock.
    private BgpPeer[] _peers = [];
    private readonly Lock _peersLock = new();
    private bool _started;
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _tasks = [];
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();

    public BgpSpeaker(BgpSpeakerOptions options, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.LocalAs == 0)
            throw new ArgumentException("local AS must not be 0", nameof(options));
        if (options.RouterId.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork || options.RouterId.Equals(IPAddress.Any))
            throw new ArgumentException("router id must be a non-zero IPv4 address", nameof(options));
        Options = options;
        LocRib = new LocRib(options.ExpectedRoutes);
        TimeProvider = timeProvider ?? TimeProvider.System;
        _loggerFactory = loggerFactory ?? NullLoggerFactory.Instance;
        _logger = _loggerFactory.CreateLogger<BgpSpeaker>();
    }

    public BgpSpeakerOptions Options { get; }
    public TimeProvider TimeProvider { get; }
    public LocRib LocRib { get; }
    public IReadOnlyList<BgpPeer> Peers => Volatile.Read(ref _peers);

    /// <summary>Peers whose session is Established now.</summary>
    public int PeersEstablished => Peers.Count(p => p.State == BgpSessionState.Established);
    /// <summary>The endpoints actually bound (port 0 in the options becomes the chosen port).</summary>
    public IReadOnlyList<IPEndPoint> ListenEndPoints => _listeners.Select(l => (IPEndPoint)l.LocalEndPoint!).ToList();

    /// <summary>Adds a neighbor; once the speaker has started, its state machine starts at once.</summary>
    public BgpPeer AddPeer(BgpPeerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var peer = new BgpPeer(this, options, _loggerFactory.CreateLogger<BgpPeer>(), _stopping.Token);
        lock (_peersLock)
        {
            foreach (var listener in _listeners)
                Secure(listener, options);
            Volatile.Write(ref _peers, [.. _peers, peer]);
            if (_started)
                peer.Start();
        }
        return peer;
    }

    /// <summary>
    /// Removes a neighbor: its sessions close with <paramref name="notification"/> (RFC 4486: Cease, Peer
    /// De-configured when it is gone from the configuration), and connections from its address are
    /// refused from now on. Waits up to 5 seconds for its connections to end.
    /// </summary>
    public async Task RemovePeerAsync(BgpPeer peer, NotificationMessage notification)
    {
        ArgumentNullException.ThrowIfNull(peer);
        lock (_peersLock)
        {
            if (!_peers.Contains(peer))
                return;
            Volatile.Write(ref _peers, [.. _peers.Where(p => p != peer)]);
            // The listeners sign for the address only while a configured peer there has a password.
            if (peer.Options.Password is not null && !_peers.Any(p => p.Options.Address.Equals(peer.Options.Address) && p.Options.Password is not null))
                foreach (var listener in _listeners)
                    Unsecure(listener, peer.Options.Address);
        }
        await peer.StopAsync(notification, TimeSpan.FromSeconds(5)).ConfigureAwait(false);
    }

    /// <summary>
    /// Makes the peers those of <paramref name="wanted"/>, a neighbor being its address and port: a new one
    /// is added; one no longer there is removed (Cease, Peer De-configured); one whose settings changed
    /// is reset (Cease, Other Configuration Change, then it starts again with the new settings; Cease,
    /// Administrative Shutdown with its message when it is now held down); one that only changed its name
    /// is renamed. The sessions of the others are not touched.
    /// </summary>
    public async Task<PeerChanges> ReconcilePeersAsync(IReadOnlyList<BgpPeerOptions> wanted)
    {
        ArgumentNullException.ThrowIfNull(wanted);
        var current = Peers.ToDictionary(p => (p.Options.Address, p.Options.Port));
        var keys = wanted.Select(o => (o.Address, o.Port)).ToHashSet();
        List<string> added = [], removed = [], reset = [];
        var unchanged = 0;
        foreach (var peer in current.Values.Where(p => !keys.Contains((p.Options.Address, p.Options.Port))))
        {
            await RemovePeerAsync(peer, new NotificationMessage(NotificationCode.Cease, NotificationSubcode.PeerDeconfigured, [])).ConfigureAwait(false);
            removed.Add(peer.Options.DisplayName);
        }
        foreach (var options in wanted)
        {
            if (!current.TryGetValue((options.Address, options.Port), out var peer))
            {
                AddPeer(options);
                added.Add(options.DisplayName);
            }
            else if (!peer.Options.SameSessionAs(options))
            {
                // Held down now: the RFC 8203 message says why; else the settings changed (RFC 4486).
                await RemovePeerAsync(peer, options.ShutdownMessage is { } message
                    ? NotificationMessage.Shutdown(message)
                    : new NotificationMessage(NotificationCode.Cease, NotificationSubcode.OtherConfigurationChange, [])).ConfigureAwait(false);
                AddPeer(options);
                reset.Add(options.DisplayName);
            }
            else
            {
                peer.Options.Name = options.Name;
                unchanged++;
            }
        }
        return new PeerChanges(added, removed, reset, unchanged);
    }

    public void Announce(RoutePrefix prefix, RouteAttributes attributes) => LocRib.Announce(prefix, attributes);
    public void Announce(ReadOnlySpan<RoutePrefix> prefixes, RouteAttributes attributes) => LocRib.Announce(prefixes, attributes);
    public bool Withdraw(RoutePrefix prefix) => LocRib.Withdraw(prefix);

    /// <summary>
    /// Until <see cref="ReleaseSends"/>, route changes made on this thread do not wake the peers' writers.
    /// For a thread that applies a batch of changes and would rather send them itself than hand them over.
    /// </summary>
    public static void HoldSends() => AdjRibOut.HoldSends();

    /// <summary>Sends the changes held since <see cref="HoldSends"/> on this thread, to each peer whose writer is idle; wakes the others' writers.</summary>
    public static void ReleaseSends() => AdjRibOut.ReleaseSends();

    /// <summary>Binds the listeners and starts every peer's state machine.</summary>
    public void Start()
    {
        foreach (var endpoint in Options.Listen)
        {
            var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            socket.Bind(endpoint);
            lock (_peersLock)
            {
                foreach (var peer in _peers)
                    Secure(socket, peer.Options);
                _listeners.Add(socket);
            }
            socket.Listen(64);
            _tasks.Add(Task.Run(() => AcceptLoopAsync(socket, _stopping.Token)));
            Log.Listening(_logger, (IPEndPoint)socket.LocalEndPoint!);
        }
        lock (_peersLock)
        {
            _started = true;
            foreach (var peer in _peers)
                peer.Start();
        }
    }

    private async Task AcceptLoopAsync(Socket listener, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }
            var remote = (IPEndPoint)client.RemoteEndPoint!;
            var address = remote.Address.IsIPv4MappedToIPv6 ? remote.Address.MapToIPv4() : remote.Address;
            var peer = Peers.FirstOrDefault(p => p.Options.Address.Equals(address));
            if (peer is null)
            {
                // RFC 4486 section 4: Connection Rejected for a neighbor we have not configured.
                Log.Rejected(_logger, remote);
                _ = RefuseAsync(client, new NotificationMessage(NotificationCode.Cease, NotificationSubcode.ConnectionRejected, []));
                continue;
            }
            if (peer.Options.TtlSecurityHops is { } hops)
            {
                try
                {
                    TcpSecurity.SetTtlSecurity(client, hops);
                }
                catch (SocketException)
                {
                    client.Dispose();
                    continue;
                }
            }
            peer.Accept(client);
        }
    }

    /// <summary>
    /// A listener holds each peer's MD5 key (connections from that address inherit it) and, when any peer
    /// uses GTSM, answers with TTL 255 so that its SYN-ACK passes the peer's check; the minimum TTL is set
    /// per accepted connection, since the listener serves peers without GTSM too.
    /// </summary>
    private static void Secure(Socket listener, BgpPeerOptions peer)
    {
        if (peer.Password is { } password && (listener.AddressFamily == peer.Address.AddressFamily || listener.DualMode))
            TcpSecurity.SetMd5Key(listener, peer.Address, password);
        if (peer.TtlSecurityHops is not null)
            TcpSecurity.SendWithMaximumTtl(listener);
    }

    private static void Unsecure(Socket listener, IPAddress address)
    {
        if (listener.AddressFamily == address.AddressFamily || listener.DualMode)
            TcpSecurity.RemoveMd5Key(listener, address);
    }

    /// <summary>Sends <paramref name="notification"/> on an accepted connection and closes it, without a session.</summary>
    internal static async Task RefuseAsync(Socket client, NotificationMessage notification)
    {
        await using var connection = new BgpConnection(client, outgoing: false);
        notification.WriteTo(connection.Output);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        try
        {
            await connection.Output.FlushAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException)
        {
        }
    }

    internal OpenMessage BuildOpen(BgpPeer peer)
    {
        var caps = new BgpCapabilities
        {
            FourOctetAs = Options.LocalAs,
            RouteRefresh = true,
            EnhancedRouteRefresh = true,
            ExtendedMessage = peer.Options.ExtendedMessage,
        };
        caps.Multiprotocol.AddRange(peer.Options.Families);
        if (peer.Options.Families.Contains(AddressFamily.IPv4Unicast))
            caps.ExtendedNextHop.Add(new ExtendedNextHop(AddressFamily.IPv4Unicast, Afi.IPv6));
        if (Options.GracefulRestartSeconds > 0)
        {
            // Forwarding state is preserved: our routes describe instances that keep running while we restart.
            caps.GracefulRestart = new GracefulRestartCapability(Options.Restarting, Options.GracefulRestartSeconds, peer.Options.Families.Select(f => (f, true)).ToList());
        }
        return new OpenMessage
        {
            MyAs = Options.LocalAs <= ushort.MaxValue ? (ushort)Options.LocalAs : BgpConstants.AsTrans,
            HoldTime = peer.Options.HoldTimeSeconds,
            BgpIdentifier = RoutePrefix.ToUInt32(Options.RouterId),
            Capabilities = caps,
        };
    }

    internal ExportContext ExportContextFor(BgpPeer peer, IPAddress local, NegotiatedSession session)
    {
        if (local.IsIPv4MappedToIPv6)
            local = local.MapToIPv4();
        var v4 = local.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? local : null;
        var v6 = local.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? local : peer.Options.NextHopV6;
        return new ExportContext(Options.LocalAs, session.PeerAs != Options.LocalAs, session.FourOctetAs, v4, v6, session.ExtendedNextHopIPv4);
    }

    /// <summary>
    /// Closes every session with Cease / Administrative Shutdown carrying <paramref name="reason"/>
    /// (RFC 8203), then stops the listeners and state machines.
    /// </summary>
    public async Task StopAsync(string? reason = "ShadowNet speaker shutting down", CancellationToken cancellationToken = default)
    {
        var notification = NotificationMessage.Shutdown(reason);
        var peers = Peers;
        foreach (var peer in peers)
            peer.CloseAll(notification);
        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (var l in _listeners)
            l.Dispose();
        try
        {
            Task[] running = [.. _tasks, .. peers.SelectMany(p => p.Running())];
            await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_stopping.IsCancellationRequested)
            await StopAsync().ConfigureAwait(false);
        _stopping.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(10, LogLevel.Information, "listening for BGP on {EndPoint}")]
        public static partial void Listening(ILogger logger, IPEndPoint endPoint);

        [LoggerMessage(11, LogLevel.Warning, "rejected a BGP connection from unconfigured {Remote}")]
        public static partial void Rejected(ILogger logger, IPEndPoint remote);
    }
}

/// <summary>What <see cref="BgpSpeaker.ReconcilePeersAsync"/> did, by the peers' display names.</summary>
public sealed record PeerChanges(IReadOnlyList<string> Added, IReadOnlyList<string> Removed, IReadOnlyList<string> Reset, int Unchanged)
{
    public override string ToString() =>
        $"added {Names(Added)}, removed {Names(Removed)}, reset {Names(Reset)}, {Unchanged} unchanged";

    private static string Names(IReadOnlyList<string> names) => names.Count == 0 ? "none" : string.Join(" ", names);
}
