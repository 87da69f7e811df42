using System.Text;

namespace ShadowNet.Cli.Controller;

/// <summary>Plain aligned text tables: greppable, and stable when stdout is not a terminal.</summary>
internal static class Table
{
    public static string Columns(string[] headers, IEnumerable<string[]> rows)
    {
        var all = rows.Prepend(headers).ToList();
        var widths = headers.Select((_, i) => all.Max(r => r[i].Length)).ToArray();
        var text = new StringBuilder();
        foreach (var row in all)
        {
            text.AppendJoin("  ", row.Select((cell, i) => i == row.Length - 1 ? cell : cell.PadRight(widths[i]))).Append('\n');
        }

        return text.ToString();
    }

    public static string Rows(params string[][] rows)
    {
        var width = rows.Max(r => r[0].Length);
        return string.Concat(rows.Select(r => $"{(r[0] + ":").PadRight(width + 1)} {r[1]}\n"));
    }
}
