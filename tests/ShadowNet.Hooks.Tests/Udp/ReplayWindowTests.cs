using ShadowNet.Hooks.Udp;

namespace ShadowNet.Hooks.Tests.Udp;

public class ReplayWindowTests
{
    private static readonly byte[] Reply = new byte[HookDatagram.ReplyLength];

    [Fact]
    public void NewRepeatAndTooOldFollowTheSlidingWindow()
    {
        var window = new ReplayWindow();
        Assert.Equal(SequenceCheck.New, window.Check(100));
        window.Begin(100);
        Assert.Equal(SequenceCheck.Repeat, window.Check(100));
        Assert.False(window.TryGetReply(100, out _));
        window.Complete(100, Reply);
        Assert.True(window.TryGetReply(100, out _));

        // Out of order inside the window is fine; below it is a replay.
        Assert.Equal(SequenceCheck.New, window.Check(90));
        window.Begin(90);
        window.Begin(200);
        Assert.Equal(SequenceCheck.TooOld, window.Check(100));
        Assert.Equal(SequenceCheck.Repeat, window.Check(200));
        Assert.Equal(SequenceCheck.New, window.Check(199));
        Assert.Equal(SequenceCheck.TooOld, window.Check(200 - ReplayWindow.Size));
        Assert.Equal(SequenceCheck.New, window.Check(200 - ReplayWindow.Size + 1));
    }

    [Fact]
    public void ForgottenSequenceMayRunAgain()
    {
        var window = new ReplayWindow();
        window.Begin(5);
        window.Forget(5);
        Assert.Equal(SequenceCheck.New, window.Check(5));
    }
}
