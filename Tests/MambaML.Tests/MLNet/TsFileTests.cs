using MambaML.MLNet;

namespace MambaML.Tests.MLNet;

[TestClass]
public sealed class TsFileTests
{
    [TestMethod]
    public void Multivariate_IsReadTimeMajor_WithLabels()
    {
        const string text = """
            # a comment
            @problemName Tiny
            @univariate false
            @dimensions 2
            @classLabel true up down
            @data
            1,2,3:10,20,30:up
            4,5:40,50:down
            """;
        var series = TsFile.Read(new StringReader(text), "tiny.ts");
        Assert.AreEqual(2, series.Count);
        CollectionAssert.AreEqual(new float[] { 1, 10, 2, 20, 3, 30 }, series[0].Values);
        Assert.AreEqual(3, series[0].Steps);
        Assert.AreEqual(2, series[0].Channels);
        Assert.AreEqual("up", series[0].Label);
        Assert.AreEqual(2, series[1].Steps);
        Assert.AreEqual("down", series[1].Label);
    }

    [TestMethod]
    public void MalformedLines_NameFileAndLine()
    {
        var e = Assert.ThrowsExactly<FormatException>(() => TsFile.Read(new StringReader("@dimensions 2\n@data\n1,2:3,x:a\n"), "bad.ts"));
        StringAssert.Contains(e.Message, "bad.ts, line 3");
        StringAssert.Contains(e.Message, "'x'");
        e = Assert.ThrowsExactly<FormatException>(() => TsFile.Read(new StringReader("@data\n1,2:3:a\n"), "ragged.ts"));
        StringAssert.Contains(e.Message, "different lengths");
        e = Assert.ThrowsExactly<FormatException>(() => TsFile.Read(new StringReader("1,2,3\n"), "plain.csv"));
        StringAssert.Contains(e.Message, "@data");
        Assert.ThrowsExactly<FileNotFoundException>(() => TsFile.Read("/nonexistent/x.ts"));
        foreach (var (text, expected) in new[]
                 {
                     ("@dimensions\n@data\n1,2:a\n", "line 1: '@dimensions' should be '@dimensions N'"),
                     ("@dimensions two\n@data\n1,2:a\n", "line 1: '@dimensions two' should be"),
                     ("@data\n1,NaN,3:a\n", "line 2: 'NaN' is not a finite"),
                     ("@data\n1,1e39,3:a\n", "line 2: '1e39' is not a finite"),
                     ("@data\n1,2,3: \n", "line 2: the class label (after the last ':') is empty"),
                 })
        {
            var error = Assert.ThrowsExactly<FormatException>(() => TsFile.Read(new StringReader(text), "h.ts"), text);
            StringAssert.Contains(error.Message, "h.ts, " + expected);
        }
    }

    [TestMethod]
    public void SharedUcrFile_WhenPresent_ParsesAllSeries()
    {
        // The shared data sits beside the repository (../shared/data); CI machines may not have it.
        var root = new DirectoryInfo(AppContext.BaseDirectory);
        while (root is not null && !File.Exists(Path.Combine(root.FullName, "MambaML.sln"))) root = root.Parent;
        string path = Path.Combine(root?.FullName ?? ".", "..", "shared", "data", "ucr", "GunPoint", "GunPoint_TRAIN.ts");
        if (!File.Exists(path)) Assert.Inconclusive($"{path} is not available on this machine.");
        var series = TsFile.Read(path);
        Assert.AreEqual(50, series.Count);
        Assert.IsTrue(series.All(s => s.Steps == 150 && s.Channels == 1 && s.Label is "1" or "2"));
    }
}
