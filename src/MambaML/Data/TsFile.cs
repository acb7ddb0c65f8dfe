using System.Globalization;

namespace MambaML.Data;

/// <summary>
/// A labelled time-series dataset read from the <c>.ts</c> format of the UCR/UEA archives (sktime's format):
/// a header of <c>@key value</c> lines, then <c>@data</c> and one case per line, dimensions separated by <c>:</c>,
/// values by <c>,</c>, and the class label last.
/// </summary>
public sealed class TsFile
{
    /// <summary>The <c>@problemName</c> header, or the file name.</summary>
    public required string ProblemName { get; init; }
    /// <summary>Class labels in the order the header declares them.</summary>
    public required IReadOnlyList<string> ClassLabels { get; init; }
    /// <summary>Number of dimensions (channels) per time step.</summary>
    public required int Dimensions { get; init; }
    /// <summary>Each case's values, time-major: element <c>t · Dimensions + c</c> is channel c at step t.</summary>
    public required IReadOnlyList<float[]> Series { get; init; }
    /// <summary>Each case's class label.</summary>
    public required IReadOnlyList<string> Labels { get; init; }

    /// <summary>Number of time steps of case <paramref name="index"/>.</summary>
    public int LengthOf(int index) => Series[index].Length / Dimensions;

    /// <summary>Reads a <c>.ts</c> file.</summary>
    /// <exception cref="FormatException">The file is not in the <c>.ts</c> format; the message names the file and line.</exception>
    public static TsFile Read(string path)
    {
        string problem = Path.GetFileNameWithoutExtension(path);
        var classes = new List<string>();
        var series = new List<float[]>();
        var labels = new List<string>();
        int dimensions = -1;
        bool inData = false;
        int lineNo = 0;
        foreach (var rawLine in File.ReadLines(path))
        {
            lineNo++;
            var line = rawLine.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            if (!inData)
            {
                if (line[0] != '@') throw Bad(path, lineNo, "expected a header line starting with '@' before @data");
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                switch (parts[0].ToLowerInvariant())
                {
                    case "@problemname" when parts.Length > 1: problem = parts[1]; break;
                    case "@classlabel" when parts.Length > 2 && parts[1] == "true": classes.AddRange(parts[2..]); break;
                    case "@data": inData = true; break;
                }
                continue;
            }
            var fields = line.Split(':');
            if (fields.Length < 2) throw Bad(path, lineNo, "a case needs at least one dimension and a class label, separated by ':'");
            var dims = fields[..^1].Select(f => f.Split(',').Select(v => ParseValue(v, path, lineNo)).ToArray()).ToArray();
            if (dimensions == -1) dimensions = dims.Length;
            if (dims.Length != dimensions) throw Bad(path, lineNo, $"expected {dimensions} dimensions, found {dims.Length}");
            int length = dims[0].Length;
            if (dims.Any(d => d.Length != length)) throw Bad(path, lineNo, "dimensions of one case have different lengths");
            var values = new float[length * dimensions];
            for (int t = 0; t < length; t++) for (int c = 0; c < dimensions; c++) values[t * dimensions + c] = dims[c][t];
            var label = fields[^1].Trim();
            if (classes.Count > 0 && !classes.Contains(label)) throw Bad(path, lineNo, $"class label '{label}' is not declared in @classLabel");
            series.Add(values);
            labels.Add(label);
        }
        if (!inData || series.Count == 0) throw new FormatException($"{path}: no @data section with cases; is this a .ts file?");
        return new TsFile
        {
            ProblemName = problem, ClassLabels = classes.Count > 0 ? classes : labels.Distinct().Order().ToArray(),
            Dimensions = dimensions, Series = series, Labels = labels,
        };
    }

    private static float ParseValue(string v, string path, int line) =>
        v.Trim() == "?" ? float.NaN
        : float.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var x) ? x
        : throw Bad(path, line, $"'{v}' is not a number");

    private static FormatException Bad(string path, int line, string what) => new($"{path}, line {line}: {what}.");
}
