using ShadowNet.Prediction.Features;
using ShadowNet.Prediction.Forecasting;
using ShadowNet.Prediction.Models;

namespace ShadowNet.Prediction.Tests.Forecasting;

public class LstmForecasterTests
{
    // 2024-01-01 09:00 UTC, a Monday morning.
    private const long MondayMorning = 1_704_099_600;

    [Fact]
    public void ADeployLoggedInTheNewestStepRaisesTheCommittedModelsForecastForTheSurgeItAnnounces()
    {
        using var model = OnnxForecaster.Load(Repository.File("models", "shadownet-lstm.onnx"), ApplicationHistory.FeatureNames);
        var lstm = new LstmForecaster(model);

        var quiet = Steady(deployAtNewest: false);
        var announced = Steady(deployAtNewest: true);
        var without = lstm.Forecast(quiet, 0.99);
        var with = lstm.Forecast(announced, 0.99);

        // A rolling deploy starts new instances beside the old ones; the log line comes a step before them.
        Assert.NotNull(without);
        Assert.NotNull(with);
        Assert.True(with > without + 4, $"p99 forecast {with} with the deploy logged, {without} without");
    }

    /// <summary>Forty steps of a steady 40 instances; the newest step may carry one deploy event.</summary>
    private static ApplicationHistory Steady(bool deployAtNewest)
    {
        var history = new ApplicationHistory(64, 300);
        var values = new float[Signals.Count];
        for (var step = 0; step < 40; step++)
        {
            values.AsSpan().Fill(float.NaN);
            values[(int)Signal.Instances] = 40 + (step % 2);
            values[(int)Signal.Load] = 39.2f + (step % 2);
            values[(int)Signal.Deploys] = deployAtNewest && step == 39 ? 1 : 0;
            history.Add(MondayMorning + (step * 300), values);
        }

        return history;
    }
}
