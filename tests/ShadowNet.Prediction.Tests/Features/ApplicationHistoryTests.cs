using ShadowNet.Prediction.Features;

namespace ShadowNet.Prediction.Tests.Features;

public class ApplicationHistoryTests
{
    // 2024-01-01 00:00 UTC, a Monday.
    private const long Monday = 1_704_067_200;

    [Fact]
    public void GapsAreFilledWithTheLastStepAndCounted()
    {
        var history = new ApplicationHistory(16, 300);
        history.Add(Monday, 4, 3.5f);
        history.Add(Monday + 3 * 300 + 10, 9, 8.2f); // two steps missing; the time rounds down to its step
        Assert.Equal((4, 2L), (history.Count, history.GapsFilled));
        Assert.Equal([9f, 4f, 4f, 4f], Enumerable.Range(0, 4).Select(history.InstancesAt));
        Assert.Equal(Monday + 900, history.LastStep);
    }

    [Fact]
    public void LateSamplesAreDroppedAndASecondSampleInAStepReplacesTheFirst()
    {
        var history = new ApplicationHistory(16, 300);
        history.Add(Monday + 600, 5, 5);
        history.Add(Monday + 300, 7, 7);       // a step already past
        history.Add(Monday + 650, 6, 5.5f);    // the same step again
        Assert.Equal((1, 1L), (history.Count, history.LateDropped));
        Assert.Equal((6f, 5.5f), history.Latest());
    }

    [Fact]
    public void WindowIsOldestFirstScaledByItsLargestInstanceCountWithTimeAsSinCos()
    {
        var history = new ApplicationHistory(8, 3600);
        for (var hour = 0; hour < 6; hour++)
        {
            history.Add(Monday + hour * 3600, 2 + hour, 1.5f + hour);
        }

        var window = new float[4 * ApplicationHistory.FeatureNames.Count];
        var scale = history.WriteWindow(4, window);
        Assert.Equal(7f, scale);
        var first = window.AsSpan(0, 6).ToArray();    // 02:00 Monday: 4 instances, load 3.5
        Assert.Equal(4f / 7, first[0], 5);
        Assert.Equal(3.5f / 7, first[1], 5);
        Assert.Equal(Math.Sin(2 * Math.PI * 2 / 24), first[2], 5);
        Assert.Equal(Math.Cos(2 * Math.PI * 2 / 24), first[3], 5);
        Assert.Equal(0f, first[4], 5);                 // Monday: day 0
        Assert.Equal(1f, first[5], 5);
        Assert.Equal(1f, window[18]);                  // the newest step holds the largest count
    }

    [Fact]
    public void ScaleIsAtLeastOneSoAnIdleApplicationIsNotBlownUp()
    {
        var history = new ApplicationHistory(4, 300);
        history.Add(Monday, 0, 0.2f);
        var window = new float[6];
        Assert.Equal(1f, history.WriteWindow(1, window));
        Assert.Equal(0.2f, window[1], 5);
    }
}
