using System.CommandLine;
using ShadowNet.Cli.Bgp;
using ShadowNet.Cli.Controller;
using ShadowNet.Cli.Demo;
using ShadowNet.Cli.Replay;

var bgp = new Command("bgp", "BGP tools: announce routes to a router, decode captured messages")
{
    AnnounceCommand.Create(),
    DecodeCommand.Create(),
};
var root = new RootCommand("shadownet: the ShadowNet command line") { DemoCommand.Create(), bgp, ReplayCommand.Create() };
foreach (var option in ControllerCommands.GlobalOptions)
{
    root.Options.Add(option);
}

foreach (var command in ControllerCommands.Create())
{
    root.Subcommands.Add(command);
}

try
{
    return await root.Parse(args).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (Exception e) when (e is UsageException or FormatException)
{
    Console.Error.WriteLine($"shadownet: {e.Message}");
    return 2;
}
