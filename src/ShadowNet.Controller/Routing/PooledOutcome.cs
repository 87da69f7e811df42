using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using ShadowNet.Hooks.Udp;

namespace ShadowNet.Controller.Routing;

/// <summary>
/// A hook's reply computed when the allocator's operation completes: a static function turns the
/// operation's result into the outcome, on the thread that completed it. Instances are recycled once the
/// reply is read, so an awaited create or delete allocates nothing. (An async method with the pooling
/// builder keeps only a box or two per core; the allocator completes whole groups on its committer thread,
/// so most boxes were dropped and allocated again: about 400 bytes per event.)
/// </summary>
internal sealed class PooledOutcome<TResult, TState> : IValueTaskSource<HookOutcome>
{
    private static readonly ConcurrentQueue<PooledOutcome<TResult, TState>> Pool = new();

    private readonly Action _onCompleted;
    private ManualResetValueTaskSourceCore<HookOutcome> _core;
    private Func<ValueTask<TResult>, TState, HookOutcome> _finish = null!;
    private ValueTask<TResult> _pending;
    private TState _state = default!;

    private PooledOutcome() => _onCompleted = OnCompleted;

    /// <summary>The outcome of <paramref name="pending"/> once it completes, through <paramref name="finish"/> (which must read it once).</summary>
    public static ValueTask<HookOutcome> When(ValueTask<TResult> pending, TState state, Func<ValueTask<TResult>, TState, HookOutcome> finish)
    {
        if (pending.IsCompleted)
        {
            return new ValueTask<HookOutcome>(finish(pending, state));
        }

        if (!Pool.TryDequeue(out var outcome))
        {
            outcome = new PooledOutcome<TResult, TState>();
        }

        outcome._pending = pending;
        outcome._state = state;
        outcome._finish = finish;
        var task = new ValueTask<HookOutcome>(outcome, outcome._core.Version);
        pending.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(outcome._onCompleted);
        return task;
    }

    public HookOutcome GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            _core.Reset();
            Pool.Enqueue(this);
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    private void OnCompleted()
    {
        HookOutcome outcome;
        try
        {
            outcome = _finish(_pending, _state);
        }
        catch (Exception)
        {
            outcome = new HookOutcome(HookStatus.Unavailable, null);
        }

        _pending = default;
        _state = default!;
        _finish = null!;
        _core.SetResult(outcome);
    }
}
