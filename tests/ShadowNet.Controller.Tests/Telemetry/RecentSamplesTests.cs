using System.Text.Json.Nodes;
using ShadowNet.Controller.Telemetry;

namespace ShadowNet.Controller.Tests.Telemetry;

public class RecentSamplesTests
{
    [Fact]
    public void KeepsTheLastSamplesOfEachApplicationOldestFirstWithOnlyTheValuesEachOneCarried()
    {
        var samples = new RecentSamples(capacity: 3);
        for (var i = 0; i < 5; i++)
        {
            var values = new Dictionary<string, double> { ["instances"] = i };
            if (i % 2 == 0)
            {
                values["deploys"] = 1;
            }

            Assert.True(samples.Add(new MetricSample(1000 + i, "web", values)));
        }

        var window = JsonNode.Parse(samples.WindowJson("web")!)!["samples"]!.AsArray();
        Assert.Equal([1002L, 1003L, 1004L], window.Select(s => (long)s!["timeMs"]!));
        Assert.Equal([2.0, 3.0, 4.0], window.Select(s => (double)s!["instances"]!));
        Assert.Equal([true, false, true], window.Select(s => s!.AsObject().ContainsKey("deploys")));
        Assert.Null(samples.WindowJson("db"));
    }

    [Fact]
    public void NamesBeyondTheLimitAndApplicationsBeyondTheLimitAreRefusedAndCounted()
    {
        var samples = new RecentSamples(capacity: 2, maxApplications: 2, maxNamesPerApplication: 2);
        Assert.True(samples.Add(new MetricSample(1, "web", new Dictionary<string, double> { ["a"] = 1, ["b"] = 2, ["c"] = 3 })));
        Assert.Equal(1, samples.DroppedValues);
        Assert.True(samples.Add(new MetricSample(1, "db", new Dictionary<string, double> { ["a"] = 1 })));
        Assert.False(samples.Add(new MetricSample(1, "third", new Dictionary<string, double> { ["a"] = 1 })));
        var web = JsonNode.Parse(samples.WindowJson("web")!)!["samples"]![0]!.AsObject();
        Assert.Equal(["timeMs", "a", "b"], web.Select(p => p.Key));
    }
}
