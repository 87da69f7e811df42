using System.Text.Json;
using System.Text.Json.Serialization;

namespace ShadowNet.Prediction.Models;

/// <summary>A model that cannot be used; the message names the file and what is wrong with it.</summary>
public sealed class ModelRejectedException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// What a model expects and returns, carried in its ONNX metadata under <see cref="MetadataKey"/>
/// (written by models/train.py): feature names in order, window length, step, horizon, quantiles.
/// </summary>
public sealed record ModelContract
{
    public const string MetadataKey = "shadownet.contract";
    public const int SupportedVersion = 1;

    [JsonPropertyName("version")]
    public int Version { get; init; }

    [JsonPropertyName("features")]
    public required IReadOnlyList<string> Features { get; init; }

    [JsonPropertyName("window")]
    public int Window { get; init; }

    [JsonPropertyName("step_seconds")]
    public int StepSeconds { get; init; }

    [JsonPropertyName("horizon_steps")]
    public int HorizonSteps { get; init; }

    [JsonPropertyName("quantiles")]
    public required IReadOnlyList<double> Quantiles { get; init; }

    /// <summary>Parses the metadata text; anything missing or out of range is a <see cref="ModelRejectedException"/>.</summary>
    public static ModelContract Parse(string source, string? json)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            throw new ModelRejectedException($"model '{source}' has no '{MetadataKey}' metadata: not a ShadowNet model (export it with models/train.py)");
        }

        ModelContract? contract;
        try
        {
            contract = JsonSerializer.Deserialize<ModelContract>(json);
        }
        catch (JsonException e)
        {
            throw new ModelRejectedException($"model '{source}': its contract is not valid JSON ({e.Message})", e);
        }

        if (contract is null)
        {
            throw new ModelRejectedException($"model '{source}': its contract is empty");
        }

        string? problem = contract switch
        {
            { Version: not SupportedVersion } => $"contract version {contract.Version}; this build reads version {SupportedVersion}",
            { Features.Count: 0 } => "no features",
            { Window: < 1 or > 10_000 } => $"window {contract.Window} is not from 1 to 10000 steps",
            { StepSeconds: < 1 } => $"step of {contract.StepSeconds} s",
            { HorizonSteps: < 1 } => $"horizon of {contract.HorizonSteps} steps",
            { Quantiles.Count: 0 } => "no quantiles",
            _ when contract.Quantiles.Any(q => q is <= 0 or >= 1) || !contract.Quantiles.SequenceEqual(contract.Quantiles.Order()) =>
                $"quantiles [{string.Join(", ", contract.Quantiles)}] are not increasing values between 0 and 1",
            _ => null,
        };
        return problem is null ? contract : throw new ModelRejectedException($"model '{source}': {problem}");
    }

    /// <summary>
    /// The model's normalised forecast at <paramref name="confidence"/>, from its outputs for one window:
    /// a quantile's own output at that quantile; between two, interpolated along the logarithm of the
    /// tail probability (1 - q), so that 0.995 lies a third of the way from 0.99 to 0.999 as an
    /// exponential tail would put it; below the first or above the last, that quantile's output.
    /// </summary>
    public float AtConfidence(ReadOnlySpan<float> outputs, double confidence)
    {
        var upper = QuantileIndex(confidence);
        if (upper == 0 || Quantiles[upper] < confidence || Math.Abs(Quantiles[upper] - confidence) < 1e-9)
        {
            return outputs[upper];
        }

        var lower = upper - 1;
        var t = (Math.Log(1 - confidence) - Math.Log(1 - Quantiles[lower])) / (Math.Log(1 - Quantiles[upper]) - Math.Log(1 - Quantiles[lower]));
        return (float)(outputs[lower] + (t * (outputs[upper] - outputs[lower])));
    }

    /// <summary>The first quantile at or above <paramref name="confidence"/> (the last one if none is).</summary>
    private int QuantileIndex(double confidence)
    {
        var index = 0;
        while (index < Quantiles.Count - 1 && Quantiles[index] < confidence - 1e-9)
        {
            index++;
        }

        return index;
    }

    /// <summary>Refuses a model that asks for a feature the pipeline does not produce, or for one twice (any order is fine).</summary>
    public void CheckFeatures(string source, IReadOnlyList<string> pipeline)
    {
        foreach (var feature in Features)
        {
            if (!pipeline.Contains(feature, StringComparer.Ordinal))
            {
                throw new ModelRejectedException(
                    $"model '{source}' expects feature '{feature}', which the pipeline does not produce (it produces [{string.Join(", ", pipeline)}])");
            }
        }

        if (Features.Distinct(StringComparer.Ordinal).Count() != Features.Count)
        {
            throw new ModelRejectedException($"model '{source}' names a feature twice: [{string.Join(", ", Features)}]");
        }
    }
}
