using System.Buffers;

namespace ShadowNet.Bgp.Sessions;

/// <summary>
/// The blocks of one connection's output pipe, kept for reuse by that connection whatever thread writes
/// or flushes. With the shared array pool, blocks returned on one thread and asked for on another missed
/// its per-thread caches, and each miss was a new 64 KB array: UPDATEs are written from whichever thread
/// applied the batch (bench/RESULTS.md, stop 22). A connection holds a handful of blocks at most.
/// </summary>
internal sealed class SegmentPool(int blockSize) : MemoryPool<byte>
{
    private readonly Lock _lock = new();
    private readonly Stack<Block> _free = new();

    public override int MaxBufferSize => blockSize;

    /// <summary>Blocks made so far (a test reads it: the count stops growing once the pool is warm).</summary>
    public int Created { get; private set; }

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minBufferSize, blockSize);
        lock (_lock)
        {
            if (_free.TryPop(out var block))
            {
                return block;
            }

            Created++;
        }

        return new Block(this, new byte[blockSize]);
    }

    protected override void Dispose(bool disposing)
    {
        lock (_lock)
        {
            _free.Clear();
        }
    }

    private void Return(Block block)
    {
        lock (_lock)
        {
            _free.Push(block);
        }
    }

    private sealed class Block(SegmentPool pool, byte[] array) : IMemoryOwner<byte>
    {
        public Memory<byte> Memory => array;

        public void Dispose() => pool.Return(this);
    }
}
