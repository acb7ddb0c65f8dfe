using MambaML.Data;

namespace MambaML.Tests.Data;

[TestClass]
public class TsFileTests
{
    private static string Write(string text)
    {
        var path = Path.Combine(Path.GetTempPath(), $"mambaml-{Guid.NewGuid():N}.ts");
        File.WriteAllText(path, text);
        return path;
    }

    [TestMethod]
    public void ReadsMultivariateCasesTimeMajor()
    {
        var path = Write("# comment\n@problemName Toy\n@univariate false\n@dimensions 2\n@classLabel true a b\n@data\n1,2,3:4,5,6:b\n7,8,9:10,11,12:a\n");
        var f = TsFile.Read(path);
        Assert.AreEqual("Toy", f.ProblemName);
        CollectionAssert.AreEqual(new[] { "a", "b" }, f.ClassLabels.ToArray());
        Assert.AreEqual(2, f.Dimensions);
        Assert.AreEqual(3, f.LengthOf(0));
        CollectionAssert.AreEqual(new[] { 1f, 4, 2, 5, 3, 6 }, f.Series[0]);
        CollectionAssert.AreEqual(new[] { "b", "a" }, f.Labels.ToArray());
    }

    [TestMethod]
    public void RejectsMalformedFilesNamingFileAndLine()
    {
        var noData = Write("@problemName X\n");
        StringAssert.Contains(Assert.ThrowsExactly<FormatException>(() => TsFile.Read(noData)).Message, noData);
        var badNumber = Write("@classLabel true 0 1\n@data\n1,x,3:0\n");
        StringAssert.Contains(Assert.ThrowsExactly<FormatException>(() => TsFile.Read(badNumber)).Message, "line 3");
        var undeclared = Write("@classLabel true 0 1\n@data\n1,2,3:7\n");
        StringAssert.Contains(Assert.ThrowsExactly<FormatException>(() => TsFile.Read(undeclared)).Message, "'7'");
    }

    [TestMethod]
    public void ReadsSharedUcrFilesWhenPresent()
    {
        var path = SharedData.Path("ucr", "GunPoint", "GunPoint_TRAIN.ts");
        if (path is null) Assert.Inconclusive("../shared/data is absent: the embedded cases above cover the format.");
        var f = TsFile.Read(path);
        Assert.AreEqual(50, f.Series.Count);
        Assert.AreEqual(150, f.LengthOf(0));
        Assert.AreEqual(2, f.ClassLabels.Count);
    }
}
