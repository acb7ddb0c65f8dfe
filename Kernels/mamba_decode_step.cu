// One recurrent decoding step of a Mamba language model (src/MambaML/Model/CudaDecodeStep.cs launches these kernels).
//
// Per layer four kernels, then one for the head and one for greedy token choice:
//   decode_in_proj      RMSNorm of the residual stream (the token embeddings on the first layer) + in_proj -> xz;
//                       the warp that computes channel d of x also runs its causal conv step + SiLU and
//                       slides its conv window                                                           -> xc, conv state
//   decode_x_proj       x_proj                                                                           -> xdbl
//   decode_ssm          dt_proj + softplus, SSM state update, C.h + D.u, SiLU(z) gate                    -> y, SSM state
//   decode_out_proj     out_proj, added to the residual stream
//   decode_lm_head      final RMSNorm + tied output head                                                  -> logits
//   decode_argmax       greedy next token (first index of the largest logit, NaN counting as largest)
// Decoding reads every weight once per token, so the GEMVs are one warp per output row with 16-byte weight loads; the
// input vector sits in shared memory, and batch rows are handled BT at a time so a weight row serves BT dot products.
// Activations are fp32; weights (and the convolution state, and the logits) are fp32 or bf16 (MD_BF16); the SSM state is
// fp32. States are read from *_in and written to *_out, which may be the same buffers: each element is read and then
// written by one thread, and by no other kernel.
// Sizes are compile-time constants set with -D by the host, so the dot-product loops unroll.

#if !defined(MD_BF16) || !defined(MD_DM) || !defined(MD_DI) || !defined(MD_N) || !defined(MD_R) || !defined(MD_KC) || \
    !defined(MD_CONV_BIAS) || !defined(MD_BIAS)
#error "The decode kernels are configured by the host with -D definitions (see CudaDecodeStep.cs)."
#endif

#include "bfloat16.cuh"

namespace md {

#if MD_BF16
typedef unsigned short w_t;   // bfloat16 bits (NVRTC has no cuda_bf16.h without the toolkit)
#else
typedef float w_t;
#endif

constexpr int DM = MD_DM;             // d_model
constexpr int DI = MD_DI;             // d_inner
constexpr int N = MD_N;               // d_state
constexpr int R = MD_R;               // dt_rank
constexpr int KC = MD_KC;             // d_conv
constexpr int XD = R + 2 * N;         // x_proj rows: (dt, B, C)
constexpr int BT = 4;                 // batch rows per pass over the weights
constexpr int VW = 16 / (int)sizeof(w_t);   // weights per 16-byte load
constexpr int G = N >= 32 ? 32 : N > 16 ? 32 : N > 8 ? 16 : N > 4 ? 8 : N > 2 ? 4 : N;   // lanes per channel in decode_ssm
constexpr int SPL = (N + G - 1) / G;  // states per lane
constexpr int RPL = (R + G - 1) / G;  // dt_proj weights per lane
constexpr unsigned FULL = 0xffffffffu;

// The kernel arguments (one struct for every kernel; CudaDecodeStep.DecodeArgs mirrors it field by field).
struct Args {
    const long long* tokens;     // (batch) int64: the input tokens (decode_in_proj on the first layer), the chosen ones (argmax)
    const w_t* embedding;        // (vocab, DM), also the output head
    float* resid;                // (batch, DM) residual stream
    const w_t* norm_w;           // (DM) the layer's norm, or the final norm (lm_head)
    const w_t* in_w;             // (2 DI, DM)
    const w_t* in_b;             // (2 DI) or null
    float* xz;                   // (batch, 2 DI)
    const w_t* conv_w;           // (DI, KC)
    const w_t* conv_b;           // (DI) or null
    const w_t* conv_in;          // (batch, DI, KC - 1), oldest first
    w_t* conv_out;               // (batch, DI, KC - 1)
    const w_t* xproj_w;          // (XD, DI)
    float* xc;                   // (batch, DI) conv + SiLU output
    float* xdbl;                 // (batch, XD)
    const w_t* dt_w;             // (DI, R)
    const w_t* dt_b;             // (DI)
    const w_t* a_log;            // (DI, N)
    const w_t* d_skip;           // (DI)
    const float* ssm_in;         // (batch, DI, N)
    float* ssm_out;              // (batch, DI, N)
    float* y;                    // (batch, DI) gated SSM output
    const w_t* out_w;            // (DM, DI)
    const w_t* out_b;            // (DM) or null
    w_t* logits;                 // (batch, vocab)
    long long* next_tokens;      // (batch) int64 written by decode_argmax
    long long* generated;        // (batch, generated_stride) int64, or null: decode_argmax also writes column generated_column
    long long batch, vocab, generated_stride, generated_column;
    float eps;
};

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int m = 16; m >= 1; m /= 2) v += __shfl_xor_sync(FULL, v, m);
    return v;
}

// Sum over the G lanes of a channel group (groups are aligned within a warp).
__device__ __forceinline__ float group_sum(float v)
{
#pragma unroll
    for (int m = G / 2; m >= 1; m /= 2) v += __shfl_xor_sync(FULL, v, m);
    return v;
}

__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }   // torch's threshold

// VW consecutive weights from one 16-byte load (read-only path).
__device__ __forceinline__ void load_weights(const w_t* p, float (&w)[VW])
{
    const uint4 bits = __ldg(reinterpret_cast<const uint4*>(p));
    const unsigned u[4] = {bits.x, bits.y, bits.z, bits.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#if MD_BF16
        w[2 * i] = __uint_as_float(u[i] << 16);
        w[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
#else
        w[i] = __uint_as_float(u[i]);
#endif
    }
}

// acc[j] = row . xs[j] for the nb (<= BT) vectors xs[j] = xs + j*COLS in shared memory; one warp, every lane gets the sums.
template <int COLS>
__device__ __forceinline__ void row_dot(const w_t* __restrict__ row, const float* xs, int nb, float (&acc)[BT])
{
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int j = 0; j < BT; ++j) acc[j] = 0.0f;
    if (COLS % VW == 0 && (reinterpret_cast<unsigned long long>(row) & 15u) == 0) {
#pragma unroll 4
        for (int c = lane * VW; c < COLS; c += 32 * VW) {
            float w[VW];
            load_weights(row + c, w);
#pragma unroll
            for (int j = 0; j < BT; ++j) {
                if (j < nb) {
                    const float4* x = reinterpret_cast<const float4*>(xs + j * COLS + c);
#pragma unroll
                    for (int q = 0; q < VW / 4; ++q) {
                        const float4 v = x[q];
                        acc[j] += w[4 * q] * v.x + w[4 * q + 1] * v.y + w[4 * q + 2] * v.z + w[4 * q + 3] * v.w;
                    }
                }
            }
        }
    } else {
        for (int c = lane; c < COLS; c += 32) {
            const float w = to_f(row[c]);
#pragma unroll
            for (int j = 0; j < BT; ++j)
                if (j < nb) acc[j] += w * xs[j * COLS + c];
        }
    }
#pragma unroll
    for (int j = 0; j < BT; ++j) acc[j] = warp_sum(acc[j]);
}

// xs[j] = RMSNorm(residual row b0 + j) * norm_w for j < nb. With tokens (first layer) the rows are the tokens' embeddings,
// which block 0 also stores as the residual stream. An out-of-range token gives a NaN row. Needs >= BT warps.
__device__ void normed_rows(const Args& a, long long b0, int nb, float* xs, float* inv_rms)
{
    for (int i = threadIdx.x; i < nb * DM; i += blockDim.x) {
        const int j = i / DM, c = i % DM;
        const long long b = b0 + j;
        float v;
        if (a.tokens) {
            const long long t = a.tokens[b];
            v = t >= 0 && t < a.vocab ? to_f(a.embedding[t * DM + c]) : __int_as_float(0x7fc00000);
            if (blockIdx.x == 0) a.resid[b * DM + c] = v;
        } else {
            v = a.resid[b * DM + c];
        }
        xs[j * DM + c] = v;
    }
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (warp < nb) {
        float s = 0.0f;
        for (int c = lane; c < DM; c += 32) s += xs[warp * DM + c] * xs[warp * DM + c];
        s = warp_sum(s);
        if (lane == 0) inv_rms[warp] = rsqrtf(s / DM + a.eps);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < nb * DM; i += blockDim.x) xs[i] *= inv_rms[i / DM] * to_f(a.norm_w[i % DM]);
    __syncthreads();
}

} // namespace md

using namespace md;

// Channel d of batch row b: xc = SiLU(causal conv over the window and x); the window then drops its oldest input and takes x.
__device__ __forceinline__ void conv_step(const Args& a, long long b, int d, float x)
{
    const long long base = (b * DI + d) * (KC - 1);
    const w_t* w = a.conv_w + d * KC;
    w_t window[KC > 1 ? KC - 1 : 1];
#pragma unroll
    for (int k = 0; k < KC - 1; ++k) window[k] = a.conv_in[base + k];
    float s = x * to_f(w[KC - 1]);
#pragma unroll
    for (int k = 0; k < KC - 1; ++k) s += to_f(window[k]) * to_f(w[k]);
    if (MD_CONV_BIAS) s += to_f(a.conv_b[d]);
    a.xc[b * DI + d] = silu(s);
#pragma unroll
    for (int k = 0; k + 1 < KC - 1; ++k) a.conv_out[base + k] = window[k + 1];
    if constexpr (KC > 1) from_f(x, a.conv_out[base + KC - 2]);
}

// All shared memory is dynamic (the host sizes it), declared in each kernel.

// grid: ceil(2 DI / warps per block); dynamic shared memory: (min(batch, BT) * DM + BT) floats.
extern "C" __global__ void __launch_bounds__(256) decode_in_proj(const Args a)
{
    extern __shared__ float4 smem4[];
    float* inv_rms = reinterpret_cast<float*>(smem4);
    float* xs = inv_rms + BT;
    const int lane = threadIdx.x & 31, row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    for (long long b0 = 0; b0 < a.batch; b0 += BT) {
        const int nb = (int)min((long long)BT, a.batch - b0);
        normed_rows(a, b0, nb, xs, inv_rms);
        if (row < 2 * DI) {
            float acc[BT];
            row_dot<DM>(a.in_w + (long long)row * DM, xs, nb, acc);
            const float bias = MD_BIAS ? to_f(a.in_b[row]) : 0.0f;   // in_b is null without biases
            if (lane == 0)
                for (int j = 0; j < nb; ++j) {
                    const long long b = b0 + j;
                    const float x = acc[j] + bias;
                    a.xz[b * 2 * DI + row] = x;
                    if (row < DI) conv_step(a, b, row, x);
                }
        }
        __syncthreads();   // xs is refilled for the next batch rows
    }
}

// out = W x for every batch row, x (batch, DI) in global memory and W (ROWS, DI): the batch rows are staged BT at a time
// in xs (shared memory, min(batch, BT) * DI floats), one warp per output row; epilogue(b, row, dot) stores each result.
template <int ROWS, class Epilogue>
__device__ __forceinline__ void project_di(const Args& a, const float* x, const w_t* W, float* xs, Epilogue epilogue)
{
    const int lane = threadIdx.x & 31, row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    for (long long b0 = 0; b0 < a.batch; b0 += BT) {
        const int nb = (int)min((long long)BT, a.batch - b0);
        for (int i = threadIdx.x; i < nb * DI; i += blockDim.x) xs[i] = x[b0 * DI + i];
        __syncthreads();
        if (row < ROWS) {
            float acc[BT];
            row_dot<DI>(W + (long long)row * DI, xs, nb, acc);
            if (lane == 0)
                for (int j = 0; j < nb; ++j) epilogue(b0 + j, row, acc[j]);
        }
        __syncthreads();
    }
}

// grid: ceil(XD / warps per block); dynamic shared memory: min(batch, BT) * DI floats.
extern "C" __global__ void __launch_bounds__(256) decode_x_proj(const Args a)
{
    extern __shared__ float4 smem4[];
    project_di<XD>(a, a.xc, a.xproj_w, reinterpret_cast<float*>(smem4), [&](long long b, int row, float v) { a.xdbl[b * XD + row] = v; });
}

// G lanes per channel: lane g holds states g, g + G, ...; grid: ceil(DI / (threads / G)).
extern "C" __global__ void __launch_bounds__(256) decode_ssm(const Args a)
{
    const int g = threadIdx.x % G;
    const int channel = blockIdx.x * (blockDim.x / G) + threadIdx.x / G;
    const bool active = channel < DI;
    const int d = active ? channel : DI - 1;   // idle groups compute a real channel but store nothing (shuffles need every lane)
    float A[SPL], wdt[RPL];
#pragma unroll
    for (int s = 0; s < SPL; ++s) { const int n = g + s * G; A[s] = n < N ? -expf(to_f(a.a_log[d * N + n])) : 0.0f; }
#pragma unroll
    for (int i = 0; i < RPL; ++i) { const int r = g + i * G; wdt[i] = r < R ? to_f(a.dt_w[d * R + r]) : 0.0f; }
    const float dt_bias = to_f(a.dt_b[d]), d_skip = to_f(a.d_skip[d]);
    for (long long b = 0; b < a.batch; ++b) {
        const float* xd = a.xdbl + b * XD;
        float dt = 0.0f;
#pragma unroll
        for (int i = 0; i < RPL; ++i) { const int r = g + i * G; if (r < R) dt += wdt[i] * xd[r]; }
        dt = softplus(group_sum(dt) + dt_bias);
        const float u = a.xc[b * DI + d];
        float yv = 0.0f;
#pragma unroll
        for (int s = 0; s < SPL; ++s) {
            const int n = g + s * G;
            if (n < N) {
                const long long i = (b * DI + d) * N + n;
                const float h = expf(dt * A[s]) * a.ssm_in[i] + dt * u * xd[R + n];
                if (active) a.ssm_out[i] = h;
                yv += h * xd[R + N + n];
            }
        }
        yv = group_sum(yv);
        if (active && g == 0) a.y[b * DI + d] = (yv + d_skip * u) * silu(a.xz[b * 2 * DI + DI + d]);
    }
}

// grid: ceil(DM / warps per block); dynamic shared memory: min(batch, BT) * DI floats.
extern "C" __global__ void __launch_bounds__(256) decode_out_proj(const Args a)
{
    extern __shared__ float4 smem4[];
    project_di<DM>(a, a.y, a.out_w, reinterpret_cast<float*>(smem4), [&](long long b, int row, float v) {
        a.resid[b * DM + row] += v + (MD_BIAS ? to_f(a.out_b[row]) : 0.0f);   // out_b is null without biases
    });
}

// Any grid (warps stride over the rows: a few blocks per SM amortise the norm); dynamic shared memory: (min(batch, BT) * DM + BT)
// floats. norm_w is the final norm.
extern "C" __global__ void __launch_bounds__(256) decode_lm_head(const Args a)
{
    extern __shared__ float4 smem4[];
    float* inv_rms = reinterpret_cast<float*>(smem4);
    float* xs = inv_rms + BT;
    const int lane = threadIdx.x & 31;
    const long long first_row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    for (long long b0 = 0; b0 < a.batch; b0 += BT) {
        const int nb = (int)min((long long)BT, a.batch - b0);
        normed_rows(a, b0, nb, xs, inv_rms);
        for (long long row = first_row; row < a.vocab; row += (long long)gridDim.x * (blockDim.x >> 5)) {
            float acc[BT];
            row_dot<DM>(a.embedding + row * DM, xs, nb, acc);
            if (lane == 0)
                for (int j = 0; j < nb; ++j) from_f(acc[j], a.logits[(b0 + j) * a.vocab + row]);
        }
        __syncthreads();
    }
}

// (value, index) a beats (value, index) b: NaN above everything, then larger value, then smaller index (torch.argmax's choice).
__device__ __forceinline__ bool beats(float av, long long ai, float bv, long long bi)
{
    const bool an = av != av, bn = bv != bv;
    if (an != bn) return an;
    if (!an && av != bv) return av > bv;
    return ai < bi;
}

// grid: batch; 1024 threads (any multiple of 32 up to 1024 works); dynamic shared memory: 32 (float, int64) pairs.
extern "C" __global__ void __launch_bounds__(1024) decode_argmax(const Args a)
{
    extern __shared__ float4 smem4[];
    long long* best_i = reinterpret_cast<long long*>(smem4);
    float* best_v = reinterpret_cast<float*>(best_i + 32);
    const long long b = blockIdx.x;
    const w_t* row = a.logits + b * a.vocab;
    float v = -__int_as_float(0x7f800000);
    long long idx = a.vocab;   // beaten by any real entry of equal value
#pragma unroll 4
    for (long long i = threadIdx.x; i < a.vocab; i += blockDim.x) {
        const float x = to_f(row[i]);
        if (beats(x, i, v, idx)) { v = x; idx = i; }
    }
#pragma unroll
    for (int m = 16; m >= 1; m /= 2) {
        const float ov = __shfl_xor_sync(FULL, v, m);
        const long long oi = __shfl_xor_sync(FULL, idx, m);
        if (beats(ov, oi, v, idx)) { v = ov; idx = oi; }
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) { best_v[warp] = v; best_i[warp] = idx; }
    __syncthreads();
    if (warp == 0) {
        const int warps = blockDim.x >> 5;
        v = lane < warps ? best_v[lane] : -__int_as_float(0x7f800000);
        idx = lane < warps ? best_i[lane] : a.vocab;
#pragma unroll
        for (int m = 16; m >= 1; m /= 2) {
            const float ov = __shfl_xor_sync(FULL, v, m);
            const long long oi = __shfl_xor_sync(FULL, idx, m);
            if (beats(ov, oi, v, idx)) { v = ov; idx = oi; }
        }
        if (lane == 0) {
            a.next_tokens[b] = idx;
            if (a.generated) a.generated[b * a.generated_stride + a.generated_column] = idx;
        }
    }
}
