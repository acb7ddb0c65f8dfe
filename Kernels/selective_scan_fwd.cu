// Selective scan, forward (Mamba-1 selective_scan_fn semantics; see SelectiveScanInput.cs):
//   delta = softplus(delta + delta_bias);  h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t;  y_t = C_t.h_t + D u_t;
//   out = y * silu(z).  Inputs in fp32 or bf16, all arithmetic in fp32.
//
// Per chunk of T steps: (1) all threads stage delta' = softplus(delta + bias), delta'*u (and u) per (channel, step),
// and B_t, C_t per (step, state), in shared memory, so the softplus runs once per element rather than once per state
// (the chunk's global data was loaded into registers while the previous chunk was scanned);
// (2) each lane runs the recurrence over the chunk for its NP states, with exp(delta' A) as one ex2 instruction, and
// the K lanes of a channel sum C.h by a transposing butterfly; (3) all threads form out = (y + D u) silu(z) and store
// it with 16-byte accesses. The state stays in registers across chunks. For training, the state at the start of every
// SS_SAVE_EVERY steps is written out, so the backward kernel can restart the recurrence there.
//
// Extra configuration (-D): SS_HAS_H0 (initial state given), SS_SAVE_EVERY (0: save nothing; else a multiple of T).
#include "selective_scan_common.cuh"

#if !defined(SS_HAS_H0) || !defined(SS_SAVE_EVERY)
#error "selective_scan_fwd needs SS_HAS_H0 and SS_SAVE_EVERY"
#endif
static_assert(SS_SAVE_EVERY % ss::T == 0, "states are saved at chunk starts");

using namespace ss;

struct FwdParams {
    const in_t* u;            // (batch, dim, len)
    const in_t* delta;        // (batch, dim, len)
    const float* A;           // (dim, N)
    const void* B;            // in_t (batch, N, len) if SS_VAR_B, else float (dim, N)
    const void* C;            // likewise
    const float* D;           // (dim)
    const in_t* z;            // (batch, dim, len)
    const float* delta_bias;  // (dim)
    const float* h0;          // (batch, dim, N)
    in_t* out;                // (batch, dim, len)
    float* last_state;        // (batch, dim, N), or null
    float* saved_states;      // (batch, dim, saved_per_row, N) when SS_SAVE_EVERY
    long long batch, dim, len, saved_per_row;
};

// Shared memory, in floats.
constexpr int FWD_ROW_ARRAYS = 3 + SS_HAS_D;                   // delta', delta'*u, y, (u)
constexpr int FWD_SMEM_FLOATS = FWD_ROW_ARRAYS * CB * TP + (SS_VAR_B + SS_VAR_C) * T * SB;
// The host reads the launch's dynamic shared-memory size from here: one source of truth for the layout.
extern "C" __constant__ unsigned selective_scan_fwd_smem_bytes = FWD_SMEM_FLOATS * 4;

extern "C" __global__ void __launch_bounds__(THREADS) selective_scan_fwd(const FwdParams p)
{
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    float* const dt_s = smem;               // [CB][TP] delta'
    float* const dtu_s = dt_s + CB * TP;    // [CB][TP] delta' * u
    float* const y_s = dtu_s + CB * TP;     // [CB][TP] C.h
#if SS_HAS_D
    float* const u_s = y_s + CB * TP;       // [CB][TP] u
#endif
#if SS_VAR_B
    float* const B_s = smem + FWD_ROW_ARRAYS * CB * TP;                       // [T][SB]
#endif
#if SS_VAR_C
    float* const C_s = smem + FWD_ROW_ARRAYS * CB * TP + SS_VAR_B * T * SB;   // [T][SB]
#endif

    const int tid = threadIdx.x, c = tid / K, j = tid % K;
    const long long b = blockIdx.y, d0 = (long long)blockIdx.x * CB, d = d0 + c;
    const long long dim = p.dim, len = p.len;
    const bool dvalid = d < dim;
    const long long row = b * dim + d;

#if SS_VAR_B || SS_VAR_C
    // Padded state columns are never staged: zero them once.
    if constexpr (NPAD > N) {
        constexpr int PADS = NPAD > N ? NPAD - N : 1;
        for (int e = tid; e < T * PADS; e += THREADS) {
            const int t = e / PADS, n = N + e % PADS;
#if SS_VAR_B
            B_s[t * SB + n] = 0.f;
#endif
#if SS_VAR_C
            C_s[t * SB + n] = 0.f;
#endif
        }
    }
#endif

    float A2[NP], h[NP];
#if !SS_VAR_B
    float Bf[NP];
#endif
#if !SS_VAR_C
    float Cf[NP];
#endif
#pragma unroll
    for (int k = 0; k < NP; ++k) {
        const int n = j * NP + k;
        const bool valid = dvalid && n < N;
        A2[k] = valid ? p.A[d * N + n] * LOG2E : 0.f;
#if SS_HAS_H0
        h[k] = valid ? p.h0[row * N + n] : 0.f;
#else
        h[k] = 0.f;
#endif
#if !SS_VAR_B
        Bf[k] = valid ? static_cast<const float*>(p.B)[d * N + n] : 0.f;
#endif
#if !SS_VAR_C
        Cf[k] = valid ? static_cast<const float*>(p.C)[d * N + n] : 0.f;
#endif
    }

    // The next chunk's inputs are loaded into registers while the current chunk is scanned (and z while it is).
    RawVec u_next[ROW_ITERS], x_next[ROW_ITERS];
    load_rows(p.u, b, dim, len, d0, 0, u_next);
    load_rows(p.delta, b, dim, len, d0, 0, x_next);
#if SS_VAR_B
    RawVec B_next[BC_ITERS];
    load_state_rows(static_cast<const in_t*>(p.B), b, len, 0, B_next);
#endif
#if SS_VAR_C
    RawVec C_next[BC_ITERS];
    load_state_rows(static_cast<const in_t*>(p.C), b, len, 0, C_next);
#endif
#if SS_HAS_Z
    RawVec z_cur[ROW_ITERS];
#endif
#if SS_HAS_BIAS
    float bias[ROW_ITERS];
#pragma unroll
    for (int r = 0; r < ROW_ITERS; ++r) bias[r] = d0 + row_channel(tid + r * THREADS) < dim ? p.delta_bias[d0 + row_channel(tid + r * THREADS)] : 0.f;
#endif

    const long long nchunks = (len + T - 1) / T;
    for (long long chunk = 0; chunk < nchunks; ++chunk) {
        const long long t0 = chunk * T;
        const int clen = (int)min((long long)T, len - t0);
        __syncthreads();   // the previous chunk's readers are done with shared memory

        // (1) stage delta', delta'*u, u per (channel, step) and B, C per (step, state); start loading what comes next
#pragma unroll
        for (int r = 0; r < ROW_ITERS; ++r) {
            const int e = tid + r * THREADS;
            if (e >= ROW_VECS) break;
            const int cc = row_channel(e), tt = row_step(e);
            float uv[V], dtv[V], dtuv[V];
            unpack(u_next[r], uv);
            unpack(x_next[r], dtv);
#pragma unroll
            for (int i = 0; i < V; ++i) {
#if SS_HAS_BIAS
                dtv[i] += bias[r];
#endif
#if SS_SOFTPLUS
                dtv[i] = softplus(dtv[i]);
#endif
                dtuv[i] = dtv[i] * uv[i];
            }
            sts(dt_s + cc * TP + tt, dtv);
            sts(dtu_s + cc * TP + tt, dtuv);
#if SS_HAS_D
            sts(u_s + cc * TP + tt, uv);
#endif
        }
#if SS_VAR_B
        stage_state_rows(B_s, B_next);
#endif
#if SS_VAR_C
        stage_state_rows(C_s, C_next);
#endif
#if SS_HAS_Z
        load_rows(p.z, b, dim, len, d0, t0, z_cur);
#endif
        if (chunk + 1 < nchunks) {
            load_rows(p.u, b, dim, len, d0, t0 + T, u_next);
            load_rows(p.delta, b, dim, len, d0, t0 + T, x_next);
#if SS_VAR_B
            load_state_rows(static_cast<const in_t*>(p.B), b, len, t0 + T, B_next);
#endif
#if SS_VAR_C
            load_state_rows(static_cast<const in_t*>(p.C), b, len, t0 + T, C_next);
#endif
        }
        __syncthreads();

#if SS_SAVE_EVERY
        if (t0 % SS_SAVE_EVERY == 0 && dvalid) {
            float* dst = p.saved_states + (row * p.saved_per_row + t0 / SS_SAVE_EVERY) * N;
#pragma unroll
            for (int k = 0; k < NP; ++k)
                if (j * NP + k < N) dst[j * NP + k] = h[k];
        }
#endif

        // (2) the recurrence, G steps at a time; y reduced across the channel's K lanes. Whole groups run without
        // bounds checks, so the compiler can start the exponentials of later steps early.
        for (int tg = 0; tg < clen; tg += G) {
            float dtg[G], dtug[G], yv[G];
            lds(dt_s + c * TP + tg, dtg);
            lds(dtu_s + c * TP + tg, dtug);
            auto steps = [&](auto whole) {
#pragma unroll
                for (int i = 0; i < G; ++i) {
                    yv[i] = 0.f;
                    if (decltype(whole)::value || tg + i < clen) {
                        float Bv[NP], Cv[NP];
#if SS_VAR_B
                        lds(B_s + (tg + i) * SB + j * NP, Bv);
#else
#pragma unroll
                        for (int k = 0; k < NP; ++k) Bv[k] = Bf[k];
#endif
#if SS_VAR_C
                        lds(C_s + (tg + i) * SB + j * NP, Cv);
#else
#pragma unroll
                        for (int k = 0; k < NP; ++k) Cv[k] = Cf[k];
#endif
#pragma unroll
                        for (int k = 0; k < NP; ++k) {
                            const float a = fast_exp2(dtg[i] * A2[k]);
                            h[k] = fmaf(a, h[k], dtug[i] * Bv[k]);
                            yv[i] = fmaf(h[k], Cv[k], yv[i]);
                        }
                    }
                }
            };
            if (tg + G <= clen) steps(Flag<true>{}); else steps(Flag<false>{});
            lane_reduce(yv, j);
            if (lane_stores_sum(j)) {
#pragma unroll
                for (int r = 0; r < SUMS_PER_LANE; ++r) y_s[c * TP + tg + lane_sum_step(j) + r] = yv[r];
            }
        }
        __syncthreads();

        // (3) out = (y + D u) * silu(z)
#pragma unroll
        for (int r = 0; r < ROW_ITERS; ++r) {
            const int e = tid + r * THREADS;
            if (e >= ROW_VECS) break;
            const int cc = row_channel(e), tt = row_step(e);
            const long long dd = d0 + cc;
            if (dd >= dim || t0 + tt >= len) continue;
            float yv[V];
            lds(y_s + cc * TP + tt, yv);
#if SS_HAS_D
            float uv[V];
            lds(u_s + cc * TP + tt, uv);
            const float Dv = p.D[dd];
#pragma unroll
            for (int i = 0; i < V; ++i) yv[i] = fmaf(Dv, uv[i], yv[i]);
#endif
#if SS_HAS_Z
            float zv[V];
            unpack(z_cur[r], zv);
#pragma unroll
            for (int i = 0; i < V; ++i) yv[i] *= zv[i] * sigmoid(zv[i]);
#endif
            store_vec(p.out + (b * dim + dd) * len + t0 + tt, yv);
        }
    }

    if (p.last_state != nullptr && dvalid) {
#pragma unroll
        for (int k = 0; k < NP; ++k)
            if (j * NP + k < N) p.last_state[row * N + j * NP + k] = h[k];
    }
}
