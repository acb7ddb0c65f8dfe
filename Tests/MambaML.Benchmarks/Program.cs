using System.Text.Json;

namespace MambaML.Benchmarks;

/// <summary>Entry point: <c>MambaML.Benchmarks SUITE [--quick] [--data DIR] [--json FILE] [suite args]</c>.</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        var suites = typeof(Program).Assembly.GetTypes()
            .Where(t => typeof(IBenchmarkSuite).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
            .Select(t => (IBenchmarkSuite)Activator.CreateInstance(t)!)
            .OrderBy(s => s.Name).ToDictionary(s => s.Name);
        if (args.Length == 0 || !suites.TryGetValue(args[0], out var suite))
        {
            Console.Error.WriteLine("usage: MambaML.Benchmarks SUITE [--quick] [--data DIR] [--json FILE] [args]\nsuites:");
            foreach (var s in suites.Values) Console.Error.WriteLine($"  {s.Name,-16} {s.Description}");
            return 2;
        }
        bool quick = false; string? json = null; string? data = null; var rest = new List<string>();
        for (int i = 1; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--quick": quick = true; break;
                case "--json": json = args[++i]; break;
                case "--data": data = args[++i]; break;
                default: rest.Add(args[i]); break;
            }
        }
        data ??= FindSharedData();
        var headline = new Dictionary<string, object> { ["suite"] = suite.Name };
        foreach (var (k, v) in suite.Run(new BenchmarkOptions(quick, data, rest))) headline[k] = v;
        string line = JsonSerializer.Serialize(headline);
        if (json is not null) File.WriteAllText(json, line + Environment.NewLine);
        Console.WriteLine(line);
        return 0;
    }

    /// <summary>The shared data folder (../shared/data from the repository root), if present.</summary>
    private static string? FindSharedData()
    {
        var env = Environment.GetEnvironmentVariable("MAMBAML_DATA");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(env)) return env;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "..", "shared", "data");
            if (File.Exists(Path.Combine(dir.FullName, "MambaML.sln")) && Directory.Exists(candidate)) return Path.GetFullPath(candidate);
        }
        return null;
    }
}
