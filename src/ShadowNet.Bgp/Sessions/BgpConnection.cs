using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using ShadowNet.Bgp.Wire;

namespace ShadowNet.Bgp.Sessions;

/// <summary>One TCP connection to a peer, over System.IO.Pipelines, and its handshake state.</summary>
internal sealed class BgpConnection : IAsyncDisposable
{
    private const int OutputBlockSize = 64 * 1024;
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly SegmentPool _outputBlocks = new(OutputBlockSize);

    public BgpConnection(Socket socket, bool outgoing)
    {
        _socket = socket;
        socket.NoDelay = true;
        Outgoing = outgoing;
        _stream = new NetworkStream(socket, ownsSocket: true);
        Input = PipeReader.Create(_stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024, minimumReadSize: 16 * 1024, leaveOpen: true));
        Output = PipeWriter.Create(_stream, new StreamPipeWriterOptions(_outputBlocks, minimumBufferSize: OutputBlockSize, leaveOpen: true));
        LocalEndPoint = (IPEndPoint)socket.LocalEndPoint!;
        RemoteEndPoint = (IPEndPoint)socket.RemoteEndPoint!;
    }

    public bool Outgoing { get; }
    public PipeReader Input { get; }
    public PipeWriter Output { get; }
    public IPEndPoint LocalEndPoint { get; }
    public IPEndPoint RemoteEndPoint { get; }
    public volatile BgpSessionState State = BgpSessionState.OpenSent;
    public OpenMessage? PeerOpen { get; set; }
    public CancellationTokenSource Closing { get; } = new();
    /// <summary>Set when another connection won a collision; this one must send Cease/7 and close.</summary>
    public volatile bool LostCollision;
    /// <summary>The NOTIFICATION to send when this connection closes (hold timer, shutdown, collision).</summary>
    public NotificationMessage? PendingNotification { get; set; }

    /// <summary>Reads the next whole message; null at end of stream.</summary>
    public async ValueTask<(BgpMessageType Type, byte[] Body)?> ReadOneAsync(int maxLength, CancellationToken ct)
    {
        while (true)
        {
            var result = await Input.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (BgpFraming.TryReadMessage(ref buffer, maxLength, out var type, out var body))
            {
                var message = (type, body.ToArray());
                // Examined only up to what was consumed: the next message may already be buffered.
                Input.AdvanceTo(buffer.Start);
                return message;
            }
            Input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
                return null;
        }
    }

    public async ValueTask SendAsync(Action<IBufferWriter<byte>> write, CancellationToken ct)
    {
        write(Output);
        await Output.FlushAsync(ct).ConfigureAwait(false);
    }

    public void Abort()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        _socket.Close(0);
    }

    public async ValueTask DisposeAsync()
    {
        Closing.Cancel();
        await Input.CompleteAsync().ConfigureAwait(false);
        try
        {
            await Output.CompleteAsync().ConfigureAwait(false);
        }
        catch (IOException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        Abort();
        await _stream.DisposeAsync().ConfigureAwait(false);
        _outputBlocks.Dispose();
        Closing.Dispose();
    }
}
