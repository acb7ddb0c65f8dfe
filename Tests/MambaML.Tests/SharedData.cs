namespace MambaML.Tests;

/// <summary>Finds files of the shared data folder (../shared/data beside the repository), which users and some CI runs lack.</summary>
internal static class SharedData
{
    /// <summary>The full path of a file under the shared data folder, or null where the folder or file is absent.</summary>
    public static string? Path(params string[] parts)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (!File.Exists(System.IO.Path.Combine(dir.FullName, "MambaML.sln"))) continue;
            var file = System.IO.Path.Combine(new[] { dir.FullName, "..", "shared", "data" }.Concat(parts).ToArray());
            return File.Exists(file) ? System.IO.Path.GetFullPath(file) : null;
        }
        return null;
    }
}
