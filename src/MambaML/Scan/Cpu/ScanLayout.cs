using System.Runtime.Intrinsics;

namespace MambaML.Scan.Cpu;

/// <summary>
/// The copies between the caller's tensor layouts and the kernel's: padding the state dimension to 16-lane vectors,
/// turning input-dependent B and C from (B, N, L) into one state vector per step, and adding up the kernel's partial sums.
/// </summary>
/// <remarks>
/// Plain loops over at most B·N·L·(blocks) elements, a small fraction of the scan's B·D·N·L work, written here rather
/// than as TorchSharp ops: when the cores are shared with other processes, libtorch's OpenMP barriers can stall a tiny op
/// for tens of milliseconds.
/// </remarks>
internal static unsafe class ScanLayout
{
    private const int StepTile = 64;

    // Copies smaller than this many floats per worker run on the calling thread: each parallel run ends in a join, and
    // on a busy machine a join can wait a whole scheduler time slice for a descheduled worker.
    private const long MinFloatsPerWorker = 1 << 20;

    private static int Workers(long floats) => (int)Math.Clamp(floats / MinFloatsPerWorker, 1, int.MaxValue);

    /// <summary><paramref name="dst"/> (rows, Np) = <paramref name="scale"/> · <paramref name="src"/> (rows, N), zero-padded.</summary>
    public static void PadRows(float* src, float* dst, long rows, int n, int np, float scale)
    {
        for (long r = 0; r < rows; r++)
        {
            for (int i = 0; i < n; i++) dst[r * np + i] = scale * src[r * n + i];
            new Span<float>(dst + r * np + n, np - n).Clear();
        }
    }

    /// <summary><paramref name="dst"/> (B, L, Np) = <paramref name="src"/> (B, N, L) with steps and states swapped, zero-padded.</summary>
    public static void PackSteps(float* src, float* dst, int batch, int n, int length, int np)
    {
        int tiles = (length + StepTile - 1) / StepTile;
        ParallelWork.Run(batch * tiles, 0, (item, _) =>
        {
            int b = item / tiles, t0 = item % tiles * StepTile, t1 = Math.Min(t0 + StepTile, length);
            for (int t = t0; t < t1; t++)
            {
                float* step = dst + ((long)b * length + t) * np;
                for (int i = 0; i < n; i++) step[i] = src[((long)b * n + i) * length + t];
                new Span<float>(step + n, np - n).Clear();
            }
        }, Workers((long)batch * length * np));
    }

    /// <summary><paramref name="dst"/> (rows, N) = Σ over b of <paramref name="partial"/> (B, rows, Np), in order of b.</summary>
    public static void SumOverBatch(float* partial, float* dst, int batch, long rows, int np, int n)
    {
        for (long r = 0; r < rows; r++)
            for (int i = 0; i < n; i++)
            {
                float sum = 0;
                for (int b = 0; b < batch; b++) sum += partial[(b * rows + r) * np + i];
                dst[r * n + i] = sum;
            }
    }

    /// <summary>
    /// <paramref name="dst"/> (B, N, L) = Σ over blocks of <paramref name="partial"/> (B, blocks, L, Np), in order of blocks,
    /// with steps and states swapped back.
    /// </summary>
    public static void SumSlots(float* partial, float* dst, int batch, int blocks, int length, int np, int n)
    {
        int tiles = (length + StepTile - 1) / StepTile;
        long slot = (long)length * np;
        ParallelWork.Run(batch * tiles, np, (item, sum) =>
        {
            int b = item / tiles, t0 = item % tiles * StepTile, t1 = Math.Min(t0 + StepTile, length);
            for (int t = t0; t < t1; t++)
            {
                float* first = partial + b * blocks * slot + (long)t * np;
                for (int j = 0; j < np; j += 16)
                {
                    var acc = Vector512.Load(first + j);
                    for (int block = 1; block < blocks; block++) acc += Vector512.Load(first + block * slot + j);
                    acc.Store(sum + j);
                }
                for (int i = 0; i < n; i++) dst[((long)b * n + i) * length + t] = sum[i];
            }
        }, Workers((long)batch * blocks * length * np));
    }
}
