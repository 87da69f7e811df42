using ShadowNet.Addressing.Allocation;

namespace ShadowNet.Addressing.Tests.Allocation;

public class BlockBitmapTests
{
    [Fact]
    public void TakesLowestFreeOffsetsInOrderUntilFull()
    {
        var bitmap = new BlockBitmap(130);
        for (ulong i = 0; i < 130; i++)
        {
            Assert.True(bitmap.TryTake(out var offset));
            Assert.Equal(i, offset);
        }

        Assert.False(bitmap.TryTake(out _));
        Assert.Equal(130UL, bitmap.Used);
    }

    [Fact]
    public void ReturnedOffsetIsTheNextTakenAndDoubleReturnIsRefused()
    {
        var bitmap = new BlockBitmap(10_000);
        for (var i = 0; i < 5000; i++)
        {
            bitmap.TryTake(out _);
        }

        Assert.True(bitmap.Return(4097));
        Assert.False(bitmap.Return(4097));
        Assert.False(bitmap.Return(9000));
        Assert.True(bitmap.TryTake(out var offset));
        Assert.Equal(4097UL, offset);
        Assert.True(bitmap.TryTake(out offset));
        Assert.Equal(5000UL, offset);
    }

    [Fact]
    public void TakeAtMarksOneOffsetAndRefusesItTwiceAndFillsItsChunkFirst()
    {
        var bitmap = new BlockBitmap(1UL << 20);
        Assert.True(bitmap.TakeAt(700_000));
        Assert.False(bitmap.TakeAt(700_000));
        Assert.False(bitmap.IsFree(700_000));
        Assert.True(bitmap.IsFree(699_999));
        Assert.Equal(1, bitmap.CreatedChunks);
        // Chunks that exist are used before a new one is created: memory grows only with use.
        Assert.True(bitmap.TryTake(out var offset));
        Assert.Equal(170UL * BlockBitmap.ChunkSize, offset);
    }

    [Fact]
    public void HugeBlockCostsMemoryOnlyForChunksInUse()
    {
        var bitmap = new BlockBitmap(ulong.MaxValue);
        Assert.Equal(BlockBitmap.MaxTracked, bitmap.Size);
        for (var i = 0; i < 10_000; i++)
        {
            Assert.True(bitmap.TryTake(out _));
        }

        Assert.Equal(3, bitmap.CreatedChunks);
    }

    [Fact]
    public void FillsEveryOffsetOfAMultiLevelBlockExactlyOnce()
    {
        const ulong size = (64 * BlockBitmap.ChunkSize) + 77;
        var bitmap = new BlockBitmap(size);
        var seen = new bool[size];
        while (bitmap.TryTake(out var offset))
        {
            Assert.False(seen[offset]);
            seen[offset] = true;
        }

        Assert.All(seen, Assert.True);
        Assert.True(bitmap.Return(size - 1));
        Assert.True(bitmap.Return(3));
        Assert.True(bitmap.TryTake(out var first));
        Assert.True(bitmap.TryTake(out var second));
        Assert.Equal((3UL, size - 1), (first, second));
    }
}
