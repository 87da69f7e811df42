using System.Text.Json;
using System.Threading.Channels;
using ShadowNet.Controller.State;

namespace ShadowNet.Controller.Telemetry;

/// <summary>
/// Appends each miss as one JSON line to a file the training pipeline reads (models/train.sh --from).
/// Written by a background task so a create never waits on it; when the writer falls 10,000 lines
/// behind, further lines are dropped and counted (the store keeps every miss regardless).
/// </summary>
public sealed class MissLog : IAsyncDisposable
{
    public const string Reason = "unexpected scaling, no pre-allocation";

    private readonly Channel<MissRecord> _pending = Channel.CreateBounded<MissRecord>(
        new BoundedChannelOptions(10_000) { SingleReader = true, FullMode = BoundedChannelFullMode.DropWrite });
    private readonly FileStream _file;
    private readonly Task _writer;
    private long _dropped;
    private long _written;

    public MissLog(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        _file = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read, 64 * 1024);
        _writer = Task.Run(WriteLinesAsync);
    }

    public string Path { get; }

    public long Dropped => Interlocked.Read(ref _dropped);

    public long Written => Interlocked.Read(ref _written);

    public void Add(MissRecord miss)
    {
        if (!_pending.Writer.TryWrite(miss))
        {
            Interlocked.Increment(ref _dropped);
        }
    }

    /// <summary>Writes one miss as the JSON object of its line (also the format of export-training-data).</summary>
    public static void WriteJson(Utf8JsonWriter json, MissRecord miss)
    {
        json.WriteStartObject();
        json.WriteString("time", DateTimeOffset.FromUnixTimeMilliseconds(miss.TimeMs).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture));
        json.WriteString("event", "miss");
        json.WriteString("reason", Reason);
        json.WriteString("application", miss.Application);
        json.WriteString("instance", miss.Instance);
        json.WriteString("address", miss.Address.ToString());
        if (miss.Host is { } host)
        {
            json.WriteString("host", host.ToString());
        }

        json.WritePropertyName("window");
        if (miss.Window is { } window)
        {
            json.WriteRawValue(window, skipInputValidation: true);
        }
        else
        {
            json.WriteNullValue();
        }

        json.WriteEndObject();
    }

    public async ValueTask DisposeAsync()
    {
        _pending.Writer.TryComplete();
        await _writer;
        await _file.DisposeAsync();
    }

    private async Task WriteLinesAsync()
    {
        await using var json = new Utf8JsonWriter(_file);
        while (await _pending.Reader.WaitToReadAsync())
        {
            while (_pending.Reader.TryRead(out var miss))
            {
                WriteJson(json, miss);
                await json.FlushAsync();
                json.Reset();
                _file.WriteByte((byte)'\n');
                Interlocked.Increment(ref _written);
            }

            await _file.FlushAsync();
        }
    }
}
