using System.CommandLine;
using System.Text.Json;
using ShadowNet.Addressing;
using ShadowNet.Api.V1;
using ShadowNet.Controller.State;
using ShadowNet.Controller.Telemetry;

namespace ShadowNet.Cli.Controller;

/// <summary>
/// <c>shadownet export-training-data</c>: every miss the daemon recorded, with its metric window, as the
/// JSON lines <c>models/train.sh --from FILE</c> reads (the miss log's format).
/// </summary>
internal static class ExportTrainingDataCommand
{
    public static Command Create()
    {
        var output = new Option<FileInfo?>("--out") { Description = "File to write (default: standard output)" };
        var command = new Command("export-training-data", "Write the recorded misses and their metric windows as JSON lines for models/train.sh --from") { output };
        command.SetAction(async (parse, ct) => await ControllerCommands.RunAsync(parse, async api =>
        {
            var target = parse.GetValue(output);
            await using var stream = target is null ? Console.OpenStandardOutput() : File.Create(target.FullName);
            await using var json = new Utf8JsonWriter(stream);
            long after = 0, written = 0;
            while (true)
            {
                var page = await api.ListMissesAsync(new ListMissesRequest { AfterId = after, Limit = 1000 }, cancellationToken: ct);
                foreach (var miss in page.Misses)
                {
                    MissLog.WriteJson(json, new MissRecord(miss.Time.ToDateTimeOffset().ToUnixTimeMilliseconds(), miss.Application, miss.Instance,
                        Address.Parse(miss.Address), miss.Host.Length > 0 ? Address.Parse(miss.Host) : null, miss.WindowJson.Length > 0 ? miss.WindowJson : null));
                    await json.FlushAsync(ct);
                    json.Reset();
                    stream.WriteByte((byte)'\n');
                    after = miss.Id;
                    written++;
                }

                if (page.Misses.Count < 1000)
                {
                    break;
                }
            }

            if (target is not null)
            {
                Console.Error.WriteLine($"{written} misses written to {target.FullName}");
            }
        }));
        return command;
    }
}
