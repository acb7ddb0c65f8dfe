// Selective scan, forward (Mamba-1 selective_scan_fn semantics; see SelectiveScanInput.cs):
//   delta = softplus(delta + delta_bias);  h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t;  y_t = C_t.h_t + D u_t;
//   out = y * silu(z).  Inputs in fp32 or bf16, all arithmetic in fp32.
//
// Layout: see selective_scan_common.cuh; a thread may run the same lane of Q channels (SS_Q), sharing its B_t, C_t loads.
// Per chunk of T steps: (1) all threads stage delta' = softplus(delta + bias), delta'*u (and u, silu(z)) per
// (channel, step), and B_t, C_t per (step, state), in shared memory, so the softplus runs once per element rather than
// once per state (the chunk's global data was copied into shared memory by cp.async while the previous chunk was
// scanned, holding no registers);
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

// Shared memory, in floats: staged [CB][TP] rows, staged [T][SB] B and C, then the raw copies of the next chunk.
constexpr int FWD_ROW_ARRAYS = 3 + SS_HAS_D + SS_HAS_Z;        // delta', delta'*u, y, (u), (silu(z))
constexpr int FWD_STAGED_FLOATS = FWD_ROW_ARRAYS * CB * TP + (SS_VAR_B + SS_VAR_C) * T * SB;
constexpr int FWD_RAW_ELEMS = (2 + SS_HAS_Z) * RAW_ROW_ELEMS + (SS_VAR_B + SS_VAR_C) * RAW_STATE_ELEMS;   // u, delta, (z), B, C
constexpr int FWD_SMEM_FLOATS = FWD_STAGED_FLOATS + (FWD_RAW_ELEMS * (int)sizeof(in_t) + 15) / 16 * 4;
static_assert(FWD_STAGED_FLOATS % 4 == 0 && (RAW_ROW_ELEMS * sizeof(in_t)) % sizeof(RawVec) == 0 &&
              (RAW_STATE_ELEMS * sizeof(in_t)) % sizeof(RawVec) == 0, "every raw buffer must start aligned for its copies");
// The host reads the launch's dynamic shared-memory size from here: one source of truth for the layout.
extern "C" __constant__ unsigned selective_scan_fwd_smem_bytes = FWD_SMEM_FLOATS * 4;

extern "C" __global__ void __launch_bounds__(THREADS) selective_scan_fwd(const FwdParams p)
{
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    float* const dt_s = smem;               // [CB][TP] delta'
    float* const dtu_s = dt_s + CB * TP;    // [CB][TP] delta' * u
    float* const y_s = dtu_s + CB * TP;     // [CB][TP] C.h
    float* const u_s = y_s + CB * TP;       // [CB][TP] u (with D)
#if SS_HAS_Z
    float* const z_s = u_s + SS_HAS_D * CB * TP;                              // [CB][TP] silu(z)
#endif
    float* const B_s = smem + FWD_ROW_ARRAYS * CB * TP;                       // [T][SB] (input-dependent B)
    float* const C_s = smem + FWD_ROW_ARRAYS * CB * TP + SS_VAR_B * T * SB;   // [T][SB] (input-dependent C)
    in_t* const raw_base = reinterpret_cast<in_t*>(smem + FWD_STAGED_FLOATS);
    const SharedChunkInputs next{raw_base, raw_base + RAW_ROW_ELEMS,
                                 raw_base + 2 * RAW_ROW_ELEMS + SS_HAS_Z * RAW_ROW_ELEMS,
                                 raw_base + 2 * RAW_ROW_ELEMS + SS_HAS_Z * RAW_ROW_ELEMS + SS_VAR_B * RAW_STATE_ELEMS};
    in_t* const z_raw = raw_base + 2 * RAW_ROW_ELEMS;                        // [CB][T] (with z)

    const int tid = threadIdx.x, j = tid % K;
    const long long b = blockIdx.y, d0 = (long long)blockIdx.x * CB;
    const long long dim = p.dim, len = p.len;
    zero_state_padding(B_s, C_s);

    // Per owned channel q: its index in the block, validity, and A (pre-scaled by log2 e), state, fixed B/C per state.
    int c[Q];
    bool dvalid[Q];
    long long row[Q];
    float A2[Q][NP], h[Q][NP], Bf[Q][NP], Cf[Q][NP];
#pragma unroll
    for (int q = 0; q < Q; ++q) {
        c[q] = thread_channel(tid, q);
        const long long d = d0 + c[q];
        dvalid[q] = d < dim;
        row[q] = b * dim + d;
#pragma unroll
        for (int k = 0; k < NP; ++k) {
            const int n = j * NP + k;
            const bool valid = dvalid[q] && n < N;
            A2[q][k] = valid ? p.A[d * N + n] * LOG2E : 0.f;
            h[q][k] = SS_HAS_H0 && valid ? p.h0[row[q] * N + n] : 0.f;
            Bf[q][k] = !SS_VAR_B && valid ? static_cast<const float*>(p.B)[d * N + n] : 0.f;
            Cf[q][k] = !SS_VAR_C && valid ? static_cast<const float*>(p.C)[d * N + n] : 0.f;
        }
    }

    // The next chunk's inputs (and its z) are copied into shared memory while the current chunk is scanned.
    auto prefetch = [&](long long t0) {
        next.prefetch(p.u, p.delta, p.B, p.C, b, dim, len, d0, t0);
        if (SS_HAS_Z) prefetch_rows(p.z, b, dim, len, d0, t0, z_raw);
    };
    prefetch(0);
    float bias[ROW_ITERS];
    load_row_bias(p.delta_bias, dim, d0, bias);

    const long long nchunks = (len + T - 1) / T;
    for (long long chunk = 0; chunk < nchunks; ++chunk) {
        const long long t0 = chunk * T;
        const int clen = (int)min((long long)T, len - t0);
        copy_async_wait();
        __syncthreads();   // this chunk's copies are visible, and the previous chunk's readers are done with shared memory

        // (1) stage delta', delta'*u, u, silu(z) per (channel, step) and B, C per (step, state); then start copying the
        // next chunk into the raw buffers this staging has finished reading
        stage_chunk<true, SS_HAS_D>(next, bias, dt_s, dtu_s, u_s, B_s, C_s);
#if SS_HAS_Z
        for_each_row_vec([&](int, int cc, int tt) {
            float zv[V];
            unpack(raw_at(z_raw + cc * T + tt), zv);
#pragma unroll
            for (int i = 0; i < V; ++i) zv[i] *= sigmoid(zv[i]);
            sts(z_s + cc * TP + tt, zv);
        });
#endif
        __syncthreads();
        if (chunk + 1 < nchunks) prefetch(t0 + T);

#if SS_SAVE_EVERY
        if (t0 % SS_SAVE_EVERY == 0) {
#pragma unroll
            for (int q = 0; q < Q; ++q) {
                if (!dvalid[q]) continue;
                float* dst = p.saved_states + (row[q] * p.saved_per_row + t0 / SS_SAVE_EVERY) * N;
#pragma unroll
                for (int k = 0; k < NP; ++k)
                    if (j * NP + k < N) dst[j * NP + k] = h[q][k];
            }
        }
#endif

        // (2) the recurrence, G steps at a time; y reduced across the channel's K lanes. Whole groups run without
        // bounds checks, so the compiler can start the exponentials of later steps early.
        for (int tg = 0; tg < clen; tg += G) {
            float dtg[Q][G], dtug[Q][G], yv[Q][G];
#pragma unroll
            for (int q = 0; q < Q; ++q) {
                lds(dt_s + c[q] * TP + tg, dtg[q]);
                lds(dtu_s + c[q] * TP + tg, dtug[q]);
            }
            auto steps = [&](auto whole) {
#pragma unroll
                for (int i = 0; i < G; ++i) {
#pragma unroll
                    for (int q = 0; q < Q; ++q) yv[q][i] = 0.f;
                    if (decltype(whole)::value || tg + i < clen) {
                        float Bv[NP], Cv[NP];
                        step_states<SS_VAR_B>(B_s, tg + i, j, Bf[0], Bv);
                        step_states<SS_VAR_C>(C_s, tg + i, j, Cf[0], Cv);
#pragma unroll
                        for (int q = 0; q < Q; ++q) {
#pragma unroll
                            for (int k = 0; k < NP; ++k) {
                                const float a = fast_exp2(dtg[q][i] * A2[q][k]);
                                h[q][k] = fmaf(a, h[q][k], dtug[q][i] * (SS_VAR_B ? Bv[k] : Bf[q][k]));
                                yv[q][i] = fmaf(h[q][k], SS_VAR_C ? Cv[k] : Cf[q][k], yv[q][i]);
                            }
                        }
                    }
                }
            };
            if (tg + G <= clen) steps(Flag<true>{}); else steps(Flag<false>{});
#pragma unroll
            for (int q = 0; q < Q; ++q) reduce_store(yv[q], j, y_s + c[q] * TP + tg);
        }
        __syncthreads();

        // (3) out = (y + D u) * silu(z)
        for_each_row_vec([&](int, int cc, int tt) {
            const long long dd = d0 + cc;
            if (dd >= dim || t0 + tt >= len) return;
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
            lds(z_s + cc * TP + tt, zv);
#pragma unroll
            for (int i = 0; i < V; ++i) yv[i] *= zv[i];
#endif
            store_vec(p.out + (b * dim + dd) * len + t0 + tt, yv);
        });
    }

    if (p.last_state != nullptr) {
#pragma unroll
        for (int q = 0; q < Q; ++q) {
            if (!dvalid[q]) continue;
#pragma unroll
            for (int k = 0; k < NP; ++k)
                if (j * NP + k < N) p.last_state[row[q] * N + j * NP + k] = h[q][k];
        }
    }
}
