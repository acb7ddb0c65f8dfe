using System.Reflection;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace MambaML.MLNet;

/// <summary>
/// The few ML.NET 5.0.1 internals an outside assembly needs to save, load and register a transformer, reached by reflection
/// (Microsoft.ML.TorchSharp gets them through InternalsVisibleTo). Microsoft.ML is pinned to [5.0.1] because these names may
/// move between versions; a fresh-process round-trip test guards them.
/// </summary>
internal static class MLNetInternals
{
    private const BindingFlags AnyInstance = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic;
    private const BindingFlags AnyStatic = BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic;
    private static readonly Assembly CoreAssembly = typeof(IHostEnvironment).Assembly;

    private static readonly Type VersionInfoType = CoreType("Microsoft.ML.VersionInfo");
    private static readonly Type LoadContextType = CoreType("Microsoft.ML.ModelLoadContext");
    private static readonly Type SignatureLoadModelType = CoreType("Microsoft.ML.SignatureLoadModel");
    private static readonly Type LoadableClassAttributeType = CoreType("Microsoft.ML.LoadableClassAttribute");
    private static readonly Type LoadableClassInfoType = CoreType("Microsoft.ML.Runtime.ComponentCatalog+LoadableClassInfo");
    private static readonly Type EnvironmentInternalType = CoreType("Microsoft.ML.Runtime.IHostEnvironmentInternal");

    private static readonly MethodInfo SaveCheckAtModel = Method(typeof(ModelSaveContext), "CheckAtModel");
    private static readonly MethodInfo SaveSetVersionInfo = Method(typeof(ModelSaveContext), "SetVersionInfo", VersionInfoType);
    private static readonly MethodInfo SaveString = Method(typeof(ModelSaveContext), "SaveString", typeof(string));
    private static readonly MethodInfo SaveBinaryStream = Method(typeof(ModelSaveContext), "SaveBinaryStream", typeof(string), typeof(Action<BinaryWriter>));
    private static readonly FieldInfo SaveWriter = Field(typeof(ModelSaveContext), "Writer");

    private static readonly MethodInfo LoadCheckAtModel = Method(LoadContextType, "CheckAtModel", VersionInfoType);
    private static readonly MethodInfo LoadString = Method(LoadContextType, "LoadString");
    private static readonly MethodInfo LoadBinaryStream = Method(LoadContextType, "TryLoadBinaryStream", typeof(string), typeof(Action<BinaryReader>));
    private static readonly FieldInfo LoadReader = Field(LoadContextType, "Reader");

    private static readonly MethodInfo CatalogAddClass = Method(typeof(ComponentCatalog), "AddClass", LoadableClassInfoType, typeof(string[]), typeof(bool));
    private static readonly MethodInfo CatalogFindClass = Method(typeof(ComponentCatalog), "GetLoadableClassInfo", typeof(string), typeof(Type));
    private static readonly MethodInfo SchemaShapeCreate = typeof(SchemaShape).GetMethod("Create", AnyStatic, null, new[] { typeof(DataViewSchema) }, null)
                                                           ?? throw Missing("SchemaShape.Create(DataViewSchema)");

    /// <summary>How a saved MambaML model identifies itself to ML.NET's loader.</summary>
    /// <param name="ModelSignature">Eight-character file-type tag stored in the header.</param>
    /// <param name="Version">ML.NET header version (written = readable = the oldest we can read back).</param>
    /// <param name="LoaderSignature">Name our loader is registered under (at most 24 characters).</param>
    /// <param name="LoaderSignatureAlt">Loader ML.NET falls back to when ours is not registered.</param>
    /// <param name="LoaderAssemblyName">Assembly ML.NET loads and registers before looking the loader up.</param>
    internal sealed record HeaderInfo(string ModelSignature, uint Version, string LoaderSignature, string? LoaderSignatureAlt, string LoaderAssemblyName);

    /// <summary>Starts a model entry: checks the context, writes the header's version info.</summary>
    public static BinaryWriter BeginSave(ModelSaveContext ctx, HeaderInfo header)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        Invoke(SaveCheckAtModel, ctx);
        Invoke(SaveSetVersionInfo, ctx, NewVersionInfo(header));
        return (BinaryWriter)SaveWriter.GetValue(ctx)!;
    }

    /// <summary>Writes a string through the context's string table (ML.NET's own string encoding).</summary>
    public static void WriteString(ModelSaveContext ctx, string value) => Invoke(SaveString, ctx, value);

    /// <summary>Adds a binary entry next to the model's main stream.</summary>
    public static void WriteBinaryEntry(ModelSaveContext ctx, string name, Action<BinaryWriter> write) =>
        Invoke(SaveBinaryStream, ctx, name, write);

    /// <summary>Checks that a loader context holds a model written with <paramref name="header"/> and returns its main stream.</summary>
    public static BinaryReader BeginLoad(object ctx, HeaderInfo header)
    {
        CheckLoadContext(ctx);
        Invoke(LoadCheckAtModel, ctx, NewVersionInfo(header));
        return (BinaryReader)LoadReader.GetValue(ctx)!;
    }

    /// <summary>Reads a string written by <see cref="WriteString"/>.</summary>
    public static string ReadString(object ctx) => (string)Invoke(LoadString, ctx)!;

    /// <summary>Reads a binary entry written by <see cref="WriteBinaryEntry"/>; false when the entry is absent.</summary>
    public static bool TryReadBinaryEntry(object ctx, string name, Action<BinaryReader> read) =>
        (bool)Invoke(LoadBinaryStream, ctx, name, read)!;

    /// <summary>
    /// Registers a model loader: ML.NET will call <paramref name="create"/> (a static <c>Create(IHostEnvironment, object ctx)</c>
    /// returning <paramref name="instanceType"/>) for models whose header names <paramref name="loaderSignature"/>.
    /// </summary>
    public static void RegisterLoader(ComponentCatalog catalog, Type instanceType, string loaderSignature, MethodInfo create)
    {
        lock (catalog)
        {
            if (CatalogFindClass.Invoke(catalog, new object[] { loaderSignature, SignatureLoadModelType }) is not null) return;
            var attribute = Activator.CreateInstance(LoadableClassAttributeType,
                instanceType, instanceType, null, SignatureLoadModelType, instanceType.Name, new[] { loaderSignature })!;
            var info = Activator.CreateInstance(LoadableClassInfoType, AnyInstance, null,
                new object?[] { attribute, null, null, create, true }, null)!;
            Invoke(CatalogAddClass, catalog, info, new[] { loaderSignature }, true);
        }
    }

    /// <summary>Whether a loader is registered under <paramref name="loaderSignature"/>.</summary>
    public static bool IsLoaderRegistered(ComponentCatalog catalog, string loaderSignature) =>
        CatalogFindClass.Invoke(catalog, new object[] { loaderSignature, SignatureLoadModelType }) is not null;

    /// <summary>The schema shape of <paramref name="schema"/> (ML.NET keeps this conversion internal).</summary>
    public static SchemaShape ToSchemaShape(DataViewSchema schema) => (SchemaShape)Invoke(SchemaShapeCreate, null, schema)!;

    /// <summary>The environment behind an ML.NET catalog such as <c>mlContext.Forecasting</c> or <c>mlContext.Regression.Trainers</c>.</summary>
    public static IHostEnvironment EnvironmentOf(object catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        var internalCatalog = catalog.GetType().GetInterface("Microsoft.ML.Data.IInternalCatalog")
                              ?? throw Missing($"{catalog.GetType().Name} : IInternalCatalog");
        var property = internalCatalog.GetProperty("Environment") ?? throw Missing("IInternalCatalog.Environment");
        return (IHostEnvironment)property.GetValue(catalog)!;
    }

    /// <summary><c>MLContext.GpuDeviceId</c> and <c>MLContext.FallbackToCpu</c> as seen through any ML.NET environment.</summary>
    public static (int? GpuDeviceId, bool FallbackToCpu) DeviceSettings(IHostEnvironment env)
    {
        if (!EnvironmentInternalType.IsInstanceOfType(env)) return (null, true);
        var gpu = (int?)EnvironmentInternalType.GetProperty("GpuDeviceId")!.GetValue(env);
        var fallback = (bool)EnvironmentInternalType.GetProperty("FallbackToCpu")!.GetValue(env)!;
        return (gpu, fallback);
    }

    /// <summary><c>MLContext</c>'s seed (null when it was created without one).</summary>
    public static int? Seed(IHostEnvironment env) =>
        EnvironmentInternalType.IsInstanceOfType(env) ? (int?)EnvironmentInternalType.GetProperty("Seed")!.GetValue(env) : null;

    private static object NewVersionInfo(HeaderInfo h) =>
        Activator.CreateInstance(VersionInfoType, h.ModelSignature, h.Version, h.Version, h.Version, h.LoaderAssemblyName, h.LoaderSignature, h.LoaderSignatureAlt)!;

    private static void CheckLoadContext(object ctx)
    {
        ArgumentNullException.ThrowIfNull(ctx);
        if (!LoadContextType.IsInstanceOfType(ctx))
            throw new ArgumentException($"Expected ML.NET's ModelLoadContext, got {ctx.GetType().FullName}.", nameof(ctx));
    }

    // Reflection wraps exceptions; unwrap so ML.NET's own messages (e.g. a version mismatch) reach the caller unchanged.
    private static object? Invoke(MethodInfo method, object? target, params object?[] args)
    {
        try { return method.Invoke(target, args); }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
    }

    private static Type CoreType(string name) => CoreAssembly.GetType(name, throwOnError: false) ?? throw Missing(name);

    private static MethodInfo Method(Type type, string name, params Type[] parameters) =>
        type.GetMethod(name, AnyInstance, null, parameters, null) ?? throw Missing($"{type.Name}.{name}");

    private static FieldInfo Field(Type type, string name) => type.GetField(name, AnyInstance) ?? throw Missing($"{type.Name}.{name}");

    private static Exception Missing(string what) => new InvalidOperationException(
        $"MambaML needs Microsoft.ML 5.0.1 exactly, but '{what}' was not found in {CoreAssembly.GetName()}. " +
        "Reference Microsoft.ML version [5.0.1] in the application.");
}
