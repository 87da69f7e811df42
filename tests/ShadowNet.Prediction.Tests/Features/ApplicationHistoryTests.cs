using ShadowNet.Prediction.Features;

namespace ShadowNet.Prediction.Tests.Features;

public class ApplicationHistoryTests
{
    // 2024-01-01 00:00 UTC, a Monday.
    private const long Monday = 1_704_067_200;

    /// <summary>Instances, load and time: the features of the first models.</summary>
    private static readonly FeatureLayout Classic = FeatureLayout.Of(["instances", "load", "hour_sin", "hour_cos", "dow_sin", "dow_cos"]);

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

        var window = new float[4 * Classic.Count];
        var scale = history.WriteWindow(Classic, 4, window);
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
        Assert.Equal(1f, history.WriteWindow(Classic, 1, window));
        Assert.Equal(0.2f, window[1], 5);
    }

    [Fact]
    public void LogScaleCarriesTheWindowsLevelInEveryStep()
    {
        var layout = FeatureLayout.Of(["instances", "log_scale"]);
        var history = new ApplicationHistory(8, 300);
        foreach (var (step, instances) in new[] { (0, 3f), (1, 20f), (2, 5f), (3, 4f) })
        {
            history.Add(Monday + step * 300, instances, instances);
        }

        var window = new float[3 * 2];
        Assert.Equal(20f, history.WriteWindow(layout, 3, window));
        Assert.Equal([MathF.Log(20), MathF.Log(20), MathF.Log(20)], [window[1], window[3], window[5]]);
        Assert.Equal(0.2f, window[4], 5);

        window = new float[2];
        history.Add(Monday + 4 * 300, 0, 0);
        Assert.Equal(1f, history.WriteWindow(layout, 1, window));
        Assert.Equal([0f, 0f], window);  // an idle window: scale 1, so the level reads 0
    }

    [Fact]
    public void EventsAddUpWithinAStepAndAreZeroInAGapWhileGaugesCarryForward()
    {
        var history = new ApplicationHistory(8, 300);
        history.Add(Monday, Sample(("instances", 4), ("cpu", 0.5), ("deploys", 1)));
        history.Add(Monday + 100, Sample(("deploys", 2), ("errors", 7)));   // same step: events add, gauges untouched
        history.Add(Monday + 900, Sample(("instances", 6)));                // steps 1 and 2 missing

        Assert.Equal((4, 2L), (history.Count, history.GapsFilled));
        Assert.Equal([0f, 0f, 0f, 3f], Enumerable.Range(0, 4).Select(back => history.ValueAt(Signal.Deploys, back)));
        Assert.Equal(7f, history.ValueAt(Signal.Errors, 3));
        Assert.Equal([0.5f, 0.5f, 0.5f, 0.5f], Enumerable.Range(0, 4).Select(back => history.ValueAt(Signal.Cpu, back)));
        Assert.Equal([6f, 4f, 4f, 4f], Enumerable.Range(0, 4).Select(history.InstancesAt));
        Assert.Equal(6f, history.Latest().Load); // no load reported: the instance count stands in
        Assert.False(history.Reported(Signal.RequestsPerSecond));
    }

    [Fact]
    public void WindowFollowsTheContractsOrderWithTrafficAsItsShapeAndEventsAsLogCounts()
    {
        var history = new ApplicationHistory(8, 300);
        history.Add(Monday, Sample(("instances", 2), ("requests_per_second", 50), ("cpu", 0.25)));
        history.Add(Monday + 300, Sample(("instances", 4), ("requests_per_second", 200), ("cpu", 0.75), ("deploys", 3)));
        var layout = FeatureLayout.Of(["deploys", "instances", "requests_per_second", "cpu"]);

        var window = new float[2 * layout.Count];
        Assert.Equal(4f, history.WriteWindow(layout, 2, window));
        Assert.Equal([0f, 0.5f, 0.25f, 0.25f, MathF.Log(4), 1f, 1f, 0.75f], window);
    }

    [Fact]
    public void LayoutRefusesAnUnknownOrRepeatedFeatureNamingIt()
    {
        Assert.Contains("feature 'gpu' is not one the pipeline produces", Assert.Throws<ArgumentException>(() => FeatureLayout.Of(["instances", "gpu"])).Message, StringComparison.Ordinal);
        Assert.Contains("feature 'load' is named twice", Assert.Throws<ArgumentException>(() => FeatureLayout.Of(["load", "instances", "load"])).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SignalsAreReadByNameAndANegativeValueIsNamed()
    {
        var values = new float[Signals.Count];
        Assert.True(Signals.TryRead(new Dictionary<string, double> { ["instances"] = 3, ["gc_pauses"] = 9 }, values, out _));
        Assert.Equal(3f, values[(int)Signal.Instances]);
        Assert.True(float.IsNaN(values[(int)Signal.Load]));
        Assert.False(Signals.TryRead(new Dictionary<string, double> { ["errors"] = -2 }, values, out var bad));
        Assert.Equal("errors", bad);
    }

    private static float[] Sample(params (string Name, double Value)[] values)
    {
        var signals = new float[Signals.Count];
        Assert.True(Signals.TryRead(values.ToDictionary(v => v.Name, v => v.Value), signals, out _));
        return signals;
    }
}
