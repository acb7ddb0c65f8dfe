using MambaML.MLNet;

namespace Microsoft.ML;

/// <summary>Mamba sequence trainers on <c>mlContext.BinaryClassification.Trainers</c>, <c>mlContext.MulticlassClassification.Trainers</c> and <c>mlContext.Regression.Trainers</c>.</summary>
public static class MambaSequenceCatalog
{
    /// <summary>
    /// Binary classification of numeric sequences: a Single vector column of steps × <paramref name="channels"/> values (fixed or
    /// variable length) and a Boolean label. Outputs Score, Probability and PredictedLabel like ML.NET's binary classifiers.
    /// </summary>
    /// <param name="catalog"><c>mlContext.BinaryClassification.Trainers</c>.</param>
    /// <param name="labelColumnName">Boolean label column.</param>
    /// <param name="featureColumnName">Sequence column (float[]).</param>
    /// <param name="channels">Values per time step.</param>
    /// <param name="numberOfEpochs">Passes over the training data.</param>
    public static MambaSequenceEstimator MambaSequence(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string labelColumnName = "Label", string featureColumnName = "Features", int channels = 1, int numberOfEpochs = 10)
        => MambaSequence(catalog, new MambaSequenceClassificationOptions
        {
            LabelColumnName = labelColumnName, FeatureColumnName = featureColumnName, Channels = channels, NumberOfEpochs = numberOfEpochs,
        });

    /// <summary>Binary classification of numeric sequences, configured by <paramref name="options"/>.</summary>
    /// <param name="catalog"><c>mlContext.BinaryClassification.Trainers</c>.</param>
    /// <param name="options">All settings.</param>
    public static MambaSequenceEstimator MambaSequence(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, MambaSequenceClassificationOptions options)
        => new(MLNetInternals.EnvironmentOf(catalog ?? throw new ArgumentNullException(nameof(catalog))), MambaSequenceTask.BinaryClassification, options);

    /// <summary>
    /// Multiclass classification of numeric sequences: a Single vector column of steps × <paramref name="channels"/> values (fixed or
    /// variable length) and a key-typed label. Outputs Score (class probabilities) and PredictedLabel (key with the label's values).
    /// </summary>
    /// <param name="catalog"><c>mlContext.MulticlassClassification.Trainers</c>.</param>
    /// <param name="labelColumnName">Key-typed label column (use MapValueToKey).</param>
    /// <param name="featureColumnName">Sequence column (float[]).</param>
    /// <param name="channels">Values per time step.</param>
    /// <param name="numberOfEpochs">Passes over the training data.</param>
    public static MambaSequenceEstimator MambaSequence(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string labelColumnName = "Label", string featureColumnName = "Features", int channels = 1, int numberOfEpochs = 10)
        => MambaSequence(catalog, new MambaSequenceClassificationOptions
        {
            LabelColumnName = labelColumnName, FeatureColumnName = featureColumnName, Channels = channels, NumberOfEpochs = numberOfEpochs,
        });

    /// <summary>Multiclass classification of numeric sequences, configured by <paramref name="options"/>.</summary>
    /// <param name="catalog"><c>mlContext.MulticlassClassification.Trainers</c>.</param>
    /// <param name="options">All settings.</param>
    public static MambaSequenceEstimator MambaSequence(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, MambaSequenceClassificationOptions options)
        => new(MLNetInternals.EnvironmentOf(catalog ?? throw new ArgumentNullException(nameof(catalog))), MambaSequenceTask.MulticlassClassification, options);

    /// <summary>Regression on numeric sequences: a Single vector column of steps × <paramref name="channels"/> values and a Single label; outputs Score.</summary>
    /// <param name="catalog"><c>mlContext.Regression.Trainers</c>.</param>
    /// <param name="labelColumnName">Single label column.</param>
    /// <param name="featureColumnName">Sequence column (float[]).</param>
    /// <param name="channels">Values per time step.</param>
    /// <param name="numberOfEpochs">Passes over the training data.</param>
    public static MambaSequenceEstimator MambaSequence(this RegressionCatalog.RegressionTrainers catalog,
        string labelColumnName = "Label", string featureColumnName = "Features", int channels = 1, int numberOfEpochs = 10)
        => MambaSequence(catalog, new MambaSequenceRegressionOptions
        {
            LabelColumnName = labelColumnName, FeatureColumnName = featureColumnName, Channels = channels, NumberOfEpochs = numberOfEpochs,
        });

    /// <summary>Regression on numeric sequences, configured by <paramref name="options"/>.</summary>
    /// <param name="catalog"><c>mlContext.Regression.Trainers</c>.</param>
    /// <param name="options">All settings.</param>
    public static MambaSequenceEstimator MambaSequence(this RegressionCatalog.RegressionTrainers catalog, MambaSequenceRegressionOptions options)
        => new(MLNetInternals.EnvironmentOf(catalog ?? throw new ArgumentNullException(nameof(catalog))), MambaSequenceTask.Regression, options);

    /// <summary>
    /// Text classification: tokenises the text column, remaps the token ids seen in training to a compact vocabulary, and trains a
    /// Mamba classifier on a key-typed label. Outputs Score (class probabilities) and PredictedLabel (key with the label's values).
    /// </summary>
    /// <param name="catalog"><c>mlContext.MulticlassClassification.Trainers</c>.</param>
    /// <param name="labelColumnName">Key-typed label column (use MapValueToKey).</param>
    /// <param name="textColumnName">Text column.</param>
    /// <param name="numberOfEpochs">Passes over the training data.</param>
    public static MambaTextClassificationEstimator MambaTextClassification(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog,
        string labelColumnName = "Label", string textColumnName = "Text", int numberOfEpochs = 10)
        => MambaTextClassification(catalog, new MambaTextClassificationOptions
        {
            LabelColumnName = labelColumnName, TextColumnName = textColumnName, NumberOfEpochs = numberOfEpochs,
        });

    /// <summary>Text classification configured by <paramref name="options"/> (tokenizer, vocabulary size, model size, training...).</summary>
    /// <param name="catalog"><c>mlContext.MulticlassClassification.Trainers</c>.</param>
    /// <param name="options">All settings.</param>
    public static MambaTextClassificationEstimator MambaTextClassification(this MulticlassClassificationCatalog.MulticlassClassificationTrainers catalog, MambaTextClassificationOptions options)
        => new(MLNetInternals.EnvironmentOf(catalog ?? throw new ArgumentNullException(nameof(catalog))), MambaSequenceTask.MulticlassClassification, options);

    /// <summary>
    /// Binary text classification (as ML.NET's sentiment samples: a Boolean label): tokenises the text column, remaps the token
    /// ids seen in training to a compact vocabulary, and trains a Mamba classifier. Outputs Score (the logit), Probability and
    /// PredictedLabel (Boolean), so <c>mlContext.BinaryClassification.Evaluate</c> works unchanged.
    /// </summary>
    /// <param name="catalog"><c>mlContext.BinaryClassification.Trainers</c>.</param>
    /// <param name="labelColumnName">Boolean label column.</param>
    /// <param name="textColumnName">Text column.</param>
    /// <param name="numberOfEpochs">Passes over the training data.</param>
    public static MambaTextClassificationEstimator MambaTextClassification(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog,
        string labelColumnName = "Label", string textColumnName = "Text", int numberOfEpochs = 10)
        => MambaTextClassification(catalog, new MambaTextClassificationOptions
        {
            LabelColumnName = labelColumnName, TextColumnName = textColumnName, NumberOfEpochs = numberOfEpochs,
        });

    /// <summary>Binary text classification configured by <paramref name="options"/> (tokenizer, vocabulary size, model size, training...).</summary>
    /// <param name="catalog"><c>mlContext.BinaryClassification.Trainers</c>.</param>
    /// <param name="options">All settings.</param>
    public static MambaTextClassificationEstimator MambaTextClassification(this BinaryClassificationCatalog.BinaryClassificationTrainers catalog, MambaTextClassificationOptions options)
        => new(MLNetInternals.EnvironmentOf(catalog ?? throw new ArgumentNullException(nameof(catalog))), MambaSequenceTask.BinaryClassification, options);
}
