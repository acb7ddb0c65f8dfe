using System.Globalization;

namespace MambaML.Benchmarks;

/// <summary>Reads "--name value" pairs of a suite's own arguments.</summary>
internal sealed class ArgParser(IReadOnlyList<string> args)
{
    public string String(string name, string fallback)
    {
        for (int i = 0; i < args.Count - 1; i++) if (args[i] == name) return args[i + 1];
        return fallback;
    }

    public int Int(string name, int fallback) => int.Parse(String(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
    public double Double(string name, double fallback) => double.Parse(String(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
}
