// Shared pieces of the selective-scan kernels (selective_scan_fwd.cu, selective_scan_bwd.cu).
//
// The kernels are compiled at run time by NVRTC, one binary per configuration: every shape parameter and feature flag
// below is a compile-time constant set with -D by the host (src/MambaML/Scan/Cuda/ScanKernelConfig.cs), so loops over
// states and time steps unroll and absent features cost nothing. No CUDA headers are needed (NVRTC has no toolkit here).
//
// Work layout, both kernels: one thread block per (batch b, CB consecutive channels); each channel is owned by K
// consecutive lanes, each lane holding NP of the NPAD = K*NP (>= N) state entries in registers and walking time
// sequentially. In the forward kernel a thread may own the same lane of Q channels (SS_Q; the backward kernel needs
// Q = 1), so the per-step B_t, C_t loads from shared memory serve Q channels. The sequence is processed in chunks of T steps staged in shared memory. The sum over states (y = C.h)
// and other per-(channel, step) sums are reduced across the K lanes by a transposing butterfly, so each shuffle carries
// useful data. Padded states (n >= N) have A = B = C = 0 and stay exactly zero.
#pragma once

#if !defined(SS_BF16) || !defined(SS_N) || !defined(SS_NP) || !defined(SS_K) || !defined(SS_CB) || !defined(SS_T) || \
    !defined(SS_VEC) || !defined(SS_VAR_B) || !defined(SS_VAR_C) || !defined(SS_HAS_D) || !defined(SS_HAS_Z) ||        \
    !defined(SS_HAS_BIAS) || !defined(SS_SOFTPLUS) || !defined(SS_Q) || !defined(SS_G)
#error "The selective-scan kernels are configured by the host with -D definitions (see ScanKernelConfig.cs)."
#endif

#include "bfloat16.cuh"

namespace ss {

#if SS_BF16
typedef unsigned short in_t;   // bfloat16 bits; converted by hand (NVRTC has no cuda_bf16.h without the toolkit)
#else
typedef float in_t;
#endif

constexpr int N = SS_N;             // state size
constexpr int NP = SS_NP;           // states per lane
constexpr int K = SS_K;             // lanes per channel
constexpr int NPAD = NP * K;        // padded state size
constexpr int CB = SS_CB;           // channels per block
constexpr int T = SS_T;             // time steps per chunk
constexpr int Q = SS_Q;             // channels per thread
constexpr int THREADS = CB * K / Q;
constexpr int G = SS_G;             // time steps per lane-reduction group (4 or 8)
constexpr int TP = T + 4;           // row stride of [channel][step] arrays: neighbouring channels start on different banks
constexpr int SB = NPAD < 4 ? 4 : NPAD + 4;   // row stride of [step][state] arrays
constexpr int V = SS_VEC ? 16 / (int)sizeof(in_t) : 1;   // elements per global access (16 bytes when aligned)
constexpr float LOG2E = 1.4426950408889634f;
constexpr unsigned FULL_MASK = 0xffffffffu;

static_assert(NPAD >= N, "NP*K must cover the N states");
static_assert(K >= 1 && K <= 32 && (K & (K - 1)) == 0, "K must be a power of two <= 32");
static_assert(NP == 1 || NP == 2 || NP % 4 == 0, "NP must be 1, 2 or a multiple of 4");
static_assert(Q >= 1 && CB % Q == 0, "Q must divide CB");
static_assert(THREADS % 32 == 0 && THREADS <= 1024, "a block must be whole warps");
static_assert(G == 4 || G == 8, "G must be 4 or 8");
static_assert(T % G == 0 && T % V == 0 && (T & (T - 1)) == 0, "T must be a power of two, a multiple of G and of V");

// ---- element conversion: to_f / from_f in bfloat16.cuh

// ---- global memory: V consecutive elements, as one 16-byte access when SS_VEC

// The raw bits of V elements, held in registers between a load and its use (bf16 stays packed: 4 registers for 8).
struct RawVec {
#if SS_VEC
    uint4 bits;
#else
    in_t bits;
#endif
};

__device__ __forceinline__ RawVec load_raw(const in_t* p)
{
#if SS_VEC
    return RawVec{*reinterpret_cast<const uint4*>(p)};
#else
    return RawVec{*p};
#endif
}

__device__ __forceinline__ RawVec zero_raw()
{
#if SS_VEC
    return RawVec{make_uint4(0u, 0u, 0u, 0u)};
#else
    return RawVec{in_t(0)};
#endif
}

__device__ __forceinline__ void unpack(const RawVec& r, float (&v)[V])
{
#if SS_VEC
    const unsigned w[4] = {r.bits.x, r.bits.y, r.bits.z, r.bits.w};
#if SS_BF16
#pragma unroll
    for (int i = 0; i < 4; ++i) { v[2 * i] = __uint_as_float(w[i] << 16); v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u); }
#else
#pragma unroll
    for (int i = 0; i < 4; ++i) v[i] = __uint_as_float(w[i]);
#endif
#else
    v[0] = to_f(r.bits);
#endif
}

__device__ __forceinline__ void store_vec(in_t* p, const float (&v)[V])
{
#if SS_VEC
    unsigned w[4];
#if SS_BF16
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        unsigned short lo, hi;
        from_f(v[2 * i], lo); from_f(v[2 * i + 1], hi);
        w[i] = (unsigned)lo | ((unsigned)hi << 16);
    }
#else
#pragma unroll
    for (int i = 0; i < 4; ++i) w[i] = __float_as_uint(v[i]);
#endif
    *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
#else
    from_f(v[0], *p);
#endif
}

// ---- one chunk's rows in registers
//
// Per-(channel, step) data of a chunk is CB rows of T steps: ROW_VECS vectors, vector e = tid + r*THREADS going to
// thread tid, so a thread always handles the same channels. Per-(state, step) data (input-dependent B, C) is N rows.
constexpr int ROW_VECS = CB * (T / V);
constexpr int ROW_ITERS = (ROW_VECS + THREADS - 1) / THREADS;
constexpr int BC_VECS = N * (T / V);
constexpr int BC_ITERS = (BC_VECS + THREADS - 1) / THREADS;

__device__ __forceinline__ int row_channel(int e) { return e / (T / V); }
__device__ __forceinline__ int row_step(int e) { return (e % (T / V)) * V; }

// Calls f(r, channel, step) for each of this thread's vectors of a chunk's (channel, step) rows, r = 0, 1, ...
template <class F>
__device__ __forceinline__ void for_each_row_vec(F f)
{
#pragma unroll
    for (int r = 0; r < ROW_ITERS; ++r) {
        const int e = threadIdx.x + r * THREADS;
        if (e >= ROW_VECS) break;
        f(r, row_channel(e), row_step(e));
    }
}

// Loads the chunk starting at t0 of a (batch, dim, len) tensor for channels d0.. (zeros outside the tensor).
__device__ __forceinline__ void load_rows(const in_t* x, long long b, long long dim, long long len, long long d0, long long t0,
                                          RawVec (&out)[ROW_ITERS])
{
#pragma unroll
    for (int r = 0; r < ROW_ITERS; ++r) {
        const int e = threadIdx.x + r * THREADS;
        const long long dd = d0 + row_channel(e), t = t0 + row_step(e);
        out[r] = e < ROW_VECS && dd < dim && t < len ? load_raw(x + (b * dim + dd) * len + t) : zero_raw();
    }
}

// Per-(state, step) vectors go state-fastest across threads: the transposed shared-memory stores below then hit
// consecutive banks, and a warp's loads still cover whole 32-byte sectors (lane n and lane n + N read adjacent halves).
__device__ __forceinline__ int state_row(int e) { return e % N; }
__device__ __forceinline__ int state_step(int e) { return (e / N) * V; }

// Loads the chunk starting at t0 of a (batch, N, len) tensor (zeros past the end).
__device__ __forceinline__ void load_state_rows(const in_t* x, long long b, long long len, long long t0, RawVec (&out)[BC_ITERS])
{
#pragma unroll
    for (int r = 0; r < BC_ITERS; ++r) {
        const int e = threadIdx.x + r * THREADS;
        const long long t = t0 + state_step(e);
        out[r] = e < BC_VECS && t < len ? load_raw(x + (b * N + state_row(e)) * len + t) : zero_raw();
    }
}

// Stores loaded (state, step) rows transposed into a [T][SB] shared array; raw(r) gives the thread's r-th vector.
template <class Raw>
__device__ __forceinline__ void stage_state_rows(float* dst, Raw raw)
{
#pragma unroll
    for (int r = 0; r < BC_ITERS; ++r) {
        const int e = threadIdx.x + r * THREADS;
        if (e >= BC_VECS) break;
        float v[V];
        unpack(raw(r), v);
#pragma unroll
        for (int i = 0; i < V; ++i) dst[(state_step(e) + i) * SB + state_row(e)] = v[i];
    }
}

// Thread tid's q-th channel in the block. The channels of one thread are CB/Q apart, so the lane groups of a warp read
// neighbouring [channel][step] rows, which start on different banks.
__device__ __forceinline__ int thread_channel(int tid, int q) { return tid / K + q * (CB / Q); }

// delta_bias for the channels of this thread's rows (zeros without a bias).
__device__ __forceinline__ void load_row_bias(const float* delta_bias, long long dim, long long d0, float (&bias)[ROW_ITERS])
{
#pragma unroll
    for (int r = 0; r < ROW_ITERS; ++r) {
        const long long dd = d0 + row_channel(threadIdx.x + r * THREADS);
        bias[r] = SS_HAS_BIAS && dd < dim ? delta_bias[dd] : 0.f;
    }
}

// One chunk's u, delta and input-dependent B, C, loaded into registers while the previous chunk is processed.
struct ChunkInputs {
    RawVec u[ROW_ITERS], x[ROW_ITERS];
#if SS_VAR_B
    RawVec B[BC_ITERS];
#endif
#if SS_VAR_C
    RawVec C[BC_ITERS];
#endif

    __device__ __forceinline__ void load(const in_t* u_, const in_t* delta, const void* B_, const void* C_, long long b,
                                         long long dim, long long len, long long d0, long long t0)
    {
        load_rows(u_, b, dim, len, d0, t0, u);
        load_rows(delta, b, dim, len, d0, t0, x);
#if SS_VAR_B
        load_state_rows(static_cast<const in_t*>(B_), b, len, t0, B);
#endif
#if SS_VAR_C
        load_state_rows(static_cast<const in_t*>(C_), b, len, t0, C);
#endif
    }

    // The thread's r-th vector of each input (the interface stage_chunk reads; see SharedChunkInputs).
    __device__ __forceinline__ RawVec row_u(int r) const { return u[r]; }
    __device__ __forceinline__ RawVec row_delta(int r) const { return x[r]; }
#if SS_VAR_B
    __device__ __forceinline__ RawVec state_B(int r) const { return B[r]; }
#endif
#if SS_VAR_C
    __device__ __forceinline__ RawVec state_C(int r) const { return C[r]; }
#endif
};

// ---- one chunk's inputs copied straight into shared memory
//
// cp.async moves 16-byte vectors from global to shared memory without passing through registers, so a thread holds no
// prefetched data while it scans and the registers saved buy resident warps. The raw copies keep the global element
// type: (channel, step) rows as [CB][T], input-dependent B, C as [N][RAW_SB] (padded so that the state-fastest reads of
// stage_state_rows hit different banks). Without 16-byte vectors (unaligned rows, scalar elements) the copy is an
// ordinary load and store, so that path waits for memory.
constexpr int RAW_SB = T + V;                                   // row stride of raw [N][.] arrays, in elements
constexpr int RAW_ROW_ELEMS = CB * T;                          // elements of one raw [CB][T] array
constexpr int RAW_STATE_ELEMS = N * RAW_SB;                    // elements of one raw [N][RAW_SB] array

__device__ __forceinline__ void copy_vec_async(in_t* dst, const in_t* src, bool valid)
{
#if SS_VEC && !defined(SS_EMULATE)
    unsigned d;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(d) : "l"(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(valid ? 16 : 0) : "memory");
#else
    *reinterpret_cast<RawVec*>(dst) = valid ? load_raw(src) : zero_raw();
#endif
}

// Waits for this thread's copies; a __syncthreads() after it makes every thread's copies visible.
__device__ __forceinline__ void copy_async_wait()
{
#if SS_VEC && !defined(SS_EMULATE)
    asm volatile("cp.async.wait_all;" ::: "memory");
#endif
}

// Starts copying the chunk at t0 of a (batch, dim, len) tensor, channels d0.., into raw [CB][T] (zeros outside).
__device__ __forceinline__ void prefetch_rows(const in_t* x, long long b, long long dim, long long len, long long d0, long long t0,
                                              in_t* raw)
{
    for_each_row_vec([&](int, int c, int s) {
        const long long dd = d0 + c, t = t0 + s;
        const bool valid = dd < dim && t < len;
        copy_vec_async(raw + c * T + s, valid ? x + (b * dim + dd) * len + t : x, valid);
    });
}

// Starts copying the chunk at t0 of a (batch, N, len) tensor into raw [N][RAW_SB] (zeros past the end).
__device__ __forceinline__ void prefetch_state_rows(const in_t* x, long long b, long long len, long long t0, in_t* raw)
{
#pragma unroll
    for (int r = 0; r < BC_ITERS; ++r) {
        const int e = threadIdx.x + r * THREADS;
        if (e >= BC_VECS) break;
        const long long t = t0 + state_step(e);
        const bool valid = t < len;
        copy_vec_async(raw + state_row(e) * RAW_SB + state_step(e), valid ? x + (b * N + state_row(e)) * len + t : x, valid);
    }
}

__device__ __forceinline__ RawVec raw_at(const in_t* p) { return *reinterpret_cast<const RawVec*>(p); }

// A chunk's inputs in shared memory, read through the same interface as ChunkInputs.
struct SharedChunkInputs {
    in_t *u, *x, *B, *C;   // raw [CB][T], [CB][T], [N][RAW_SB], [N][RAW_SB] (B, C only when input-dependent)

    __device__ __forceinline__ void prefetch(const in_t* u_, const in_t* delta, const void* B_, const void* C_, long long b,
                                             long long dim, long long len, long long d0, long long t0) const
    {
        prefetch_rows(u_, b, dim, len, d0, t0, u);
        prefetch_rows(delta, b, dim, len, d0, t0, x);
        if (SS_VAR_B) prefetch_state_rows(static_cast<const in_t*>(B_), b, len, t0, B);
        if (SS_VAR_C) prefetch_state_rows(static_cast<const in_t*>(C_), b, len, t0, C);
    }

    __device__ __forceinline__ RawVec row_u(int r) const { return raw_at(u + row_offset(r)); }
    __device__ __forceinline__ RawVec row_delta(int r) const { return raw_at(x + row_offset(r)); }
    __device__ __forceinline__ RawVec state_B(int r) const { return raw_at(B + state_offset(r)); }
    __device__ __forceinline__ RawVec state_C(int r) const { return raw_at(C + state_offset(r)); }

    static __device__ __forceinline__ int row_offset(int r)
    {
        const int e = threadIdx.x + r * THREADS;
        return row_channel(e) * T + row_step(e);
    }
    static __device__ __forceinline__ int state_offset(int r)
    {
        const int e = threadIdx.x + r * THREADS;
        return state_row(e) * RAW_SB + state_step(e);
    }
};

// Zeroes the padded state columns (n >= N) of the [T][SB] B and C arrays; staging never writes them.
__device__ __forceinline__ void zero_state_padding(float* B_s, float* C_s)
{
    if constexpr (NPAD > N && (SS_VAR_B || SS_VAR_C)) {
        constexpr int PADS = NPAD > N ? NPAD - N : 1;
        for (int e = threadIdx.x; e < T * PADS; e += THREADS) {
            const int t = e / PADS, n = N + e % PADS;
            if (SS_VAR_B) B_s[t * SB + n] = 0.f;
            if (SS_VAR_C) C_s[t * SB + n] = 0.f;
        }
    }
}

// ---- shared memory: small float vectors at aligned addresses

template <int M>
__device__ __forceinline__ void lds(const float* p, float (&v)[M])
{
    if constexpr (M % 4 == 0) {
#pragma unroll
        for (int i = 0; i < M; i += 4) {
            const float4 q = *reinterpret_cast<const float4*>(p + i);
            v[i] = q.x; v[i + 1] = q.y; v[i + 2] = q.z; v[i + 3] = q.w;
        }
    } else if constexpr (M == 2) {
        const float2 q = *reinterpret_cast<const float2*>(p);
        v[0] = q.x; v[1] = q.y;
    } else {
#pragma unroll
        for (int i = 0; i < M; ++i) v[i] = p[i];
    }
}

template <int M>
__device__ __forceinline__ void sts(float* p, const float (&v)[M])
{
    if constexpr (M % 4 == 0) {
#pragma unroll
        for (int i = 0; i < M; i += 4) *reinterpret_cast<float4*>(p + i) = make_float4(v[i], v[i + 1], v[i + 2], v[i + 3]);
    } else if constexpr (M == 2) {
        *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
    } else {
#pragma unroll
        for (int i = 0; i < M; ++i) p[i] = v[i];
    }
}

// ---- arithmetic

// 2^x on the special-function unit (one instruction; relative error ~2^-22). Arguments are delta*A*log2(e) <= 0.
__device__ __forceinline__ float fast_exp2(float x)
{
#ifdef SS_EMULATE
    return exp2f(x);
#else
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#endif
}

// PyTorch's softplus (beta 1, threshold 20), as log(1 + e^x): the special-function log where 1 + e^x is well away from 1,
// the log1p series to e^5 where it is not (relative error about 2e-6 at most, against ~20 instructions for log1pf).
__device__ __forceinline__ float softplus(float x)
{
    const float e = __expf(x);
    const float series = e * fmaf(e, fmaf(e, fmaf(e, fmaf(e, 0.2f, -0.25f), 1.f / 3.f), -0.5f), 1.f);
    return x > 20.f ? x : e < 0.1f ? series : __logf(1.f + e);
}

// 1 / (1 + e^-x) with the special-function reciprocal; 0 for x below about -88.
__device__ __forceinline__ float sigmoid(float x) { return __fdividef(1.f, 1.f + __expf(-x)); }

// Stages a loaded chunk in shared memory: delta' = softplus(delta + bias) per (channel, step) into dt_s, and if asked
// delta'*u into dtu_s and u into u_s ([CB][TP] arrays); input-dependent B, C per (step, state) into B_s, C_s ([T][SB]).
template <bool WITH_DTU, bool WITH_U, class Inputs>
__device__ __forceinline__ void stage_chunk(const Inputs& in, const float (&bias)[ROW_ITERS], float* dt_s, float* dtu_s,
                                            float* u_s, float* B_s, float* C_s)
{
    for_each_row_vec([&](int r, int c, int s) {
        const int at = c * TP + s;
        float uv[V], dtv[V], dtuv[V];
        unpack(in.row_u(r), uv);
        unpack(in.row_delta(r), dtv);
#pragma unroll
        for (int i = 0; i < V; ++i) {
            if (SS_HAS_BIAS) dtv[i] += bias[r];
            if (SS_SOFTPLUS) dtv[i] = softplus(dtv[i]);
            dtuv[i] = dtv[i] * uv[i];
        }
        sts(dt_s + at, dtv);
        if constexpr (WITH_DTU) sts(dtu_s + at, dtuv);
        if constexpr (WITH_U) sts(u_s + at, uv);
    });
#if SS_VAR_B
    stage_state_rows(B_s, [&](int r) { return in.state_B(r); });
#endif
#if SS_VAR_C
    stage_state_rows(C_s, [&](int r) { return in.state_C(r); });
#endif
}

// A lane's NP values of B_t (or C_t) at chunk step t: from the staged [T][SB] array when input-dependent, else the
// lane's fixed (dim, N) values.
template <bool VARIABLE>
__device__ __forceinline__ void step_states(const float* staged, int t, int j, const float (&fixed)[NP], float (&v)[NP])
{
    if constexpr (VARIABLE) {
        lds(staged + t * SB + j * NP, v);
    } else {
#pragma unroll
        for (int k = 0; k < NP; ++k) v[k] = fixed[k];
    }
}

// Compile-time booleans for code shared between full chunks (no bounds checks) and the last, partial one.
template <bool B>
struct Flag {
    static constexpr bool value = B;
};

// ---- reductions across the K lanes of a channel

// On entry each lane holds G partial sums v[0..G) (one per time step of a group). On exit the lanes hold the full sums,
// transposed: with K <= G lane j holds steps j*(G/K) .. j*(G/K)+G/K-1 in v[0..G/K); with K > G lane j holds step
// j / (K/G) in v[0]. Each butterfly step halves the values a lane carries, so the shuffles move no duplicates.
template <int M, int HALF>
__device__ __forceinline__ void lane_transpose_sum(float (&v)[G], int j)
{
    if constexpr (M >= 1 && HALF >= 1) {
        const bool upper = (j & M) != 0;
#pragma unroll
        for (int i = 0; i < HALF; ++i) {
            const float send = upper ? v[i] : v[i + HALF];
            const float keep = upper ? v[i + HALF] : v[i];
            v[i] = keep + __shfl_xor_sync(FULL_MASK, send, M);
        }
        lane_transpose_sum<M / 2, HALF / 2>(v, j);
    } else if constexpr (M >= 1) {
        v[0] += __shfl_xor_sync(FULL_MASK, v[0], M);
        lane_transpose_sum<M / 2, 0>(v, j);
    }
}

__device__ __forceinline__ void lane_reduce(float (&v)[G], int j) { lane_transpose_sum<K / 2, G / 2>(v, j); }

// After lane_reduce: how many sums a lane holds, the step of its first, and whether it is the lane that stores them.
constexpr int SUMS_PER_LANE = K <= G ? G / K : 1;
__device__ __forceinline__ int lane_sum_step(int j) { return K <= G ? j * (G / K) : j / (K / G); }
__device__ __forceinline__ bool lane_stores_sum(int j) { return K <= G || (j & (K / G - 1)) == 0; }

// Sums v (one partial sum per step of a group) over the channel's K lanes and stores the G sums at group_row[0..G).
__device__ __forceinline__ void reduce_store(float (&v)[G], int j, float* group_row)
{
    lane_reduce(v, j);
    if (lane_stores_sum(j)) {
#pragma unroll
        for (int r = 0; r < SUMS_PER_LANE; ++r) group_row[lane_sum_step(j) + r] = v[r];
    }
}

// Sum over groups of GRP consecutive lanes (GRP a power of two <= 32); every lane gets the group's sum.
template <int GRP>
__device__ __forceinline__ float group_sum(float v)
{
#pragma unroll
    for (int m = GRP / 2; m >= 1; m /= 2) v += __shfl_xor_sync(FULL_MASK, v, m);
    return v;
}

}  // namespace ss
