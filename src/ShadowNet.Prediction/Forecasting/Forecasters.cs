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

/// <summary>The baselines by the names configuration and <c>--policy</c> use.</summary>
public static class Baselines
{
    public const string Names = "reactive, seasonal-naive, ewma or static-warm:K";

    /// <summary>
    /// <c>reactive</c>, <c>seasonal-naive</c> (a day of <paramref name="stepSeconds"/> steps, a horizon of 3),
    /// <c>ewma</c>, or <c>static-warm:K</c>; false for anything else.
    /// </summary>
    public static bool TryCreate(string name, int stepSeconds, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IInstanceForecaster? forecaster)
    {
        forecaster = name switch
        {
            "reactive" => new ReactiveForecaster(),
            "seasonal-naive" => new SeasonalNaiveForecaster(Math.Max(1, 86_400 / stepSeconds), 3),
            "ewma" => new EwmaForecaster(),
            _ when name.StartsWith("static-warm:", StringComparison.Ordinal)
                && int.TryParse(name["static-warm:".Length..], System.Globalization.CultureInfo.InvariantCulture, out var warm) && warm >= 0 => new StaticWarmForecaster(warm),
            _ => null,
        };
        return forecaster is not null;
    }
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

/// <summary>The ONNX LSTM: its forecast at the confidence (see <see cref="ModelContract.AtConfidence"/>), scaled back to instances.</summary>
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

        var scale = history.WriteWindow(model.Layout, model.Contract.Window, _window);
        model.Predict(_window, 1, _quantiles);
        return ToInstances(model.Contract.AtConfidence(_quantiles, confidence), scale);
    }

    /// <summary>A model output (instances / the window's scale) back to whole instances.</summary>
    public static int ToInstances(float normalised, float scale) => (int)Math.Ceiling(Math.Max(0, normalised * scale) - 1e-4);
}

/// <summary>
/// Exponentially weighted mean and variance of the instance count (half-life <paramref name="halfLifeSteps"/>),
/// forecasting the mean plus the normal quantile of the confidence times the deviation.
/// </summary>
public sealed class EwmaForecaster(int halfLifeSteps = 12) : IInstanceForecaster
{
    private readonly double _alpha = 1 - Math.Pow(0.5, 1.0 / halfLifeSteps);

    public string Name => "ewma";

    public int? Forecast(ApplicationHistory history, double confidence)
    {
        if (history.Count == 0)
        {
            return null;
        }

        double mean = history.InstancesAt(history.Count - 1), variance = 0;
        for (var back = history.Count - 2; back >= 0; back--)
        {
            var difference = history.InstancesAt(back) - mean;
            var increment = _alpha * difference;
            mean += increment;
            variance = (1 - _alpha) * (variance + (difference * increment));
        }

        return (int)Math.Ceiling(Math.Max(history.Latest().Instances, mean + (NormalQuantile(confidence) * Math.Sqrt(variance))) - 1e-9);
    }

    /// <summary>The standard normal quantile (Acklam's rational approximation, relative error below 1.2e-9).</summary>
    internal static double NormalQuantile(double p)
    {
        double[] a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.3577518672690, -30.66479806614716, 2.506628277459239];
        double[] b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
        double[] c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
        double[] d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
        if (p < 0.02425)
        {
            var q = Math.Sqrt(-2 * Math.Log(p));
            return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        }

        if (p > 1 - 0.02425)
        {
            return -NormalQuantile(1 - p);
        }

        var r = p - 0.5;
        var s = r * r;
        return (((((a[0] * s + a[1]) * s + a[2]) * s + a[3]) * s + a[4]) * s + a[5]) * r / (((((b[0] * s + b[1]) * s + b[2]) * s + b[3]) * s + b[4]) * s + 1);
    }
}
