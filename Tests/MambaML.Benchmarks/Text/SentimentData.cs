namespace MambaML.Benchmarks.Text;

/// <summary>A labelled sentence.</summary>
internal sealed class SentenceRow
{
    public string Text { get; set; } = "";
    public string Label { get; set; } = "";
}

/// <summary>The UCI "sentiment labelled sentences" files (sentence TAB 0|1) and the fixed stratified 80/20 split per seed.</summary>
internal static class SentimentData
{
    public static SentenceRow[] Read(string path) => File.ReadLines(path)
        .Where(l => l.Contains('\t'))
        .Select(l => { int tab = l.LastIndexOf('\t'); return new SentenceRow { Text = l[..tab].Trim(), Label = l[(tab + 1)..].Trim() }; })
        .ToArray();

    /// <summary>80/20 within each label, shuffled by <paramref name="seed"/>: the same seed gives the same split.</summary>
    public static (SentenceRow[] Train, SentenceRow[] Test) Split(SentenceRow[] rows, int seed)
    {
        var rng = new Random(seed);
        var train = new List<SentenceRow>();
        var test = new List<SentenceRow>();
        foreach (var group in rows.GroupBy(r => r.Label).OrderBy(g => g.Key))
        {
            var shuffled = group.OrderBy(_ => rng.Next()).ToArray();
            int cut = (int)Math.Round(shuffled.Length * 0.8);
            train.AddRange(shuffled[..cut]);
            test.AddRange(shuffled[cut..]);
        }
        return (train.ToArray(), test.ToArray());
    }
}
