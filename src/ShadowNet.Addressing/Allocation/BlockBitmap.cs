using System.Numerics;
using System.Runtime.CompilerServices;

namespace ShadowNet.Addressing.Allocation;

/// <summary>
/// Free/used bits for one contiguous block of addresses, addressed by offset from the block start.
/// </summary>
/// <remarks>
/// A set bit means free, so <see cref="BitOperations.TrailingZeroCount(ulong)"/> finds the lowest free
/// address of a chunk. Bits live in chunks of 4,096 addresses (64 words) that are created on first use; the
/// addresses of a chunk that does not exist yet are all free, so an IPv6 /64 costs memory only for the
/// part in use. Three summary levels (chunk words with a free bit -> chunks with a free bit -> groups of
/// chunks) make finding a free address four trailing-zero counts, whatever the block size.
/// <code>
///   _top (1 ulong) -> _groups[64] -> _chunksWithFree[ceil(chunks/64)] -> chunk[0] summary -> chunk[1..64] words
/// </code>
/// A block tracks at most 2^30 addresses (<see cref="MaxTracked"/>); larger pools use their first 2^30.
/// </remarks>
internal sealed class BlockBitmap
{
    public const int ChunkShift = 12;
    public const int ChunkSize = 1 << ChunkShift;
    private const int WordsPerChunk = ChunkSize / 64;
    public const ulong MaxTracked = 1UL << 30;

    private readonly ulong _size;
    private readonly int _chunkCount;
    private ulong[]?[] _chunks;
    private readonly ulong[] _chunksWithFree;
    private readonly ulong[] _groups = new ulong[64];
    private ulong _top;
    private int _frontier;
    private ulong _used;

    public BlockBitmap(ulong size)
    {
        ArgumentOutOfRangeException.ThrowIfZero(size);
        _size = Math.Min(size, MaxTracked);
        _chunkCount = (int)((_size + ChunkSize - 1) >> ChunkShift);
        _chunks = new ulong[]?[Math.Min(_chunkCount, 16)];
        _chunksWithFree = new ulong[(_chunkCount + 63) >> 6];
    }

    /// <summary>Addresses this bitmap tracks.</summary>
    public ulong Size => _size;

    public ulong Used => _used;

    public ulong Free => _size - _used;

    /// <summary>Chunks created so far: the memory this block costs is about 520 bytes per chunk.</summary>
    public int CreatedChunks { get; private set; }

    /// <summary>
    /// Takes the lowest free offset among the chunks that exist, else the first offset of the lowest chunk
    /// not created yet; false when the block is full.
    /// </summary>
    public bool TryTake(out ulong offset)
    {
        if (_top == 0 && !TryCreateFrontierChunk())
        {
            offset = 0;
            return false;
        }

        var group = BitOperations.TrailingZeroCount(_top);
        var wordOfChunks = (group << 6) | BitOperations.TrailingZeroCount(_groups[group]);
        var chunkIndex = (wordOfChunks << 6) | BitOperations.TrailingZeroCount(_chunksWithFree[wordOfChunks]);
        var chunk = _chunks[chunkIndex]!;
        var word = BitOperations.TrailingZeroCount(chunk[0]);
        ref var bits = ref chunk[1 + word];
        var bit = BitOperations.TrailingZeroCount(bits);
        bits &= bits - 1;
        if (bits == 0)
        {
            chunk[0] &= ~(1UL << word);
            if (chunk[0] == 0)
            {
                ClearChunkFree(chunkIndex);
            }
        }

        _used++;
        offset = ((ulong)chunkIndex << ChunkShift) | ((ulong)word << 6) | (uint)bit;
        return true;
    }

    /// <summary>Marks a taken offset free again; false if it was already free (a double release).</summary>
    public bool Return(ulong offset)
    {
        if (offset >= _size)
        {
            return false;
        }

        var chunkIndex = (int)(offset >> ChunkShift);
        var chunk = chunkIndex < _chunks.Length ? _chunks[chunkIndex] : null;
        if (chunk is null)
        {
            return false;
        }

        var word = (int)(offset >> 6) & (WordsPerChunk - 1);
        var mask = 1UL << (int)(offset & 63);
        ref var bits = ref chunk[1 + word];
        if ((bits & mask) != 0)
        {
            return false;
        }

        bits |= mask;
        var chunkHadFree = chunk[0] != 0;
        chunk[0] |= 1UL << word;
        if (!chunkHadFree)
        {
            SetChunkFree(chunkIndex);
        }

        _used--;
        return true;
    }

    /// <summary>Marks a specific offset taken (rebuilding from the store); false if it already was.</summary>
    public bool TakeAt(ulong offset)
    {
        if (offset >= _size)
        {
            return false;
        }

        var chunkIndex = (int)(offset >> ChunkShift);
        var chunk = GetOrCreateChunk(chunkIndex);
        var word = (int)(offset >> 6) & (WordsPerChunk - 1);
        var mask = 1UL << (int)(offset & 63);
        ref var bits = ref chunk[1 + word];
        if ((bits & mask) == 0)
        {
            return false;
        }

        bits &= ~mask;
        if (bits == 0)
        {
            chunk[0] &= ~(1UL << word);
            if (chunk[0] == 0)
            {
                ClearChunkFree(chunkIndex);
            }
        }

        _used++;
        return true;
    }

    public bool IsFree(ulong offset)
    {
        if (offset >= _size)
        {
            return false;
        }

        var chunkIndex = (int)(offset >> ChunkShift);
        var chunk = chunkIndex < _chunks.Length ? _chunks[chunkIndex] : null;
        return chunk is null || (chunk[1 + ((int)(offset >> 6) & (WordsPerChunk - 1))] & (1UL << (int)(offset & 63))) != 0;
    }

    private bool TryCreateFrontierChunk()
    {
        while (_frontier < _chunkCount && _frontier < _chunks.Length && _chunks[_frontier] is not null)
        {
            _frontier++;
        }

        if (_frontier >= _chunkCount)
        {
            return false;
        }

        GetOrCreateChunk(_frontier);
        return true;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private ulong[] GetOrCreateChunk(int chunkIndex)
    {
        if (chunkIndex >= _chunks.Length)
        {
            Array.Resize(ref _chunks, Math.Min(_chunkCount, Math.Max(chunkIndex + 1, _chunks.Length * 2)));
        }

        if (_chunks[chunkIndex] is { } existing)
        {
            return existing;
        }

        var chunk = new ulong[1 + WordsPerChunk];
        var start = (ulong)chunkIndex << ChunkShift;
        var inChunk = Math.Min((ulong)ChunkSize, _size - start);
        for (var w = 0; w < WordsPerChunk; w++)
        {
            var wordStart = (ulong)w << 6;
            if (wordStart >= inChunk)
            {
                break;
            }

            var bitsHere = inChunk - wordStart;
            chunk[1 + w] = bitsHere >= 64 ? ulong.MaxValue : (1UL << (int)bitsHere) - 1;
            chunk[0] |= 1UL << w;
        }

        _chunks[chunkIndex] = chunk;
        CreatedChunks++;
        SetChunkFree(chunkIndex);
        return chunk;
    }

    private void SetChunkFree(int chunkIndex)
    {
        var word = chunkIndex >> 6;
        _chunksWithFree[word] |= 1UL << (chunkIndex & 63);
        _groups[word >> 6] |= 1UL << (word & 63);
        _top |= 1UL << (word >> 6);
    }

    private void ClearChunkFree(int chunkIndex)
    {
        var word = chunkIndex >> 6;
        _chunksWithFree[word] &= ~(1UL << (chunkIndex & 63));
        if (_chunksWithFree[word] == 0)
        {
            var group = word >> 6;
            _groups[group] &= ~(1UL << (word & 63));
            if (_groups[group] == 0)
            {
                _top &= ~(1UL << group);
            }
        }
    }
}
