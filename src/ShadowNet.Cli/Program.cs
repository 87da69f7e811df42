using System.CommandLine;
using ShadowNet.Cli.Bgp;

var bgp = new Command("bgp", "BGP tools: announce routes to a router, decode captured messages")
{
    AnnounceCommand.Create(),
    DecodeCommand.Create(),
};
var root = new RootCommand("shadownet: the ShadowNet command line") { bgp };
return await root.Parse(args).InvokeAsync();
