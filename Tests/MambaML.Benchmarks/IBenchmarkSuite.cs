namespace MambaML.Benchmarks;

/// <summary>One benchmark suite, run by name: <c>./build.sh bench NAME [--quick] [--json FILE]</c>.</summary>
internal interface IBenchmarkSuite
{
    /// <summary>The name on the command line, e.g. "scan-cpu".</summary>
    string Name { get; }
    /// <summary>One line for the usage text.</summary>
    string Description { get; }
    /// <summary>
    /// Runs the suite: prints a Markdown table, and returns the headline numbers, which the caller prints as the last line
    /// (a JSON object whose "suite" is <see cref="Name"/>).
    /// </summary>
    IReadOnlyDictionary<string, object> Run(BenchmarkOptions options);
}

/// <summary>Command-line options every suite understands.</summary>
/// <param name="Quick">Fewer repetitions (never smaller shapes, unless a suite says otherwise).</param>
/// <param name="DataDirectory">The shared data folder, when present.</param>
/// <param name="Args">The remaining suite-specific arguments.</param>
internal sealed record BenchmarkOptions(bool Quick, string? DataDirectory, IReadOnlyList<string> Args);
