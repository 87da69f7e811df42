using ShadowNet.Prediction.Models;

namespace ShadowNet.Prediction.Tests.Models;

public class ModelContractTests
{
    private static readonly ModelContract Contract = ModelContract.Parse("test",
        """{"version": 1, "features": ["instances"], "window": 4, "step_seconds": 300, "horizon_steps": 1, "quantiles": [0.5, 0.9, 0.99, 0.999]}""");

    private static readonly float[] Outputs = [1, 2, 4, 10];

    [Theory]
    [InlineData(0.5, 1)]
    [InlineData(0.9, 2)]
    [InlineData(0.99, 4)]
    [InlineData(0.999, 10)]
    [InlineData(0.2, 1)]     // below the first quantile: the first
    [InlineData(0.9999, 10)] // above the last: the last
    public void AConfidenceAtOrOutsideTheQuantilesTakesThatQuantilesOutput(double confidence, float expected) =>
        Assert.Equal(expected, Contract.AtConfidence(Outputs, confidence));

    [Fact]
    public void BetweenTwoQuantilesTheForecastFollowsTheLogarithmOfTheTailProbability()
    {
        // ln(1 - c) from ln 0.01 to ln 0.001: 0.995 is ln 2 / ln 10 = 0.301 of the way, 0.997 is 0.523.
        Assert.Equal(4 + (6 * (Math.Log(2) / Math.Log(10))), Contract.AtConfidence(Outputs, 0.995), 4);
        Assert.Equal(4 + (6 * (Math.Log(10.0 / 3) / Math.Log(10))), Contract.AtConfidence(Outputs, 0.997), 4);
        Assert.Equal(1 + (1 * (Math.Log(5.0 / 3) / Math.Log(5))), Contract.AtConfidence(Outputs, 0.7), 4);
        var rising = new[] { 0.6, 0.8, 0.95, 0.992, 0.995, 0.998 }.Select(c => Contract.AtConfidence(Outputs, c)).ToArray();
        Assert.True(rising.SequenceEqual(rising.Order()) && rising.Distinct().Count() == rising.Length, string.Join(", ", rising));
    }
}
