using System.Net;
using System.Net.Sockets;
using System.Text;
using ShadowNet.Addressing;

namespace ShadowNet.Hooks.Udp;

/// <summary>
/// The hypervisor's side of the UDP fast path: sends a request and resends the same datagram until an
/// authenticated acknowledgement with its sequence number arrives (UDP may lose either way; a retried
/// create is idempotent at the controller).
/// </summary>
public sealed class HookClient : IDisposable
{
    private readonly Socket _socket;
    private readonly ushort _keyId;
    private readonly byte[] _key;
    private ulong _sequence;

    /// <param name="firstSequence">Start of this client's sequence numbers; must exceed any it used before
    /// with this key (a restarted client can start from the time in microseconds).</param>
    public HookClient(IPEndPoint server, ushort keyId, byte[] key, ulong firstSequence)
    {
        _socket = new Socket(server.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        _socket.Connect(server);
        _keyId = keyId;
        _key = key;
        _sequence = firstSequence;
    }

    public TimeSpan FirstTimeout { get; init; } = TimeSpan.FromMilliseconds(50);

    public int MaxAttempts { get; init; } = 8;

    /// <summary>Attempts the last call needed (1 when nothing was lost).</summary>
    public int LastAttempts { get; private set; }

    public Task<HookReply> CreateAsync(string instance, string application, IpFamily family, Address? host, CancellationToken cancellationToken = default) =>
        SendAsync(HookKind.Create, instance, application, family, host, cancellationToken);

    public Task<HookReply> DeleteAsync(string instance, string application, IpFamily family, CancellationToken cancellationToken = default) =>
        SendAsync(HookKind.Delete, instance, application, family, null, cancellationToken);

    private async Task<HookReply> SendAsync(HookKind kind, string instance, string application, IpFamily family, Address? host, CancellationToken cancellationToken)
    {
        var sequence = Interlocked.Increment(ref _sequence);
        var request = new byte[HookDatagram.MaxRequestLength];
        var length = HookDatagram.WriteRequest(request, kind, sequence, _keyId, _key, family, host,
            Encoding.UTF8.GetBytes(instance), Encoding.UTF8.GetBytes(application));
        var reply = new byte[HookDatagram.ReplyLength + 1];
        var timeout = FirstTimeout;
        for (var attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            LastAttempts = attempt;
            await _socket.SendAsync(request.AsMemory(0, length), SocketFlags.None, cancellationToken);
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            wait.CancelAfter(timeout);
            try
            {
                while (true)
                {
                    var received = await _socket.ReceiveAsync(reply, SocketFlags.None, wait.Token);
                    if (HookDatagram.TryParseReply(reply.AsSpan(0, received), _key, out var parsed, out _) && parsed.Sequence == sequence)
                    {
                        return parsed;
                    }
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                timeout *= 2;
            }
            catch (SocketException)
            {
                // Connection refused (ICMP) while the controller restarts: wait and retry.
                await Task.Delay(timeout, cancellationToken);
                timeout *= 2;
            }
        }

        throw new TimeoutException($"no acknowledgement for {kind.ToString().ToLowerInvariant()} of '{instance}' after {MaxAttempts} attempts");
    }

    public void Dispose() => _socket.Dispose();
}
