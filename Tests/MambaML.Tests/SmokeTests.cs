using MambaML.Model;
using TorchSharp;
using static TorchSharp.torch;
namespace MambaML.Tests;
[TestClass]
public class SmokeTests
{
    [TestMethod]
    public void BackboneRuns()
    {
        var cfg = new MambaConfig { DModel = 16, NLayer = 2 };
        using var m = new MambaBackbone(cfg, 1);
        using var x = randn(2, 7, 16);
        var (y, s) = m.Forward(x, returnState: true);
        Assert.AreEqual(3, (int)y.dim());
        var st = m.ZeroState(2);
        Tensor? last = null;
        for (int t = 0; t < 7; t++) { (last, st) = m.Step(x[.., t], st); }
        var diff = (last! - y[.., 6]).abs().max().item<float>();
        Console.WriteLine($"diff {diff}");
        Assert.IsTrue(diff < 1e-5);
    }
}
