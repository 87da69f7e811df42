using System.Runtime.InteropServices;

namespace ShadowNet.Hooks.Udp;

/// <summary>The calling thread's nice value (Linux: a thread's own scheduling weight, by its thread id).</summary>
internal static partial class ThreadNice
{
    private const int PrioProcess = 0;

    /// <summary>Sets it; returns null on success, else why not (the thread then keeps its priority).</summary>
    public static string? TrySet(int nice)
    {
        if (!OperatingSystem.IsLinux())
        {
            return "thread priorities are set on Linux only";
        }

        if (SetPriority(PrioProcess, (uint)GetThreadId(), nice) == 0)
        {
            return null;
        }

        var error = Marshal.GetLastPInvokeError();
        return error is 1 or 13 // EPERM, EACCES
            ? $"nice {nice} needs CAP_SYS_NICE (or a matching RLIMIT_NICE)"
            : $"setpriority failed with errno {error}";
    }

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    private static partial int SetPriority(int which, uint who, int priority);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetThreadId();
}
