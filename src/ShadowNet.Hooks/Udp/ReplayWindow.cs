namespace ShadowNet.Hooks.Udp;

public enum SequenceCheck : byte
{
    /// <summary>Not seen before: process it.</summary>
    New,

    /// <summary>Seen and answered recently (a client retry): send the same reply again, do nothing else.</summary>
    Repeat,

    /// <summary>Older than the window: a replay (or a client restarted its counter); drop it.</summary>
    TooOld,
}

/// <summary>
/// Anti-replay for one key: the highest sequence number accepted and a 64-bit map of the 64 before it
/// (the sliding window of RFC 4303 section 3.4.3), plus the last reply of each slot so that a retry
/// gets the same acknowledgement without the request being run twice.
/// </summary>
public sealed class ReplayWindow
{
    public const int Size = 64;
    private readonly byte[] _replies = new byte[Size * HookDatagram.ReplyLength];
    private readonly ulong[] _replySequence = CreateSlots();
    private const ulong NoReply = ulong.MaxValue;
    private ulong _highest;
    private ulong _seen;
    private bool _any;

    public SequenceCheck Check(ulong sequence)
    {
        if (!_any || sequence > _highest)
        {
            return SequenceCheck.New;
        }

        var age = _highest - sequence;
        if (age >= Size)
        {
            return SequenceCheck.TooOld;
        }

        return (_seen & (1UL << (int)age)) != 0 ? SequenceCheck.Repeat : SequenceCheck.New;
    }

    /// <summary>
    /// Marks a sequence number taken before its request is processed, so that a retry arriving meanwhile
    /// is a <see cref="SequenceCheck.Repeat"/> (with no reply yet) rather than a second run.
    /// </summary>
    public void Begin(ulong sequence)
    {
        if (!_any || sequence > _highest)
        {
            var shift = _any ? sequence - _highest : Size;
            _seen = shift >= Size ? 0 : _seen << (int)shift;
            _highest = sequence;
            _any = true;
        }

        _seen |= 1UL << (int)(_highest - sequence);
        _replySequence[(int)(sequence % Size)] = NoReply;
    }

    /// <summary>Lets a sequence number run again (its request failed in a way a retry may not).</summary>
    public void Forget(ulong sequence)
    {
        if (_any && sequence <= _highest && _highest - sequence < Size)
        {
            _seen &= ~(1UL << (int)(_highest - sequence));
        }
    }

    /// <summary>Keeps the reply of a processed request for its retries.</summary>
    public void Complete(ulong sequence, ReadOnlySpan<byte> reply)
    {
        var slot = (int)(sequence % Size);
        _replySequence[slot] = sequence;
        reply.CopyTo(_replies.AsSpan(slot * HookDatagram.ReplyLength, HookDatagram.ReplyLength));
    }

    /// <summary>The reply sent for a repeated sequence number, if it is done and still held.</summary>
    public bool TryGetReply(ulong sequence, out ReadOnlySpan<byte> reply)
    {
        var slot = (int)(sequence % Size);
        if (sequence != NoReply && _replySequence[slot] == sequence)
        {
            reply = _replies.AsSpan(slot * HookDatagram.ReplyLength, HookDatagram.ReplyLength);
            return true;
        }

        reply = default;
        return false;
    }

    private static ulong[] CreateSlots()
    {
        var slots = new ulong[Size];
        slots.AsSpan().Fill(NoReply);
        return slots;
    }
}
