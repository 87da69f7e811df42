using System.CommandLine;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using ShadowNet.Api.V1;
using ShadowNet.Cli.Replay;

namespace ShadowNet.Cli.Controller;

/// <summary>
/// <c>shadownet report-metrics --csv FILE --application NAME</c>: the CSV input of the prediction engine.
/// Plays a file into shadownetd's ReportMetrics stream, so that a recorded series (an export from a
/// monitoring system, a NAB trace) feeds the forecaster exactly as a live collector would.
/// </summary>
internal static class ReportMetricsCommand
{
    public static Command Create()
    {
        var csv = new Option<FileInfo>("--csv")
        {
            Description = "A header 'timestamp,NAME,...' (names as ReportMetrics takes them: instances, load, requests_per_second, deploys, ...), "
                + "one row per sample; or a NAB trace 'timestamp,value', turned into instances and load by the replay contract",
            Required = true,
        };
        var application = new Option<string>("--application") { Description = "The application the samples belong to", Required = true };
        var peak = new Option<int>("--peak-instances") { Description = "NAB traces: instances at the trace's peak", DefaultValueFactory = _ => 100 };
        var interval = new Option<double?>("--interval")
        {
            Description = "Send one row every this many seconds, stamped with the current time (a live feed); "
                + "without it, every row is sent at once with its own timestamp (a backfill)",
        };
        var command = new Command("report-metrics", "Feed a CSV file of metrics to shadownetd's forecaster (the ReportMetrics stream)") { csv, application, peak, interval };
        command.SetAction(async (parse, ct) =>
        {
            var rows = Read(parse.GetValue(csv)!, parse.GetValue(peak));
            var name = parse.GetValue(application)!;
            var every = parse.GetValue(interval) is { } seconds
                ? seconds > 0 && seconds <= 86400 ? TimeSpan.FromSeconds(seconds) : throw new UsageException($"--interval: {seconds} is not from 0 to 86400 seconds")
                : (TimeSpan?)null;
            return await ControllerCommands.RunAsync(parse, async api =>
            {
                using var report = api.ReportMetrics(cancellationToken: ct);
                for (var i = 0; i < rows.Count; i++)
                {
                    if (every is { } pause && i > 0)
                    {
                        await Task.Delay(pause, ct);
                    }

                    var (time, values) = rows[i];
                    var sample = new MetricSample { Application = name, Time = Timestamp.FromDateTimeOffset(every is null ? time : DateTimeOffset.UtcNow) };
                    sample.Values.Add(values);
                    await report.RequestStream.WriteAsync(sample, ct);
                }

                await report.RequestStream.CompleteAsync();
                var reply = await report.ResponseAsync;
                Console.WriteLine($"{reply.Accepted} samples of {name} accepted");
            });
        });
        return command;
    }

    /// <summary>Rows of (time, values); a malformed row is a <see cref="UsageException"/> naming its line and column.</summary>
    internal static List<(DateTimeOffset Time, Dictionary<string, double> Values)> Read(FileInfo file, int peakInstances)
    {
        if (!file.Exists)
        {
            throw new UsageException($"--csv: {file.FullName} does not exist");
        }

        using var lines = File.ReadLines(file.FullName).GetEnumerator();
        var header = lines.MoveNext() ? lines.Current.Split(',').Select(h => h.Trim()).ToArray() : [];
        if (header.Length < 2 || !header[0].Equals("timestamp", StringComparison.OrdinalIgnoreCase))
        {
            throw new UsageException($"{file.Name} line 1: the header must be 'timestamp,NAME,...'");
        }

        if (header is [_, "value"])
        {
            if (peakInstances < 1)
            {
                throw new UsageException($"--peak-instances: {peakInstances} is not at least 1");
            }

            // A NAB trace: the load series becomes instances and load in instance units (DESIGN.md's replay contract).
            var trace = LoadTrace.Read(file);
            var instances = trace.Instances(peakInstances);
            return [.. trace.Times.Select((t, i) => (DateTimeOffset.FromUnixTimeSeconds(t), new Dictionary<string, double>
            {
                ["instances"] = instances[i],
                ["load"] = trace.LoadInInstances(i, peakInstances),
            }))];
        }

        if (header.Skip(1).FirstOrDefault(h => h.Length == 0) is not null || header.Distinct(StringComparer.Ordinal).Count() != header.Length)
        {
            throw new UsageException($"{file.Name} line 1: column names must be present and distinct");
        }

        var rows = new List<(DateTimeOffset, Dictionary<string, double>)>();
        var line = 1;
        while (lines.MoveNext())
        {
            line++;
            if (lines.Current.Length == 0)
            {
                continue;
            }

            var cells = lines.Current.Split(',');
            if (cells.Length != header.Length)
            {
                throw new UsageException($"{file.Name} line {line}: {cells.Length} cells; the header has {header.Length}");
            }

            if (!DateTimeOffset.TryParse(cells[0], CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var time))
            {
                throw new UsageException($"{file.Name} line {line}: timestamp '{cells[0]}' is not a date and time");
            }

            var values = new Dictionary<string, double>(StringComparer.Ordinal);
            for (var c = 1; c < cells.Length; c++)
            {
                if (cells[c].Length == 0)
                {
                    continue; // not measured in this row
                }

                if (!double.TryParse(cells[c], NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value))
                {
                    throw new UsageException($"{file.Name} line {line}: {header[c]} '{cells[c]}' is not a number");
                }

                values[header[c]] = value;
            }

            if (values.Count > 0)
            {
                rows.Add((time, values));
            }
        }

        return rows.Count > 0 ? rows : throw new UsageException($"{file.Name}: no rows");
    }
}
