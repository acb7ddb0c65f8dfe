using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Transforms;
using TorchSharp;
using static TorchSharp.torch;

namespace MambaML.MLNet;

/// <summary>
/// The stored form of a MambaML transformer inside an ML.NET model zip.
/// </summary>
/// <remarks>
/// Main entry (<c>Model.key</c>): ML.NET's header, then two strings that let ML.NET's custom-mapping loader explain a missing
/// <see cref="MambaRegistration.RegisterMambaML"/> (see <see cref="RegistrationRequiredFactory"/>), then our own part: a magic
/// number, the format version, the task's description as JSON (hyperparameters, column names, vocabularies), the length of
/// the weights and the SHA-256 of the description's UTF-8 bytes followed by the weights (format 1: of the weights alone).
/// Weights entry: the TorchSharp state dictionary (tensors only; nothing in a model file can run code).
/// </remarks>
internal static class ModelFile
{
    /// <summary>The format this build writes and the newest it reads.</summary>
    /// <remarks>Format 3 adds the channel scales of forecasters and numeric sequence models, format 4 the channel offsets of
    /// numeric sequence models and of forecasters without instance normalisation (absent from older files, which load as they were),
    /// format 5 a prediction batch size that may be null (chosen by device; older files always name one) and the forecasters'
    /// prediction intervals (bound columns, level, quantiles): a build that reads only an older format
    /// refuses a newer file as newer rather than as corrupt, instead of ignoring what it does not know.</remarks>
    public const int FormatVersion = 5;
    private const int Magic = 0x4D424D41;   // "AMBM" little-endian
    private const string WeightsEntry = "MambaWeights.bin";
    // ML.NET's custom-mapping loader: registered by every ML.NET process that can load Microsoft.ML.Transforms.
    private const string FallbackLoaderSignature = "CustomTransformer";
    private const string FallbackModelSignature = "CUSTOMXF";
    private const uint FallbackHeaderVersion = 0x00010002;

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = false, IncludeFields = false };

    /// <summary>The ML.NET header a transformer with this loader signature is saved under.</summary>
    public static MLNetInternals.HeaderInfo Header(string loaderSignature) =>
        new(FallbackModelSignature, FallbackHeaderVersion, loaderSignature, FallbackLoaderSignature,
            typeof(CustomMappingFactoryAttributeAttribute).Assembly.FullName!);

    // Format 2 checks the description too, so that an edited hyperparameter cannot load as a silently different model.
    private static byte[] Hash(string json, byte[] weights, int version)
    {
        if (version < 2) return SHA256.HashData(weights);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(System.Text.Encoding.UTF8.GetBytes(json));
        sha.AppendData(weights);
        return sha.GetHashAndReset();
    }

    /// <summary>Writes <paramref name="description"/> and the weights of <paramref name="network"/>.</summary>
    public static void Save<TDescription>(ModelSaveContext ctx, string loaderSignature, TDescription description, nn.Module network)
    {
        byte[] weights = SerializeWeights(network);
        var writer = MLNetInternals.BeginSave(ctx, Header(loaderSignature));
        MLNetInternals.WriteString(ctx, RegistrationRequiredFactory.ContractName);
        MLNetInternals.WriteString(ctx, typeof(ModelFile).Assembly.FullName!);
        writer.Write(Magic);
        string json = JsonSerializer.Serialize(description, Json);
        writer.Write(FormatVersion);
        writer.Write(json);
        writer.Write((long)weights.Length);
        writer.Write(Hash(json, weights, FormatVersion));
        MLNetInternals.WriteBinaryEntry(ctx, WeightsEntry, w => w.Write(weights));
    }

    /// <summary>Reads what <see cref="Save{TDescription}"/> wrote; throws <see cref="InvalidDataException"/> naming the problem.</summary>
    public static (TDescription Description, byte[] Weights) Load<TDescription>(object ctx, string loaderSignature)
    {
        var reader = MLNetInternals.BeginLoad(ctx, Header(loaderSignature));
        try
        {
            MLNetInternals.ReadString(ctx);
            MLNetInternals.ReadString(ctx);
            if (reader.ReadInt32() != Magic)
                throw Corrupt(loaderSignature, "the entry does not start with MambaML's marker");
            int version = reader.ReadInt32();
            if (version > FormatVersion || version < 1)
                throw new InvalidDataException($"The {loaderSignature} model was written in MambaML model format {version}; this build reads formats 1 to {FormatVersion}. Use the MambaML version that saved it (or newer).");
            string json = reader.ReadString();
            long length = reader.ReadInt64();
            byte[] expectedHash = reader.ReadBytes(32);
            byte[]? weights = null;
            if (!MLNetInternals.TryReadBinaryEntry(ctx, WeightsEntry, r => weights = r.ReadBytes(checked((int)length))))
                throw Corrupt(loaderSignature, $"the weights entry '{WeightsEntry}' is missing");
            if (weights!.Length != length || !Hash(json, weights, version).AsSpan().SequenceEqual(expectedHash))
                throw Corrupt(loaderSignature, version >= 2
                    ? $"the model description or the weights entry '{WeightsEntry}' is truncated or was modified (length or SHA-256 mismatch)"
                    : $"the weights entry '{WeightsEntry}' is truncated or was modified (length or SHA-256 mismatch)");
            var description = JsonSerializer.Deserialize<TDescription>(json, Json)
                              ?? throw Corrupt(loaderSignature, "the model description is empty");
            return (description, weights);
        }
        catch (Exception e) when (e is EndOfStreamException or JsonException or OverflowException or ArgumentException)
        {
            throw Corrupt(loaderSignature, e.Message, e);
        }
    }

    /// <summary>Copies stored weights into a freshly built network of the saved architecture.</summary>
    public static void LoadWeights(nn.Module network, byte[] weights, string loaderSignature)
    {
        try
        {
            using var stream = new MemoryStream(weights, writable: false);
            using var reader = new BinaryReader(stream);
            network.load(reader, strict: true);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw Corrupt(loaderSignature, "the weights do not match the architecture in the model description: " + e.Message, e);
        }
    }

    private static byte[] SerializeWeights(nn.Module network)
    {
        using var scope = NewDisposeScope();
        var cpuState = network.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu());
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
            nn.Module.save_state_dict(writer, cpuState);
        return stream.ToArray();
    }

    private static InvalidDataException Corrupt(string loaderSignature, string detail, Exception? inner = null) =>
        new($"The MambaML model entry ({loaderSignature}) is corrupt: {detail}. Save the model again with mlContext.Model.Save.", inner);
}
