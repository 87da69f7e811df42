using ShadowNet.Prediction.Features;
using ShadowNet.Prediction.Models;

namespace ShadowNet.Prediction.Forecasting;

/// <summary>
/// How many instances an application will need at most during the coming horizon, at a confidence:
/// what the planner prepares addresses for. Null while there is too little history to say.
/// </summary>
public interface IInstanceForecaster
{
    /// <summary>The name a configuration or <c>--policy</c> uses.</summary>
    string Name { get; }

    int? Forecast(ApplicationHistory history, double confidence);
}

/// <summary>No pre-allocation: every create allocates on demand (what IPAM without prediction does).</summary>
public sealed class ReactiveForecaster : IInstanceForecaster
{
    public string Name => "reactive";

    public int? Forecast(ApplicationHistory history, double confidence) => history.Count == 0 ? null : (int)history.Latest().Instances;
}

/// <summary>A fixed warm pool of <paramref name="warm"/> addresses above what runs (AWS VPC CNI's WARM_IP_TARGET).</summary>
public sealed class StaticWarmForecaster(int warm) : IInstanceForecaster
{
    public string Name => $"static-warm:{warm}";

    public int? Forecast(ApplicationHistory history, double confidence) => history.Count == 0 ? null : (int)history.Latest().Instances + warm;
}

/// <summary>The same horizon one season ago (a day by default): the most instances then.</summary>
public sealed class SeasonalNaiveForecaster(int seasonSteps, int horizonSteps) : IInstanceForecaster
{
    public string Name => "seasonal-naive";

    public int? Forecast(ApplicationHistory history, double confidence)
    {
        if (history.Count <= seasonSteps)
        {
            return null;
        }

        var most = 0f;
        for (var ahead = 1; ahead <= horizonSteps; ahead++)
        {
            most = Math.Max(most, history.InstancesAt(seasonSteps - ahead));
        }

        return (int)Math.Ceiling(most);
    }
}

/// <summary>The ONNX LSTM: the quantile at or just above the confidence, scaled back to instances.</summary>
public sealed class LstmForecaster(OnnxForecaster model) : IInstanceForecaster
{
    private readonly float[] _window = new float[model.WindowValues];
    private readonly float[] _quantiles = new float[model.Contract.Quantiles.Count];

    public string Name => "lstm";

    public int? Forecast(ApplicationHistory history, double confidence)
    {
        if (history.Count < model.Contract.Window)
        {
            return null;
        }

        var scale = history.WriteWindow(model.Contract.Window, _window);
        model.Predict(_window, 1, _quantiles);
        var index = 0;
        while (index < _quantiles.Length - 1 && model.Contract.Quantiles[index] < confidence - 1e-9)
        {
            index++;
        }

        return (int)Math.Ceiling(Math.Max(0, _quantiles[index] * scale) - 1e-4);
    }
}
