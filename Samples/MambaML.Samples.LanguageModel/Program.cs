// MambaML language-model sample: train a character-level Mamba language model, watch its validation loss, generate text, save
// it, and load it into a fresh model that generates the same text.
// From the repository root:
//   dotnet run --project Samples/MambaML.Samples.LanguageModel -c Release                   embedded generated sentences (13 s on the 2-core dev box)
//   dotnet run --project Samples/MambaML.Samples.LanguageModel -c Release -- --data ../shared/data/text/tinyshakespeare/input.txt --gpu
//                                                                                          any UTF-8 text file (Tiny Shakespeare: use a GPU)
// Options: --steps N  --out DIR  --gpu (train on CUDA device 0; needs the CUDA build of TorchSharp, as the forecasting sample's --gpu)
using System.Text.Json;
using MambaML.Model;
using TorchSharp;

string? Arg(string name) => Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
string? dataPath = Arg("--data");
string outputDirectory = Arg("--out") ?? "language-model-output";
bool gpu = args.Contains("--gpu");
if (dataPath is not null && !File.Exists(dataPath))
{
    // The README's --data paths point into the project's shared data folder, which is not part of the repository.
    Console.Error.WriteLine($"--data: '{dataPath}' does not exist. Pass the path of your own copy of the file (README, Samples, says where each data set comes from).");
    return 1;
}
if (gpu && !torch.cuda.is_available())
{
    Console.Error.WriteLine("--gpu: CUDA is not available to TorchSharp here (build the sample with -p:TorchBackend=cuda on a machine with an NVIDIA GPU).");
    return 1;
}
var device = gpu ? torch.CUDA : torch.CPU;

// 1. Text, a vocabulary of its characters, and a 90/10 split (as nanoGPT's shakespeare_char).
string text = dataPath is null ? Sentences.Generate(count: 3000, seed: 1) : File.ReadAllText(dataPath);
var characters = text.Distinct().Order().ToArray();
var ids = characters.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => (long)p.i);
long[] tokens = text.Select(c => ids[c]).ToArray();
int split = tokens.Length * 9 / 10;
Console.WriteLine($"Text: {dataPath ?? "embedded generated sentences"}, {text.Length:N0} characters, {characters.Length} distinct; " +
                  $"training on the first {split:N0}, validating on the rest.");

// 2. A Mamba language model: small on the CPU, nanoGPT-sized (about 10M parameters) on a GPU.
var config = gpu ? new MambaConfig { DModel = 384, NLayer = 10, Dropout = 0.2 } : new MambaConfig { DModel = 96, NLayer = 3, Dropout = 0.1 };
using var model = new MambaLanguageModel(config, characters.Length, seed: 1);
model.to(device);
Console.WriteLine($"Model: d_model {config.DModel}, {config.NLayer} layers, dropout {config.Dropout}, " +
                  $"{model.parameters().Sum(p => p.numel()) / 1e6:F2}M parameters on {device}.");

// 3. Train (nanoGPT's recipe); the weights of the best validation loss are kept.
int steps = int.Parse(Arg("--steps") ?? (gpu ? "750" : "300"));
var options = new LanguageModelTrainingOptions
{
    Steps = steps, BatchSize = gpu ? 64 : 16, BlockLength = gpu ? 256 : 64, EvaluateEvery = Math.Max(1, steps / 10), EvaluationBatches = gpu ? 50 : 10,
    LearningRate = gpu ? 1e-3 : 3e-3,
    ProgressCallback = p => Console.WriteLine($"  step {p.Step,5}/{p.Steps}: train loss {p.TrainingLoss?.ToString("F3") ?? "  -  "}, " +
                                              $"validation loss {p.ValidationLoss:F3} (nats/character), {p.Elapsed.TotalSeconds:F0} s"),
};
var result = LanguageModelTraining.Train(model, tokens[..split], tokens[split..], options);
Console.WriteLine($"Kept step {result.BestStep}: validation loss {result.BestValidationLoss:F3} nats/character " +
                  $"(a uniform guess over the characters scores {Math.Log(characters.Length):F3}).");

// 4. Generate from a prompt taken from the validation text.
string prompt = text.Substring(split, 20);
var sampling = new GenerationOptions { Temperature = 0.8, TopK = 200, Seed = 1 };
string Generate(MambaLanguageModel lm)
{
    using var scope = torch.NewDisposeScope();
    var input = torch.tensor(prompt.Select(c => ids[c]).ToArray()).view(1, -1).to(device);
    return new string(lm.Generate(input, 300, sampling).cpu().data<long>().ToArray().Select(i => characters[i]).ToArray());
}
string generated = Generate(model);
Console.WriteLine($"Generated after \"{prompt.ReplaceLineEndings(" ")}\":");
Console.WriteLine(prompt + generated);

// 5. Save the configuration (JSON), the weights (TorchSharp's format) and the vocabulary; rebuild the model from the three
//    files alone, as another program would, and generate again.
Directory.CreateDirectory(outputDirectory);
string configPath = Path.Combine(outputDirectory, "config.json"), weightsPath = Path.Combine(outputDirectory, "mamba-lm.bin"),
       vocabularyPath = Path.Combine(outputDirectory, "vocabulary.txt");
File.WriteAllText(configPath, JsonSerializer.Serialize(config));
model.save(weightsPath);
File.WriteAllText(vocabularyPath, new string(characters));
var savedConfig = JsonSerializer.Deserialize<MambaConfig>(File.ReadAllText(configPath))!;
using var loaded = new MambaLanguageModel(savedConfig, File.ReadAllText(vocabularyPath).Length, seed: 2);
loaded.load(weightsPath);
loaded.to(device);
loaded.eval();
bool same = Generate(loaded) == generated;
Console.WriteLine($"Saved {configPath}, {weightsPath} ({new FileInfo(weightsPath).Length / 1024} KiB) and {vocabularyPath}; the model loaded from them generates " +
                  (same ? "the same text." : "DIFFERENT text."));
return same ? 0 : 2;

/// <summary>Sentences from a small grammar: text with spelling and structure to learn, generated so that no data file is needed.</summary>
internal static class Sentences
{
    private static readonly string[] Subjects = { "the cat", "a dog", "the old farmer", "my sister", "the river", "a small bird", "the teacher", "our neighbour" };
    private static readonly string[] Verbs = { "watches", "follows", "remembers", "paints", "carries", "finds", "calls", "waits for" };
    private static readonly string[] Objects = { "the moon", "a red kite", "the garden", "an open door", "the morning train", "a quiet song", "the last apple", "the hills" };
    private static readonly string[] Endings = { ".", " every day.", " in the rain.", " before dinner.", " without a word.", " again and again." };

    public static string Generate(int count, int seed)
    {
        var random = new Random(seed);
        string Pick(string[] words) => words[random.Next(words.Length)];
        var text = new System.Text.StringBuilder();
        for (int i = 0; i < count; i++)
        {
            string sentence = $"{Pick(Subjects)} {Pick(Verbs)} {Pick(Objects)}{Pick(Endings)}";
            text.Append(char.ToUpperInvariant(sentence[0])).Append(sentence, 1, sentence.Length - 1).Append(i % 4 == 3 ? '\n' : ' ');
        }
        return text.ToString();
    }
}
