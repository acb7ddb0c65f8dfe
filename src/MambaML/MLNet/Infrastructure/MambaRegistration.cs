using System.Reflection;
using System.Runtime.CompilerServices;
using Microsoft.ML;
using Microsoft.ML.Runtime;
using Microsoft.ML.Transforms;

namespace MambaML.MLNet;

/// <summary>Registers MambaML's model loaders with an ML.NET environment.</summary>
public static class MambaRegistration
{
    /// <summary>The exact call a process makes before <c>mlContext.Model.Load</c> of a model that contains MambaML transformers.</summary>
    public const string RequiredCall = "mlContext.RegisterMambaML()";

    // Every MambaML transformer type and the loader signature its models are saved under; each has a static
    // Create(IHostEnvironment, object ctx) that ML.NET calls to load it.
    private static readonly (Type Type, string LoaderSignature)[] Loaders =
    {
        (typeof(MambaForecastingTransformer), MambaForecastingTransformer.LoaderSignature),
        (typeof(MambaSequenceTransformer), MambaSequenceTransformer.LoaderSignature),
    };
    private static readonly ConditionalWeakTable<ComponentCatalog, object> Registered = new();

    /// <summary>
    /// Makes <paramref name="mlContext"/> able to load models that contain MambaML transformers. Call it once per
    /// <see cref="MLContext"/>, before <c>mlContext.Model.Load</c>; training registers implicitly. Returns the same context.
    /// </summary>
    /// <example><code>
    /// var mlContext = new MLContext().RegisterMambaML();
    /// var model = mlContext.Model.Load("model.zip", out var inputSchema);
    /// </code></example>
    public static MLContext RegisterMambaML(this MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        Register(mlContext.ComponentCatalog);
        return mlContext;
    }

    /// <summary>Registers the loaders with an environment's catalog (what estimators do implicitly while fitting).</summary>
    internal static void Register(IHostEnvironment env) => Register(env.ComponentCatalog);

    private static void Register(ComponentCatalog catalog)
    {
        lock (Registered)
        {
            if (Registered.TryGetValue(catalog, out _)) return;
            foreach (var (type, signature) in Loaders)
            {
                var create = type.GetMethod("Create", BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public, null,
                                             new[] { typeof(IHostEnvironment), typeof(object) }, null)
                             ?? throw new InvalidOperationException($"{type.Name} has no static Create(IHostEnvironment, object) loader.");
                MLNetInternals.RegisterLoader(catalog, type, signature, create);
            }
            Registered.Add(catalog, new object());
        }
    }
}

/// <summary>
/// What ML.NET reaches when a model with a MambaML transformer is loaded without <see cref="MambaRegistration.RegisterMambaML"/>:
/// our header names ML.NET's custom-mapping loader as the fallback, which looks this contract up in MambaML and calls it.
/// It exists only to fail with a message that names the missing call.
/// </summary>
[CustomMappingFactoryAttribute(ContractName)]
internal sealed class RegistrationRequiredFactory : CustomMappingFactory<RegistrationRequiredFactory.NoColumns, RegistrationRequiredFactory.NoColumns>
{
    /// <summary>The contract name written at the start of every MambaML model entry.</summary>
    public const string ContractName = "MambaML.RegistrationRequired";

    /// <summary>Always throws: the model needs MambaML's own loader.</summary>
    public override Action<NoColumns, NoColumns> GetMapping() => throw new InvalidOperationException(
        $"This model contains MambaML transformers, whose loaders are not registered with this MLContext. Call {MambaRegistration.RequiredCall} " +
        "(namespace MambaML.MLNet) once on the MLContext before mlContext.Model.Load.");

    /// <summary>Row type without columns.</summary>
    public sealed class NoColumns { }
}
