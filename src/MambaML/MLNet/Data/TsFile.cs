using System.Globalization;

namespace MambaML.MLNet;

/// <summary>One labelled series of a <c>.ts</c> file.</summary>
/// <param name="Values">Steps × channels values, time-major (the layout MambaML's sequence trainers read).</param>
/// <param name="Steps">Time steps.</param>
/// <param name="Channels">Values per step (dimensions).</param>
/// <param name="Label">Class label.</param>
public sealed record TsSeries(float[] Values, int Steps, int Channels, string Label);

/// <summary>
/// Reads the sktime/UCR/UEA <c>.ts</c> time-series classification format: <c>#</c> comments, <c>@</c> header lines, then one series
/// per line after <c>@data</c>, dimensions separated by <c>:</c> with the class label last, values by <c>,</c>.
/// </summary>
public static class TsFile
{
    /// <summary>Reads every series of <paramref name="path"/>.</summary>
    /// <exception cref="FormatException">A line does not follow the format; the message names the file and line.</exception>
    public static IReadOnlyList<TsSeries> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"The .ts file '{path}' does not exist.", path);
        using var reader = File.OpenText(path);
        return Read(reader, path);
    }

    /// <summary>Reads every series from <paramref name="reader"/>; <paramref name="name"/> names the source in errors.</summary>
    public static IReadOnlyList<TsSeries> Read(TextReader reader, string name)
    {
        var result = new List<TsSeries>();
        bool inData = false, hasLabel = true;
        int? dimensions = null;
        int lineNumber = 0;
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            lineNumber++;
            line = line.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            if (!inData)
            {
                var words = line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
                switch (words[0].ToLowerInvariant())
                {
                    case "@data": inData = true; break;
                    case "@dimensions":
                        dimensions = words.Length == 2 && int.TryParse(words[1], NumberStyles.None, CultureInfo.InvariantCulture, out int count) && count >= 1
                            ? count
                            : throw new FormatException($"{name}, line {lineNumber}: '{line}' should be '@dimensions N' with N a whole number >= 1.");
                        break;
                    case "@classlabel": hasLabel = words.Length > 1 && words[1].Equals("true", StringComparison.OrdinalIgnoreCase); break;
                    case "@timestamps" when words.Length > 1 && words[1].Equals("true", StringComparison.OrdinalIgnoreCase):
                        throw new FormatException($"{name}: series with timestamps are not supported.");
                }
                continue;
            }
            if (!hasLabel) throw new FormatException($"{name}: the file has no class labels (@classLabel false).");
            var fields = line.Split(':');
            int channels = fields.Length - 1;
            if (channels < 1 || (dimensions is { } d && channels != d))
                throw new FormatException($"{name}, line {lineNumber}: expected {dimensions?.ToString(CultureInfo.InvariantCulture) ?? "one or more"} dimensions and a label separated by ':', found {fields.Length} fields.");
            var perChannel = fields[..channels].Select(f => f.Split(',').Select(v => ParseValue(v, name, lineNumber)).ToArray()).ToArray();
            int steps = perChannel[0].Length;
            if (perChannel.Any(c => c.Length != steps))
                throw new FormatException($"{name}, line {lineNumber}: the dimensions have different lengths ({string.Join(", ", perChannel.Select(c => c.Length))}).");
            var values = new float[steps * channels];
            for (int t = 0; t < steps; t++)
                for (int c = 0; c < channels; c++) values[t * channels + c] = perChannel[c][t];
            string label = fields[^1].Trim();
            if (label.Length == 0) throw new FormatException($"{name}, line {lineNumber}: the class label (after the last ':') is empty.");
            result.Add(new TsSeries(values, steps, channels, label));
        }
        if (!inData) throw new FormatException($"{name}: no @data line found; is this a .ts file?");
        return result;
    }

    private static float ParseValue(string text, string name, int line)
    {
        text = text.Trim();
        if (text == "?") throw new FormatException($"{name}, line {line}: missing values ('?') are not supported; impute them first.");
        if (!float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            throw new FormatException($"{name}, line {line}: '{text}' is not a number.");
        // "NaN", "Infinity" and values beyond float's range (1e39) parse, but no model can learn from them.
        return float.IsFinite(value) ? value : throw new FormatException($"{name}, line {line}: '{text}' is not a finite float value.");
    }
}
