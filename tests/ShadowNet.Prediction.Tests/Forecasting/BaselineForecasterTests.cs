using ShadowNet.Prediction.Features;
using ShadowNet.Prediction.Forecasting;

namespace ShadowNet.Prediction.Tests.Forecasting;

public class BaselineForecasterTests
{
    private const long Monday = 1_704_067_200;

    private static ApplicationHistory History(params int[] instances)
    {
        var history = new ApplicationHistory(400, 300);
        for (var i = 0; i < instances.Length; i++)
        {
            history.Add(Monday + (i * 300), instances[i], instances[i]);
        }

        return history;
    }

    [Fact]
    public void ReactiveAndStaticWarmFollowTheLatestCount()
    {
        var history = History(3, 8, 5);
        Assert.Equal(5, new ReactiveForecaster().Forecast(history, 0.99));
        Assert.Equal(9, new StaticWarmForecaster(4).Forecast(history, 0.99));
        Assert.Null(new ReactiveForecaster().Forecast(new ApplicationHistory(4, 300), 0.99));
    }

    [Fact]
    public void SeasonalNaiveTakesThePeakOfTheSameHorizonOneSeasonAgo()
    {
        // Season of 4 steps, horizon 2: the steps 3 and 2 back are the next two, one season ago.
        var forecaster = new SeasonalNaiveForecaster(4, 2);
        Assert.Null(forecaster.Forecast(History(1, 2, 3, 4), 0.99));
        Assert.Equal(9, forecaster.Forecast(History(1, 9, 2, 3, 4), 0.99));
    }

    [Fact]
    public void EwmaOfAFlatSeriesIsItsLevelAndANoisyOneAddsMargin()
    {
        Assert.Equal(7, new EwmaForecaster().Forecast(History([.. Enumerable.Repeat(7, 50)]), 0.99));
        var noisy = new EwmaForecaster().Forecast(History([.. Enumerable.Range(0, 50).Select(i => i % 2 == 0 ? 5 : 15)]), 0.99);
        Assert.InRange(noisy!.Value, 21, 30); // mean 10, deviation 5, z(0.99) = 2.33
        Assert.Equal(2.3263, EwmaForecaster.NormalQuantile(0.99), 3);
        Assert.Equal(-1.6449, EwmaForecaster.NormalQuantile(0.05), 3);
    }
}
