using ShadowNet.Addressing;

namespace ShadowNet.Hooks.Udp;

/// <summary>What a create or delete did.</summary>
public readonly record struct HookOutcome(HookStatus Status, Address? Address);

/// <summary>
/// Runs hook events (the Active Route Manager implements it). Called for authenticated, new requests
/// only; must not block the caller (the server's receive loop): complete asynchronously when waiting.
/// </summary>
public interface IHookHandler
{
    /// <param name="instance">The instance's name, valid only during the call: a handler that needs it
    /// later copies it (the server decodes it from the datagram without making a string).</param>
    ValueTask<HookOutcome> CreateAsync(ReadOnlySpan<char> instance, string application, IpFamily family, Address? host, CancellationToken cancellationToken);

    /// <param name="instance">As for <see cref="CreateAsync"/>.</param>
    ValueTask<HookOutcome> DeleteAsync(ReadOnlySpan<char> instance, string application, IpFamily family, CancellationToken cancellationToken);

    /// <summary>Before the requests of one received batch (on the receiving thread).</summary>
    void BatchStarting()
    {
    }

    /// <summary>
    /// After them. With <paramref name="finishHere"/> the handler may finish the batch's work on the
    /// receiving thread (a small batch, nothing more waiting, an ordinary rate); without it, it should hand
    /// the work on.
    /// </summary>
    void BatchEnded(bool finishHere)
    {
    }
}
