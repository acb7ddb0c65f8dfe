using System.Diagnostics;

namespace MambaML.Tests.MLNet;

/// <summary>
/// Save in one process, load in another: Tests/MambaML.RoundTrip fits and saves every task's pipeline, a second process loads
/// the zips and predicts. Predictions must match byte for byte, and a process that skips RegisterMambaML must be told to call it.
/// </summary>
[TestClass]
public sealed class FreshProcessTests
{
    [TestMethod]
    public void FitInOneProcess_LoadInAnother_BitIdenticalPredictions()
    {
        var dir = Directory.CreateTempSubdirectory("mambaml-roundtrip-").FullName;
        try
        {
            var fit = Run("fit", dir);
            Assert.AreEqual(0, fit.ExitCode, fit.Output);
            var load = Run("load", dir);
            Assert.AreEqual(0, load.ExitCode, load.Output);
            var fitted = Directory.GetFiles(dir, "*.fit.bin");
            Assert.IsTrue(fitted.Length >= 1, "the fit run wrote no predictions");
            foreach (var fitFile in fitted)
            {
                var loadFile = fitFile.Replace(".fit.bin", ".load.bin");
                var expected = File.ReadAllBytes(fitFile);
                Assert.IsTrue(expected.Length > 0, fitFile);
                CollectionAssert.AreEqual(expected, File.ReadAllBytes(loadFile), Path.GetFileName(loadFile));
            }

            var unregistered = Run("load-unregistered", dir);
            Assert.AreEqual(3, unregistered.ExitCode, unregistered.Output);
            StringAssert.Contains(unregistered.Output, "mlContext.RegisterMambaML()");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>Runs MambaML.RoundTrip.dll (copied next to the tests) with the tests' own dependency and runtime files.</summary>
    private static (int ExitCode, string Output) Run(string mode, string dir)
    {
        string baseDir = AppContext.BaseDirectory;
        string program = Path.Combine(baseDir, "MambaML.RoundTrip.dll");
        Assert.IsTrue(File.Exists(program), $"{program} is missing: the test project references Tests/MambaML.RoundTrip.");
        var start = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { "exec", "--depsfile", Path.Combine(baseDir, "MambaML.Tests.deps.json"),
                                    "--runtimeconfig", Path.Combine(baseDir, "MambaML.Tests.runtimeconfig.json"), program, mode, dir })
            start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout + stderr.Result);
    }

    private static string DotnetHost()
    {
        var current = Environment.ProcessPath;
        if (current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet") return current;
        return Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
    }
}
