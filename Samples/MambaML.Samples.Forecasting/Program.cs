// Trains a tiny Mamba backbone to predict the next value of noisy sine waves (embedded synthetic data) and prints the loss.
using MambaML.Model;
using TorchSharp;
using static TorchSharp.torch;

const int Length = 64, Batch = 32, Steps = 150;
var config = new MambaConfig { DModel = 16, NLayer = 2 };
using var backbone = new MambaBackbone(config, seed: 0);
using var inputProj = nn.Linear(1, config.DModel);
using var head = nn.Linear(config.DModel, 1);
var parameters = backbone.parameters().Concat(inputProj.parameters()).Concat(head.parameters());
using var optimizer = optim.Adam(parameters, lr: 3e-3);
var g = new Generator(1);

for (int step = 1; step <= Steps; step++)
{
    using var scope = NewDisposeScope();
    var phase = rand(new long[] { Batch, 1 }, generator: g) * 2 * Math.PI;
    var freq = rand(new long[] { Batch, 1 }, generator: g) * 0.3 + 0.05;
    var series = (arange(Length + 1).unsqueeze(0) * freq + phase).sin() + randn(new long[] { Batch, Length + 1 }, generator: g) * 0.05;
    var x = series[.., ..Length].unsqueeze(-1);
    var target = series[.., 1..].unsqueeze(-1);
    var (hidden, _) = backbone.Forward(inputProj.forward(x));
    var loss = nn.functional.mse_loss(head.forward(hidden), target);
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    if (step == 1 || step % 25 == 0) Console.WriteLine($"step {step,4}  mse {loss.item<float>():F4}");
}
