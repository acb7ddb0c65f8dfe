using System.Text;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Tokenizers;

namespace MambaML.MLNet;

/// <summary>How text is split into tokens before the compact vocabulary remaps them.</summary>
public enum MambaTokenizer
{
    /// <summary>OpenAI's cl100k_base byte-pair encoding (Microsoft.ML.Tokenizers' TiktokenTokenizer; the vocabulary ships in the package).</summary>
    Cl100kBase,
    /// <summary>UTF-8 bytes: 256 token ids, any language, no vocabulary file.</summary>
    Bytes,
}

/// <summary>Tokenises text and maps token ids onto a model's compact vocabulary.</summary>
internal sealed class TextTokens
{
    private static readonly Lazy<Tokenizer> Cl100k = new(() => TiktokenTokenizer.CreateForEncoding("cl100k_base"));
    private readonly TextVocabulary _vocabulary;
    private readonly Dictionary<int, long> _compact;

    public TextTokens(TextVocabulary vocabulary)
    {
        _vocabulary = vocabulary;
        _compact = new Dictionary<int, long>(vocabulary.TokenIds.Length);
        for (int i = 0; i < vocabulary.TokenIds.Length; i++) _compact[vocabulary.TokenIds[i]] = i + 2;
        // Loading cl100k's vocabulary takes over 100 ms: pay it when the model is made or loaded, not in its first prediction.
        if (vocabulary.Tokenizer == MambaTokenizer.Cl100kBase) _ = Cl100k.Value;
    }

    /// <summary>Compact ids of <paramref name="text"/>'s first tokens; empty text becomes one unknown token.</summary>
    public long[] Encode(ReadOnlySpan<char> text)
    {
        var ids = Tokenize(_vocabulary.Tokenizer, text, _vocabulary.MaxTokens, _vocabulary.Lowercase);
        if (ids.Count == 0) return new[] { TextVocabulary.Unknown };
        var result = new long[ids.Count];
        for (int i = 0; i < result.Length; i++) result[i] = _compact.TryGetValue(ids[i], out var id) ? id : TextVocabulary.Unknown;
        return result;
    }

    // Characters kept per token wanted: ordinary text needs 4–5 per cl100k token (1 per byte token at most), and the byte-pair
    // merging takes time quadratic in the length of a run without spaces (300,000 letters took 15 s), so only this much of a
    // text's start is tokenised.
    private const int CharactersPerToken = 16;

    /// <summary>
    /// The tokenizer's ids for the first <paramref name="maxTokens"/> tokens of <paramref name="text"/> (lower-cased first when
    /// <paramref name="lowercase"/>). Only the first 16 × <paramref name="maxTokens"/> characters are read.
    /// </summary>
    public static IReadOnlyList<int> Tokenize(MambaTokenizer tokenizer, ReadOnlySpan<char> text, int maxTokens, bool lowercase)
    {
        long kept = (long)maxTokens * CharactersPerToken;
        if (text.Length > kept) text = text[..(char.IsHighSurrogate(text[(int)kept - 1]) ? (int)kept - 1 : (int)kept)];   // a surrogate pair stays whole
        if (lowercase) text = text.ToString().ToLowerInvariant();
        if (tokenizer == MambaTokenizer.Bytes)
        {
            var bytes = Encoding.UTF8.GetBytes(text.ToArray());
            return bytes.Take(maxTokens).Select(b => (int)b).ToArray();
        }
        return Cl100k.Value.EncodeToIds(text, maxTokens, out _, out _);
    }

    /// <summary>
    /// Counts the token ids of a text column in one streaming pass and keeps the <paramref name="maxVocabularySize"/> most frequent
    /// ids seen at least <paramref name="minCount"/> times (ties broken by id, so the result is deterministic).
    /// </summary>
    public static TextVocabulary Build(IDataView data, DataViewSchema.Column column, MambaTokenizer tokenizer, int maxTokens, int maxVocabularySize, int minCount,
                                       bool lowercase = false, CancellationToken cancellation = default)
    {
        var counts = new Dictionary<int, long>();
        using (var cursor = data.GetRowCursor(new[] { column }))
        {
            var get = cursor.GetGetter<ReadOnlyMemory<char>>(column);
            ReadOnlyMemory<char> text = default;
            while (cursor.MoveNext())
            {
                cancellation.ThrowIfCancellationRequested();
                get(ref text);
                foreach (int id in Tokenize(tokenizer, text.Span, maxTokens, lowercase))
                    counts[id] = counts.GetValueOrDefault(id) + 1;
            }
        }
        var kept = counts.Where(kv => kv.Value >= minCount)
            .OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key)
            .Take(maxVocabularySize).Select(kv => kv.Key).ToArray();
        return new TextVocabulary { Tokenizer = tokenizer, MaxTokens = maxTokens, Lowercase = lowercase, TokenIds = kept };
    }
}

/// <summary>Reads a text column as compact token ids.</summary>
internal sealed class TextSequenceReader : SequenceReader
{
    private readonly TextTokens _tokens;

    public TextSequenceReader(DataViewSchema schema, string name, string option, TextTokens tokens) : base(schema, name, option)
    {
        RequireText(Column, option);
        _tokens = tokens;
    }

    /// <summary>Throws unless <paramref name="column"/> is a text column.</summary>
    public static void RequireText(DataViewSchema.Column column, string option)
    {
        if (column.Type is not TextDataViewType)
            throw new ArgumentOutOfRangeException(option, column.Name,
                $"Column '{column.Name}' ({option}) has type {column.Type}; text classification needs a text column (string).");
    }

    public override Func<SequenceExample> Bind(DataViewRow row)
    {
        var get = row.GetGetter<ReadOnlyMemory<char>>(Column);
        ReadOnlyMemory<char> text = default;
        return () =>
        {
            get(ref text);
            var ids = _tokens.Encode(text.Span);
            return new SequenceExample { Tokens = ids, Steps = ids.Length };
        };
    }
}
