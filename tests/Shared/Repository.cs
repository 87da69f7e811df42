namespace ShadowNet.Tests.Shared;

/// <summary>The repository checkout the tests run from (the folder holding ShadowNet.sln).</summary>
internal static class Repository
{
    public static string Root
    {
        get
        {
            var directory = new DirectoryInfo(AppContext.BaseDirectory);
            while (directory is not null && !System.IO.File.Exists(Path.Combine(directory.FullName, "ShadowNet.sln")))
            {
                directory = directory.Parent;
            }

            return directory?.FullName ?? throw new DirectoryNotFoundException("no ShadowNet.sln above " + AppContext.BaseDirectory);
        }
    }

    public static string File(params string[] parts) => Path.Combine([Root, .. parts]);
}
