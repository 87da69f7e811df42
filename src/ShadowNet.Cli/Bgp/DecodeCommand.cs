using System.CommandLine;

namespace ShadowNet.Cli.Bgp;

/// <summary><c>shadownet bgp decode</c>: hex BGP messages in, one JSON object per message out.</summary>
internal static class DecodeCommand
{
    public static Command Create()
    {
        var file = new Option<FileInfo?>("--file") { Description = "Read from this file instead of standard input" };
        var twoOctet = new Option<bool>("--two-octet-as") { Description = "Decode AS numbers as 2 octets (the session did not negotiate RFC 6793)" };
        var extended = new Option<bool>("--extended-message") { Description = "Accept messages up to 65535 octets (RFC 8654)" };
        var ebgp = new Option<uint?>("--ebgp-peer-as") { Description = "Check UPDATEs as coming from an external peer in this AS" };
        var command = new Command("decode", "Decode BGP messages given as hex, one per line, with or without the marker")
        {
            file, twoOctet, extended, ebgp,
        };
        command.SetAction(async (parse, ct) =>
        {
            var options = new DecodeOptions(!parse.GetValue(twoOctet), parse.GetValue(extended), parse.GetValue(ebgp));
            using var reader = parse.GetValue(file) is { } f ? new StreamReader(f.FullName) : new StreamReader(Console.OpenStandardInput());
            string? line;
            while ((line = await reader.ReadLineAsync(ct)) is not null)
            {
                if (string.IsNullOrWhiteSpace(line) || line.TrimStart().StartsWith('#'))
                    continue;
                await Console.Out.WriteLineAsync(MessageDecoder.DecodeLine(line, options));
            }
            return 0;
        });
        return command;
    }
}
