using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace ShadowNet.Cli.Demo;

/// <summary>The demo's live screen: forecast against actual per application, pools, hooks, BGP.</summary>
internal static class Dashboard
{
    private const string Bars = "▁▂▃▄▅▆▇█";

    public static IRenderable Render(DemoView view)
    {
        var progress = view.WarmingUp ? "[yellow]warming up the forecaster's window[/]" : $"step [aqua]{view.Step}[/]/{view.Steps}";
        var errors = view.Errors == 0 ? "[green]0[/]" : $"[red]{view.Errors}[/]";
        var header = new Markup(string.Create(CultureInfo.InvariantCulture,
            $"[bold]ShadowNet demo[/]  trace time [aqua]{view.TraceTime:yyyy-MM-dd HH:mm} UTC[/]  {progress}  events [aqua]{view.Events}[/]  errors {errors}"));

        var applications = new Table().Border(TableBorder.Rounded).Title("applications: forecast = most instances in the next 15 minutes")
            .AddColumn(new TableColumn("application").NoWrap())
            .AddColumns("by", "active", "p50/p90/p99", "staged", "hits", "misses")
            .AddColumn(new TableColumn("last 2 h: [green]actual[/]/[aqua]forecast[/]").NoWrap());
        foreach (var a in view.Applications)
        {
            var quantiles = a.Quantiles.Count == 0 ? "-" : string.Join("/", a.Quantiles.Select(q => q.Instances.ToString(CultureInfo.InvariantCulture)));
            var peak = Math.Max(1, a.RecentActive.Concat(a.RecentExpected).DefaultIfEmpty(1).Max());
            var hitRate = a.Creates == 0 ? "" : $" ({((double)a.Hits / a.Creates).ToString("P0", CultureInfo.InvariantCulture)})";
            applications.AddRow(
                new Text(a.Application), new Text(a.Forecaster), new Text(Number(a.Active)), new Text(quantiles), new Text(Number(a.Reserved)),
                new Markup($"[green]{a.Hits}[/]{hitRate}"), new Markup(a.Misses == 0 ? "0" : $"[red]{a.Misses}[/]"),
                new Markup($"[green]{Sparkline(a.RecentActive, peak)}[/]\n[aqua]{Sparkline(a.RecentExpected, peak)}[/]"));
        }

        var pools = new Table().Border(TableBorder.Rounded).Title("address pools").AddColumns("pool", "free", "staged", "active", "cooling");
        foreach (var p in view.Pools)
        {
            pools.AddRow(p.Pool, Number((long)(p.Size - p.Used)), Number(p.Reserved), Number(p.Assigned), Number(p.Quarantined));
        }

        var bgp = new Table().Border(TableBorder.Rounded).Title("BGP").AddColumns("peer", "session", "prefixes sent");
        foreach (var peer in view.Peers)
        {
            bgp.AddRow(new Text(peer.Peer), new Markup(peer.State == "Established" ? "[green]Established[/]" : $"[yellow]{peer.State}[/]"), new Text(Number(peer.PrefixesSent)));
        }

        bgp.AddRow("announced", "", Number(view.RoutesAnnounced));
        if (view.BirdRoutes is { } bird)
        {
            bgp.AddRow("held by BIRD", "", Number(bird));
        }

        var rows = new List<IRenderable> { header, applications, new Columns(pools, bgp) };
        foreach (var problem in view.Problems)
        {
            rows.Add(new Text(problem, new Style(Color.Red)));
        }

        rows.Add(new Text("While it runs, from another terminal:", new Style(decoration: Decoration.Dim)));
        rows.AddRange(view.TryCommands.Select(c => new Text("  " + c, new Style(decoration: Decoration.Dim))));
        return new Rows(rows);
    }

    public static void PrintSummary(DemoSummary summary, IAnsiConsole console)
    {
        var table = new Table().Border(TableBorder.Rounded).Title("summary").AddColumns("", "").HideHeaders();
        table.AddRow("steps (5 minutes of trace each)", Number(summary.Steps));
        table.AddRow("events (creates + deletes over the UDP hook)", Number(summary.Events));
        table.AddRow("creates that found a staged address (hits)", $"{summary.Hits} of {summary.Creates} ({summary.HitRate.ToString("P1", CultureInfo.InvariantCulture)})");
        table.AddRow("creates served from the dynamic pool (misses)", Number(summary.Misses));
        table.AddRow("mean staged but unused addresses / mean active", string.Create(CultureInfo.InvariantCulture, $"{summary.MeanReservedUnused:F1} / {summary.MeanActive:F1}"));
        table.AddRow("live instances at the end / routes announced", $"{summary.LiveInstances} / {summary.RoutesAnnounced}");
        if (summary.BirdRoutes is { } bird)
        {
            table.AddRow("routes held by BIRD at the end", Number(bird));
        }

        table.AddRow("forecasters", Markup.Escape(string.Join(", ", summary.Forecasters)));
        table.AddRow("errors", summary.Errors == 0 ? "[green]0[/]" : $"[red]{summary.Errors}[/]");
        console.Write(table);
        foreach (var problem in summary.Problems)
        {
            console.MarkupLineInterpolated($"[red]{problem}[/]");
        }
    }

    private static string Sparkline(IReadOnlyList<int> values, int peak) =>
        values.Count == 0 ? "" : new string([.. values.Select(v => Bars[Math.Clamp(v * (Bars.Length - 1) / peak, 0, Bars.Length - 1)])]);

    private static string Number(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
}
