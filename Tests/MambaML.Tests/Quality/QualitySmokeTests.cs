using MambaML.Benchmarks;
using MambaML.Benchmarks.Classification;
using MambaML.Benchmarks.Forecasting;
using MambaML.MLNet;

namespace MambaML.Tests.Quality;

/// <summary>
/// CI smoke tests of the quality suites (forecast-ett, classify-ucr): quick runs of the suites' own code through the public
/// ML.NET API that must complete and beat the trivial baselines (not the quality targets). They use the shared data folder where
/// present (ETTh1, GunPoint) and embedded synthetic data otherwise.
/// </summary>
[TestClass]
public sealed class QualitySmokeTests
{
    [TestMethod]
    public void ForecastEtt_Quick_BeatsRepeatLastValue()
    {
        var path = SharedData.Path("ett", "ETTh1.csv");
        // ETTh1 has 8,449 train windows at horizon 96: every 32nd keeps the run to seconds on 2 cores.
        var (data, stride, epochs) = path is null ? (SeasonalEtt(), 4, 3) : (EttDataset.Load(path), 32, 1);
        var quick = new BenchmarkOptions(Quick: true, DataDirectory: null, Args: new[] { "--epochs", epochs.ToString(), "--d-model", "32", "--layers", "1" });

        var results = ForecastEttSuite.Evaluate(data, ForecastEttSuite.Lookback, new[] { 96 }, () => ForecastEttSuite.MambaOptions(quick, data.StepsPerDay), stride);

        var mamba = results.Single(r => r.Horizon == 96 && r.Model.StartsWith("Mamba", StringComparison.Ordinal));
        var repeat = results.Single(r => r.Horizon == 96 && r.Model == new RepeatLastValue(96).Name);
        Assert.IsTrue(double.IsFinite(mamba.Mse) && mamba.Mse < repeat.Mse,
            $"{data.Name}: Mamba test MSE {mamba.Mse:F3} does not beat repeat-last-value {repeat.Mse:F3}");
    }

    [TestMethod]
    public void ClassifyUcr_Quick_BeatsMajorityClass()
    {
        var trainPath = SharedData.Path("ucr", "GunPoint", "GunPoint_TRAIN.ts");
        var testPath = SharedData.Path("ucr", "GunPoint", "GunPoint_TEST.ts");
        var (train, test) = trainPath is null || testPath is null
            ? (Shapes(60, seed: 1), Shapes(90, seed: 2))
            : (TsFile.Read(trainPath), TsFile.Read(testPath));
        var options = ClassifyUcrSuite.MambaOptions(new BenchmarkOptions(Quick: true, DataDirectory: null, Args: new[] { "--epochs", "10" }));

        double mamba = UcrModels.Mamba(train, test, seed: 0, options);
        double majority = UcrModels.MajorityClass(train, test);
        Console.WriteLine($"{(trainPath is null ? "synthetic shapes" : "GunPoint")}: Mamba accuracy {mamba:F3}, majority class {majority:F3}");

        Assert.IsTrue(mamba > majority, $"Mamba test accuracy {mamba:F3} does not beat the majority class {majority:F3}");
    }

    /// <summary>ETT-shaped synthetic data: 7 channels of daily and weekly cycles with noise, 96 rows per "month".</summary>
    private static EttDataset SeasonalEtt()
    {
        const int rowsPerMonth = 96, channels = 7;
        var rng = new Random(5);
        var values = new float[20 * rowsPerMonth, channels];
        for (int t = 0; t < values.GetLength(0); t++)
            for (int c = 0; c < channels; c++)
                values[t, c] = (float)((1 + 0.2 * c) * Math.Sin(2 * Math.PI * t / 24 + c) + 0.5 * Math.Sin(2 * Math.PI * t / 168) + 0.2 * rng.NextDouble());
        return EttDataset.FromValues("seasonal-synthetic", Enumerable.Range(0, channels).Select(c => $"S{c}").ToArray(), values, rowsPerMonth, stepsPerDay: 24);
    }

    /// <summary>The sine/square/ramp sequences of the ML.NET tests as UCR-style cases.</summary>
    private static TsSeries[] Shapes(int count, int seed) =>
        MLNet.Synthetic.Shapes(count, minLength: 48, maxLength: 48, seed: seed).Select(s => new TsSeries(s.Features, 48, 1, s.Shape)).ToArray();
}
