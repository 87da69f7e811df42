using System.Buffers;
using System.IO.Pipelines;
using ShadowNet.Bgp.Sessions;

namespace ShadowNet.Bgp.Tests.Sessions;

public class SegmentPoolTests
{
    [Fact]
    public async Task BlocksFlushedOnOtherThreadsAreReusedSoWritesStopAllocatingBlocks()
    {
        // A pipe over a stream, written and flushed from thread-pool threads in turn, as UPDATEs are.
        using var pool = new SegmentPool(64 * 1024);
        await using var sink = new MemoryStream();
        var output = PipeWriter.Create(sink, new StreamPipeWriterOptions(pool, minimumBufferSize: 64 * 1024, leaveOpen: true));
        var message = new byte[4096];
        for (var round = 0; round < 200; round++)
        {
            await Task.Run(async () =>
            {
                for (var i = 0; i < 20; i++)
                {
                    output.Write(message); // 80 KB: two blocks
                }

                await output.FlushAsync();
            });
            sink.SetLength(0);
        }

        await output.CompleteAsync();
        Assert.InRange(pool.Created, 1, 4);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(64 * 1024 + 1));
    }
}
