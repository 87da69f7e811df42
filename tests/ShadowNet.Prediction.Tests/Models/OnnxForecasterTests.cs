using System.Text.Json;
using ShadowNet.Prediction.Features;
using ShadowNet.Prediction.Models;

namespace ShadowNet.Prediction.Tests.Models;

public class OnnxForecasterTests
{
    private static IReadOnlyList<string> Pipeline => ApplicationHistory.FeatureNames;
    private static string Model => Repository.File("models", "shadownet-lstm.onnx");

    [Fact]
    public void CommittedModelReproducesThePyTorchTestVectorWithinOneTenThousandth()
    {
        using var forecaster = OnnxForecaster.Load(Model, Pipeline);
        using var vector = JsonDocument.Parse(File.ReadAllText(Repository.File("models", "shadownet-lstm.testvector.json")));
        var inputs = vector.RootElement.GetProperty("features").EnumerateArray()
            .SelectMany(w => w.EnumerateArray().SelectMany(step => step.EnumerateArray().Select(v => v.GetSingle()))).ToArray();
        var expected = vector.RootElement.GetProperty("quantiles").EnumerateArray()
            .SelectMany(q => q.EnumerateArray().Select(v => v.GetSingle())).ToArray();
        var count = inputs.Length / forecaster.WindowValues;
        Assert.True(count >= 8, $"test vector has {count} windows");

        var actual = new float[count * forecaster.Contract.Quantiles.Count];
        forecaster.Predict(inputs, count, actual);
        Assert.All(actual.Zip(expected), p => Assert.InRange(p.First, p.Second - 1e-4f, p.Second + 1e-4f));

        // A batch of one gives the same answer as its place in the batch.
        var single = new float[forecaster.Contract.Quantiles.Count];
        forecaster.Predict(inputs.AsSpan(forecaster.WindowValues * 3, forecaster.WindowValues), 1, single);
        Assert.All(single.Zip(expected.Skip(3 * single.Length)), p => Assert.InRange(p.First, p.Second - 1e-4f, p.Second + 1e-4f));
    }

    [Fact]
    public void BatchRunInChunksGivesEachWindowTheAnswerItGetsAlone()
    {
        // 293 windows: three runs of 98, the last padded by one, the first on this thread and two on the
        // helper's session; then a small batch and the large one again (the bound tensors change size);
        // each window against its own run.
        using var forecaster = OnnxForecaster.Load(Model, Pipeline, threads: 2);
        var count = (2 * OnnxForecaster.ChunkWindows) + 37;
        var random = new Random(5);
        var inputs = new float[count * forecaster.WindowValues];
        for (var i = 0; i < inputs.Length; i++)
        {
            inputs[i] = (float)random.NextDouble();
        }

        var q = forecaster.Contract.Quantiles.Count;
        var alone = new float[count * q];
        for (var w = 0; w < count; w++)
        {
            forecaster.Predict(inputs.AsSpan(w * forecaster.WindowValues, forecaster.WindowValues), 1, alone.AsSpan(w * q, q));
        }

        foreach (var batch in new[] { count, 3, count })
        {
            var together = new float[batch * q];
            forecaster.Predict(inputs, batch, together);
            Assert.All(together.Zip(alone), p => Assert.InRange(p.First, p.Second - 1e-5f, p.Second + 1e-5f));
        }
    }

    [Fact]
    public void CommittedModelCarriesTheContractThePipelineNeeds()
    {
        using var forecaster = OnnxForecaster.Load(Model, Pipeline);
        Assert.Equal((36, 300, 1), (forecaster.Contract.Window, forecaster.Contract.StepSeconds, forecaster.Contract.HorizonSteps));
        Assert.Equal([0.5, 0.9, 0.99, 0.999], forecaster.Contract.Quantiles);
    }

    [Fact]
    public void ModelAskingForAFeatureThePipelineLacksIsRefusedNamingIt()
    {
        var error = Assert.Throws<ModelRejectedException>(() => OnnxForecaster.Load(Model, ["instances", "load", "cpu"]));
        Assert.Equal($"model '{Model}' expects feature 'hour_sin', which the pipeline does not produce (it produces [instances, load, cpu])", error.Message);
    }

    [Fact]
    public void TruncatedGarbageAndMissingFilesAreRefusedNamingTheFile()
    {
        using var folder = new TempDirectory("model");
        var truncated = folder.File("truncated.onnx");
        var bytes = File.ReadAllBytes(Model);
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        var garbage = folder.File("garbage.onnx");
        File.WriteAllText(garbage, "not a model");

        Assert.StartsWith($"model '{truncated}' cannot be loaded (damaged or not ONNX)", Assert.Throws<ModelRejectedException>(() => OnnxForecaster.Load(truncated, Pipeline)).Message, StringComparison.Ordinal);
        Assert.StartsWith($"model '{garbage}' cannot be loaded (damaged or not ONNX)", Assert.Throws<ModelRejectedException>(() => OnnxForecaster.Load(garbage, Pipeline)).Message, StringComparison.Ordinal);
        Assert.Equal($"model '{folder.File("none.onnx")}' does not exist", Assert.Throws<ModelRejectedException>(() => OnnxForecaster.Load(folder.File("none.onnx"), Pipeline)).Message);
    }

    public static TheoryData<string?, string> BadContracts() => new()
    {
        { null, "model 'm.onnx' has no 'shadownet.contract' metadata: not a ShadowNet model (export it with models/train.py)" },
        { "{", "model 'm.onnx': its contract is not valid JSON" },
        { """{"version":2,"features":["a"],"window":3,"step_seconds":300,"horizon_steps":1,"quantiles":[0.5]}""", "model 'm.onnx': contract version 2; this build reads version 1" },
        { """{"version":1,"features":[],"window":3,"step_seconds":300,"horizon_steps":1,"quantiles":[0.5]}""", "model 'm.onnx': no features" },
        { """{"version":1,"features":["a"],"window":0,"step_seconds":300,"horizon_steps":1,"quantiles":[0.5]}""", "model 'm.onnx': window 0 is not from 1 to 10000 steps" },
        { """{"version":1,"features":["a"],"window":3,"step_seconds":300,"horizon_steps":1,"quantiles":[0.9,0.5]}""", "model 'm.onnx': quantiles [0.9, 0.5] are not increasing values between 0 and 1" },
    };

    [Theory]
    [MemberData(nameof(BadContracts))]
    public void BadContractIsRefusedWithItsProblem(string? json, string message)
    {
        var error = Assert.Throws<ModelRejectedException>(() => ModelContract.Parse("m.onnx", json));
        Assert.StartsWith(message, error.Message, StringComparison.Ordinal);
    }
}
