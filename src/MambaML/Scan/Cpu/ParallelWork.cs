using System.Runtime.InteropServices;

namespace MambaML.Scan.Cpu;

/// <summary>The body of one work item; <paramref name="scratch"/> is the running worker's private, 64-byte aligned buffer.</summary>
internal unsafe delegate void WorkItem(int item, float* scratch);

/// <summary>
/// Runs a fixed list of work items on up to one worker per core, and no more workers than libtorch's thread count for the
/// calling thread (what a trainer's NumberOfThreads sets), each worker taking the next item from a shared counter (so uneven
/// progress balances itself) and owning one scratch buffer allocated once for the whole run.
/// </summary>
/// <remarks>
/// Which item does what is fixed by the caller, never by scheduling, so results do not depend on which worker ran an item.
/// </remarks>
internal static class ParallelWork
{
    /// <summary>
    /// Runs items 0 … <paramref name="items"/> − 1 on at most <paramref name="maxWorkers"/> workers, giving each worker
    /// <paramref name="scratchFloats"/> floats of scratch. With one worker the items run on the calling thread.
    /// </summary>
    public static unsafe void Run(int items, long scratchFloats, WorkItem body, int maxWorkers = int.MaxValue)
    {
        int workers = WorkerCount(items, maxWorkers);
        if (workers <= 0) return;
        long stride = (scratchFloats + 15) / 16 * 16;                             // whole cache lines per worker
        var scratch = (float*)NativeMemory.AlignedAlloc((nuint)(workers * stride * sizeof(float)), 64);
        try
        {
            if (workers == 1)
            {
                for (int item = 0; item < items; item++) body(item, scratch);
                return;
            }
            int next = -1;
            nint scratchBase = (nint)scratch;
            Parallel.For(0, workers, worker =>
            {
                float* mine = (float*)scratchBase + worker * stride;
                for (int item; (item = Interlocked.Increment(ref next)) < items;) body(item, mine);
            });
        }
        finally
        {
            NativeMemory.AlignedFree(scratch);
        }
    }

    /// <summary>How many workers <see cref="Run"/> uses for <paramref name="items"/> items on this thread.</summary>
    internal static int WorkerCount(int items, int maxWorkers = int.MaxValue) =>
        Math.Min(Math.Min(items, Math.Min(Environment.ProcessorCount, TorchSharp.torch.get_num_threads())), maxWorkers);
}

/// <summary>
/// How the (batch, channel) pairs of a scan are grouped into work items: each item is one batch row and a contiguous block
/// of channels. About four items per core keep every core busy (from 2 to 64 cores) while bounding the per-item partial sums
/// of the backward pass.
/// </summary>
/// <param name="BlocksPerBatch">Channel blocks in each batch row.</param>
/// <param name="BlockWidth">Channels per block (the last block may be narrower).</param>
internal readonly record struct ChannelPartition(int BlocksPerBatch, int BlockWidth)
{
    private const int ItemsPerCore = 4;

    /// <summary>The partition for a scan of <paramref name="batch"/> rows of <paramref name="channels"/> channels on <paramref name="cores"/> cores.</summary>
    public static ChannelPartition For(int batch, int channels, int cores)
    {
        long target = (long)ItemsPerCore * cores;
        int perBatch = (int)Math.Clamp((target + batch - 1) / batch, 1, channels);
        int width = (channels + perBatch - 1) / perBatch;
        return new ChannelPartition((channels + width - 1) / width, width);
    }

    /// <summary>The partition for this machine's cores.</summary>
    public static ChannelPartition For(int batch, int channels) => For(batch, channels, Environment.ProcessorCount);
}
